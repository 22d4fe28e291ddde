// The xDS server under test, alone in its own process so its CPU time and memory are its
// own: a model of three nodes and M revisions with one pod per node each, served on a free
// loopback port. Driven over IPC by the xds bench.
import { configuredLoadView } from '../../cluster/load.js';
import { ClusterModel, revisionKey, type EndpointInfo, type NodeInfo, type RevisionInfo } from '../../cluster/model.js';
import { EXTERNAL_ROUTES, INTERNAL_ROUTES } from '../../xds/resources.js';
import { startXdsServer, type XdsServer } from '../../xds/server.js';
import type { ServerCommand, ServerReply } from './protocol.js';

const NODES: NodeInfo[] = [
  { name: 'node1', region: 'cloud', zone: 'cloud-a', address: '127.0.1.1' },
  { name: 'node2', region: 'cloud', zone: 'cloud-a', address: '127.0.1.2' },
  { name: 'node3', region: 'edge', zone: 'edge-a', address: '127.0.1.3' },
];

let server: XdsServer | undefined;
let model: ClusterModel | undefined;
let changedPod = '';

function reply(r: ServerReply): void {
  process.send!(r);
}

async function start(revisions: number): Promise<void> {
  const revs: RevisionInfo[] = Array.from({ length: revisions }, (_, i) => ({
    namespace: 'default', service: `fn${i}`, name: `fn${i}-00001`, hosts: [], containerConcurrency: 0, timeoutSeconds: 300, protocol: 'http1',
  }));
  const endpoints: EndpointInfo[] = revs.flatMap((r, i) => NODES.map((n) => ({
    pod: `${r.name}-${n.name}`, revision: revisionKey(r.namespace, r.name), node: n.name, address: n.address, port: 20000 + (i % 40000), ready: true,
  })));
  changedPod = endpoints[0]!.pod;
  model = new ClusterModel({
    domain: 'cluster.local',
    externalDomains: ['example.com'],
    nodes: NODES,
    revisions: revs,
    endpoints,
    latency: { node3: { node1: { rttMs: 50, jitterMs: 0 }, node2: { rttMs: 50, jitterMs: 0 } }, node1: { node3: { rttMs: 50, jitterMs: 0 }, node2: { rttMs: 0.5, jitterMs: 0 } }, node2: { node3: { rttMs: 50, jitterMs: 0 }, node1: { rttMs: 0.5, jitterMs: 0 } } },
  });
  const m = model;
  server = await startXdsServer({ model: m, load: configuredLoadView(() => m.current), listen: { host: '127.0.0.1', port: 0 }, proxyPort: 8012, log: () => undefined });
  reply({ kind: 'started', port: server.address.port, clusters: revs.map((r) => revisionKey(r.namespace, r.name)), routes: [EXTERNAL_ROUTES, INTERNAL_ROUTES] });
}

process.on('message', (cmd: ServerCommand) => {
  const run = async () => {
    if (cmd.kind === 'start') await start(cmd.revisions);
    else if (cmd.kind === 'change') {
      model!.setReady(changedPod, cmd.seq % 2 === 1);
      reply({ kind: 'changed' });
    } else {
      const cpu = process.cpuUsage();
      const mem = process.memoryUsage();
      reply({ kind: 'stats', cpuMs: (cpu.user + cpu.system) / 1000, rssMb: mem.rss / 2 ** 20, heapUsedMb: mem.heapUsed / 2 ** 20 });
    }
  };
  run().catch((err: Error) => reply({ kind: 'error', error: err.stack ?? String(err) }));
});
process.on('disconnect', () => {
  void server?.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
});
