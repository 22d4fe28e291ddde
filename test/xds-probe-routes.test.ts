// What the xDS server gives the gateways so Knative's ingress status prober can mark a
// KIngress Ready, the way net-kourier does: every path's probe copy first (matching
// K-Network-Hash: override, appending the KIngress hash), the probe listener 8090 serving
// the external routes, and the `internalkourier` readiness route on the internal listener.
// Hashes come from the golden vectors computed by Knative's own code.
import t from 'tap';
import { ingressRoutesFrom, type IngressRoutes } from '../cluster/kubernetes/ingress.js';
import { buildNodeResources, GATEWAY_ADMIN_CLUSTER } from '../xds/resources.js';
import { LISTENER_TYPE, ROUTE_TYPE } from '../xds/protos.js';
import { validateMessage } from '../xds/validate.js';
import type { JsonObject } from '../xds/protojson.js';
import { goldenVector } from './fixtures/ingress-golden.js';
import { FixedLoadView, revision, testModel } from './fixtures/xds/model.js';

interface HeaderToAdd { header: { key: string; value: string }; append_action: string }
interface Route {
  match: { prefix?: string; path?: string; headers?: { name: string; string_match: { exact: string } }[] };
  route: { cluster?: string; weighted_clusters?: { clusters: { name: string; weight: number; request_headers_to_add: HeaderToAdd[] }[] } };
  request_headers_to_add?: HeaderToAdd[];
}
interface VirtualHost { name: string; domains: string[]; routes: Route[] }

const shopModel = () => testModel(3, [
  revision('shop', 'shop-00006', { namespace: 'prod' }),
  revision('shop', 'shop-00007', { namespace: 'prod' }),
  revision('shop', 'shop-00008', { namespace: 'prod' }),
]);

function build(ingresses: IngressRoutes[], model = shopModel()) {
  const built = buildNodeResources(model.current, new FixedLoadView(), 'node1', { proxyPort: 8012 }, ingresses);
  const routeConfig = (name: string) => built.routes.find((r) => r['name'] === name) as { virtual_hosts: VirtualHost[] } | undefined;
  return { built, external: routeConfig('external_services'), internal: routeConfig('internal_services') };
}

const headerMatches = (r: Route) => Object.fromEntries((r.match.headers ?? []).map((h) => [h.name, h.string_match.exact]));
const added = (r: Route) => Object.fromEntries((r.request_headers_to_add ?? []).map((h) => [h.header.key, h.header.value]));

t.test('every path gets its probe copy first: K-Network-Hash override in, the KIngress hash out, same splits', async (t) => {
  const golden = goldenVector('traffic-split-and-tags');
  const ing = ingressRoutesFrom(golden.ingress)!;
  t.equal(ing.hash, golden.hash, 'the parsed KIngress carries Knative\'s hash');
  const { external, internal } = build([ing]);
  for (const [which, config] of [['external', external], ['internal', internal]] as const) {
    const vh = config?.virtual_hosts.find((v) => v.domains.includes('shop.prod.example.com'));
    t.ok(vh, `${which}: the ExternalIP rule's virtual host`);
    const routes = vh?.routes ?? [];
    t.equal(routes.length, 6, `${which}: three probe routes, then the three paths`);
    const [probes, paths] = [routes.slice(0, 3), routes.slice(3)];
    probes.forEach((probe, i) => {
      const path = paths[i];
      t.equal(probe.match.prefix, path.match.prefix, `${which} path ${i}: same prefix`);
      t.same(headerMatches(probe), { ...headerMatches(path), 'K-Network-Hash': 'override' }, `${which} path ${i}: the path's header matches plus K-Network-Hash: override`);
      t.same(added(probe), { ...added(path), 'K-Network-Hash': golden.hash }, `${which} path ${i}: appends the hash`);
      const hashHeader = probe.request_headers_to_add?.find((h) => h.header.key === 'K-Network-Hash');
      t.equal(hashHeader?.append_action, 'OVERWRITE_IF_EXISTS_OR_ADD', `${which} path ${i}: overwriting the prober's "override"`);
      t.same(probe.route.weighted_clusters, path.route.weighted_clusters, `${which} path ${i}: the same splits, Knative-Serving-* headers included`);
      t.notOk('K-Network-Hash' in headerMatches(path), `${which} path ${i}: ordinary requests do not need the header`);
    });
  }
});

t.test('cluster-local rules are probed on the internal listener only; a KIngress without a hash gets no probe routes', async (t) => {
  const golden = goldenVector('knative-service');
  const model = testModel(3, [revision('hello', 'hello-00001')]);
  const ing = ingressRoutesFrom(golden.ingress)!;
  const { external, internal } = build([ing], model);
  const local = internal?.virtual_hosts.find((v) => v.domains.includes('hello.default.svc.cluster.local'));
  t.same(local?.routes.map((r) => added(r)['K-Network-Hash']), [golden.hash, undefined]);
  t.notOk(external?.virtual_hosts.some((v) => v.domains.includes('hello.default.svc.cluster.local')));
  const unhashed = build([{ ...ing, hash: undefined }], model);
  t.same(unhashed.internal?.virtual_hosts.find((v) => v.domains.includes('hello.default.svc.cluster.local'))?.routes.length, 1, 'only the path itself');
});

t.test('listener_8090 serves the external routes, like Kourier\'s probe listener', async (t) => {
  const { built } = build([ingressRoutesFrom(goldenVector('traffic-split-and-tags').ingress)!]);
  const probe = built.listeners.find((l) => l.listener['name'] === 'listener_8090');
  t.ok(probe?.inWildcard, 'sent to every gateway with the other Kourier listeners');
  const l = probe?.listener as { address: { socket_address: { port_value: number } }; filter_chains: { filters: { typed_config: { rds: { route_config_name: string } } }[] }[] } | undefined;
  t.equal(l?.address.socket_address.port_value, 8090);
  t.equal(l?.filter_chains[0].filters[0].typed_config.rds.route_config_name, 'external_services');
  const moved = buildNodeResources(shopModel().current, new FixedLoadView(), 'node1', { proxyPort: 8012, probePort: 18090 }, []);
  const port = (moved.listeners.find((x) => x.listener['name'] === 'listener_8090')?.listener as typeof l)?.address.socket_address.port_value;
  t.equal(port, 18090, 'its port is configurable like the others');
});

t.test('internalkourier: GET /ready on the internal listener goes to the gateway\'s own admin, nothing else does', async (t) => {
  const squatter = ingressRoutesFrom({
    metadata: { name: 'squat', namespace: 'prod' },
    spec: { rules: [{ hosts: ['internalkourier', 'shop.prod.svc.cluster.local'], visibility: 'ClusterLocal', http: { paths: [{ splits: [{ serviceName: 'shop-00007', serviceNamespace: 'prod', servicePort: 80, appendHeaders: { 'Knative-Serving-Namespace': 'prod', 'Knative-Serving-Revision': 'shop-00007' } }] }] } }] },
  })!;
  for (const ingresses of [[], [squatter]]) {
    const { internal, external } = build(ingresses);
    const status = internal?.virtual_hosts.filter((v) => v.domains.includes('internalkourier')) ?? [];
    t.equal(status.length, 1, `one virtual host claims internalkourier (${ingresses.length} KIngresses)`);
    t.same(status[0]?.domains, ['internalkourier']);
    t.same(status[0]?.routes, [{
      match: { path: '/ready', headers: [{ name: ':method', string_match: { exact: 'GET' } }] },
      route: { cluster: GATEWAY_ADMIN_CLUSTER, timeout: '5s' },
    }], 'exactly /ready, GET only: no other admin page is reachable through the gateway');
    t.notOk(external?.virtual_hosts.some((v) => v.domains.includes('internalkourier')), 'not on the external listener');
  }
  t.equal(GATEWAY_ADMIN_CLUSTER, 'envoy_admin', 'the static cluster deploy/\'s gateway bootstrap defines');
});

t.test('every listener and route configuration passes Envoy\'s validation rules', async (t) => {
  const ingresses = ['traffic-split-and-tags', 'domain-mapping', 'tls-redirected'].map((n) => ingressRoutesFrom(goldenVector(n).ingress)!);
  const model = testModel(3, [
    ...['shop-00006', 'shop-00007', 'shop-00008'].map((r) => revision('shop', r, { namespace: 'prod' })),
    revision('secure', 'secure-00001'),
  ]);
  const { built } = build(ingresses, model);
  for (const { listener } of built.listeners) t.same(validateMessage(LISTENER_TYPE, listener), [], `listener ${String(listener['name'])}`);
  for (const rc of built.routes) t.same(validateMessage(ROUTE_TYPE, rc as JsonObject), [], `route configuration ${String(rc['name'])}`);
});
