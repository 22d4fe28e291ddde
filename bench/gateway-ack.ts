// `node dist/bench/gateway-ack.js [--changes N]`: how long an endpoint change takes to reach
// every real Envoy gateway. On the emulated demo cluster with one Envoy per node, a pod is
// added on node1 (then removed again), N times; for each change it prints the time until
// every gateway ACKed the new assignment (the ACK's arrival at chikai's xDS server) and
// until every Envoy's admin /clusters lists the change. Real time on a shared machine:
// printed, never asserted.
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { startEmulatedStack } from '../bin/stack.js';
import { percentile, sorted } from './stats.js';

const { values } = parseArgs({ options: { changes: { type: 'string', default: '20' } } });
const changes = Number(values.changes);
if (!Number.isInteger(changes) || changes < 1) {
  process.stderr.write(`gateway-ack: --changes expects a whole number ≥ 1, got ${JSON.stringify(values.changes)}\n`);
  process.exit(2);
}

const stack = await startEmulatedStack({
  file: loadClusterFile(DEMO_CLUSTER_FILE), proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 1,
  xds: { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, log: () => undefined },
  gateways: { ports: 'free' },
});
const nodes = stack.model.current.nodes.map((n) => n.name);
const ackMs: number[] = [];
const visibleMs: number[] = [];

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
  `endpoint change → ${nodes.length} Envoy gateways (${changes} changes: a pod added on node1, then removed)`,
  `  every gateway ACKed the new assignment: ${fmt(ackMs)}`,
  `  every Envoy's /clusters shows it:        ${fmt(visibleMs)}`,
  '',
].join('\n'));
