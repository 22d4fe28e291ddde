// Incremental xDS: the snapshot store refuses inconsistent snapshots; the builder rebuilds
// only what a change touches and equal views share resources; a change reaches only the
// streams whose view changed, and SotW EDS responses carry only the changed assignments.
import t, { type Test } from 'tap';
import { configuredLoadView } from '../cluster/load.js';
import { SnapshotBuilder } from '../xds/builder.js';
import { InconsistentSnapshotError, NEUTRAL_VIEW, SnapshotCache, TypeSnapshot, type IngressSource, type ResourceEntry, type ViewSnapshot } from '../xds/cache.js';
import type { IngressRoutes } from '../cluster/kubernetes/ingress.js';
import { ResourceEncoder, isRefused } from '../xds/encoder.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, PUSH_ORDER, ROUTE_TYPE, type ResourceTypeUrl } from '../xds/protos.js';
import type { JsonObject } from '../xds/protojson.js';
import { WriteBudget } from '../xds/write-budget.js';
import { SotwClient, testNode, type DecodedResponse } from './fixtures/xds/ads-client.js';
import { ObservedLoadView, revision, testModel } from './fixtures/xds/model.js';
import { startTestServer, until } from './fixtures/xds/server.js';

const HELLO = 'default/hello-00001';
const WORLD = 'default/world-00001';

function entry(type: ResourceTypeUrl, json: JsonObject): ResourceEntry {
  const r = new ResourceEncoder().encode(type, String(json.name ?? json.cluster_name), json, JSON.stringify(json), true);
  if (isRefused(r)) throw new Error(r.detail);
  return r;
}

function view(key: string, parts: Partial<Record<ResourceTypeUrl, ResourceEntry[]>>): ViewSnapshot {
  const types = new Map(PUSH_ORDER.map((type) => [type, TypeSnapshot.of(type, parts[type] ?? [])] as const));
  return { viewKey: key, gatewayNode: key, modelVersion: 1, publishedAt: new Date(), types };
}

const cluster = (name: string): JsonObject => ({ name, type: 'EDS', eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } }, connect_timeout: '5s' });
const assignment = (name: string): JsonObject => ({ cluster_name: name, endpoints: [] });
const listener = (name: string, routes: string): JsonObject => ({
  name,
  address: { socket_address: { address: '0.0.0.0', port_value: 8080 } },
  filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
    stat_prefix: 'x',
    rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: routes },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }],
  } }] }],
});

t.test('the store refuses a cluster without its assignment and a listener without its route configuration', async (t) => {
  const store = new SnapshotCache();
  const published: string[] = [];
  store.on('publish', (e) => published.push(e.view.viewKey));
  const good = view('node1', { [CLUSTER_TYPE]: [entry(CLUSTER_TYPE, cluster(HELLO))], [ENDPOINT_TYPE]: [entry(ENDPOINT_TYPE, assignment(HELLO))] });
  store.publish(good);
  t.same(published, ['node1'], 'a consistent snapshot is served');

  const orphan = view('node1', { [CLUSTER_TYPE]: [entry(CLUSTER_TYPE, cluster(HELLO)), entry(CLUSTER_TYPE, cluster(WORLD))], [ENDPOINT_TYPE]: [entry(ENDPOINT_TYPE, assignment(HELLO))] });
  const err = t.throws(() => store.publish(orphan)) as InconsistentSnapshotError;
  t.type(err, InconsistentSnapshotError);
  t.match(err.message, /EDS cluster "default\/world-00001": its ClusterLoadAssignment "default\/world-00001" is missing/);
  t.equal(store.view('node1'), store.peek('node1'), 'the view is still there');
  t.same([...store.view('node1').types.get(CLUSTER_TYPE)!.resources.keys()], [HELLO], 'and still serves the last consistent snapshot');
  t.same(published, ['node1'], 'nothing was published');

  const noRoutes = view('node2', { [LISTENER_TYPE]: [entry(LISTENER_TYPE, listener('listener_8080', 'external_services'))] });
  t.throws(() => store.publish(noRoutes), /listener "listener_8080": its RouteConfiguration "external_services" is missing/);
  t.equal(store.peek('node2'), undefined, 'a view never served stays absent');
});

t.test('the builder rebuilds only the revision that changed, and equal views share resources', async (t) => {
  const model = testModel(3, [revision('hello', 'hello-00001'), revision('world', 'world-00001')]);
  const store = new SnapshotCache();
  const builder = new SnapshotBuilder({ model, load: configuredLoadView(() => model.current), store, build: { proxyPort: 8012 } });
  builder.start();
  t.teardown(() => builder.stop());
  t.same(store.viewKeys().sort(), [NEUTRAL_VIEW, 'node1', 'node2', 'node3'].sort());
  const before = new Map(store.viewKeys().map((k) => [k, store.view(k)]));
  const c1 = store.view('node1').types.get(CLUSTER_TYPE)!.resources.get(HELLO);
  t.equal(store.view('node2').types.get(CLUSTER_TYPE)!.resources.get(HELLO), c1, 'views share one cluster resource');
  t.equal(store.view('node3').types.get(ROUTE_TYPE), store.view('node3').types.get(ROUTE_TYPE));
  t.equal(store.view('node1').types.get(ROUTE_TYPE)!.resources.get('internal_services'), store.view('node3').types.get(ROUTE_TYPE)!.resources.get('internal_services'), 'and one route configuration');

  const events: { view: string; changed: Record<string, string[]> }[] = [];
  store.on('publish', (e) => events.push({ view: e.view.viewKey, changed: Object.fromEntries([...e.changed].map(([k, v]) => [k, [...v]])) }));
  model.setReady('world-00001-node2', false);
  builder.flush();
  t.same(events.map((e) => e.view).sort(), [NEUTRAL_VIEW, 'node1', 'node2', 'node3'].sort(), 'every view shows the pod, so every view is republished');
  for (const e of events) t.same(e.changed, { [ENDPOINT_TYPE]: [WORLD] }, `${e.view}: only world's assignment changed`);
  for (const [key, old] of before) {
    const now = store.view(key);
    for (const type of [CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE] as const) t.equal(now.types.get(type), old.types.get(type), `${key}: ${type.split('.').pop()} untouched`);
    t.equal(now.types.get(ENDPOINT_TYPE)!.resources.get(HELLO), old.types.get(ENDPOINT_TYPE)!.resources.get(HELLO), `${key}: hello's assignment is the same object`);
    t.not(now.types.get(ENDPOINT_TYPE)!.resources.get(WORLD), old.types.get(ENDPOINT_TYPE)!.resources.get(WORLD), `${key}: world's is new`);
  }
});

t.test('an assignment that fails its rules with no last good version takes its cluster out; the view stays consistent', async (t) => {
  const model = testModel(2, [revision('hello', 'hello-00001')]);
  // A port no socket can have, from the start: no good version ever existed.
  model.update((s) => ({ ...s, endpoints: s.endpoints.map((e) => ({ ...e, port: 70000 })) }));
  const store = new SnapshotCache();
  const builder = new SnapshotBuilder({ model, load: configuredLoadView(() => model.current), store, build: { proxyPort: 8012 } });
  builder.start();
  t.teardown(() => builder.stop());
  const v = store.view('node1');
  t.equal(v.types.get(ENDPOINT_TYPE)!.resources.size, 0, 'the assignment is not served');
  t.equal(v.types.get(CLUSTER_TYPE)!.resources.size, 0, 'nor its cluster (it would stay warming)');
  const reasons = builder.invalidResources().filter((r) => r.viewKey === 'node1').map((r) => r.error);
  t.match(reasons.find((r) => r.startsWith('ClusterLoadAssignment')), /port_value: must be at most 65535/);
  t.match(reasons.find((r) => r.startsWith('Cluster ')), /Cluster "default\/hello-00001" \(view node1\) not sent: its ClusterLoadAssignment "default\/hello-00001" has no valid version/);
  model.update((s) => ({ ...s, endpoints: s.endpoints.map((e) => ({ ...e, port: 30000 })) }));
  builder.flush();
  t.ok(store.view('node1').types.get(CLUSTER_TYPE)!.resources.has(HELLO), 'fixed: the cluster is back');
  t.same(builder.invalidResources(), [], 'and nothing is reported invalid');
});

/** Clients that subscribe like Kourier gateways and ACK everything. */
function gateway(t: Test, target: string, node: string, id: string): SotwClient {
  const c = new SotwClient(target, testNode(node, id));
  t.teardown(() => c.close());
  c.setNames(ENDPOINT_TYPE, [HELLO, WORLD]);
  c.setNames(ROUTE_TYPE, ['external_services', 'internal_services']);
  const pump = async () => {
    for (;;) {
      let r: DecodedResponse;
      try {
        r = await c.nextAny(60_000);
      } catch {
        return;
      }
      c.ack(r);
    }
  };
  void pump();
  c.subscribe(CLUSTER_TYPE);
  c.subscribe(ENDPOINT_TYPE, [HELLO, WORLD]);
  c.subscribe(LISTENER_TYPE);
  c.subscribe(ROUTE_TYPE, ['external_services', 'internal_services']);
  return c;
}

t.test('a change is sent only to the streams whose view changed; the others get nothing', async (t) => {
  const model = testModel(3, [revision('hello', 'hello-00001'), revision('world', 'world-00001')]);
  // Sub-millisecond costs keep all three nodes in node1's priority 0, so weights show.
  const load = new ObservedLoadView();
  for (const rev of ['hello', 'world']) {
    load.setServiceTime(`${rev}-00001-node1`, 1).setServiceTime(`${rev}-00001-node2`, 0.2).setServiceTime(`${rev}-00001-node3`, 0.2);
  }
  load.setRttFrom('node1', 'node2', 0.1).setRttFrom('node1', 'node3', 0.3);
  const { server, target } = await startTestServer(t, model, { load });
  const clients = ['node1', 'node1', 'node2', 'node2', 'node3', 'node3'].map((n, i) => gateway(t, target, n, `gw-${i}`));
  const settled = () => server.clients().length === clients.length && server.clients().every((c) => ['CDS', 'EDS', 'LDS', 'RDS'].every((k) => c.types[k]?.acked_version && !c.types[k].awaiting_ack));
  await until('every gateway synced', settled);
  const responses = () => new Map(server.clients().map((c) => [c.stream, { view: c.view, eds: c.types.EDS!.responses, others: c.types.CDS!.responses + c.types.LDS!.responses + c.types.RDS!.responses }]));
  const before = responses();
  const received = new Map(clients.map((c) => [c, c.received.length]));

  // node1's proxy measured node3 farther away: only node1's view moves.
  load.setRttFrom('node1', 'node3', 1.5);
  load.moved({ fromNodes: ['node1'] });
  server.builder.flush();
  for (const [stream, now] of responses()) {
    const then = before.get(stream)!;
    t.equal(now.eds - then.eds, now.view === 'node1' ? 1 : 0, `${now.view} stream ${stream}: ${now.view === 'node1' ? 'one EDS response' : 'no EDS response'}`);
    t.equal(now.others, then.others, `${now.view} stream ${stream}: no CDS, LDS or RDS response`);
  }
  for (const c of clients.slice(0, 2)) {
    const eds = await until('node1 gets its EDS', () => c.received.slice(received.get(c)).find((r) => r.type === ENDPOINT_TYPE));
    t.same(eds.names.sort(), [HELLO, WORLD], 'both assignments moved from node1');
  }
  await until('every gateway ACKed', settled);

  // One revision's pod turns unready: every view shows it, and only that assignment is sent.
  const mark = new Map(clients.map((c) => [c, c.received.length]));
  const mid = responses();
  model.setReady('world-00001-node2', false);
  server.builder.flush();
  for (const [stream, now] of responses()) t.equal(now.eds - mid.get(stream)!.eds, 1, `${now.view} stream ${stream}: one EDS response`);
  for (const c of clients) {
    const eds = await until('the EDS response', () => c.received.slice(mark.get(c)).find((r) => r.type === ENDPOINT_TYPE));
    t.same(eds.names, [WORLD], 'it carries only the changed assignment');
  }
  await until('every gateway ACKed', settled);
  t.same(clients.map((c) => c.received.slice(mark.get(c)).filter((r) => r.type !== ENDPOINT_TYPE).length), clients.map(() => 0), 'no other type was sent');
});

t.test('SotW RDS carries only the route configuration that changed', async (t) => {
  // A KIngress with an external and a cluster-local rule: changing the cluster-local one
  // changes internal_services alone.
  const split = { serviceNamespace: 'default', serviceName: 'hello-00001', servicePort: 80, percent: 100, appendHeaders: { 'Knative-Serving-Namespace': 'default', 'Knative-Serving-Revision': 'hello-00001' }, revision: HELLO };
  const rule = (host: string, visibility: 'ExternalIP' | 'ClusterLocal', path: string) => ({ hosts: [host], visibility, paths: [{ path, headers: {}, rewriteHost: undefined, appendHeaders: {}, splits: [split] }] });
  let routes: IngressRoutes[] = [];
  const listeners = new Set<() => void>();
  const setIngress = (localPath: string) => {
    routes = [{
      key: 'default/hello', namespace: 'default', name: 'hello', generation: 1, ingressClass: undefined, httpOption: 'Enabled', tls: [], hash: undefined,
      rules: [rule('hello.example.com', 'ExternalIP', '/'), rule('hello.default.svc.cluster.local', 'ClusterLocal', localPath)],
    }];
    for (const l of listeners) l();
  };
  setIngress('/');
  const ingresses: IngressSource = { current: () => routes, onChange: (l) => (listeners.add(l), () => listeners.delete(l)) };
  const model = testModel(2, [revision('hello', 'hello-00001')]);
  const { server, target } = await startTestServer(t, model, { ingresses });
  const c = new SotwClient(target, testNode('node1'));
  t.teardown(() => c.close());
  const names = ['external_services', 'internal_services'];
  c.setNames(ROUTE_TYPE, names);
  c.subscribe(ROUTE_TYPE, names);
  const first = await c.next(ROUTE_TYPE);
  t.same(first.names.sort(), names, 'the first response has both');
  c.ack(first);
  await until('ACKed', () => server.clients()[0]?.types.RDS?.acked_version === first.version);
  setIngress('/api');
  const next = await c.next(ROUTE_TYPE);
  t.same(next.names, ['internal_services'], 'a change to one sends that one');
  t.not(next.version, first.version, 'under a new version');
});

t.test('the write budget holds responses beyond it until earlier ones are sent, in order', async (t) => {
  const budget = new WriteBudget(100);
  const a = {};
  const b = {};
  const started: string[] = [];
  const done = new Map<string, () => void>();
  const submit = (owner: object, name: string, bytes: number) => budget.submit(owner, bytes, (d) => {
    started.push(name);
    done.set(name, d);
  });
  submit(a, 'a1', 60);
  submit(b, 'b1', 60);
  submit(a, 'a2', 10);
  t.same(started, ['a1'], 'the second write would pass the budget: it waits, and so does the one behind it');
  t.equal(budget.bytesInFlight, 60);
  done.get('a1')!();
  t.same(started, ['a1', 'b1', 'a2'], 'room again: the waiting ones go, in order');
  submit(b, 'b2', 500);
  t.same(started, ['a1', 'b1', 'a2'], 'a response larger than the budget waits for the others…');
  budget.forget(b);
  t.same(started, ['a1', 'b1', 'a2'], 'a closed stream\'s waiting write is dropped');
  t.equal(budget.bytesInFlight, 10, 'and what it had in flight is returned');
  done.get('a2')!();
  submit(a, 'a3', 500);
  t.same(started, ['a1', 'b1', 'a2', 'a3'], '…and goes alone when nothing else is in flight');
});
