// Where a gateway sends one revision's traffic (xds/resources.ts placeRevision): its own
// node's pods while they have the cheapest completion time, its node's proxy once the cost
// model would send part of the traffic elsewhere (the proxy decides per request), the
// proxies when no pod is ready.
import t from 'tap';
import { placeRevision, type LocalityPlacement } from '../xds/resources.js';
import { FixedLoadView, revision, testModel } from './fixtures/xds/model.js';

const HELLO = 'default/hello-00001';
const summary = (ps: LocalityPlacement[]) => ps.map((p) => `${p.priority}:${p.kind}:${p.node}`);

/** node3 is the edge: 50 ms from both cloud nodes; cloud ↔ cloud 0.5 ms. Pods serve one request at a time in 5 ms. */
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
  // 12 requests queued at the edge pod: 60 ms of waiting, more than the 50 ms round trip.
  const load = edgeLoad().setInFlight('hello-00001-node3', 12);
  const { placements } = placeRevision(model.current, load, HELLO, 'node3');
  t.same(placements[0], { node: 'node3', weight: 1, priority: 0, kind: 'proxy' }, 'priority 0 is node3\'s proxy alone');
  t.ok(placements.slice(1).every((p) => p.kind === 'pods' && p.priority >= 1), 'the pods follow at priority 1 and after');
  // 65 ms expected at the edge pod against 55 ms at either cloud pod: the cloud nodes share
  // the next priority, the edge pod comes after them.
  t.same(summary(placements.slice(1)), ['1:pods:node1', '1:pods:node2', '2:pods:node3'], 'behind it, the split the cost model chose');

  // The load falls again: straight to the pod.
  load.setInFlight('hello-00001-node3', 0);
  t.same(summary(placeRevision(model.current, load, HELLO, 'node3').placements), ['0:pods:node3', '1:pods:node1', '2:pods:node2']);
});

t.test('a cloud gateway spilling between cloud nodes goes through its proxy too; one with no pod of its own gets weights', async (t) => {
  const model = testModel(3);
  const load = edgeLoad().setInFlight('hello-00001-node1', 3);
  t.same(summary(placeRevision(model.current, load, HELLO, 'node1').placements).slice(0, 1), ['0:proxy:node1']);

  model.update((s) => ({ ...s, endpoints: s.endpoints.filter((e) => e.node !== 'node1') }));
  const { placements } = placeRevision(model.current, edgeLoad(), HELLO, 'node1');
  t.notOk(placements.some((p) => p.kind === 'proxy'), 'no local pod: the gateway weighs the remote pods itself');
});

t.test('an h2c revision goes to the pods even at the knee (the proxy carries HTTP/1)', async (t) => {
  const model = testModel(3, [revision('hello', 'hello-00001', { protocol: 'h2c' })]);
  const load = edgeLoad().setInFlight('hello-00001-node3', 12);
  const { placements } = placeRevision(model.current, load, HELLO, 'node3', undefined, false);
  t.notOk(placements.some((p) => p.kind === 'proxy'));
  t.ok(placements.some((p) => p.priority === 0 && p.node !== 'node3'), 'cloud pods share priority 0');
});

t.test('no ready pod: every node\'s proxy, the gateway\'s own first', async (t) => {
  const model = testModel(3);
  model.update((s) => ({ ...s, endpoints: s.endpoints.map((e) => ({ ...e, ready: false })) }));
  const { placements } = placeRevision(model.current, edgeLoad(), HELLO, 'node3');
  t.same(placements.filter((p) => p.kind === 'proxy').map((p) => `${p.priority}:${p.node}`), ['0:node3', '1:node1', '1:node2']);
});
