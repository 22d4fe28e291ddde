// Every policy on deterministic scenarios: fixed RTTs and loads, a manual clock, no sockets.
// A policy is a load metric composed with a chooser; the choosers are tested on their own.
import t from 'tap';
import type { LoadView } from '../cluster/load.js';
import { ClusterSnapshot, type EndpointInfo } from '../cluster/model.js';
import { seededRandom } from '../cluster/emulated/network.js';
import { EndpointState } from '../proxy/endpoints.js';
import { ChikaiPolicy } from '../proxy/policy/chikai.js';
import { leastCost, powerOfTwo, RoundRobin, weighted } from '../proxy/policy/choosers.js';
import { FaastPolicy, faastWeights } from '../proxy/policy/faast.js';
import { KnativePolicy } from '../proxy/policy/knative.js';
import { LocalOnlyPolicy } from '../proxy/policy/local-only.js';
import { PeakEwmaPolicy } from '../proxy/policy/peak-ewma.js';
import { RoundRobinPolicy } from '../proxy/policy/round-robin.js';
import type { PickContext } from '../proxy/policy/policy.js';
import { ManualClock } from './fixtures/clock.js';

function world(cc = 0, podsPerNode = 1) {
  const endpoints: EndpointInfo[] = [];
  for (const node of ['node1', 'node2', 'node3']) {
    for (let k = 0; k < podsPerNode; k++) {
      endpoints.push({ pod: `${node}-p${k}`, revision: 'default/hello-00001', node, address: '127.0.0.1', port: 1, ready: true });
    }
  }
  const snapshot = new ClusterSnapshot({
    domain: 'cluster.local',
    externalDomains: [],
    nodes: ['node1', 'node2', 'node3'].map((name, i) => ({ name, region: 'r', zone: 'z', address: `127.0.1.${i + 1}` })),
    revisions: [{ namespace: 'default', service: 'hello', name: 'hello-00001', hosts: [], containerConcurrency: cc, timeoutSeconds: 300, protocol: 'http1' }],
    endpoints,
    latency: {},
  }, 1);
  const states = endpoints.map((e) => new EndpointState(e, undefined));
  const load = {
    rtt: { node1: 50, node2: 50, node3: 0 } as Record<string, number>,
    inFlight: {} as Record<string, number>,
    own: {} as Record<string, number>,
    service: {} as Record<string, number>,
    unreachable: new Set<string>(),
  };
  const view: LoadView = {
    rttMs: (from, to) => (from === to ? 0 : load.rtt[to]),
    reachable: (_from, to) => !load.unreachable.has(to),
    inFlight: (pod) => load.inFlight[pod] ?? 0,
    serviceTimeMs: (pod) => load.service[pod] ?? 4,
    capacity: () => 4,
  };
  const ctx: PickContext = { node: 'node3', revision: snapshot.revisions[0]!, revisionKey: 'default/hello-00001', snapshot, load: view, ownInFlight: (pod) => load.own[pod] ?? 0 };
  return { states, load, ctx, byPod: (p: string) => states.find((s) => s.pod === p)! };
}

function tally(n: number, pick: () => EndpointState | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const e = pick();
    if (e) out[e.node] = (out[e.node] ?? 0) + 1;
  }
  return out;
}

t.test('choosers: power of two, weighted, least cost, round robin', async (t) => {
  const rand = seededRandom(1);
  const load: Record<string, number> = { a: 1, b: 5, c: 9 };
  const p2c: Record<string, number> = {};
  for (let i = 0; i < 3000; i++) {
    const x = powerOfTwo(['a', 'b', 'c'], (k) => load[k]!, rand)!;
    p2c[x] = (p2c[x] ?? 0) + 1;
  }
  // Of the three pairs {a,b} {a,c} {b,c}, a wins two and b one; c never wins.
  t.equal(p2c.c, undefined, 'the most loaded of three never wins a pair');
  t.ok(p2c.a! > 1700 && p2c.a! < 2300 && p2c.b! > 700 && p2c.b! < 1300, `a wins 2/3, b 1/3: ${JSON.stringify(p2c)}`);
  const tie: Record<string, number> = {};
  for (let i = 0; i < 2000; i++) {
    const x = powerOfTwo(['x', 'y'], () => 0, rand)!;
    tie[x] = (tie[x] ?? 0) + 1;
  }
  t.ok(tie.x! > 800 && tie.y! > 800, `ties do not lean toward a position: ${JSON.stringify(tie)}`);
  t.equal(powerOfTwo([], () => 0, rand), undefined);
  t.equal(powerOfTwo(['only'], () => 0, rand), 'only');

  const w: Record<string, number> = {};
  for (let i = 0; i < 4000; i++) {
    const x = weighted(['a', 'b', 'c'], (k) => ({ a: 1, b: 3, c: 0 })[k]!, rand)!;
    w[x] = (w[x] ?? 0) + 1;
  }
  t.equal(w.c, undefined, 'weight 0 is never drawn');
  t.ok(w.a! > 800 && w.a! < 1200, `weights 1 : 3 → a quarter for a: ${JSON.stringify(w)}`);
  t.equal(weighted(['a', 'b'], () => 0, rand), 'a', 'all weights 0: the first');

  t.same(leastCost(['a', 'b', 'c'], (k) => load[k]!, rand), { item: 'a', cost: 1 });
  t.equal(leastCost(['a', 'b'], () => Infinity, rand), undefined, 'no finite cost: nothing');
  const ties = new Set<string>();
  for (let i = 0; i < 200; i++) ties.add(leastCost(['a', 'b', 'c'], (k) => (k === 'c' ? 2 : 1), rand)!.item);
  t.same([...ties].sort(), ['a', 'b'], 'equal costs are broken at random, among the cheapest only');

  const rr = new RoundRobin();
  t.same([0, 1, 2, 3].map(() => rr.next('k', ['a', 'b', 'c'])), ['a', 'b', 'c', 'a']);
  t.equal(rr.next('other', ['z']), 'z', 'one cursor per key');
  t.equal(rr.next('k', []), undefined);
});

t.test('chikai: idle local pod and 50 ms to the rest → everything local', async (t) => {
  const w = world();
  const p = new ChikaiPolicy();
  t.same(tally(1000, () => p.pick(w.states, w.ctx)), { node3: 1000 });
});

t.test('chikai: spills when the local queue costs more than the round trip, comes back when load falls', async (t) => {
  const w = world();
  const p = new ChikaiPolicy();
  w.load.inFlight['node3-p0'] = 60; // 57 ms of queue + 4 ms service > 54 ms remote
  const busy = tally(1000, () => p.pick(w.states, w.ctx));
  t.equal(busy.node3 ?? 0, 0, 'nothing local while the local pod is drowning');
  t.ok((busy.node1 ?? 0) > 300 && (busy.node2 ?? 0) > 300, `spread over the remote pods (${JSON.stringify(busy)})`);
  w.load.inFlight['node3-p0'] = 2;
  t.same(tally(100, () => p.pick(w.states, w.ctx)), { node3: 100 }, 'back to local');
});

t.test('chikai: a slow local pod (10× service time) sends traffic remote', async (t) => {
  const w = world();
  const p = new ChikaiPolicy();
  w.load.service['node3-p0'] = 80;
  t.equal(tally(100, () => p.pick(w.states, w.ctx)).node3 ?? 0, 0);
});

t.test('chikai: unreachable nodes are avoided; with nothing else left it still tries', async (t) => {
  const w = world();
  const p = new ChikaiPolicy();
  w.load.unreachable.add('node1');
  w.load.inFlight['node3-p0'] = 100;
  t.same(tally(200, () => p.pick(w.states, w.ctx)), { node2: 200 });
  t.same(tally(50, () => p.pick([w.byPod('node1-p0')], w.ctx)), { node1: 50 }, 'with nothing else left it still tries');
  t.equal(p.pick([], w.ctx), undefined, 'no candidate: wait');
});

t.test('knative: CC 0 → choice of two by its own in-flight; 1–3 → first free; > 3 → round robin', async (t) => {
  const w = world(0);
  const p = new KnativePolicy(seededRandom(2));
  w.load.own['node1-p0'] = 5;
  w.load.own['node2-p0'] = 5;
  w.load.inFlight['node3-p0'] = 50; // other proxies' load: the activator does not see it
  const r = tally(600, () => p.pick(w.states, w.ctx));
  t.ok((r.node3 ?? 0) > 350, `the pod with the fewest of its own requests wins most pairs (${JSON.stringify(r)})`);
  t.ok((r.node1 ?? 0) > 0, 'but not always: only two are compared');
  const w2 = world(2);
  t.same(tally(10, () => new KnativePolicy().pick(w2.states, w2.ctx)), { node1: 10 }, 'CC 2: first pod with a free slot');
  const w3 = world(10);
  const rr = new KnativePolicy();
  t.same([0, 1, 2, 3].map(() => rr.pick(w3.states, w3.ctx)!.node), ['node1', 'node2', 'node3', 'node1'], 'CC 10: round robin');
});

t.test('round-robin cycles; local-only uses only node-local pods', async (t) => {
  const w = world();
  const rr = new RoundRobinPolicy();
  t.same(tally(300, () => rr.pick(w.states, w.ctx)), { node1: 100, node2: 100, node3: 100 });
  const lo = new LocalOnlyPolicy();
  t.same(w.states.filter((e) => lo.eligible(e, w.ctx)).map((e) => e.node), ['node3']);
  w.load.own['node3-p0'] = 1000;
  t.same(tally(50, () => lo.pick(w.states.filter((e) => lo.eligible(e, w.ctx)), w.ctx)), { node3: 50 }, 'never spills, however loaded');
});

t.test('faast: the published weights, w ∝ 1/(D+P), recomputed every 2 s over a 10 s window', async (t) => {
  const d = new Map([['node3', 0], ['node1', 50], ['node2', 50]]);
  const p = new Map([['node3', 4], ['node1', 4], ['node2', 4]]);
  const w = faastWeights(d, p, new Set(['node1', 'node2', 'node3']));
  // 1/4 : 1/54 : 1/54 → 87 : 6 : 6 after the floor, renormalised: 88 % local, 6 % each
  // remote (the weakness DESIGN.md names).
  t.same([...w.entries()].map(([n, v]) => [n, Math.round(v * 10) / 10]), [['node1', 6.1], ['node2', 6.1], ['node3', 87.9]]);
  t.equal(Math.round([...w.values()].reduce((a, b) => a + b, 0)), 100, 'rows renormalised to 100');
  const zero = faastWeights(new Map([['a', 0], ['b', 100000]]), new Map(), new Set(['a', 'b']));
  t.ok(zero.get('b')! > 0, 'a node with pods but weight 0 gets 1');
  const clock = new ManualClock();
  const pol = new FaastPolicy(seededRandom(3), clock);
  const ww = world();
  // What the proxy saw: 4 ms at the pods, plus 50 ms of network for the remote ones.
  pol.observe(ww.byPod('node3-p0'), 4);
  pol.observe(ww.byPod('node1-p0'), 54);
  pol.observe(ww.byPod('node2-p0'), 54);
  const r = tally(4000, () => pol.pick(ww.states, ww.ctx));
  t.ok(r.node3! > 3200 && r.node3! < 3800, `requests follow the weights: ${JSON.stringify(r)}`);
  t.ok((r.node1 ?? 0) > 100, 'a fixed share goes remote even with an idle local pod');
  // The local pod turns slow; the weights move only at the next recomputation.
  for (let i = 0; i < 50; i++) pol.observe(ww.byPod('node3-p0'), 400);
  clock.advance(1999);
  t.ok(tally(1000, () => pol.pick(ww.states, ww.ctx)).node3! > 800, 'within 2 s the old weights hold');
  clock.advance(1);
  t.ok((tally(1000, () => pol.pick(ww.states, ww.ctx)).node3 ?? 0) < 500, 'recomputed: the slow node loses its share');
  clock.advance(12_000);
  t.ok(tally(1000, () => pol.pick(ww.states, ww.ctx)).node3! > 800, 'samples older than the 10 s window are forgotten');
});

t.test('peak-ewma: slower samples jump to the peak, faster ones blend in with τ = 10 s', async (t) => {
  const clock = new ManualClock();
  const w = world();
  const p = new PeakEwmaPolicy(seededRandom(4), clock);
  const a = w.byPod('node1-p0');
  t.equal(p.latency.estimate(a.pod), 30, 'default 30 ms before any sample');
  p.observe(a, 100);
  t.equal(p.latency.estimate(a.pod), 100, 'peak');
  clock.advance(10_000);
  p.observe(a, 10);
  t.ok(Math.abs(p.latency.estimate(a.pod) - (100 * Math.exp(-1) + 10 * (1 - Math.exp(-1)))) < 1e-9, 'EWMA with τ = 10 s');
  p.observe(a, 60);
  t.equal(p.latency.estimate(a.pod), 60, 'a sample above the current estimate is the new peak');
  p.observe(w.byPod('node2-p0'), 5);
  p.observe(w.byPod('node3-p0'), 5);
  const r = tally(600, () => p.pick(w.states, w.ctx));
  t.ok((r.node1 ?? 0) < 100, `the slow endpoint loses most pairs: ${JSON.stringify(r)}`);
  w.load.own['node3-p0'] = 20;
  const busy = tally(600, () => p.pick(w.states, w.ctx));
  t.ok((busy.node3 ?? 0) < 100, `cost = estimate × (pending + 1): a pod with many pending requests loses: ${JSON.stringify(busy)}`);
});

t.test('peak-ewma: the estimate decays with no traffic, so a pod slow once gets picks again', async (t) => {
  const clock = new ManualClock();
  const w = world();
  const p = new PeakEwmaPolicy(seededRandom(5), clock);
  const [slow, other] = [w.byPod('node1-p0'), w.byPod('node2-p0')];
  const pair = [slow, other];
  p.observe(slow, 500);
  p.observe(other, 5);
  t.same(tally(1000, () => p.pick(pair, w.ctx)), { node2: 1000 }, 'right after one 500 ms response the slow pod gets nothing');
  clock.advance(60_000);
  p.observe(other, 5); // the other pod keeps answering in 5 ms
  t.ok(p.latency.estimate(slow.pod) < 2, `after 60 s of silence 500 ms decayed to ${p.latency.estimate(slow.pod).toFixed(2)} ms (500 · e^−6)`);
  const later = tally(1000, () => p.pick(pair, w.ctx));
  t.ok((later.node1 ?? 0) > 400, `and the pod gets picks again: ${JSON.stringify(later)}`);
});

t.test('chikai: under sustained overload the local pod keeps a short queue and the excess goes remote at once', async (t) => {
  const w = world();
  const p = new ChikaiPolicy();
  // node3's pod: 4 slots, 4 ms a request, so 1000 arrivals/s offer exactly what it serves.
  const offered = { perSecond: 1200 };
  const ctx = { ...w.ctx, load: { ...w.ctx.load, arrivalsPerSecond: (_rev: string, node: string) => (node === 'node3' ? offered.perSecond : undefined) } };
  w.load.inFlight['node3-p0'] = 16; // 4 slots: 13 ms of waiting, far below the 50 ms link
  const overloaded = tally(200, () => p.pick(w.states, ctx));
  t.equal(overloaded.node3 ?? 0, 0, `16 per 4 slots held, offered 1.2× what they serve: remote (${JSON.stringify(overloaded)})`);
  offered.perSecond = 500;
  t.same(tally(100, () => p.pick(w.states, ctx)), { node3: 100 }, 'the same queue as a passing burst (half of what the pod serves arrives): it drains, so local still wins');
  offered.perSecond = 1200;
  w.load.inFlight['node3-p0'] = 15;
  t.same(tally(100, () => p.pick(w.states, ctx)), { node3: 100 }, 'below the bound: local');
});
