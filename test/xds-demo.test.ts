// The xDS server beside the emulated stack and its Envoy gateways, as `npm start` runs it:
// it reads the proxies' and gateways' load reports and weighs node3's gateway view with them
// — all to the local pod while the edge pod is idle, through node3's proxy once node3's
// gateway sends more than the slow edge pod serves.
import t from 'tap';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { request } from 'undici';
import { DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { startEmulatedStack } from '../bin/stack.js';
import { HELLO_HOST, sleep, until } from './support.js';

const CHIKAI = fileURLToPath(new URL('../bin/chikai.js', import.meta.url));

/** Per node, the share of `default/hello-00001` from Envoy-style `/clusters` text. */
function sharesFrom(text: string): Record<string, number> {
  const zoneOf = new Map<string, string>();
  const shareOf = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^default\/hello-00001::([^:]+:\d+)::(sub_zone|expected_share)::(.+)$/.exec(line);
    if (!m) continue;
    if (m[2] === 'sub_zone') zoneOf.set(m[1], m[3]);
    else shareOf.set(m[1], Number.parseFloat(m[3]) / 100);
  }
  const out: Record<string, number> = {};
  for (const [host, zone] of zoneOf) out[zone] = (out[zone] ?? 0) + (shareOf.get(host) ?? 0);
  return out;
}

interface HostRow { zone: string; priority: number; localityWeight: number; share: number; proxy: boolean }

/** Every host of `default/hello-00001` in `/clusters` text. */
function hostsFrom(text: string): HostRow[] {
  const rows = new Map<string, Partial<HostRow>>();
  for (const line of text.split('\n')) {
    const m = /^default\/hello-00001::([^:]+:\d+)::(sub_zone|priority|locality_weight|expected_share|proxy|pod)::(.+)$/.exec(line);
    if (!m) continue;
    const r = rows.get(m[1]) ?? {};
    rows.set(m[1], r);
    if (m[2] === 'sub_zone') r.zone = m[3];
    else if (m[2] === 'priority') r.priority = Number(m[3]);
    else if (m[2] === 'locality_weight') r.localityWeight = Number(m[3]);
    else if (m[2] === 'expected_share') r.share = Number.parseFloat(m[3]) / 100;
    else r.proxy = m[2] === 'proxy';
  }
  return [...rows.values()] as HostRow[];
}

/** Per node, its pods' share of the locality weights at one priority. */
function podWeightsAt(hosts: HostRow[], priority: number): Record<string, number> {
  const at = hosts.filter((h) => !h.proxy && h.priority === priority);
  const byZone = new Map(at.map((h) => [h.zone, h.localityWeight]));
  const sum = [...byZone.values()].reduce((a, b) => a + b, 0);
  return Object.fromEntries([...byZone].map(([z, w]) => [z, sum > 0 ? w / sum : 0]));
}

const pct = (s: Record<string, number>) => Object.entries(s).sort().map(([k, v]) => `${k} ${(v * 100).toFixed(0)} %`).join(', ');

t.test('node3\'s gateway view follows the proxies\' measurements: local at light load, spilling when the edge pod is slow', async (t) => {
  const logs: string[] = [];
  const stack = await startEmulatedStack({
    file: loadClusterFile(DEMO_CLUSTER_FILE), policy: 'chikai', proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 3,
    xds: { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, log: (l) => logs.push(l) },
    gateways: { ports: 'free' },
  });
  t.teardown(() => stack.close());
  const admin = `127.0.0.1:${stack.xds?.adminAddress?.port}`;
  const clusters = async () => sharesFrom(await (await request(`http://${admin}/clusters?node=node3`)).body.text());

  type Report = { node: string; peers: Record<string, { rttMs?: number }> };
  const loadReport = async () => JSON.parse(await (await request(`${stack.adminUrl('node3')}/load`)).body.text()) as Report;
  // RTT probes, first load reports.
  const report = await until('node3\'s proxy to report a measured RTT to node1', async () => {
    const r = await loadReport();
    return r.peers['node1']?.rttMs !== undefined ? r : undefined;
  });
  t.equal(report.node, 'node3', 'the proxy serves its load report on the admin port');
  t.ok(report.peers['node1']!.rttMs! > 0, `it carries the measured RTT to node1 (${report.peers['node1']?.rttMs?.toFixed(1)} ms)`);

  const light = await clusters();
  t.comment(`served weights for node3's gateway, idle: ${pct(light)}`);
  t.equal(light['node3'], 1, 'idle edge pod: all of node3\'s gateway traffic stays on node3');

  // The edge pod turns 10× slower and node3's gateway is loaded: its load reports show it
  // sending more requests a second than the slow pod serves (the knee). The xDS server then
  // hands node3's traffic to node3's proxy (priority 0), which decides per request; every
  // node's pods follow behind it as failover (placed as if idle, so moving load pushes
  // nothing new).
  stack.cluster.pods.find((p) => p.node === 'node3')?.setSlowdown(10);
  // Users run until the proxy shows up (a busy machine takes longer to get there, never a reason to fail).
  let loading = true;
  const users = Array.from({ length: 16 }, async () => {
    while (loading) {
      const res = await request(`${stack.gatewayUrl('node3')}/`, { headers: { host: HELLO_HOST } });
      await res.body.text();
    }
  });
  const inPath = await until('node3\'s proxy at priority 0 in node3\'s gateway view', async () => {
    const hosts = hostsFrom(await (await request(`http://${admin}/clusters?node=node3`)).body.text());
    return hosts.some((h) => h.proxy && h.priority === 0) ? hosts : undefined;
  }, 60_000, 250).finally(() => { loading = false; });
  await Promise.all(users);
  t.pass('node3\'s gateway was handed to node3\'s proxy while the edge pod was slow and busy');
  t.comment(`served view for node3's gateway, edge pod 10× slower under 16 users: proxy at priority 0, pods behind it ${pct(podWeightsAt(inPath, 1))}`);
  const first = inPath.filter((h) => h.priority === 0);
  t.same(first.map((h) => [h.zone, h.proxy, h.share]), [['node3', true, 1]], 'priority 0 is node3\'s proxy alone, all of the gateway\'s traffic');
  const behind = inPath.filter((h) => !h.proxy);
  t.ok(behind.every((h) => h.priority >= 1), 'the pods are behind it, failover only');
  t.same([...new Set(behind.map((h) => h.zone))].sort(), ['node1', 'node2', 'node3'], 'every node\'s pods are there to fail over to');

  // `chikai inspect` prints the same table from the same admin port.
  const { stdout } = await promisify(execFile)(process.execPath, [CHIKAI, 'inspect', '--node', 'node3', '--admin', admin]);
  t.match(stdout, /default\/hello-00001::127\.0\.1\.3:\d+::sub_zone::node3/, 'inspect shows node3\'s hosts');
  t.same(Object.keys(sharesFrom(stdout)).sort(), ['node1', 'node2', 'node3'], 'inspect shows every locality');
  t.notOk(logs.some((l) => l.includes('no load report')), `every proxy kept reporting to the xDS server (${logs.join('; ')})`);
});

t.test('inspect names the fix when the xDS admin server is not there', async (t) => {
  const err = await promisify(execFile)(process.execPath, [CHIKAI, 'inspect', '--node', 'node3', '--admin', '127.0.0.1:1']).catch((e: { code: number; stderr: string }) => e);
  t.equal((err as { code?: number }).code, 2, 'exit code 2');
  t.match((err as { stderr: string }).stderr, /cannot reach the xDS admin server at 127\.0\.0\.1:1.*npm start/, 'says what to start');
});
