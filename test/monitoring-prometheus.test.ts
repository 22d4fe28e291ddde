// The monitoring against a real Prometheus (Debian's 2.42): it scrapes the emulated
// cluster's proxies, xDS server and Envoy gateways under load, with deploy/'s rules
// loaded; every query of deploy/'s Grafana dashboard and every recording rule returns
// data, every rule evaluates without error, every metric an alert reads exists, and
// promtool finds nothing wrong with the proxies' and the xDS server's /metrics.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { request } from 'undici';
import { DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { startEmulatedStack, type EmulatedStack } from '../bin/stack.js';
import { dashboardQueries, hasData, prometheusMissing, promtool, query, rulesFromDeploy, startPrometheus, type QueryResult, type RunningPrometheus } from '../monitor/prometheus.js';
import { ClosedLoopLoad } from './fixtures/load.js';
import { HELLO_HOST, get, sleep } from './support.js';

const CHIKAI = fileURLToPath(new URL('../bin/chikai.js', import.meta.url));

t.test('npm run monitor without Prometheus says what to install, before anything starts', async (t) => {
  const r = spawnSync(process.execPath, [CHIKAI, 'monitor'], { env: { ...process.env, PROMETHEUS_BIN: '/nonexistent/prometheus' }, encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 3);
  t.match(r.stderr, /chikai: PROMETHEUS_BIN=\/nonexistent\/prometheus does not exist \(apt-get install -y prometheus/);
  const bad = spawnSync(process.execPath, [CHIKAI, 'monitor', '--scrape-interval', 'often'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(bad.status, 2, 'a bad flag is a usage error');
  t.match(bad.stderr, /chikai: --scrape-interval expects whole seconds from 1 to 300, got "often"/);
});

const missing = prometheusMissing();
if (missing) {
  t.test('monitoring against a real Prometheus', { skip: `needs Prometheus: ${missing}` }, () => undefined);
} else {
  let stack: EmulatedStack | undefined;
  let prometheus: RunningPrometheus | undefined;
  const loads: ClosedLoopLoad[] = [];
  t.teardown(async () => {
    await Promise.all(loads.map((l) => l.stop()));
    await prometheus?.stop();
    await stack?.close();
  });

  const text = async (url: string) => (await request(url)).body.text();
  const hostPort = (url: string) => url.replace(/^http:\/\//, '');
  /** Asks until the query has data, at most `tries` times a second apart; the last answer. */
  const untilData = async (expr: string, tries = 40): Promise<QueryResult> => {
    let r: QueryResult = { status: 'error', error: 'not asked' };
    for (let i = 0; i < tries; i++) {
      r = await query(prometheus!.url, expr);
      if (r.status === 'error' || hasData(r)) return r;
      await sleep(1000);
    }
    return r;
  };

  t.before(async () => {
    stack = await startEmulatedStack({
      file: loadClusterFile(DEMO_CLUSTER_FILE), proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 17,
      xds: { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } },
      gateways: { ports: 'free' },
    });
    const nodes = stack.model.current.nodes;
    const stats = stack.gateways!.ports.stats;
    prometheus = await startPrometheus({
      intervalSeconds: 1,
      targets: {
        proxies: new Map(nodes.map((n) => [n.name, hostPort(stack!.adminUrl(n.name))])),
        xds: `127.0.0.1:${stack.xds!.adminAddress!.port}`,
        gateways: new Map(nodes.map((n) => [n.name, `${n.address}:${stats}`])),
      },
    });
    // Load through every node's gateway and proxy, so every dashboard panel has something
    // to show; one request nobody serves for the status-code panel's variety.
    for (const n of nodes) {
      loads.push(new ClosedLoopLoad(stack.gatewayUrl(n.name) + '/', HELLO_HOST, 1).start());
      loads.push(new ClosedLoopLoad(stack.proxyUrl(n.name) + '/', HELLO_HOST, 1).start());
    }
    await get(stack.proxyUrl('node3') + '/', { host: 'nobody.default.svc.cluster.local' });
  });

  t.test('promtool check metrics: the proxies\' and the xDS server\'s /metrics follow the conventions', async (t) => {
    await sleep(1000); // RTTs measured, requests counted, so every family has samples
    for (const node of stack!.model.current.nodes.map((n) => n.name)) {
      const body = await text(`${stack!.adminUrl(node)}/metrics`);
      t.match(body, /chikai_requests_total\{/, `${node}'s proxy has counted requests`);
      const r = promtool(['check', 'metrics'], body);
      t.ok(r.ok && r.output === '', `proxy ${node}: promtool check metrics is clean${r.output ? `: ${r.output}` : ''}`);
    }
    const xds = await text(`http://127.0.0.1:${stack!.xds!.adminAddress!.port}/metrics`);
    const r = promtool(['check', 'metrics'], xds);
    t.ok(r.ok && r.output === '', `xDS server: promtool check metrics is clean${r.output ? `: ${r.output}` : ''}`);
  });

  t.test('promtool check rules: deploy/\'s rules are valid', async (t) => {
    const file = join(prometheus!.dir, 'checked-rules.yml');
    writeFileSync(file, rulesFromDeploy());
    const r = promtool(['check', 'rules', file]);
    t.ok(r.ok, `promtool check rules: ${r.output}`);
    t.match(r.output, /SUCCESS: \d+ rules found/);
  });

  t.test('every target is scraped', async (t) => {
    let targets: { scrapePool: string; health: string; lastError: string; scrapeUrl: string }[] = [];
    for (let i = 0; i < 40; i++) {
      const body = (await (await request(`${prometheus!.url}/api/v1/targets`)).body.json()) as { data: { activeTargets: typeof targets } };
      targets = body.data.activeTargets;
      if (targets.length === 7 && targets.every((x) => x.health === 'up')) break;
      await sleep(1000);
    }
    t.same(targets.map((x) => x.scrapePool).sort(), ['chikai-proxy', 'chikai-proxy', 'chikai-proxy', 'chikai-xds', 'kourier-gateway', 'kourier-gateway', 'kourier-gateway']);
    for (const x of targets) t.equal(x.health, 'up', `${x.scrapePool} ${x.scrapeUrl} ${x.lastError}`);
  });

  t.test('every query of the Grafana dashboard returns data', async (t) => {
    const queries = dashboardQueries();
    t.ok(queries.length >= 12, `${queries.length} queries`);
    for (const q of queries) {
      const r = await untilData(q.expr);
      t.equal(r.status, 'success', `${q.where}: valid PromQL${r.error ? ` (${r.error})` : ''}`);
      t.ok(hasData(r), `${q.where}: ${q.expr} returns data`);
    }
  });

  t.test('every recording rule returns data, every rule evaluates, every metric an alert reads exists', async (t) => {
    type Rule = { name: string; type: 'recording' | 'alerting'; query: string; health: string; lastError?: string };
    let rules: Rule[] = [];
    for (let i = 0; i < 40; i++) {
      const body = (await (await request(`${prometheus!.url}/api/v1/rules`)).body.json()) as { data: { groups: { rules: Rule[] }[] } };
      rules = body.data.groups.flatMap((g) => g.rules);
      if (rules.length > 0 && rules.every((r) => r.health !== 'unknown')) break;
      await sleep(1000);
    }
    t.ok(rules.some((r) => r.type === 'recording') && rules.some((r) => r.type === 'alerting'), `${rules.length} rules loaded`);
    for (const rule of rules) {
      t.equal(rule.health, 'ok', `${rule.type} rule ${rule.name} evaluates${rule.lastError ? ` (${rule.lastError})` : ''}`);
      if (rule.type === 'recording') {
        t.ok(hasData(await untilData(rule.name)), `recording rule ${rule.name} returns data`);
      } else {
        const metrics = new Set([...rule.query.matchAll(/\b(chikai_[a-z0-9_]+|latency_between_nodes|envoy_[a-z0-9_]+)\b/g)].map((m) => m[1]));
        t.ok(metrics.size > 0, `alert ${rule.name} reads chikai's metrics`);
        for (const m of metrics) t.ok(hasData(await untilData(`count(${m})`)), `alert ${rule.name}: ${m} exists`);
      }
    }
  });
}
