// Every policy on deterministic scenarios: fixed RTTs and loads, no sockets.
import t from 'tap';
import type { LoadView } from '../cluster/load.js';
import { ClusterSnapshot, type EndpointInfo } from '../cluster/model.js';
import { EndpointState } from '../proxy/endpoints.js';
import { ChikaiPolicy } from '../proxy/policy/chikai.js';
import { FaastPolicy, faastWeights } from '../proxy/policy/faast.js';
import { KnativePolicy } from '../proxy/policy/knative.js';
import { LocalOnlyPolicy } from '../proxy/policy/local-only.js';
import { PeakEwmaPolicy } from '../proxy/policy/peak-ewma.js';
import { RoundRobinPolicy } from '../proxy/policy/round-robin.js';
import type { PickContext } from '../proxy/policy/policy.js';

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
  const load = { rtt: { node1: 50, node2: 50, node3: 0 } as Record<string, number>, inFlight: {} as Record<string, number>, service: {} as Record<string, number>, unreachable: new Set<string>() };
  const view: LoadView = {
    rttMs: (from, to) => (from === to ? 0 : load.rtt[to]),
    reachable: (_from, to) => !load.unreachable.has(to),
    inFlight: (pod) => load.inFlight[pod] ?? 0,
    serviceTimeMs: (pod) => load.service[pod] ?? 4,
    capacity: () => 4,
  };
  const ctx: PickContext = { node: 'node3', revision: snapshot.revisions[0], revisionKey: 'default/hello-00001', snapshot, load: view };
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

t.test('chikai: unreachable nodes are avoided; candidates excluded by the throttle are never picked', async (t) => {
  const w = world();
  const p = new ChikaiPolicy();
  w.load.unreachable.add('node1');
  w.load.inFlight['node3-p0'] = 100;
  t.same(tally(200, () => p.pick(w.states, w.ctx)), { node2: 200 });
  t.same(tally(50, () => p.pick([w.byPod('node1-p0')], w.ctx)), { node1: 50 }, 'with nothing else left it still tries');
  t.equal(p.pick([], w.ctx), undefined, 'no candidate: wait');
});

t.test('knative: CC 0 → choice of two by in-flight; 1–3 → first free; > 3 → round robin', async (t) => {
  const w = world(0);
  const p = new KnativePolicy();
  w.byPod('node1-p0').inFlight = 5;
  w.byPod('node2-p0').inFlight = 5;
  const r = tally(600, () => p.pick(w.states, w.ctx));
  t.ok((r.node3 ?? 0) > 350, `the least loaded pod wins most pairs (${JSON.stringify(r)})`);
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
  w.load.inFlight['node3-p0'] = 1000;
  t.same(tally(50, () => lo.pick(w.states.filter((e) => lo.eligible(e, w.ctx)))), { node3: 50 }, 'never spills, however loaded');
});

t.test('faast: the published weights, w ∝ 1/(D+P)', async (t) => {
  const d = new Map([['node3', 0], ['node1', 50], ['node2', 50]]);
  const p = new Map([['node3', 4], ['node1', 4], ['node2', 4]]);
  const w = faastWeights(d, p, new Set(['node1', 'node2', 'node3']));
  // 1/4 : 1/54 : 1/54 → 87 % local, ~6.5 % each remote (the weakness DESIGN.md names).
  t.ok(Math.abs(w.get('node3')! - 87.1) < 1.5, `local ${w.get('node3')!.toFixed(1)} %`);
  t.ok(Math.abs(w.get('node1')! - 6.45) < 1, `remote ${w.get('node1')!.toFixed(1)} %`);
  t.equal(Math.round([...w.values()].reduce((a, b) => a + b, 0)), 100, 'rows renormalised to 100');
  const zero = faastWeights(new Map([['a', 0], ['b', 100000]]), new Map(), new Set(['a', 'b']));
  t.ok(zero.get('b')! > 0, 'a node with pods but weight 0 gets 1');
  const pol = new FaastPolicy(Math.random, () => 0);
  const ww = world();
  // What the proxy saw: 4 ms at the pods, plus 50 ms of network for the remote ones.
  pol.observe(ww.byPod('node3-p0'), 4);
  pol.observe(ww.byPod('node1-p0'), 54);
  pol.observe(ww.byPod('node2-p0'), 54);
  const r = tally(4000, () => pol.pick(ww.states, ww.ctx));
  t.ok(r.node3! > 3200 && r.node3! < 3800, `requests follow the weights: ${JSON.stringify(r)}`);
  t.ok((r.node1 ?? 0) > 100, 'a fixed share goes remote even with an idle local pod');
});

t.test('peak-ewma: slower samples jump to the peak, faster ones decay with τ = 10 s', async (t) => {
  let now = 0;
  const w = world();
  const p = new PeakEwmaPolicy(Math.random, () => now);
  const a = w.byPod('node1-p0');
  t.equal(p.estimate(a.pod), 30, 'default 30 ms before any sample');
  p.observe(a, 100);
  t.equal(p.estimate(a.pod), 100, 'peak');
  now = 10_000;
  p.observe(a, 10);
  t.ok(Math.abs(p.estimate(a.pod) - (100 * Math.exp(-1) + 10 * (1 - Math.exp(-1)))) < 1e-9, 'EWMA with τ = 10 s');
  p.observe(w.byPod('node2-p0'), 5);
  p.observe(w.byPod('node3-p0'), 5);
  const r = tally(600, () => p.pick(w.states, w.ctx));
  t.ok((r.node1 ?? 0) < 100, `the slow endpoint loses most pairs: ${JSON.stringify(r)}`);
});
