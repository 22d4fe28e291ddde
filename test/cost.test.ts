// The shared cost model: one pure function family for the proxy and the xDS server.
import t from 'tap';
import { expectedCompletionMs, expectedWaitMs, inSustainedOverload, localityShares, offeredUtilization, remoteIsFaster, type PodCostInput } from '../cluster/cost.js';

const pod = (node: string, rttMs: number, inFlight: number, over: Partial<PodCostInput> = {}): PodCostInput => ({
  pod: `p-${node}`, node, rttMs, inFlight, capacity: 4, serviceTimeMs: 4, reachable: true, ...over,
});

t.test('completion time = RTT + expected wait + service time', async (t) => {
  t.equal(expectedCompletionMs(pod('a', 50, 0, { capacity: 1 })), 54, 'idle remote pod: RTT + service');
  t.equal(expectedWaitMs(3, 4, 4), 0, 'a free slot means no wait');
  t.equal(expectedWaitMs(4, 4, 4), 1, 'one ahead in line over 4 slots: a quarter service time');
  t.equal(expectedWaitMs(43, 4, 4), 40, '40 ahead, 4 slots, 4 ms each: 40 ms');
  t.equal(expectedCompletionMs(pod('a', 0, 0, { reachable: false })), Infinity, 'unreachable pods are never cheaper');
});

t.test('remote must beat local by the margin', async (t) => {
  t.notOk(remoteIsFaster(10, 9), '1 ms faster is within the 2 ms margin');
  t.ok(remoteIsFaster(10, 7), '3 ms faster beats the margin');
  t.notOk(remoteIsFaster(100, 95), 'the margin is 10 % of the local cost when larger');
  t.ok(remoteIsFaster(100, 85));
  t.ok(remoteIsFaster(Infinity, 50), 'an unreachable local loses to anything reachable');
  t.notOk(remoteIsFaster(5, Infinity));
});

t.test('an idle local pod keeps all traffic local; remotes are failover priorities', async (t) => {
  const shares = localityShares('node3', [pod('node3', 0, 0), pod('node1', 50, 0), pod('node2', 50, 0)]);
  const local = shares.find((s) => s.node === 'node3')!;
  t.equal(local.priority, 0);
  t.equal(local.weight, 100);
  t.same(shares.filter((s) => s.priority === 0).map((s) => s.node), ['node3'], 'nothing remote in priority 0');
  t.same(shares.filter((s) => s.node !== 'node3').map((s) => s.priority).sort(), [1, 2], 'remote nodes are contiguous failover priorities');
});

t.test('spills when the local queue makes waiting longer than the round trip, in proportion, and returns when load falls', async (t) => {
  // 60 in flight over 4 slots of 4 ms: 57 ms wait + 4 ms service = 61 ms; each remote 54 ms saves 7/61.
  const busy = localityShares('node3', [pod('node3', 0, 60), pod('node1', 50, 0), pod('node2', 50, 0)]);
  const weight = (node: string) => busy.find((s) => s.node === node && s.priority === 0)?.weight;
  t.same([weight('node1'), weight('node2')], [11, 11], 'each remote takes the share of the local cost it saves: 7/61');
  t.equal(weight('node3'), 77, 'local keeps the rest, at priority 0');
  // Much busier: the share that leaves grows with the queue.
  const busier = localityShares('node3', [pod('node3', 0, 400), pod('node1', 50, 0)]);
  t.same(busier.filter((s) => s.priority === 0).map((s) => [s.node, s.weight]), [['node1', 87], ['node3', 13]], '401 ms locally: the remote saves 347/401');
  // Moderately busy: local (33 ms) still cheaper than remote (54 ms).
  const moderate = localityShares('node3', [pod('node3', 0, 32), pod('node1', 50, 0)]);
  t.same(moderate.filter((s) => s.priority === 0).map((s) => s.node), ['node3']);
  // Load falls again.
  const calm = localityShares('node3', [pod('node3', 0, 1), pod('node1', 50, 0)]);
  t.same(calm.filter((s) => s.priority === 0).map((s) => s.node), ['node3'], 'back to local');
});

t.test('a remote pod a little cheaper takes a little of the traffic, not half of it', async (t) => {
  // Two cloud pods 0.5 ms apart; the local one has 1 request waiting over 3 slots of 4 ms.
  const s = localityShares('node1', [pod('node1', 0, 3, { capacity: 3 }), pod('node2', 0.5, 0, { capacity: 3 })]);
  const p0 = new Map(s.filter((x) => x.priority === 0).map((x) => [x.node, x.weight]));
  t.same([...p0.keys()].sort(), ['node1', 'node2'], 'both share priority 0');
  t.same([p0.get('node1'), p0.get('node2')], [84, 16], 'local 5.33 ms, remote 4.5 ms: the remote saves 0.83/5.33');
  // Local 55 ms (51 ms wait + 4) vs remote 54 ms: 1/55 leaves.
  const wan = localityShares('node3', [pod('node3', 0, 54), pod('node1', 50, 0)]);
  t.same(wan.filter((x) => x.priority === 0).map((x) => [x.node, x.weight]).sort(), [['node1', 2], ['node3', 98]]);
  t.ok(s.every((x) => x.weight >= 1), 'every priority-0 locality has weight ≥ 1');
});

t.test('a local pod that costs Infinity leaves priority 0: the cheapest nodes take over', async (t) => {
  const overloaded = localityShares('node3', [pod('node3', 0, 4, { capacity: 1, offeredUtilization: 1.5 }), pod('node1', 50, 0), pod('node2', 51, 0)]);
  t.same(overloaded.filter((s) => s.priority === 0).map((s) => s.node).sort(), ['node1', 'node2'], 'at its overload bound the local pod is no choice');
  t.equal(overloaded.find((s) => s.node === 'node3')?.priority, undefined, 'and not a failover either (its cost is not finite)');
  const unreachable = localityShares('node3', [pod('node3', 0, 0, { reachable: false }), pod('node1', 50, 0)]);
  t.same(unreachable.filter((s) => s.priority === 0).map((s) => s.node), ['node1']);
});

t.test('without a local pod the cheapest nodes share priority 0', async (t) => {
  const s = localityShares('edge', [pod('node1', 50, 0), pod('node2', 51, 0), pod('node4', 200, 0)]);
  t.same(s.filter((x) => x.priority === 0).map((x) => x.node).sort(), ['node1', 'node2']);
  t.equal(s.find((x) => x.node === 'node4')!.priority, 1);
  t.same(localityShares('edge', []), [], 'no pods, no localities');
  t.same(localityShares('edge', [pod('node1', 50, 0, { reachable: false })]), [], 'unreachable nodes are left out');
});

t.test('under sustained overload a local pod holds 4 requests per slot, then costs Infinity; below it the queue may grow to the round trip', async (t) => {
  const edge = (inFlight: number, offeredUtilization: number | undefined) => pod('node3', 0, inFlight, { capacity: 1, offeredUtilization });
  t.equal(expectedCompletionMs(edge(3, 1.2)), 16, 'overloaded, 3 there: still its own wait (3 × 4 ms) + service');
  t.equal(expectedCompletionMs(edge(4, 1.2)), Infinity, 'overloaded, 4 there: the bound — the next goes elsewhere');
  t.equal(expectedCompletionMs(edge(4, 0.9)), Infinity, 'from 0.9 of what the pods serve');
  t.equal(expectedCompletionMs(edge(12, 0.8)), 52, 'a burst below the knee: 12 ahead cost 48 ms, still under a 50 ms link');
  t.equal(expectedCompletionMs(edge(12, undefined)), 52, 'a view that sees no arrivals (the xDS server) keeps the plain cost');
  t.ok(remoteIsFaster(expectedCompletionMs(edge(4, 1)), expectedCompletionMs(pod('node1', 50, 0, { capacity: 3 }))), 'the remote pod wins past the bound');
  t.equal(expectedCompletionMs(pod('node1', 50, 40, { capacity: 3 })), 50 + (38 / 3) * 4 + 4, 'remote pods carry no overload bound of the sender\'s node');
});

t.test('offered utilization: arrivals × the pods\' time per request ÷ their slots; sustained overload from 0.9', async (t) => {
  t.equal(offeredUtilization(250, [{ slots: 1, msPerRequest: 4 }]), 1, 'the edge pod: 250/s × 4 ms on one slot');
  t.equal(offeredUtilization(250, [{ slots: 3, msPerRequest: 4 }]), 1 / 3, 'a cloud pod of 3 slots: a third');
  t.equal(offeredUtilization(300, [{ slots: 1, msPerRequest: 2 }, { slots: 1, msPerRequest: 4 }]), 0.45, 'two pods: their mean time per request over both slots');
  t.equal(offeredUtilization(100, []), undefined, 'no pod to serve it');
  t.notOk(inSustainedOverload(0.85), '0.85: bursts still drain');
  t.ok(inSustainedOverload(0.9), '0.9: a queue that persists');
  t.notOk(inSustainedOverload(undefined), 'unknown arrivals: not overloaded');
});
