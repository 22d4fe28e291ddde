// `chikai demo`: the emulated three-node cluster on this machine, with one Kourier gateway
// (Envoy) and one proxy per node and the xDS server feeding the gateways, running until
// Ctrl-C. Envoy is resolved (installed once when missing) before anything listens.
import { parseArgs } from 'node:util';
import { DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { stackMapTargets, startEmulatedStack } from './stack.js';
import { hostPortFlag } from './sources.js';
import { TrafficMapServer } from '../map/server.js';
import { StreamingGarbageCollector } from '../proxy/memory.js';
import { ensureEnvoy } from '../gateway/envoy-binary.js';

/** Where the demo serves the live traffic map (the xDS admin is on 18080). */
export const DEMO_MAP_ADDRESS = '127.0.0.1:18090';

export async function demoCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      cluster: { type: 'string', default: DEMO_CLUSTER_FILE },
      policy: { type: 'string' },
      map: { type: 'string', default: DEMO_MAP_ADDRESS },
    },
  });
  const file = loadClusterFile(values.cluster);
  const mapAddress = hostPortFlag('map', values.map);
  const envoy = await ensureEnvoy({ log: (l) => console.error(l) });
  new StreamingGarbageCollector().start();
  const stack = await startEmulatedStack({ file, policy: values.policy, xds: { listen: file.xds.listen, admin: file.xds.admin }, gateways: { envoy: envoy.path } });
  const map = new TrafficMapServer({ targets: stackMapTargets(stack) });
  let mapUrl: string;
  try {
    const a = await map.listen(mapAddress.host, mapAddress.port);
    mapUrl = `http://${a.address}:${a.port}/`;
  } catch (err) {
    await stack.close();
    throw err;
  }
  const snap = stack.model.current;
  const rev = snap.revisions[0];
  const host = rev ? `${rev.service}.${rev.namespace}.svc.${snap.state.domain}` : 'hello.default.svc.cluster.local';
  const edge = snap.nodes[snap.nodes.length - 1];
  const xdsAdmin = `${file.xds.admin.host}:${stack.xds?.adminAddress?.port}`;
  const lines = [
    `chikai demo: ${snap.nodes.length} emulated nodes, ${stack.cluster.pods.length} pods, policy ${values.policy ?? file.proxy.policy}`,
    `${envoy.description}`,
    '',
    `live traffic map: ${mapUrl}`,
    '',
    'nodes: Kourier gateway (Envoy; internal listener on the next port), its admin, chikai proxy (admin /metrics):',
    ...snap.nodes.map((n) => {
      return `  ${n.name.padEnd(6)} ${n.region.padEnd(6)} gateway ${stack.gatewayUrl(n.name)}  admin ${stack.gatewayAdminUrl(n.name)}  proxy ${stack.proxyUrl(n.name)} (${stack.adminUrl(n.name)}/metrics)`;
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
    `xDS server for the Kourier gateways: grpc://${file.xds.listen.host}:${stack.xds?.address.port}  admin http://${xdsAdmin}`,
    '',
    'try:',
    `  curl -si -H 'Host: ${host}' ${stack.gatewayUrl(edge.name)}/          # through ${edge.name}'s gateway`,
    `  curl -s ${stack.gatewayAdminUrl(edge.name)}/clusters | grep ${rev ? `${rev.namespace}/${rev.name}` : ''}    # what Envoy uses`,
    `  curl -s ${stack.gatewayAdminUrl(edge.name)}/stats | grep update_rejected`,
    `  curl -s 'http://${xdsAdmin}/clusters?node=${edge.name}'    # what chikai tells ${edge.name}'s gateway`,
    `  npx chikai status                                 # every gateway: connected, ACKed, in sync`,
    `  npx autocannon -c 20 -d 30 -H 'Host: ${host}' ${stack.gatewayUrl(edge.name)}/   # then watch ${mapUrl}`,
    `  npm run monitor                                   # Prometheus scraping this demo, with chikai's dashboard queries and rules`,
    '',
    'Ctrl-C stops everything.',
  ];
  console.log(lines.join('\n'));
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping the emulated cluster…');
    map.close().then(() => stack.close()).then(() => process.exit(0), (err: unknown) => {
      console.error(err);
      process.exit(1);
    });
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
