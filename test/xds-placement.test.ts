// Where a gateway sends one revision's traffic (xds/resources.ts placeRevision): its own
// node's pods at light load, its node's proxy once the gateway's own arrivals offer them half
// of what they serve or their queue is at its overload bound (the proxy decides per request),
// and the proxy stays in the path for a hold after that (the builder's ProxyInPath); the
// proxies when no pod is ready.
import t from 'tap';
import { SnapshotBuilder } from '../xds/builder.js';
import { SnapshotCache } from '../xds/cache.js';
import { ENDPOINT_TYPE } from '../xds/protos.js';
import type { JsonObject } from '../xds/protojson.js';
import { buildLoadAssignment, placeRevision, type LocalityPlacement } from '../xds/resources.js';
import { FixedLoadView, ObservedLoadView, revision, testModel } from './fixtures/xds/model.js';
import { until } from './support.js';

const HELLO = 'default/hello-00001';
const summary = (ps: LocalityPlacement[]) => ps.map((p) => `${p.priority}:${p.kind}:${p.node}`);

/** node3 is the edge: 50 ms from both cloud nodes; cloud ↔ cloud 0.5 ms. Pods serve one request at a time in 5 ms: 200 a second. */
function edgeLoad(): FixedLoadView {
  const load = new FixedLoadView().setRtt('node1', 'node2', 0.5).setRtt('node1', 'node3', 50).setRtt('node2', 'node3', 50);
  for (const n of ['node1', 'node2', 'node3']) load.setServiceTime(`hello-00001-${n}`, 5).setCapacity(`hello-00001-${n}`, 1);
  return load;
}

t.test('an idle edge pod: the gateway sends to it directly, the cloud pods are failover', async (t) => {
  const model = testModel(3);
  const { placements } = placeRevision(model.current, edgeLoad(), HELLO, 'node3');
  t.same(summary(placements), ['0:pods:node3', '1:pods:node1', '2:pods:node2']);
});

t.test('the edge pod at its knee: the gateway hands the traffic to its node\'s proxy, the cost model\'s pod shares behind it', async (t) => {
  const model = testModel(3);
  // node3's gateway sends 300 requests/s, 1.5× what the edge pod serves; 12 queued at it.
  const load = edgeLoad().setArrivals('node3', HELLO, 300).setInFlight('hello-00001-node3', 12);
  const { placements } = placeRevision(model.current, load, HELLO, 'node3');
  t.same(placements[0], { node: 'node3', weight: 1, priority: 0, kind: 'proxy' }, 'priority 0 is node3\'s proxy alone');
  t.ok(placements.slice(1).every((p) => p.kind === 'pods' && p.priority >= 1), 'the pods follow at priority 1 and after');
  // Behind the proxy the pods are failover only, placed as if idle (the load at the edge pod,
  // which moves all the time, pushes nothing new): node3's pod first, then the cloud.
  t.same(summary(placements.slice(1)), ['1:pods:node3', '2:pods:node1', '3:pods:node2'], 'behind it, the pods placed as if idle');

  // The load falls again: straight to the pod.
  load.setArrivals('node3', HELLO, 20).setInFlight('hello-00001-node3', 0);
  t.same(summary(placeRevision(model.current, load, HELLO, 'node3').placements), ['0:pods:node3', '1:pods:node1', '2:pods:node2']);
});

t.test('the proxy enters from half of what the pods serve, by the gateway\'s arrival rate, not by every slot taken at the moment of a report', async (t) => {
  const model = testModel(3);
  // One request at the one-slot pod (every slot taken) while the gateway sends 60/s, under a
  // third of what the pod serves: a burst that drains. Straight to the pod.
  const load = edgeLoad().setInFlight('hello-00001-node3', 1).setArrivals('node3', HELLO, 60);
  t.same(summary(placeRevision(model.current, load, HELLO, 'node3').placements), ['0:pods:node3', '1:pods:node1', '2:pods:node2'], 'offered 0.3: straight to the pod');
  load.setArrivals('node3', HELLO, 110);
  t.same(summary(placeRevision(model.current, load, HELLO, 'node3').placements), ['0:proxy:node3', '1:pods:node3', '2:pods:node1', '3:pods:node2'], 'offered 0.55: through the proxy, before the knee');
  load.setArrivals('node3', HELLO, 90);
  t.same(summary(placeRevision(model.current, load, HELLO, 'node3').placements)[0], '0:pods:node3', 'offered 0.45: straight to the pod');
  load.setInFlight('hello-00001-node3', 4);
  t.same(summary(placeRevision(model.current, load, HELLO, 'node3').placements)[0], '0:proxy:node3', 'a queue at its overload bound (4 per slot) the arrivals have not shown yet: through the proxy');
});

t.test('a cloud gateway whose pod is busy at a third of what it serves keeps its weights; at its knee it goes through its proxy too; with no pod of its own it gets weights', async (t) => {
  const model = testModel(3);
  // Every slot of node1's pod taken at the moment of the report (and two waiting), the gateway's arrivals a third of what it serves.
  const load = edgeLoad().setInFlight('hello-00001-node1', 3).setArrivals('node1', HELLO, 67);
  const busy = placeRevision(model.current, load, HELLO, 'node1').placements;
  t.notOk(busy.some((p) => p.kind === 'proxy'), `no proxy in the path (${summary(busy).join(', ')})`);
  t.same(summary(busy).slice(0, 2).sort(), ['0:pods:node1', '0:pods:node2'], 'node1\'s own pod and the other cloud pod at priority 0, by the cost model\'s shares');
  load.setArrivals('node1', HELLO, 200);
  t.same(summary(placeRevision(model.current, load, HELLO, 'node1').placements).slice(0, 1), ['0:proxy:node1'], 'offered 1.0: through node1\'s proxy');

  model.update((s) => ({ ...s, endpoints: s.endpoints.filter((e) => e.node !== 'node1') }));
  const { placements } = placeRevision(model.current, edgeLoad().setArrivals('node1', HELLO, 1000), HELLO, 'node1');
  t.notOk(placements.some((p) => p.kind === 'proxy'), 'no local pod: the gateway weighs the remote pods itself');
});

t.test('an h2c revision goes to the pods even at the knee (the proxy carries HTTP/1)', async (t) => {
  const model = testModel(3, [revision('hello', 'hello-00001', { protocol: 'h2c' })]);
  const load = edgeLoad().setInFlight('hello-00001-node3', 12).setArrivals('node3', HELLO, 300);
  const cla = buildLoadAssignment(model.current, load, model.current.revisions[0]!, 'node3', { proxyPort: 8012 }, () => true);
  const kinds = (cla.endpoints as JsonObject[]).flatMap((l) => (l.lb_endpoints as JsonObject[]).map((e) => (e.metadata as { filter_metadata: { chikai: { kind: string } } }).filter_metadata.chikai.kind));
  t.notOk(kinds.includes('proxy'), 'no proxy endpoint');
  t.ok((cla.endpoints as JsonObject[]).some((l) => l.priority === 0 && (l.locality as JsonObject).sub_zone === 'node3'), 'node3\'s pod keeps priority 0 at its overload bound: the per-request bound is not for weights that hold a whole push');
  t.ok((cla.endpoints as JsonObject[]).some((l) => l.priority === 0 && (l.locality as JsonObject).sub_zone !== 'node3'), 'cloud pods share priority 0');
});

t.test('no ready pod: every node\'s proxy, the gateway\'s own first', async (t) => {
  const model = testModel(3);
  model.update((s) => ({ ...s, endpoints: s.endpoints.map((e) => ({ ...e, ready: false })) }));
  const { placements } = placeRevision(model.current, edgeLoad(), HELLO, 'node3');
  t.same(placements.filter((p) => p.kind === 'proxy').map((p) => `${p.priority}:${p.node}`), ['0:node3', '1:node1', '1:node2']);
});

t.test('the proxy stays in the path for the hold after the knee, and leaves when it runs out', async (t) => {
  const model = testModel(3);
  const load = edgeLoad();
  let now = 0;
  const store = new SnapshotCache();
  const builder = new SnapshotBuilder({ model, load, store, build: { proxyPort: 8012 }, now: () => now, proxyInPathHoldMs: 60_000 });
  builder.start();
  t.teardown(() => builder.stop());
  const node3 = () => {
    const cla = store.view('node3').types.get(ENDPOINT_TYPE)!.resources.get(HELLO)!.json;
    return (cla.endpoints as JsonObject[]).map((l) => `${String(l.priority)}:${(l.locality as JsonObject).sub_zone as string}:${(l.lb_endpoints as JsonObject[]).map((e) => (e.metadata as { filter_metadata: { chikai: { kind: string } } }).filter_metadata.chikai.kind).join(',')}`);
  };
  t.same(node3()[0], '0:node3:pod', 'idle: straight to the edge pod');

  load.setArrivals('node3', HELLO, 250);
  builder.recompute();
  t.same(node3()[0], '0:node3:proxy', 'at the knee: node3\'s proxy');
  const node1 = store.view('node1').types.get(ENDPOINT_TYPE)!.resources.get(HELLO)!.json;
  t.same(((node1.endpoints as JsonObject[])[0]!.locality as JsonObject).sub_zone, 'node1', 'node1\'s gateway, whose pod has room, still goes to it directly');

  now += 10_000;
  load.setArrivals('node3', HELLO, 50);
  builder.recompute();
  t.same(node3()[0], '0:node3:proxy', 'the load fell 10 s ago: still through the proxy (hold)');

  now += 30_000;
  load.setArrivals('node3', HELLO, 190);
  builder.recompute();
  now += 50_000;
  load.setArrivals('node3', HELLO, 50);
  builder.leaveExpiredHolds();
  builder.flush();
  t.same(node3()[0], '0:node3:proxy', 'a knee 50 s ago restarted the hold');

  now += 10_001;
  builder.leaveExpiredHolds();
  builder.flush();
  t.same(node3(), ['0:node3:pod', '1:node1:pod', '2:node2:pod'], 'a full hold without the knee: straight to the pods again, without any load change to trigger it');
});

t.test('a gateway\'s arrivals that move rebuild the revision\'s views by themselves (a load view that says what moved)', async (t) => {
  const model = testModel(3);
  const load = new ObservedLoadView().setRtt('node1', 'node2', 0.5).setRtt('node1', 'node3', 50).setRtt('node2', 'node3', 50);
  for (const n of ['node1', 'node2', 'node3']) load.setServiceTime(`hello-00001-${n}`, 5).setCapacity(`hello-00001-${n}`, 1);
  const store = new SnapshotCache();
  const builder = new SnapshotBuilder({ model, load, store, build: { proxyPort: 8012 }, now: () => 0 });
  builder.start();
  t.teardown(() => builder.stop());
  const first = () => {
    const cla = store.view('node3').types.get(ENDPOINT_TYPE)!.resources.get(HELLO)!.json;
    return ((cla.endpoints as JsonObject[])[0]!.lb_endpoints as JsonObject[]).map((e) => (e.metadata as { filter_metadata: { chikai: { kind: string } } }).filter_metadata.chikai.kind);
  };
  t.same(first(), ['pod'], 'idle: straight to the edge pod');
  load.setArrivals('node3', HELLO, 150);
  load.moved({ revisions: [HELLO] });
  await until('the view rebuilt', () => first()[0] === 'proxy');
  t.pass('node3\'s gateway sends 150/s, three quarters of what its pod serves: through its proxy, with no pod\'s load moving');
});
