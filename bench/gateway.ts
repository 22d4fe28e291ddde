// `node dist/bench/gateway.js [--seconds S] [--changes N]`: the demo's request path through
// real Envoy gateways, measured. On the emulated demo cluster (one Envoy per node, fed by
// chikai's xDS server):
// 1. where node3's gateway sends its requests at light and heavy load: open-loop users
//    (10 connections each, one request per second per connection, as in the paper bench)
//    on node3's gateway; the share served by node3's pod from Envoy's own per-host
//    counters (/clusters rq_success), latencies from the load generator;
// 2. how long an endpoint change takes to reach every gateway: a pod added on node1, then
//    removed, N times; the time until every gateway ACKed the new assignment (its arrival
//    at chikai's xDS server) and until every Envoy's /clusters shows the change.
// Real time on a shared machine: printed, never asserted.
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { startEmulatedStack } from '../bin/stack.js';
import { percentile, sorted } from './stats.js';
import { LoadGenerator } from './load/client.js';

const { values } = parseArgs({ options: { changes: { type: 'string', default: '20' }, seconds: { type: 'string', default: '10' } } });
const changes = Number(values.changes);
const seconds = Number(values.seconds);
for (const [flag, v] of [['changes', changes], ['seconds', seconds]] as const) {
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`bench gateway: --${flag} expects a whole number ≥ 1, got ${JSON.stringify(values[flag])}\n`);
    process.exit(2);
  }
}
const HOST = 'hello.default.svc.cluster.local';
const EDGE = 'node3';

const stack = await startEmulatedStack({
  file: loadClusterFile(DEMO_CLUSTER_FILE), proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 1,
  xds: { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, log: () => undefined },
  gateways: { ports: 'free' },
});
const nodes = stack.model.current.nodes.map((n) => n.name);
const ackMs: number[] = [];
const visibleMs: number[] = [];
const shareRows: string[] = [];

/** Requests node3's Envoy has sent to each node's pods so far (rq_success per host, by sub_zone). */
async function servedByNode(): Promise<Map<string, number>> {
  const text = await (await request(`${stack.gatewayAdminUrl(EDGE)}/clusters`)).body.text();
  const zoneOf = new Map<string, string>();
  const done = new Map<string, number>();
  for (const m of text.matchAll(/^default\/hello-00001::([^:]+:\d+)::(sub_zone|rq_success)::(.+)$/gm)) {
    if (m[2] === 'sub_zone') zoneOf.set(m[1], m[3]);
    else done.set(m[1], Number(m[3]));
  }
  const out = new Map<string, number>();
  for (const [host, zone] of zoneOf) out.set(zone, (out.get(zone) ?? 0) + (done.get(host) ?? 0));
  return out;
}

async function shareAt(load: LoadGenerator, users: number): Promise<void> {
  const before = await servedByNode();
  const [r] = await load.open([{ name: 'edge', url: `${stack.gatewayUrl(EDGE)}/`, host: HOST, connections: users * 10, requestsPerConnection: seconds, timeoutSeconds: 1.5, phases: 100 }]);
  const after = await servedByNode();
  const delta = new Map(nodes.map((n) => [n, (after.get(n) ?? 0) - (before.get(n) ?? 0)]));
  const total = [...delta.values()].reduce((a, b) => a + b, 0);
  const lat = sorted(r!.latenciesMs);
  const pctOf = (n: string) => `${(((delta.get(n) ?? 0) / Math.max(1, total)) * 100).toFixed(1)} %`;
  shareRows.push(`| ${users} | ${users * 10} | ${pctOf(EDGE)} | ${nodes.filter((n) => n !== EDGE).map((n) => `${n} ${pctOf(n)}`).join(', ')} | ${percentile(lat, 50).toFixed(1)} | ${percentile(lat, 99).toFixed(1)} | ${((r!.completed / Math.max(1, r!.offered)) * 100).toFixed(1)} % |`);
}

/** The EDS ACK of every gateway at or after `since` (ms since the epoch), as the latest one. */
function allAckedAfter(since: number): number | undefined {
  const clients = stack.xds?.clients() ?? [];
  if (clients.length < nodes.length) return undefined;
  let last = 0;
  for (const c of clients) {
    const eds = c.types['EDS'];
    if (!eds || eds.awaiting_ack || !eds.acked_at || eds.acked_version !== eds.sent_version) return undefined;
    const at = Date.parse(eds.acked_at);
    if (at < since) return undefined;
    last = Math.max(last, at);
  }
  return last;
}

async function envoyListsPod(node: string, address: string, present: boolean): Promise<boolean> {
  const text = await (await request(`${stack.gatewayAdminUrl(node)}/clusters`)).body.text();
  return text.includes(`default/hello-00001::${address}::`) === present;
}

try {
  await new Promise((r) => setTimeout(r, 2000)); // first pushes, RTT probes
  const load = new LoadGenerator();
  try {
    for (const users of [5, 50, 100]) await shareAt(load, users);
  } finally {
    await load.close();
  }
  let extra: string | undefined;
  let address = '';
  for (let i = 0; i < changes; i++) {
    const adding = extra === undefined;
    const wall = Date.now();
    const t0 = performance.now();
    let removed: Promise<void> | undefined;
    if (adding) {
      const pod = await stack.cluster.addPod({ revision: 'default/hello-00001', node: 'node1', serviceTimeMs: { min: 3, max: 5 }, capacity: 4 });
      extra = pod.name;
      const e = stack.model.current.state.endpoints.find((x) => x.pod === pod.name)!;
      address = `${e.address}:${e.port}`;
    } else {
      // The endpoint leaves the model at once; the pod drains meanwhile.
      removed = stack.cluster.removePod(extra!, 0);
      extra = undefined;
    }
    let acked: number | undefined;
    while ((acked = allAckedAfter(wall)) === undefined) await new Promise((r) => setImmediate(r));
    ackMs.push(acked - wall);
    const pending = new Set(nodes);
    while (pending.size > 0) {
      for (const n of [...pending]) if (await envoyListsPod(n, address, adding)) pending.delete(n);
    }
    visibleMs.push(performance.now() - t0);
    await removed;
    await new Promise((r) => setTimeout(r, 200));
  }
} finally {
  await stack.close();
}

const fmt = (xs: number[]) => `median ${percentile(sorted(xs), 50).toFixed(1)} ms, p90 ${percentile(sorted(xs), 90).toFixed(1)} ms, max ${Math.max(...xs).toFixed(1)} ms`;
process.stdout.write([
  `requests on ${EDGE}'s gateway (Host ${HOST}), ${seconds} s per step, open loop:`,
  '',
  `| users | req/s | served on ${EDGE} | elsewhere | p50 ms | p99 ms | done |`,
  '| ---: | ---: | ---: | :--- | ---: | ---: | ---: |',
  ...shareRows,
  '',
  `endpoint change → ${nodes.length} Envoy gateways (${changes} changes: a pod added on node1, then removed)`,
  `  every gateway ACKed the new assignment: ${fmt(ackMs)}`,
  `  every Envoy's /clusters shows it:        ${fmt(visibleMs)}`,
  '',
].join('\n'));
