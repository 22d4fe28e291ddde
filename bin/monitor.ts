// `chikai monitor` (npm run monitor): a real Prometheus against the running demo — the node
// proxies, the xDS server and the Kourier gateways' Envoys — with deploy/'s recording and
// alerting rules loaded, on loopback, until Ctrl-C. Its storage is a temporary directory.
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { KOURIER_GATEWAY_PORTS } from '../gateway/gateways.js';
import { dashboardQueries, hasData, prometheusMissing, query, startPrometheus, type ScrapeTargets } from '../monitor/prometheus.js';
import { hostPortFlag } from './sources.js';
import { DEMO_MAP_ADDRESS } from './demo.js';
import { UsageError } from './usage-error.js';

/** Prometheus cannot run here. */
export class MonitorError extends Error {
  override name = 'MonitorError';
}

export class MonitorUsageError extends UsageError {
  override name = 'MonitorUsageError';
}

export async function monitorCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      cluster: { type: 'string', default: DEMO_CLUSTER_FILE },
      listen: { type: 'string', default: '127.0.0.1:19090' },
      'scrape-interval': { type: 'string', default: '5' },
    },
  });
  const file = loadClusterFile(values.cluster);
  const listen = hostPortFlag('listen', values.listen);
  const interval = Number(values['scrape-interval']);
  if (!Number.isInteger(interval) || interval < 1 || interval > 300) throw new MonitorUsageError(`--scrape-interval expects whole seconds from 1 to 300, got ${JSON.stringify(values['scrape-interval'])}`);
  const missing = prometheusMissing();
  if (missing) throw new MonitorError(missing);
  const nodes = file.state.nodes;
  const targets: ScrapeTargets = {
    proxies: new Map(nodes.map((n) => [n.name, `${n.address}:${file.proxy.adminPort}`])),
    xds: `${file.xds.admin.host === '0.0.0.0' ? '127.0.0.1' : file.xds.admin.host}:${file.xds.admin.port}`,
    gateways: new Map(nodes.map((n) => [n.name, `${n.address}:${KOURIER_GATEWAY_PORTS.stats}`])),
  };
  const prometheus = await startPrometheus({ targets, intervalSeconds: interval, listen });
  console.log([
    `Prometheus ${prometheus.url}/  (scraping every ${interval} s; storage in ${prometheus.dir}, removed on exit)`,
    `  targets: ${prometheus.url}/targets   rules and alerts: ${prometheus.url}/alerts`,
    `  proxies ${[...targets.proxies.values()].join(' ')} /metrics`,
    `  xDS server ${targets.xds} /metrics`,
    `  gateways ${[...targets.gateways.values()].join(' ')} /stats/prometheus`,
    `  try: ${prometheus.url}/graph?g0.expr=${encodeURIComponent('node_target_node:chikai_requests:rate1m')}`,
    `the live traffic map of the demo: http://${DEMO_MAP_ADDRESS}/`,
    'Ctrl-C stops Prometheus.',
  ].join('\n'));
  // Once every target was tried: which answer, and how many dashboard queries have data.
  void (async () => {
    try {
      type Target = { scrapePool: string; scrapeUrl: string; health: string; lastError: string };
      let targets: Target[] = [];
      for (let i = 0; i < 60; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        const res = await request(`${prometheus.url}/api/v1/targets`);
        targets = ((await res.body.json()) as { data: { activeTargets: Target[] } }).data.activeTargets;
        if (targets.length > 0 && targets.every((t) => t.health !== 'unknown')) break;
      }
      for (const t of targets) console.log(`  ${t.health.padEnd(7)} ${t.scrapePool.padEnd(16)} ${t.scrapeUrl}${t.lastError ? `  (${t.lastError})` : ''}`);
      if (targets.some((t) => t.health !== 'up')) console.log('  (is the demo running? npm start)');
      await new Promise((r) => setTimeout(r, 2 * interval * 1000));
      const qs = dashboardQueries();
      const answered = await Promise.all(qs.map(async (q) => hasData(await query(prometheus.url, q.expr))));
      console.log(`dashboard: ${answered.filter(Boolean).length} of ${qs.length} queries return data${answered.every(Boolean) ? '' : ' so far (rates need two scrapes with traffic: send load through the gateways and the proxies, e.g. the README\'s autocannon commands)'}`);
    } catch (err) {
      console.error(`could not ask Prometheus: ${(err as Error).message}`);
    }
  })();
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    prometheus.stop().then(() => process.exit(0), (err: unknown) => {
      console.error(err);
      process.exit(1);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
