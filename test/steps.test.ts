// Each step of the request path in process (proxy/steps/), on a scripted Exchange and a
// manual clock, then the whole chain (proxy/chain.ts) with real slots and queue: what a
// request of any protocol goes through.
import t from 'tap';
import http, { type IncomingMessage } from 'node:http';
import net from 'node:net';
import { ClusterModel, type ClusterState, type RevisionInfo } from '../cluster/model.js';
import { DEFAULT_QUEUE_CONFIG, QueueDeadlineError, QueueFullError, type QueueEntry } from '../queue/index.js';
import { requestChain } from '../proxy/chain.js';
import { EndpointState, EndpointTable } from '../proxy/endpoints.js';
import {
  ClientGoneError,
  RequestTimeoutError,
  statusOf,
  type Answer,
  type Exchange,
  type ForwardResult,
  type Handler,
  type Outcome,
  type RequestHeaders,
  type ResponseObserver,
  type Route,
  type Routed,
  RequestSignal,
  WriteWatch,
} from '../proxy/exchange.js';
import { NodeLoadTracker } from '../proxy/load.js';
import { ProxyMetrics } from '../proxy/metrics.js';
import { KnativePolicy } from '../proxy/policy/knative.js';
import { RevisionQueues } from '../proxy/queueing.js';
import { NoEligibleEndpointError, PodSlots } from '../proxy/slots.js';
import { admissionFailure } from '../proxy/steps/admit.js';
import { attemptOutcome } from '../proxy/steps/attempt.js';
import { bodyLimitStep } from '../proxy/steps/body-limit.js';
import { coldStartStep } from '../proxy/steps/cold-start.js';
import { concurrencyStep, type ConcurrencyReporter } from '../proxy/steps/concurrency.js';
import { Lifecycle } from '../proxy/steps/lifecycle.js';
import { metricsStep } from '../proxy/steps/metrics.js';
import { probeStep } from '../proxy/steps/probe.js';
import { requestTargetStep } from '../proxy/steps/request-target.js';
import { resolveStep } from '../proxy/steps/resolve.js';
import { respondStep } from '../proxy/steps/respond.js';
import { retryStep } from '../proxy/steps/retry.js';
import { timeoutStep } from '../proxy/steps/timeout.js';
import { UnansweredRequests } from '../proxy/unanswered.js';
import { ManualClock, settle } from './fixtures/clock.js';
import { REV, clusterState, endpoint, hello } from './fixtures/cluster-state.js';

function state(endpoints: ClusterState['endpoints'] = []): ClusterState {
  return clusterState({ nodes: 1, externalDomains: ['example.com'], revisions: [hello({ timeoutSeconds: 2 })], endpoints });
}

/** A request as Node would parse it (no socket behind it). */
function incoming(headers: Record<string, string>, o: { method?: string; url?: string } = {}): IncomingMessage {
  const req = new http.IncomingMessage(new net.Socket());
  req.method = o.method ?? 'GET';
  req.url = o.url ?? '/';
  req.headers = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  req.headersDistinct = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), [v]]));
  req.rawHeaders = Object.entries(headers).flat();
  return req;
}

/** An Exchange whose answers are recorded and whose forwarding is scripted. */
class ScriptedExchange implements Exchange {
  route: Route | undefined = undefined;
  readonly writes = new WriteWatch();
  readonly answers: Answer[] = [];
  cuts = 0;
  closeAsked = false;
  readonly forwarded: { pod: string; headers: RequestHeaders }[] = [];
  private readonly ctl = new RequestSignal();

  constructor(
    readonly req: IncomingMessage,
    readonly arrivedAt: number,
    private readonly script: (to: EndpointState, signal: RequestSignal, onResponse: ResponseObserver) => Promise<ForwardResult> = async () => ({ kind: 'done', status: 200 }),
    readonly protocol: 'http1' | 'upgrade' = 'http1',
  ) {}

  get signal(): RequestSignal { return this.ctl; }
  abort(reason: Error): void { this.ctl.abort(reason); }
  answer(a: Answer): void { this.answers.push(a); }
  cut(): void { this.cuts++; }
  closeAfterResponse(): void { this.closeAsked = true; }
  forward(to: EndpointState, headers: RequestHeaders, signal: RequestSignal, onResponse: ResponseObserver): Promise<ForwardResult> {
    this.forwarded.push({ pod: to.pod, headers });
    return this.script(to, signal, onResponse);
  }
}

const HOST = { host: 'hello.default.svc.cluster.local' };
const outcome = (o: Outcome): Handler<unknown> => async () => o;
const relayed: Outcome = { kind: 'relayed', status: 200, node: 'node1' };

/** A Routed request for steps that come after resolution. */
function routed(x: Exchange, model = new ClusterModel(state())): Routed {
  let r: Routed | undefined;
  void resolveStep(model, async (rr) => ((r = rr), relayed))(x);
  return r!;
}

t.test('respond: the outcome becomes the answer, and only here', async (t) => {
  const cases: [Outcome, Partial<Answer> | 'cut' | 'nothing'][] = [
    [{ kind: 'answered', status: 404, body: 'chikai: no revision for host x\n', node: 'none' }, { status: 404, body: 'chikai: no revision for host x\n' }],
    [{ kind: 'failed', pod: 'p1', node: 'node2', reason: 'ECONNRESET', detail: 'ECONNRESET socket hang up', retryable: false }, { status: 502, body: 'chikai: pod p1 on node2 failed: ECONNRESET socket hang up\n' }],
    [{ kind: 'timed-out', node: 'node2' }, { status: 504, body: 'activator request timeout\n' }],
    [{ kind: 'cut', status: 200, node: 'node2' }, 'cut'],
    [relayed, 'nothing'],
    [{ kind: 'gone', node: 'none' }, 'nothing'],
  ];
  for (const [o, expected] of cases) {
    const x = new ScriptedExchange(incoming(HOST), 0);
    t.same(await respondStep(outcome(o))(x), o, `${o.kind}: handed back up`);
    if (expected === 'cut') t.same([x.cuts, x.answers.length], [1, 0], `${o.kind}: connection cut`);
    else if (expected === 'nothing') t.same([x.cuts, x.answers.length], [0, 0], `${o.kind}: nothing more to write`);
    else t.match(x.answers, [expected], `${o.kind}: ${expected.status}`);
  }
  const logged: string[] = [];
  const x = new ScriptedExchange(incoming(HOST), 0);
  const o = await respondStep(async () => { throw new Error('a bug'); }, (l) => logged.push(l))(x);
  t.equal(statusOf(o), 500);
  t.match(x.answers, [{ status: 500, close: true }], 'a bug in a step is answered 500, the process goes on');
  t.match(logged[0], /a bug/);
});

t.test('probe: the activator\'s and the kubelet\'s probes are answered here, 503 while draining', async (t) => {
  let draining = false;
  const step = probeStep(() => draining, outcome(relayed));
  const run = async (h: Record<string, string>) => step(new ScriptedExchange(incoming(h), 0));
  t.match(await run({ ...HOST, 'k-network-probe': 'activator' }), { kind: 'answered', status: 200, body: 'activator' });
  t.match(await run({ 'user-agent': 'kube-probe/1.30' }), { kind: 'answered', status: 200, body: 'ok' });
  t.same(await run({ 'user-agent': 'kube-probe/1.30', 'knative-serving-namespace': 'default', 'knative-serving-revision': 'hello-00001' }), relayed, 'a kubelet probe for a revision goes to the revision');
  t.same(await run(HOST), relayed, 'anything else passes on');
  t.match(await run({ ...HOST, 'k-network-probe': 'probe', 'k-network-hash': 'abc123' }), { kind: 'answered', status: 200, headers: { 'k-network-hash': 'abc123' } }, 'the ingress status probe: its hash echoed');
  t.match(await run({ ...HOST, 'k-network-probe': 'probe' }), { kind: 'answered', status: 400, body: /K-Network-Hash/ }, 'an ingress probe without a hash: 400');
  draining = true;
  t.match(await run({ 'k-network-probe': 'activator' }), { status: 503 });
  t.match(await run({ 'user-agent': 'kube-probe/1.30' }), { status: 503, body: 'draining' });
});

t.test('lifecycle: counts requests being handled, idle() waits for them, draining asks clients to close', async (t) => {
  const lc = new Lifecycle();
  let finish!: () => void;
  const step = lc.step(() => new Promise<Outcome>((r) => (finish = () => r(relayed))));
  const x = new ScriptedExchange(incoming(HOST), 0);
  const running = step(x);
  t.equal(lc.active, 1);
  let idle = false;
  void lc.idle().then(() => (idle = true));
  await settle();
  t.notOk(idle, 'not idle while a request is handled');
  finish();
  await running;
  await settle();
  t.ok(idle);
  t.equal(lc.active, 0);
  t.notOk(x.closeAsked);
  lc.draining = true;
  const y = new ScriptedExchange(incoming(HOST), 0);
  await lc.step(outcome(relayed))(y);
  t.ok(y.closeAsked, 'Connection: close while draining');
});

t.test('metrics: one count per request by revision, target node and status, with its duration', async (t) => {
  const clock = new ManualClock(0);
  const metrics = new ProxyMetrics('node1', false, () => [], () => []);
  const model = new ClusterModel(state());
  const step = metricsStep(metrics, clock, resolveStep(model, async () => {
    clock.advance(250);
    return { kind: 'relayed', status: 201, node: 'node2' };
  }));
  await step(new ScriptedExchange(incoming(HOST), 0));
  await step(new ScriptedExchange(incoming({ host: 'nope.default' }), 0));
  const text = await metrics.registry.metrics();
  t.match(text, /chikai_requests_total\{revision="default\/hello-00001",target_node="node2",code="201",node="node1"\} 1/);
  t.match(text, /chikai_requests_total\{revision="unknown",target_node="none",code="404",node="node1"\} 1/, 'before a revision is known: "unknown"');
  t.match(text, /chikai_request_duration_seconds_sum\{node="node1",revision="default\/hello-00001",target_node="node2"\} 0\.25\n/, "its duration on the proxy's clock");
});

t.test('request target: two Hosts or a target that is no path or http URL → 400, connection closed', async (t) => {
  const step = requestTargetStep(outcome(relayed));
  const two = incoming({ host: 'a' });
  two.rawHeaders = ['Host', 'a', 'host', 'b'];
  t.match(await step(new ScriptedExchange(two, 0)), { kind: 'answered', status: 400, close: true, body: /2 Host headers/ });
  t.match(await step(new ScriptedExchange(incoming({ host: 'a' }, { url: 'ftp://x/' }), 0)), { status: 400, body: /only http\(s\) URLs/ });
  const abs = incoming({ host: 'ignored' }, { url: 'http://hello.default/a/../b?q=1' });
  t.same(await step(new ScriptedExchange(abs, 0)), relayed);
  t.same([abs.headers.host, abs.url], ['hello.default', '/a/../b?q=1'], 'absolute form: its authority routes, the path goes on as sent');
});

t.test('resolve: 404 naming what was asked; a found revision gives the request its context', async (t) => {
  const model = new ClusterModel(state());
  let seen: Routed | undefined;
  const step = resolveStep(model, async (r) => ((seen = r), relayed));
  t.match(await step(new ScriptedExchange(incoming({ host: 'nope.default.svc' }), 0)), { status: 404, body: 'chikai: no revision for host nope.default.svc\n' });
  t.match(await step(new ScriptedExchange(incoming({ host: 'x', 'knative-serving-namespace': 'default', 'knative-serving-revision': 'hello-00099' }), 0)), { status: 404, body: /revision default\/hello-00099/ });
  const x = new ScriptedExchange(incoming({ host: 'HELLO.default.example.com:80', 'knative-serving-namespace': 'default', 'knative-serving-revision': 'hello-00001', 'x-kept': '1' }), 1000);
  await step(x);
  t.equal(seen?.route.revisionKey, REV, 'the Knative headers win over Host');
  t.equal(x.route, seen?.route, 'the exchange carries the route for the outer steps');
  t.equal(seen?.route.entry.deadline, 1000 + 2000, 'the deadline: arrival + timeoutSeconds');
  t.same(seen?.route.entry.headers, { host: 'HELLO.default.example.com:80', 'x-kept': '1', 'k-proxy-request': 'activator', 'x-forwarded-proto': 'http' }, 'the upstream headers: Knative routing headers gone, activator ones set');
  await step(new ScriptedExchange(incoming({ host: 'hello.default.example.com.' }), 0));
  t.equal(seen?.route.revisionKey, REV, 'Host with a trailing dot');
});

t.test('body limit: a declared body over the limit is refused before anything else, 0 = no limit', async (t) => {
  const model = new ClusterModel(state());
  const r = (len: string) => routed(new ScriptedExchange(incoming({ ...HOST, 'content-length': len }, { method: 'POST' }), 0), model);
  t.match(await bodyLimitStep(100, outcome(relayed))(r('101')), { kind: 'answered', status: 413, close: true, body: 'chikai: request body larger than 100 bytes\n' });
  t.same(await bodyLimitStep(100, outcome(relayed))(r('100')), relayed);
  t.same(await bodyLimitStep(0, outcome(relayed))(r('999999999')), relayed);
});

t.test('concurrency: every request is reported while in the proxy; one for a revision without a ready pod is a cold start', async (t) => {
  const calls: string[] = [];
  const reporter: ConcurrencyReporter = {
    requestStarted: (k) => (calls.push(`start ${k}`), () => calls.push(`end ${k}`)),
    coldStart: (k) => calls.push(`cold ${k}`),
  };
  const atZero = new ClusterModel(state());
  await concurrencyStep(reporter, async () => (calls.push('inner'), relayed))(routed(new ScriptedExchange(incoming(HOST), 0), atZero));
  t.same(calls, [`start ${REV}`, `cold ${REV}`, 'inner', `end ${REV}`]);
  calls.length = 0;
  const up = new ClusterModel(state([endpoint('p')]));
  await concurrencyStep(reporter, async () => { throw new Error('inner failed'); })(routed(new ScriptedExchange(incoming(HOST), 0), up)).catch(() => undefined);
  t.same(calls, [`start ${REV}`, `end ${REV}`], 'a ready pod: no cold start; the end is reported even when a step throws');
  const inner = outcome(relayed);
  t.equal(concurrencyStep(undefined, inner), inner, 'no autoscaler: the step is left out');
});

t.test('cold start: a request at zero is held until its response starts, and that wait is the cold-start duration', async (t) => {
  const clock = new ManualClock(0);
  const metrics = new ProxyMetrics('node1', false, () => new Map(), () => []);
  const value = async (name: string) => {
    const base = name.replace(/_(sum|count)$/, '');
    const values = (await metrics.registry.getSingleMetric(base)!.get()).values as { value: number; labels: Record<string, unknown>; metricName?: string }[];
    return values.find((v) => (v.metricName ?? base) === name && v.labels['revision'] === REV)?.value;
  };
  let started: () => void = () => undefined;
  let finish: () => void = () => undefined;
  // The pod answers 1.25 s after arrival (the cold start), and the body takes 2 s more.
  const x = new ScriptedExchange(incoming(HOST), 0, async (_to, _signal, onResponse) => {
    await new Promise<void>((r) => (started = r));
    onResponse(200, {}, 1);
    await new Promise<void>((r) => (finish = r));
    return { kind: 'done', status: 200 };
  });
  const step = coldStartStep(metrics, clock, async (r) => {
    await r.x.forward(new EndpointState(endpoint('p'), undefined), {}, r.x.signal, () => undefined);
    return relayed;
  });
  const done = step(routed(x, new ClusterModel(state())));
  await settle();
  t.equal(await value('chikai_requests_held_at_zero'), 1, 'held while its revision has no ready pod');
  clock.advance(1250);
  started();
  await settle();
  t.equal(await value('chikai_requests_held_at_zero'), 0, 'no longer held once the response started');
  clock.advance(2000);
  finish();
  await done;
  t.equal(await value('chikai_cold_start_seconds_sum'), 1.25, 'arrival at zero → response start, not → response end');
  t.equal(await value('chikai_cold_start_seconds_count'), 1);

  const warm = coldStartStep(metrics, clock, outcome(relayed));
  await warm(routed(new ScriptedExchange(incoming(HOST), clock.now()), new ClusterModel(state([endpoint('p')]))));
  t.equal(await value('chikai_cold_start_seconds_count'), 1, 'a request with a ready pod is no cold start');
  const failing = coldStartStep(metrics, clock, async () => { throw new Error('inner failed'); });
  await failing(routed(new ScriptedExchange(incoming(HOST), clock.now()), new ClusterModel(state()))).catch(() => undefined);
  t.equal(await value('chikai_requests_held_at_zero'), 0, 'a request that ends without a response is not held forever');
  t.equal(await value('chikai_cold_start_seconds_count'), 1, 'nor counted as a cold start');
});

t.test('timeout: the request is aborted at arrival + timeoutSeconds, not before, and never after it ended', async (t) => {
  const clock = new ManualClock(0);
  const x = new ScriptedExchange(incoming(HOST), 0);
  clock.advance(500); // it already waited 0.5 s before this step
  const r = routed(x);
  let finish!: () => void;
  const running = timeoutStep(clock, () => new Promise<Outcome>((res) => (finish = () => res(relayed))))(r);
  clock.advance(1499);
  t.notOk(x.signal.aborted, 'not before the 2 s timeout');
  clock.advance(1);
  t.type(x.signal.reason, RequestTimeoutError, 'aborted at 2 s from arrival');
  finish();
  await running;
  const y = new ScriptedExchange(incoming(HOST), clock.now());
  await timeoutStep(clock, outcome(relayed))(routed(y));
  t.equal(clock.timers, 0, 'the timer of a finished request is cancelled');
});

/** A Routed request for a revision with Knative's other two timeouts set. */
function routedWith(x: Exchange, over: Partial<RevisionInfo>): Routed {
  return routed(x, new ClusterModel(clusterState({ nodes: 1, revisions: [hello({ timeoutSeconds: 60, ...over })] })));
}

t.test('responseStartTimeoutSeconds: aborts only while nothing was written', async (t) => {
  const clock = new ManualClock(0);
  const hold = () => new Promise<Outcome>(() => undefined);
  const silent = new ScriptedExchange(incoming(HOST), 0);
  void timeoutStep(clock, hold)(routedWith(silent, { responseStartTimeoutSeconds: 3 }));
  clock.advance(2999);
  t.notOk(silent.signal.aborted, 'not before 3 s');
  clock.advance(1);
  t.match(silent.signal.reason, { which: 'responseStartTimeoutSeconds' }, 'no byte in 3 s: aborted (504 from the attempt)');
  t.type(silent.signal.reason, RequestTimeoutError);

  const started = new ScriptedExchange(incoming(HOST), clock.now());
  void timeoutStep(clock, hold)(routedWith(started, { responseStartTimeoutSeconds: 3 }));
  clock.advance(1000);
  started.writes.wrote(); // the status line went out (an upgrade's 101 counts the same)
  clock.advance(10_000);
  t.notOk(started.signal.aborted, 'a response that started is not cut by the response-start timeout (knative/serving#16169)');
  clock.advance(49_000);
  t.match(started.signal.reason, { which: 'timeoutSeconds' }, 'timeoutSeconds still bounds it');

  const unset = new ScriptedExchange(incoming(HOST), clock.now());
  void timeoutStep(clock, hold)(routedWith(unset, { timeoutSeconds: 600 }));
  clock.advance(299_999);
  t.notOk(unset.signal.aborted);
  clock.advance(1);
  t.match(unset.signal.reason, { which: 'responseStartTimeoutSeconds' }, 'unset: Knative\'s default 300 s');

  const off = new ScriptedExchange(incoming(HOST), clock.now());
  void timeoutStep(clock, hold)(routedWith(off, { timeoutSeconds: 600, responseStartTimeoutSeconds: 0 }));
  clock.advance(599_999);
  t.notOk(off.signal.aborted, '0: no response-start timer (a Revision Knative defaulted without one)');
  clock.advance(1);
  t.match(off.signal.reason, { which: 'timeoutSeconds' });
});

t.test('idleTimeoutSeconds: counts from the last byte written; 0 is off', async (t) => {
  const clock = new ManualClock(0);
  const hold = () => new Promise<Outcome>(() => undefined);
  const x = new ScriptedExchange(incoming(HOST), 0);
  void timeoutStep(clock, hold)(routedWith(x, { idleTimeoutSeconds: 2 }));
  clock.advance(1500);
  x.writes.wrote();
  clock.advance(1500);
  x.writes.wrote();
  clock.advance(1999);
  t.notOk(x.signal.aborted, 'every write rearms it');
  clock.advance(1);
  t.match(x.signal.reason, { which: 'idleTimeoutSeconds' }, '2 s without a byte: aborted (the attempt cuts a started response)');

  const before = new ScriptedExchange(incoming(HOST), clock.now());
  void timeoutStep(clock, hold)(routedWith(before, { idleTimeoutSeconds: 2 }));
  clock.advance(2000);
  t.match(before.signal.reason, { which: 'idleTimeoutSeconds' }, 'nothing written at all: it counts from arrival');

  const fresh = new ManualClock(0);
  const off = new ScriptedExchange(incoming(HOST), 0);
  await timeoutStep(fresh, async () => {
    t.equal(fresh.timers, 1, 'idle 0, response start defaulting to timeoutSeconds (60 s < 300 s): one timer');
    return relayed;
  })(routedWith(off, { idleTimeoutSeconds: 0 }));
  t.equal(fresh.timers, 0, 'a finished request leaves no timer behind');
});

t.test('retry: one more try elsewhere for a retryable failure, counted; never a third', async (t) => {
  const metrics = new ProxyMetrics('node1', false, () => [], () => []);
  const fail = (pod: string, retryable: boolean): Outcome => ({ kind: 'failed', pod, node: 'node1', reason: 'ECONNREFUSED', detail: 'refused', retryable });
  const excluded: string[][] = [];
  const script = (outcomes: Outcome[]) => async (_r: Routed, exclude: ReadonlySet<string>) => {
    excluded.push([...exclude]);
    return outcomes.shift()!;
  };
  const r = routed(new ScriptedExchange(incoming(HOST), 0));
  t.same(await retryStep(metrics, script([fail('a', true), relayed]))(r), relayed, 'served on the second try');
  t.same(excluded, [[], ['a']], 'the second try keeps off the pod that failed');
  excluded.length = 0;
  t.match(await retryStep(metrics, script([fail('a', true), fail('b', true)]))(r), { kind: 'failed', pod: 'b' }, 'two tries at most');
  t.match(await retryStep(metrics, script([fail('c', false)]))(r), { kind: 'failed', pod: 'c' }, 'not retryable: answered at once');
  t.match(await metrics.registry.metrics(), /chikai_retries_total\{revision="default\/hello-00001",reason="ECONNREFUSED",node="node1"\} 2/);
});

t.test('admission failures become 503s that say why; a client gone is nobody\'s answer', async (t) => {
  const live = new AbortController().signal;
  t.match(admissionFailure(new QueueFullError(10, 10, 7), live), { kind: 'answered', status: 503, headers: { 'retry-after': '7' }, body: 'chikai: queue full, retry later\n' });
  t.match(admissionFailure(new NoEligibleEndpointError(REV, 'local-only'), live), { status: 503, body: /policy local-only may use none of the ready pods.*no node-local pod/ });
  t.match(admissionFailure(new QueueDeadlineError(0, 10), live), { status: 503, body: 'chikai: no pod became available before the request timeout\n' });
  const timedOut = new AbortController();
  timedOut.abort(new RequestTimeoutError());
  t.match(admissionFailure(new Error('aborted'), timedOut.signal), { status: 503, body: /before the request timeout/ });
  const gone = new AbortController();
  gone.abort(new ClientGoneError());
  t.same(admissionFailure(new Error('aborted'), gone.signal), { kind: 'gone', node: 'none' });
});

t.test('attempt outcomes: relayed, 413, cut, timed out, gone, and which failures may be retried', async (t) => {
  const model = new ClusterModel(state([endpoint('p')]));
  const table = new EndpointTable(model, undefined, () => undefined);
  t.teardown(() => table.close());
  const e = table.get('p')!;
  const unanswered = new UnansweredRequests();
  const get = (method = 'GET', headers: Record<string, string> = HOST) => {
    const x = new ScriptedExchange(incoming(headers, { method }), 0);
    return { x, r: routed(x, model), a: unanswered.begin('node1', x.signal) };
  };
  let { r, a } = get();
  t.same(attemptOutcome({ kind: 'done', status: 204 }, r, e, a), { kind: 'relayed', status: 204, node: 'node1' });
  t.match(attemptOutcome({ kind: 'body-too-large', limit: 10 }, r, e, a), { kind: 'answered', status: 413, close: true });
  t.same(attemptOutcome({ kind: 'failed-mid-response', status: 200, error: new Error('reset') }, r, e, a), { kind: 'cut', status: 200, node: 'node1' });
  const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  t.match(attemptOutcome({ kind: 'failed-before-response', error: refused, retryable: true }, r, e, a), { kind: 'failed', pod: 'p', reason: 'ECONNREFUSED', retryable: true, detail: /ECONNREFUSED/ });
  let x: ScriptedExchange;
  ({ x, r, a } = get());
  x.abort(new RequestTimeoutError());
  t.same(attemptOutcome({ kind: 'failed-before-response', error: new Error('aborted'), retryable: false }, r, e, a), { kind: 'timed-out', node: 'node1' });
  ({ x, r, a } = get());
  x.abort(new ClientGoneError());
  t.same(attemptOutcome({ kind: 'failed-before-response', error: new Error('aborted'), retryable: false }, r, e, a), { kind: 'gone', node: 'node1' });
  ({ x, r, a } = get());
  unanswered.abandonNode('node1');
  t.match(attemptOutcome({ kind: 'failed-before-response', error: new Error('aborted'), retryable: false }, r, e, a), { kind: 'failed', reason: 'node-unreachable', retryable: true }, 'a dark node: a GET without a body goes elsewhere');
  ({ x, r, a } = get('POST', { ...HOST, 'content-length': '3' }));
  unanswered.abandonNode('node1');
  t.match(attemptOutcome({ kind: 'failed-before-response', error: new Error('aborted'), retryable: false }, r, e, a), { kind: 'failed', reason: 'node-unreachable', retryable: false }, 'a POST with a body may have been acted on: not retried');
});

t.test('the chain: an upgrade to a revision at zero passes every step an HTTP request does', async (t) => {
  const clock = new ManualClock(0);
  const model = new ClusterModel(state());
  const metrics = new ProxyMetrics('node1', false, () => slots.ownInFlightByRevision(), () => slots.ownInFlightByPod());
  const queues = new RevisionQueues(DEFAULT_QUEUE_CONFIG, metrics, clock);
  let slots!: PodSlots<QueueEntry>;
  const endpoints = new EndpointTable(model, undefined, () => slots.endpointsChanged());
  t.teardown(() => endpoints.close());
  const tracker = new NodeLoadTracker('node1', model, undefined, (pod) => slots.inFlight(pod), clock);
  const policy = new KnativePolicy();
  slots = new PodSlots({ node: 'node1', endpoints, policy, current: () => model.current, load: tracker, room: (k) => queues.room(k), clock });
  const calls: string[] = [];
  const lifecycle = new Lifecycle();
  const chain = requestChain({
    model, clock, lifecycle, metrics, maxBodyBytes: 0, slots, policy, tracker, unanswered: new UnansweredRequests(),
    concurrency: { requestStarted: (k) => (calls.push(`start ${k}`), () => calls.push(`end ${k}`)), coldStart: (k) => calls.push(`cold ${k}`) },
  });
  let tunnelOpen!: () => void;
  const x = new ScriptedExchange(incoming({ ...HOST, connection: 'upgrade', upgrade: 'websocket' }), 0, async (_to, _signal, onResponse) => {
    onResponse(101, { 'endpoint-load-metrics': 'TEXT named_metrics.in_flight=0' }, 3);
    await new Promise<void>((r) => (tunnelOpen = r));
    return { kind: 'done', status: 101 };
  }, 'upgrade');
  const running = chain(x);
  await settle();
  t.same(calls, [`start ${REV}`, `cold ${REV}`], 'the autoscaler hears of it at once: a cold start');
  t.equal(lifecycle.active, 1, 'held in the proxy');
  t.match(await metrics.registry.metrics(), /chikai_requests_buffered\{revision="default\/hello-00001",node="node1"\} 1/, 'waiting in the revision\'s queue');
  model.addEndpoint(endpoint('p'));
  await settle();
  t.same(x.forwarded.map((f) => f.pod), ['p'], 'forwarded once a pod is ready');
  t.equal(x.forwarded[0]!.headers['k-proxy-request'], 'activator');
  t.match(await metrics.registry.metrics(), /chikai_requests_in_flight\{revision="default\/hello-00001",node="node1"\} 1/, 'holding a slot while the tunnel is open');
  t.match(await metrics.registry.metrics(), /chikai_pod_requests_in_flight\{revision="default\/hello-00001",pod="p",node="node1"\} 1/, 'and per pod');
  clock.advance(5000); // the 2 s revision timeout passes while the tunnel is open
  tunnelOpen();
  t.same(await running, { kind: 'relayed', status: 101, node: 'node1' }, 'an upgraded tunnel ends as relayed, never as a 504');
  t.same(calls, [`start ${REV}`, `cold ${REV}`, `end ${REV}`]);
  t.notMatch(await metrics.registry.metrics(), /chikai_pod_requests_in_flight\{[^}]*pod="p"/, 'a pod with nothing in flight drops out of the per-pod gauge');
  t.match(await metrics.registry.metrics(), /chikai_requests_total\{revision="default\/hello-00001",target_node="node1",code="101",node="node1"\} 1/, 'counted like any request');
  t.equal(slots.ownInFlight('p'), 0, 'the slot is given back when the tunnel closes');
});
