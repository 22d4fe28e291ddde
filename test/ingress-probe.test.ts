// Knative's ingress status probe on the backend side (chikai's proxy in the activator's
// place, and the emulated pods' queue-proxy behaviour), and the probe sequence Knative's
// prober drives — through the routes chikai's xDS server builds for the KIngress, with
// the expected hash from the golden vectors computed by Knative's own code.
//
// Envoy is not in the emulated stack yet, so `forwardLikeGateway` below applies the built
// RouteConfiguration and ClusterLoadAssignment the way Envoy does for the features these
// routes use (virtual host by Host, first route whose prefix and exact header matches hold,
// route then split request_headers_to_add with overwrite, a priority-0 healthy endpoint).
import t from 'tap';
import { request } from 'undici';
import { ingressRoutesFrom, type IngressRoutes } from '../cluster/kubernetes/ingress.js';
import { upstreamRequestHeaders } from '../proxy/headers.js';
import { buildNodeResources, PROBE_LISTENER, INTERNAL_LISTENER } from '../xds/resources.js';
import { configuredLoadView } from '../cluster/load.js';
import type { ClusterModel } from '../cluster/model.js';
import { goldenVector } from './fixtures/ingress-golden.js';
import { get, testStack } from './support.js';

t.test('K-Network-Hash never reaches a pod', async (t) => {
  const out = upstreamRequestHeaders({ host: 'hello.default', 'k-network-hash': 'override', 'x-keep': 'yes' }, '10.0.0.1', false);
  t.notOk('k-network-hash' in out, 'dropped from the forwarded headers');
  t.equal(out['x-keep'], 'yes', 'other headers pass');
});

t.test('the proxy answers K-Network-Probe: probe by echoing K-Network-Hash, and strips it from other requests', async (t) => {
  const stack = await testStack({ nodes: 1 });
  t.teardown(() => stack.close());
  const url = stack.proxyUrl('node1');
  const probe = { host: 'anything.example.org', 'k-network-probe': 'probe', 'user-agent': 'Knative-Ingress-Probe' };
  const ok = await get(`${url}/healthz`, { ...probe, 'k-network-hash': 'abc123' });
  t.equal(ok.status, 200, 'answered by the proxy itself, whatever the host');
  t.equal(ok.headers['k-network-hash'], 'abc123', 'the hash echoed');
  for (const hash of [undefined, '']) {
    const r = await get(`${url}/healthz`, hash === undefined ? probe : { ...probe, 'k-network-hash': hash });
    t.equal(r.status, 400, `no hash (${JSON.stringify(hash)}): 400`);
    t.match(r.body, /non-empty K-Network-Hash/);
  }
  const seen = JSON.parse((await get(`${url}/headers`, { host: 'hello.default', 'k-network-hash': 'deadbeef', 'x-keep': 'yes' })).body) as Record<string, string>;
  t.notOk('k-network-hash' in seen, 'an ordinary request reaches the pod without K-Network-Hash');
  t.equal(seen['x-keep'], 'yes');
  const pod = stack.model.current.endpoints('default/hello-00001')[0];
  const direct = await get(`http://${pod.address}:${pod.port}/healthz`, { ...probe, 'k-network-hash': 'fromgateway' });
  t.same([direct.status, direct.headers['k-network-hash']], [200, 'fromgateway'], 'an emulated pod answers like queue-proxy');
});

// ---- the probe sequence --------------------------------------------------------------

interface Matcher { name: string; string_match: { exact: string } }
interface HeaderToAdd { header: { key: string; value: string } }
interface Route {
  match: { prefix?: string; path?: string; headers?: Matcher[] };
  route: { weighted_clusters?: { clusters: { name: string; weight: number; request_headers_to_add?: HeaderToAdd[] }[] } };
  request_headers_to_add?: HeaderToAdd[];
}
interface RouteConfig { name: string; virtual_hosts: { domains: string[]; routes: Route[] }[] }
interface LoadAssignment { cluster_name: string; endpoints: { priority?: number; lb_endpoints: { endpoint: { address: { socket_address: { address: string; port_value: number } } }; health_status: string }[] }[] }
interface Forwarded { endpoint: string; headers: Record<string, string> }

function gatewayFor(model: ClusterModel, proxyPort: number, ingresses: IngressRoutes[]) {
  const built = buildNodeResources(model.current, configuredLoadView(() => model.current), 'node1', { proxyPort }, ingresses);
  const routesOf = (listener: string) => {
    const l = built.listeners.find((x) => x.listener['name'] === listener)?.listener as { filter_chains: { filters: { typed_config: { rds: { route_config_name: string } } }[] }[] };
    const name = l.filter_chains[0].filters[0].typed_config.rds.route_config_name;
    return built.routes.find((r) => r['name'] === name) as unknown as RouteConfig;
  };
  return { routesOf, endpoints: built.endpoints as unknown as LoadAssignment[] };
}

/** What the gateway sends where, for one request; undefined: no route (Envoy answers 404). */
function forwardLikeGateway(config: RouteConfig, eds: LoadAssignment[], host: string, path: string, headers: Record<string, string>): Forwarded | undefined {
  const vh = config.virtual_hosts.find((v) => v.domains.includes(host) || v.domains.includes(`${host.split(':')[0]}:*`));
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const route = vh?.routes.find((r) => (r.match.prefix === undefined || path.startsWith(r.match.prefix))
    && (r.match.headers ?? []).every((m) => lower[m.name.toLowerCase()] === m.string_match.exact));
  const split = route?.route.weighted_clusters?.clusters.find((c) => c.weight > 0);
  if (!route || !split) return undefined;
  for (const h of [...(route.request_headers_to_add ?? []), ...(split.request_headers_to_add ?? [])]) lower[h.header.key.toLowerCase()] = h.header.value;
  const assignment = eds.find((e) => e.cluster_name === split.name);
  const ep = assignment?.endpoints.find((l) => (l.priority ?? 0) === 0)?.lb_endpoints.find((e) => e.health_status === 'HEALTHY');
  if (!ep) return undefined;
  const a = ep.endpoint.address.socket_address;
  return { endpoint: `http://${a.address}:${a.port_value}`, headers: { ...lower, host } };
}

/**
 * One probe as knative.dev/networking's prober sends it (GET <host>/healthz with
 * K-Network-Probe: probe, K-Network-Hash: override, User-Agent: Knative-Ingress-Probe),
 * judged as it judges the answer: ready only on 200 with the expected hash.
 */
async function probe(config: RouteConfig, eds: LoadAssignment[], host: string, expected: string): Promise<{ ready: boolean; status: number; hash: string | undefined; via: string | undefined }> {
  const fwd = forwardLikeGateway(config, eds, host, '/healthz', { 'k-network-probe': 'probe', 'k-network-hash': 'override', 'user-agent': 'Knative-Ingress-Probe' });
  if (!fwd) return { ready: false, status: 404, hash: undefined, via: undefined };
  // Knative gives up on a probe after 1 s and retries; this bound only keeps a backend that
  // holds the probe (as a request for a revision at zero would be held) from hanging the test.
  const res = await request(`${fwd.endpoint}/healthz`, { headers: fwd.headers, signal: AbortSignal.timeout(10_000) });
  await res.body.dump();
  const hash = res.headers['k-network-hash'] as string | undefined;
  return { ready: res.statusCode === 200 && hash === expected, status: res.statusCode, hash, via: fwd.endpoint };
}

t.test('the prober\'s sequence through the KIngress routes: ready with Knative\'s hash, pods up and at zero', async (t) => {
  // Knative's KIngress for service hello: ClusterLocal hello.default.svc.cluster.local (and
  // two shorter forms), ExternalIP hello.default.example.com, revision default/hello-00001.
  const golden = goldenVector('knative-service');
  const ing = ingressRoutesFrom(golden.ingress)!;
  const stack = await testStack({ nodes: 1 });
  t.teardown(() => stack.close());
  // Which listener the prober dials: 8090 for the external rule's hosts, 8081 for the cluster-local ones.
  const targets = [
    { host: 'hello.default.example.com', listener: PROBE_LISTENER },
    { host: 'hello.default.svc.cluster.local', listener: INTERNAL_LISTENER },
    { host: 'hello.default', listener: INTERNAL_LISTENER },
  ];
  const sequence = async (what: string, ingresses: IngressRoutes[], expected: string) => {
    const gw = gatewayFor(stack.model, stack.proxyPort, ingresses);
    return Promise.all(targets.map(async (x) => ({ ...x, what, ...(await probe(gw.routesOf(x.listener), gw.endpoints, x.host, expected)) })));
  };

  const pod = stack.model.current.endpoints('default/hello-00001')[0];
  for (const r of await sequence('pods ready', [ing], golden.hash)) {
    t.same([r.via, r.status, r.hash, r.ready], [`http://${pod.address}:${pod.port}`, 200, golden.hash, true], `${r.what}: ${r.host} on ${r.listener} answered by the pod with the hash`);
  }
  stack.model.setEndpoints('default/hello-00001', []);
  for (const r of await sequence('revision at zero', [ing], golden.hash)) {
    t.same([r.via, r.status, r.hash, r.ready], [stack.proxyUrl('node1'), 200, golden.hash, true], `${r.what}: ${r.host} on ${r.listener} answered by chikai's proxy with the hash`);
  }

  // The prober must not be fooled: without the probe routes the backend only echoes
  // "override"; a gateway still serving an older spec answers with that spec's hash.
  for (const r of await sequence('no probe routes', [{ ...ing, hash: undefined }], golden.hash)) {
    t.same([r.status, r.hash, r.ready], [200, 'override', false], `${r.what}: ${r.host} not ready`);
  }
  const newer = structuredClone(golden.ingress) as { spec: { rules: { http: { paths: { splits: { percent: number }[] }[] } }[] } };
  newer.spec.rules[1].http.paths[0].splits[0].percent = 0; // defaulted back to 100 by Knative: same hash
  t.equal(ingressRoutesFrom(newer)?.hash, golden.hash, 'a change Knative\'s defaults undo keeps the hash');
  const changed = structuredClone(golden.ingress) as { metadata: { name: string; namespace: string }; spec: { httpOption: string } };
  changed.spec.httpOption = 'Redirected';
  const expectedNow = ingressRoutesFrom(changed)!.hash!;
  for (const r of await sequence('stale gateway', [ing], expectedNow)) {
    t.same([r.status, r.hash, r.ready], [200, golden.hash, false], `${r.what}: ${r.host} answers the old hash, the prober retries`);
  }
  const unrouted = await probe(gatewayFor(stack.model, stack.proxyPort, []).routesOf(PROBE_LISTENER), [], 'hello.default.example.com', golden.hash);
  t.same([unrouted.status, unrouted.ready], [404, false], 'a host the gateway has no route for yet: 404, retried');
});
