// PodSlots in process, on a manual clock: one owner of a pod's count, one definition of
// free, taking and giving back in run(), and every change of the count waking waiters.
import t, { type Test } from 'tap';
import { ClusterModel, type ClusterState, type EndpointInfo } from '../cluster/model.js';
import { RequestQueue, DEFAULT_QUEUE_CONFIG, type QueueEntry } from '../queue/index.js';
import { RequestSignal } from '../proxy/exchange.js';
import { EndpointTable, type EndpointState } from '../proxy/endpoints.js';
import { LocalOnlyPolicy } from '../proxy/policy/local-only.js';
import type { Policy } from '../proxy/policy/policy.js';
import { NoEligibleEndpointError, ORCA_TTL_MS, PodSlots, REFRESH_MS } from '../proxy/slots.js';
import { configuredLoadView } from '../cluster/load.js';
import { REV, clusterState, endpoint, hello } from './fixtures/cluster-state.js';
import { ManualClock, settle } from './fixtures/clock.js';

function state(cc: number, endpoints: EndpointInfo[]): ClusterState {
  return clusterState({ nodes: 2, revisions: [hello({ containerConcurrency: cc })], endpoints });
}

/** The first candidate: keeps tests about the accounting, not about balancing. */
const FIRST: Policy = { name: 'first', pick: (c) => c[0] };

function setup(t: Test, o: { cc: number; endpoints: EndpointInfo[]; policy?: Policy; refresh?: (e: EndpointState) => Promise<number | undefined> }) {
  const clock = new ManualClock();
  const model = new ClusterModel(state(o.cc, o.endpoints));
  let slots: PodSlots<QueueEntry> | undefined;
  const endpoints = new EndpointTable(model, undefined, () => slots?.endpointsChanged());
  t.teardown(() => endpoints.close());
  const queues = new Map<string, RequestQueue>();
  slots = new PodSlots<QueueEntry>({
    node: 'node1',
    endpoints,
    policy: o.policy ?? FIRST,
    current: () => model.current,
    load: configuredLoadView(() => model.current),
    room: (key) => {
      const q = new RequestQueue(DEFAULT_QUEUE_CONFIG, { revision: key, clock });
      queues.set(key, q);
      return q;
    },
    clock,
    refresh: o.refresh,
  });
  const s = slots;
  /** A request that holds its slot until `release()` is called; `served` says on which pod. */
  const hold = (deadline = clock.now() + 3000, exclude?: ReadonlySet<string>) => {
    let release!: () => void;
    let served: string | undefined;
    let failed: unknown;
    const held = new Promise<void>((r) => (release = r));
    const done = s.run({ revisionKey: REV, revision: model.current.revision(REV)!, entry: entry(deadline), signal: new RequestSignal(), exclude }, async (e) => {
      served = e.pod;
      await held;
    }).catch((err: unknown) => {
      failed = err;
    });
    return {
      release: () => release(),
      done,
      get served() { return served; },
      get failed() { return failed; },
    };
  };
  const depth = () => queues.get(REV)?.depth ?? 0;
  return { clock, model, slots: s, hold, depth };
}

function entry(deadline: number): QueueEntry {
  return { method: 'GET', path: '/', host: 'hello.default', headers: {}, remoteAddress: '127.0.0.1', revision: REV, deadline };
}

t.test('one definition of free: own plus the others\' reported count against containerConcurrency', async (t) => {
  const { slots, clock, hold } = setup(t, { cc: 2, endpoints: [endpoint('a')] });
  t.equal(slots.freeSlots('a', 2), 2);
  const one = hold();
  await settle();
  t.equal(one.served, 'a');
  t.same([slots.ownInFlight('a'), slots.othersInFlight('a'), slots.inFlight('a'), slots.freeSlots('a', 2)], [1, 0, 1, 1]);
  // The pod answered one of ours with 2 others inside (its count leaves out the request it answers).
  slots.report('a', 2, 0);
  t.same([slots.othersInFlight('a'), slots.inFlight('a'), slots.freeSlots('a', 2)], [2, 3, 0], 'the others count toward full');
  t.equal(slots.freeSlots('a', 0), Infinity, 'containerConcurrency 0: never full');
  clock.advance(ORCA_TTL_MS + 1);
  t.same([slots.othersInFlight('a'), slots.freeSlots('a', 2)], [0, 1], 'a report older than its TTL no longer counts');
  one.release();
  await one.done;
  t.equal(slots.ownInFlight('a'), 0, 'given back when the request ended');
  t.same([...slots.ownInFlightByRevision()], [[REV, 0]]);
});

t.test('a slot is given back even when the request fails', async (t) => {
  const { slots, model } = setup(t, { cc: 1, endpoints: [endpoint('a')] });
  const boom = slots.run({ revisionKey: REV, revision: model.current.revision(REV)!, entry: entry(Infinity), signal: new RequestSignal() }, async () => {
    throw new Error('the forwarder broke');
  });
  await t.rejects(boom, /the forwarder broke/);
  t.equal(slots.ownInFlight('a'), 0);
});

t.test('the stall: other proxies hold the only slot, then report it free — the waiter is served at once', async (t) => {
  const { slots, clock, hold, depth } = setup(t, { cc: 1, endpoints: [endpoint('a')] });
  slots.report('a', 1, 0); // another proxy's request is at the pod
  const waiter = hold();
  await settle();
  t.equal(waiter.served, undefined, 'no free slot: it waits');
  t.equal(depth(), 1, 'in the revision\'s queue');
  clock.advance(200);
  slots.report('a', 0, 0); // the pod says the other proxy's request is gone
  await settle();
  t.equal(waiter.served, 'a', 'served on the lower report, without the clock moving on');
  t.equal(depth(), 0);
  waiter.release();
  await waiter.done;
});

t.test('the stall without any new report: served when the others\' report goes stale, long before the deadline', async (t) => {
  const { slots, clock, hold } = setup(t, { cc: 1, endpoints: [endpoint('a')] });
  slots.report('a', 1, 0);
  const waiter = hold(clock.now() + 3000);
  await settle();
  await clock.tick(ORCA_TTL_MS - 1);
  t.equal(waiter.served, undefined, 'the report still counts');
  await clock.tick(1);
  t.equal(waiter.served, 'a', 'woken when it went stale (1 s), not at the 3 s deadline');
  waiter.release();
  await waiter.done;
});

t.test('a pod full only by the others\' count is asked again while requests wait', async (t) => {
  let inside = 1;
  const asked: number[] = [];
  const { slots, clock, hold } = setup(t, {
    cc: 1,
    endpoints: [endpoint('a')],
    refresh: async () => {
      asked.push(clock.now());
      return inside;
    },
  });
  slots.report('a', 1, 0);
  const waiter = hold();
  await settle();
  await clock.tick(REFRESH_MS);
  t.equal(asked.length, 1, 'asked after one refresh interval');
  t.equal(waiter.served, undefined, 'still full');
  await clock.tick(REFRESH_MS);
  t.equal(asked.length, 2, 'asked again while it waits');
  inside = 0; // the other proxy's request left
  await clock.tick(REFRESH_MS);
  t.equal(waiter.served, 'a', 'served on the fresh count');
  await clock.tick(REFRESH_MS * 4);
  t.equal(asked.length, 3, 'nobody waits: no more asking');
  waiter.release();
  await waiter.done;
});

t.test('a given-back slot goes to the longest waiter, not to a newcomer', async (t) => {
  const { clock, hold, depth } = setup(t, { cc: 1, endpoints: [endpoint('a')] });
  const first = hold();
  await settle();
  const second = hold();
  await settle();
  t.equal(depth(), 1);
  first.release();
  const newcomer = hold();
  await settle();
  t.equal(second.served, 'a', 'the waiter got the slot');
  t.equal(newcomer.served, undefined, 'the newcomer queues behind');
  second.release();
  await settle();
  t.equal(newcomer.served, 'a');
  newcomer.release();
  await Promise.all([first.done, second.done, newcomer.done]);
  t.equal(clock.timers, 0, 'no deadline timers left');
});

t.test('endpoints changing wake waiters: a new pod serves them; none eligible fails them', async (t) => {
  const { model, hold } = setup(t, { cc: 1, endpoints: [endpoint('a', 'node1', false)], policy: new LocalOnlyPolicy() });
  const waiter = hold();
  await settle();
  t.equal(waiter.served, undefined, 'no ready pod: waits');
  model.addEndpoint(endpoint('b'));
  await settle();
  t.equal(waiter.served, 'b', 'the new pod serves it');
  const blocked = hold();
  await settle();
  t.equal(blocked.served, undefined, 'b is full');
  model.update((s) => ({ ...s, endpoints: [endpoint('remote', 'node2')] }));
  await settle();
  t.type(blocked.failed, NoEligibleEndpointError, 'only a remote pod left: local-only can use none, the waiter is told');
  waiter.release();
  await Promise.all([waiter.done, blocked.done]);
});

t.test('excluded pods (already tried) are not taken', async (t) => {
  const { hold } = setup(t, { cc: 0, endpoints: [endpoint('a'), endpoint('b')] });
  const r = hold(undefined, new Set(['a']));
  await settle();
  t.equal(r.served, 'b');
  r.release();
  await r.done;
});

t.test('what the load reports say is at a pod: every proxy\'s count here, the pod\'s own count elsewhere (requests on the wire are not at the pod yet)', async (t) => {
  const { slots, clock, hold } = setup(t, { cc: 0, endpoints: [endpoint('far', 'node2')] });
  const held = [hold(), hold(), hold()];
  await settle();
  t.equal(slots.ownInFlight('far'), 3, 'three of ours sent to node2\'s pod');
  t.equal(slots.atPod('far'), 0, 'none known to be inside it yet: nothing reported');
  slots.report('far', 2, 1);
  t.equal(slots.atPod('far'), 2, 'the pod counted 2 inside (one of ours), not our 3 plus its others');
  t.equal(slots.inFlight('far'), 4, 'this proxy\'s own decisions still count all of ours (own 3 + 1 other)');
  clock.advance(ORCA_TTL_MS + 1);
  t.equal(slots.atPod('far'), 0, 'a stale count says nothing');
  for (const h of held) h.release();
  await Promise.all(held.map((h) => h.done));
});

t.test('a pod on the proxy\'s own node is reported with every proxy\'s count (own exact, others from its report)', async (t) => {
  const { slots, hold } = setup(t, { cc: 0, endpoints: [endpoint('near', 'node1')] });
  const held = [hold(), hold()];
  await settle();
  slots.report('near', 3, 2);
  t.equal(slots.atPod('near'), 3, 'own 2 + 1 other');
  for (const h of held) h.release();
  await Promise.all(held.map((h) => h.done));
});
