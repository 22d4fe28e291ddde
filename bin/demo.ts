// `chikai demo`: the emulated three-node cluster on this machine, with one proxy per node,
// running until Ctrl-C.
import { parseArgs } from 'node:util';
import { DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { startEmulatedStack } from './stack.js';
import { StreamingGarbageCollector } from '../proxy/memory.js';

export async function demoCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      cluster: { type: 'string', default: DEMO_CLUSTER_FILE },
      policy: { type: 'string' },
    },
  });
  const file = loadClusterFile(values.cluster);
  new StreamingGarbageCollector().start();
  const stack = await startEmulatedStack({ file, policy: values.policy, xds: { listen: file.xds.listen, admin: file.xds.admin } });
  const snap = stack.model.current;
  const rev = snap.revisions[0];
  const host = rev ? `${rev.service}.${rev.namespace}.svc.${snap.state.domain}` : 'hello.default.svc.cluster.local';
  const edge = snap.nodes[snap.nodes.length - 1];
  const lines = [
    `chikai demo: ${snap.nodes.length} emulated nodes, ${stack.cluster.pods.length} pods, policy ${values.policy ?? file.proxy.policy}`,
    '',
    'nodes (proxy / admin):',
    ...snap.nodes.map((n) => {
      return `  ${n.name.padEnd(8)} ${n.region.padEnd(6)} ${stack.proxyUrl(n.name)}  admin ${stack.adminUrl(n.name)}/metrics`;
    }),
    '',
    'round trips injected between nodes:',
    ...snap.nodes.flatMap((a, i) => snap.nodes.slice(i + 1).map((b) => {
      const l = snap.link(a.name, b.name);
      return `  ${a.name} ↔ ${b.name}: ${l.rttMs} ms ± ${l.jitterMs} ms`;
    })),
    '',
    'pods:',
    ...snap.state.endpoints.map((e) => `  ${e.pod.padEnd(28)} ${e.node}  ${e.address}:${e.port}`),
    '',
    `xDS server for the Kourier gateways: grpc://${file.xds.listen.host}:${stack.xds?.address.port}  admin http://${file.xds.admin.host}:${stack.xds?.adminAddress?.port}`,
    '',
    'try:',
    `  curl -s -H 'Host: ${host}' ${stack.proxyUrl(edge.name)}/`,
    `  curl -s ${stack.adminUrl(edge.name)}/metrics | grep -E 'chikai_requests_total|latency_between_nodes'`,
    `  curl -s 'http://${file.xds.admin.host}:${stack.xds?.adminAddress?.port}/clusters?node=${edge.name}'    # what ${edge.name}'s gateway is told`,
    `  npx chikai inspect --node ${edge.name}`,
    '',
    'Ctrl-C stops everything.',
  ];
  console.log(lines.join('\n'));
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping the emulated cluster…');
    stack.close().then(() => process.exit(0), (err: unknown) => {
      console.error(err);
      process.exit(1);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
