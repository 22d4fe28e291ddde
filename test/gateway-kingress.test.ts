// A Knative traffic split through a real Envoy gateway: the KIngress comes from the fake
// Kubernetes API server (real list/watch), chikai's xDS server turns it into weighted
// clusters, and Envoy splits the requests by those weights.
import t from 'tap';
import { request } from 'undici';
import { parseClusterFile } from '../cluster/config.js';
import { kubeConfigForServer } from '../cluster/kubernetes/client.js';
import { startKubernetesSource } from '../cluster/kubernetes/source.js';
import { startEmulatedStack } from '../bin/stack.js';
import type { IngressSource } from '../xds/cache.js';
import { FakeApiServer, INGRESSES } from './fixtures/kubernetes/fake-apiserver.js';
import { kingress } from './fixtures/kubernetes/objects.js';
import { ClosedLoopLoad, pct, poll, share } from './fixtures/load.js';

const HOST = 'hello.default.example.com';

const file = parseClusterFile([
  'domain: cluster.local',
  'externalDomains: [example.com]',
  'nodes:',
  '  - { name: node1, region: cloud, zone: cloud-a, address: 127.0.1.1 }',
  '  - { name: node3, region: edge, zone: edge-a, address: 127.0.1.3 }',
  'latency:',
  '  - { between: [node3, node1], rttMs: 50, jitterMs: 0 }',
  'revisions:',
  '  - { namespace: default, service: hello, name: hello-00001 }',
  '  - { namespace: default, service: hello, name: hello-00002 }',
  'pods:',
  ...['hello-00001', 'hello-00002'].flatMap((r) => ['node1', 'node3'].map((n) => `  - { revision: default/${r}, node: ${n}, serviceTimeMs: { min: 1, max: 2 }, capacity: 8 }`)),
  'proxy: { policy: chikai }',
].join('\n'), 'kingress-test-cluster.yaml');

const revisionOf = (body: string) => /^Konnichiwa from (hello-0000\d)-/.exec(body)?.[1];

t.test('a KIngress traffic split is Envoy\'s weighted routing, within a few points over thousands of requests', async (t) => {
  const api = await FakeApiServer.start();
  t.teardown(() => api.close());
  api.apply(INGRESSES, kingress('default', 'hello', [{ revision: 'hello-00001', percent: 80 }, { revision: 'hello-00002', percent: 20 }]));
  // Routes from the Kubernetes API (informers over the fake server's list/watch), pods from the emulated cluster.
  const source = await startKubernetesSource({ kubeConfig: await kubeConfigForServer(api.url), readIngresses: true, onWarning: () => undefined });
  t.teardown(() => source.close());
  const ingresses: IngressSource = {
    current: () => source.ingresses(),
    onChange(listener) {
      source.on('ingresses', listener);
      return () => source.off('ingresses', listener);
    },
  };
  const logs: string[] = [];
  const stack = await startEmulatedStack({
    file, proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 5,
    xds: { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, log: (l) => logs.push(l), ingresses },
    gateways: { ports: 'free', log: (l) => logs.push(l) },
  });
  t.teardown(() => stack.close());

  const weightsInEnvoy = async () => {
    const dump = (await (await request(`${stack.gatewayAdminUrl('node3')}/config_dump`)).body.json()) as { configs: Record<string, unknown>[] };
    const routes = dump.configs.find((c) => String(c['@type']).endsWith('.RoutesConfigDump')) as { dynamic_route_configs: { route_config: { name: string; virtual_hosts?: { domains: string[]; routes: { route: { weighted_clusters: { clusters: { name: string; weight: number }[] } } }[] }[] } }[] };
    const external = routes.dynamic_route_configs.find((r) => r.route_config.name === 'external_services');
    const vh = external?.route_config.virtual_hosts?.find((v) => v.domains.includes(HOST));
    return vh?.routes[0]?.route.weighted_clusters.clusters.map((c) => `${c.name} ${c.weight}`).join(', ');
  };
  t.equal(await weightsInEnvoy(), 'default/hello-00001 80, default/hello-00002 20', 'node3\'s Envoy routes the public host by the KIngress split');

  // Knative's ingress prober, as net-kourier-controller runs it against each gateway: on the
  // probe listener, the override path answers with this KIngress's hash.
  const hash = source.ingresses()[0]?.hash;
  t.match(hash, /^[0-9a-f]{64}$/, 'the KIngress has its hash');
  const probeUrl = `http://${stack.model.current.node('node3')?.address}:${stack.gateways?.ports.probe}/healthz`;
  const probe = await request(probeUrl, { headers: { host: HOST, 'k-network-probe': 'probe', 'k-network-hash': 'override', 'user-agent': 'Knative-Ingress-Probe' } });
  await probe.body.dump();
  t.equal(probe.statusCode, 200, 'the probe through node3\'s listener_8090 is answered');
  t.equal(probe.headers['k-network-hash'], hash, 'with the KIngress hash: the prober would mark this gateway ready');

  const measure = async (n: number) => {
    const load = new ClosedLoopLoad(`${stack.gatewayUrl('node3')}/`, HOST, 8, revisionOf).start();
    await poll(`${n} requests`, () => (load.all.total >= n ? true : undefined), 1200, 50);
    await load.stop();
    t.same(load.failures, [], 'every request answered');
    return load.all;
  };
  const split = await measure(3000);
  t.comment(`80/20 split through node3's gateway: ${pct(split)}`);
  t.ok(Math.abs(share(split, 'hello-00001') - 0.8) < 0.03, `hello-00001 got ${(share(split, 'hello-00001') * 100).toFixed(1)} % (KIngress: 80 %)`);
  t.ok(Math.abs(share(split, 'hello-00002') - 0.2) < 0.03, `hello-00002 got ${(share(split, 'hello-00002') * 100).toFixed(1)} % (KIngress: 20 %)`);

  // The route controller moves the split: Envoy follows without a restart.
  api.apply(INGRESSES, kingress('default', 'hello', [{ revision: 'hello-00001', percent: 30 }, { revision: 'hello-00002', percent: 70 }]));
  await poll('the new split in Envoy', async () => ((await weightsInEnvoy()) === 'default/hello-00001 30, default/hello-00002 70' ? true : undefined), 200, 50);
  const moved = await measure(3000);
  t.comment(`30/70 split: ${pct(moved)}`);
  t.ok(Math.abs(share(moved, 'hello-00002') - 0.7) < 0.03, `hello-00002 got ${(share(moved, 'hello-00002') * 100).toFixed(1)} % (KIngress: 70 %)`);
  t.notOk(logs.some((l) => /NACK/i.test(l)), `no NACK from any gateway (${logs.join('; ')})`);
});
