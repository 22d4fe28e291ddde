// The emulated Knative pod (user container + queue-proxy behaviour) and the emulated
// cluster that exposes pods through the latency-injecting network. Real sockets; how long
// a pod holds a request is decided on its clock, so the timing tests move a manual clock.
// (The pod's CPU per request in real time is bench output: --scenario emulation.)
import t, { type Test } from 'tap';
import http from 'node:http';
import net from 'node:net';
import { Readable } from 'node:stream';
import { Agent, request } from 'undici';
import WebSocket from 'ws';
import { ClusterModel } from '../cluster/model.js';
import { clusterState } from './fixtures/cluster-state.js';
import { EmulatedPod, HELD_TIME_HEADER, LOAD_HEADER, POD_HEADER, SERVICE_TIME_HEADER } from '../cluster/emulated/pod.js';
import { parseOrcaHeader } from '../cluster/orca.js';
import { startEmulatedCluster } from '../cluster/emulated/cluster.js';
import { ManualClock } from './fixtures/clock.js';
import type { Clock } from '../cluster/clock.js';
import { until } from './support.js';

async function startPod(t: Test, opts: Partial<ConstructorParameters<typeof EmulatedPod>[0]> = {}): Promise<{ pod: EmulatedPod; base: string }> {
  const pod = new EmulatedPod({ name: 'hello-00001-node1-abcde', node: 'node1', revision: 'default/hello-00001', host: '127.0.2.1', ...opts });
  const port = await pod.start();
  t.teardown(() => pod.close(0));
  return { pod, base: `http://127.0.2.1:${port}` };
}

// A fresh connection per request so concurrency is real, not pipelined.
const noKeepAlive = new Agent({ pipelining: 0 });
t.teardown(() => noKeepAlive.close());

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const res = await request(url, { headers, dispatcher: noKeepAlive });
  const body = await res.body.text();
  return { status: res.statusCode, body, headers: res.headers as http.IncomingHttpHeaders };
}

t.test('default route: Konnichiwa after the service time, with pod header and ORCA load', async (t) => {
  const clock = new ManualClock();
  const { pod, base } = await startPod(t, { serviceTimeMs: { min: 4, max: 4 }, capacity: 2, clock });
  const pending = get(`${base}/anything`);
  await until('the pod to take the request', () => pod.busy === 1);
  clock.advance(3.9);
  t.equal(pod.busy, 1, 'still held at 3.9 ms');
  clock.advance(0.1);
  t.equal(pod.busy, 0, 'answered at its 4 ms service time');
  const res = await pending;
  t.equal(res.status, 200);
  t.equal(res.body, 'Konnichiwa from hello-00001-node1-abcde in node1\n');
  t.equal(res.headers[POD_HEADER], 'hello-00001-node1-abcde');
  t.same([res.headers[SERVICE_TIME_HEADER], res.headers[HELD_TIME_HEADER]], ['4', '4'], 'drawn and held: 4 ms on its clock');
  const load = parseOrcaHeader(res.headers[LOAD_HEADER] as string);
  t.ok(load, `ORCA header parses: ${res.headers[LOAD_HEADER]}`);
  t.match(res.headers[LOAD_HEADER], /^TEXT cpu_utilization=[\d.]+, rps_fractional=[\d.]+, named_metrics\.in_flight=\d+, named_metrics\.capacity=2, named_metrics\.service_ms=[\d.]+$/);
  t.equal(load!.named.service_ms, Number(res.headers[SERVICE_TIME_HEADER]), 'and the service time it drew for this request');
  t.equal(load!.cpuUtilization, 0, 'idle after answering');
  t.equal(load!.named.capacity, 2);
  t.equal(load!.named.in_flight, 0);
  t.equal(load!.rpsFractional, 1, 'one request in the last second');
  t.equal(pod.served, 1);
  t.equal(pod.inFlight, 0);
});

t.test('service times follow the configured distribution; each request is held exactly its drawn time', async (t) => {
  const clock = new ManualClock();
  const { pod, base } = await startPod(t, { serviceTimeMs: { min: 20, max: 40 }, capacity: 20, clock });
  const all = Promise.all(
    Array.from({ length: 20 }, async () => {
      const res = await request(`${base}/`);
      await res.body.text();
      return { service: Number(res.headers[SERVICE_TIME_HEADER]), held: Number(res.headers[HELD_TIME_HEADER]) };
    }),
  );
  await until('all 20 in service', () => pod.busy === 20);
  clock.advance(19.9);
  t.equal(pod.busy, 20, 'none answered before the minimum');
  clock.advance(20.1);
  t.equal(pod.busy, 0, 'all answered by the maximum');
  const drawn = await all;
  t.ok(drawn.every((d) => d.service >= 20 && d.service <= 40), `every drawn service time in 20–40 ms: ${drawn.map((d) => d.service).join(', ')}`);
  t.ok(new Set(drawn.map((d) => d.service)).size > 5, 'drawn from a distribution, not one value');
  t.ok(drawn.every((d) => Math.abs(d.held - d.service) < 0.002), 'a request is held for exactly its service time on the pod\'s clock');
});

t.test('queue-proxy probes', async (t) => {
  const { pod, base } = await startPod(t);
  let res = await get(`${base}/healthz`, { 'K-Network-Probe': 'queue' });
  t.equal(res.status, 200);
  t.equal(res.body, 'queue');
  res = await get(`${base}/`, { 'K-Network-Probe': 'activator' });
  t.same([res.status, res.body], [200, 'queue'], 'any other K-Network-Probe is answered by the queue-proxy');
  res = await get(`${base}/healthz`, { 'K-Network-Probe': 'probe', 'K-Network-Hash': 'abc' });
  t.same([res.status, res.headers['k-network-hash']], [200, 'abc'], 'Knative\'s ingress probe: the hash echoed');
  res = await get(`${base}/healthz`, { 'K-Network-Probe': 'probe' });
  t.equal(res.status, 400, 'and 400 without one');
  res = await get(`${base}/healthz`, { 'User-Agent': 'kube-probe/1.30' });
  t.same([res.status, res.body], [200, 'queue'], 'kubelet probe');
  pod.setReady(false);
  res = await get(`${base}/healthz`, { 'K-Network-Probe': 'queue' });
  t.equal(res.status, 503, 'not ready → 503');
  res = await get(`${base}/`);
  t.equal(res.status, 200, 'a pod that is not ready still serves requests');
  pod.setReady(true);
  res = await get(`${base}/healthz`, { 'K-Network-Probe': 'queue' });
  t.equal(res.status, 200, 'ready again');
  t.equal(pod.served, 1, 'probes are not counted as served');
});

t.test('/echo streams the body back as it arrives', async (t) => {
  const { base } = await startPod(t);
  const url = new URL(`${base}/echo`);
  const req = http.request({ host: url.hostname, port: url.port, path: '/echo', method: 'POST', headers: { 'content-type': 'text/plain' } });
  req.write('first part;');
  const res = await new Promise<http.IncomingMessage>((r) => req.on('response', r));
  t.equal(res.statusCode, 200);
  t.equal(res.headers['transfer-encoding'], 'chunked');
  t.ok(res.headers[LOAD_HEADER]);
  const first = await new Promise<string>((r) => res.once('data', (d: Buffer) => r(d.toString())));
  t.equal(first, 'first part;', 'first chunk echoed before the request ended');
  let rest = '';
  res.on('data', (d: Buffer) => (rest += d.toString()));
  const ended = new Promise<void>((r) => res.on('end', () => r()));
  req.end('second part');
  await ended;
  t.equal(rest, 'second part');
});

t.test('/count consumes a large upload and reports its size', async (t) => {
  const { base } = await startPod(t);
  const size = 32 * 1024 * 1024;
  const chunk = Buffer.alloc(1024 * 1024, 7);
  async function* body() {
    for (let sent = 0; sent < size; sent += chunk.length) yield chunk;
  }
  const res = await request(`${base}/count`, { method: 'POST', body: Readable.from(body()), dispatcher: noKeepAlive });
  t.equal(res.statusCode, 200);
  t.same(await res.body.json(), { bytes: size });
});

t.test('/headers answers with the request headers', async (t) => {
  const { base } = await startPod(t);
  const res = await get(`${base}/headers`, { 'x-test': 'yes', 'k-proxy-request': 'activator' });
  const h = JSON.parse(res.body) as Record<string, string>;
  t.equal(h['x-test'], 'yes');
  t.equal(h['k-proxy-request'], 'activator');
  t.equal(res.headers['content-type'], 'application/json');
});

t.test('/stream sends a chunk per interval of its clock', async (t) => {
  const clock = new ManualClock();
  const { base } = await startPod(t, { clock });
  const res = await request(`${base}/stream?chunks=4&intervalMs=60`, { dispatcher: noKeepAlive });
  t.equal(res.statusCode, 200);
  let text = '';
  res.body.on('data', (d: Buffer) => (text += d.toString()));
  const ended = new Promise<void>((r) => res.body.on('end', () => r()));
  await until('the first chunk', () => text === 'chunk 0\n');
  for (let i = 1; i < 4; i++) {
    clock.advance(59);
    t.equal(text.split('\n').length - 1, i, `${i} chunk(s) before the next interval passed`);
    clock.advance(1);
    await until(`chunk ${i}`, () => text.endsWith(`chunk ${i}\n`));
  }
  await ended;
  t.equal(text, 'chunk 0\nchunk 1\nchunk 2\nchunk 3\n');
});

t.test('/sleep answers after the given time on its clock', async (t) => {
  const clock = new ManualClock();
  const { pod, base } = await startPod(t, { clock });
  const pending = get(`${base}/sleep?ms=150`);
  await until('the pod to take it', () => pod.busy === 1);
  clock.advance(149);
  t.equal(pod.busy, 1, 'held at 149 ms');
  clock.advance(1);
  const res = await pending;
  t.same([res.status, res.body], [200, 'slept 150 ms\n']);
});

t.test('WebSocket upgrade on any path echoes every message', async (t) => {
  const { base } = await startPod(t);
  const ws = new WebSocket(`${base.replace('http', 'ws')}/some/path`);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const next = () => new Promise<{ data: string; binary: boolean }>((r) => ws.once('message', (d, binary) => r({ data: d.toString(), binary })));
  let got = next();
  ws.send('hello');
  t.same(await got, { data: 'hello', binary: false });
  got = next();
  ws.send(Buffer.from('bytes'));
  t.same(await got, { data: 'bytes', binary: true });
  ws.close();
});

t.test('capacity: with capacity 1, three concurrent requests complete one after another', async (t) => {
  const clock = new ManualClock();
  const { pod, base } = await startPod(t, { serviceTimeMs: { min: 60, max: 60 }, capacity: 1, clock });
  const seenLoad: string[] = [];
  const done = Array.from({ length: 3 }, async () => {
    const res = await get(`${base}/`);
    seenLoad.push(res.headers[LOAD_HEADER] as string);
    return res.headers[HELD_TIME_HEADER];
  });
  await until('all three inside the pod', () => pod.inFlight === 3);
  t.equal(pod.busy, 1, 'one served');
  t.equal(pod.waiting, 2, 'two waiting inside the pod');
  const probe = await get(`${base}/healthz`, { 'K-Network-Probe': 'queue' });
  const load = parseOrcaHeader(probe.headers[LOAD_HEADER] as string)!;
  t.equal(load.cpuUtilization, 1, 'busy/capacity = 1 while serving');
  t.equal(load.named.in_flight, 3, 'in_flight counts the waiting requests');
  for (const left of [2, 1, 0]) {
    clock.advance(60);
    t.same([pod.busy + pod.waiting, pod.waiting], [left, Math.max(0, left - 1)], `after ${(3 - left) * 60} ms: ${left} left`);
  }
  t.same(await Promise.all(done), ['60', '60', '60'], 'each held for one service time, one after another');
  t.equal(pod.served, 3);
  t.ok(seenLoad.some((h) => /in_flight=2/.test(h)), 'load reported on responses while others wait');
});

t.test('a timer that fires late delays the answer, not the pod: its slot fell free at the due time', async (t) => {
  // Every timer of this clock fires 5 ms late, as a busy event loop makes them.
  const manual = new ManualClock();
  const late: Clock = { now: () => manual.now(), after: (ms, fn) => manual.after(ms + 5, fn) };
  const start = manual.now();
  const { pod, base } = await startPod(t, { serviceTimeMs: { min: 10, max: 10 }, capacity: 1, clock: late });
  const done = Array.from({ length: 3 }, () => get(`${base}/`));
  await until('all three inside the pod', () => pod.inFlight === 3);
  const leftAt = (ms: number) => {
    manual.advance(start + ms - manual.now());
    return pod.inFlight;
  };
  t.equal(leftAt(14), 3, 'the first is due at 10 ms, but its timer fires at 15');
  t.equal(leftAt(15), 2, 'answered 5 ms late');
  t.equal(leftAt(25), 1, 'the second started at 10 ms, when the slot fell free: due at 20, answered 5 ms late');
  t.equal(leftAt(35), 0, 'the third at 35 ms, not 45: ten ms a request, however late the timers');
  leftAt(60);
  await Promise.all(done);
});

t.test('an aborted request gives its slot back', async (t) => {
  const { pod, base } = await startPod(t, { capacity: 1 });
  const ac = new AbortController();
  const p = request(`${base}/sleep?ms=5000`, { signal: ac.signal, dispatcher: noKeepAlive }).catch((e: unknown) => e);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(pod.busy, 1);
  ac.abort();
  await p;
  await until('the slot to be released', () => pod.inFlight === 0);
  const next = get(`${base}/sleep?ms=1000`);
  await until('the next request to arrive', () => pod.inFlight === 1);
  t.same([pod.busy, pod.waiting], [1, 0], 'the next request gets the slot at once, nothing ahead of it');
  pod.kill();
  await next.catch(() => undefined);
});

t.test('slowdown multiplies the service time', async (t) => {
  const clock = new ManualClock();
  const { pod, base } = await startPod(t, { serviceTimeMs: { min: 20, max: 20 }, clock });
  const heldFor = async () => {
    const pending = get(`${base}/`);
    await until('the pod to take it', () => pod.busy === 1);
    clock.advance(200);
    return (await pending).headers[HELD_TIME_HEADER];
  };
  t.equal(await heldFor(), '20');
  pod.setSlowdown(5);
  t.equal(await heldFor(), '100', '5× slower');
  t.throws(() => pod.setSlowdown(0), /slowdown must be > 0/);
});

t.test('kill() fails an in-flight request without a response and stops listening', async (t) => {
  const { pod, base } = await startPod(t, { capacity: 1 });
  const inflight = request(`${base}/sleep?ms=2000`, { dispatcher: noKeepAlive });
  const streaming = request(`${base}/stream?chunks=10&intervalMs=100`, { dispatcher: noKeepAlive });
  const streamRes = await streaming;
  t.equal(streamRes.statusCode, 200, 'a streaming response has started');
  const streamBody = streamRes.body.text();
  await new Promise((r) => setTimeout(r, 150));
  pod.kill();
  await t.rejects(inflight, 'in-flight request fails without a response');
  await t.rejects(streamBody, 'streaming response is cut mid-body');
  await t.rejects(get(`${base}/`), { code: 'ECONNREFUSED' }, 'new connections refused: the pod is dead');
});

t.test('close() lets in-flight requests finish', async (t) => {
  const { pod, base } = await startPod(t, { capacity: 1 });
  const inflight = get(`${base}/sleep?ms=100`);
  await new Promise((r) => setTimeout(r, 20));
  await pod.close(2000);
  t.equal((await inflight).status, 200);
  await t.rejects(get(`${base}/`), { code: 'ECONNREFUSED' });
});

// --- the assembled cluster ---------------------------------------------------------

const STATE = clusterState({ latency: { node3: { node1: { rttMs: 50, jitterMs: 0 }, node2: { rttMs: 50, jitterMs: 0 } }, node1: { node2: { rttMs: 0.5, jitterMs: 0 } } } });

/** GET through the network as a client on `fromAddress`. */
async function getFrom(fromAddress: string, host: string, port: number, path = '/'): Promise<{ status: number; body: string }> {
  // undici 7: the Agent/Pool option `localAddress`; `connect: { localAddress }` is overridden.
  const agent = new Agent({ localAddress: fromAddress });
  try {
    const res = await request(`http://${host}:${port}${path}`, { dispatcher: agent });
    return { status: res.statusCode, body: await res.body.text() };
  } finally {
    await agent.close();
  }
}

/** The labels of the given requests in the order they completed. */
async function finishOrder(requests: Record<string, Promise<unknown>>): Promise<string[]> {
  const order: string[] = [];
  await Promise.all(Object.entries(requests).map(([label, p]) => p.then(() => order.push(label))));
  return order;
}

t.test('emulated cluster: endpoints in the model answer through the network', async (t) => {
  const model = new ClusterModel(STATE);
  const cluster = await startEmulatedCluster({
    model,
    seed: 1,
    pods: [
      { revision: 'default/hello-00001', node: 'node1' },
      { revision: 'default/hello-00001', node: 'node3', serviceTimeMs: { min: 1, max: 1 }, capacity: 4 },
      { name: 'named-pod', revision: 'default/hello-00001', node: 'node2' },
    ],
  });
  t.teardown(() => cluster.close());

  const eps = model.current.endpoints('default/hello-00001');
  t.equal(eps.length, 3, 'three endpoints in the model');
  for (const e of eps) {
    const node = model.current.node(e.node)!;
    t.equal(e.address, node.address, `${e.pod}: address is its node's address`);
    t.ok(e.ready);
    t.equal(e.revision, 'default/hello-00001');
    if (e.pod !== 'named-pod') t.match(e.pod, new RegExp(`^hello-00001-${e.node}-[a-z]{5}$`), `generated name ${e.pod}`);
    t.ok(cluster.pod(e.pod), 'pod() finds it');
  }
  t.same(cluster.pods.map((p) => p.node).sort(), ['node1', 'node2', 'node3']);

  const edgePod = eps.find((e) => e.node === 'node3')!;
  const cloudPod = eps.find((e) => e.node === 'node1')!;
  const local = getFrom('127.0.1.3', edgePod.address, edgePod.port);
  const remote = getFrom('127.0.1.3', cloudPod.address, cloudPod.port);
  const external = getFrom('127.0.0.1', cloudPod.address, cloudPod.port);
  const order = finishOrder({ local, remote, external });
  t.equal((await local).body, `Konnichiwa from ${edgePod.pod} in node3\n`);
  t.equal((await remote).body, `Konnichiwa from ${cloudPod.pod} in node1\n`);
  // Sent at the same moment: the one that crosses the 50 ms link comes back last (the
  // delays themselves are tested on a manual clock in emulated-network.test.ts).
  t.same((await order).at(-1), 'remote', 'node3 → node1 pays the round trip; a node-local request and an external client do not');

  // The pods are not reachable on the node address except through the relay.
  await t.rejects(
    new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.1.1', port: cluster.pod(cloudPod.pod)!.port }, () => resolve(s));
      s.on('error', reject);
    }),
    'the hidden port is not open on the node address',
  );
});

t.test('emulated cluster: addPod and removePod keep the model in step', async (t) => {
  const model = new ClusterModel(STATE);
  const cluster = await startEmulatedCluster({ model, pods: [{ revision: 'default/hello-00001', node: 'node1' }] });
  t.teardown(() => cluster.close());
  const changes: number[] = [];
  model.on('change', (s) => changes.push(s.endpoints('default/hello-00001').length));

  const pod = await cluster.addPod({ revision: 'default/hello-00001', node: 'node2', capacity: 3 });
  t.equal(pod.capacity, 3);
  const ep = model.current.endpoints('default/hello-00001').find((e) => e.pod === pod.name)!;
  t.ok(ep, 'new endpoint in the model');
  t.equal(ep.node, 'node2');
  t.equal(ep.address, '127.0.1.2');
  const res = await getFrom('127.0.1.2', ep.address, ep.port);
  t.equal(res.body, `Konnichiwa from ${pod.name} in node2\n`);

  // An in-flight request on a pod being removed still completes.
  const slow = getFrom('127.0.1.1', ep.address, ep.port, '/sleep?ms=100');
  await new Promise((r) => setTimeout(r, 30));
  let presentWhenClosing: boolean | undefined;
  const removing = cluster.removePod(pod.name);
  presentWhenClosing = model.current.endpoints('default/hello-00001').some((e) => e.pod === pod.name);
  t.equal(presentWhenClosing, false, 'endpoint left the model before the pod closed');
  t.equal((await slow).status, 200, 'in-flight request finished');
  await removing;
  t.notOk(cluster.pod(pod.name));
  t.same(changes, [2, 1]);
  await t.rejects(getFrom('127.0.1.1', ep.address, ep.port), 'removed pod no longer reachable');

  const proxyLike = http.createServer((_req, res) => res.end('proxy on node3'));
  await new Promise<void>((r) => proxyLike.listen(0, cluster.hiddenHost('node3'), r));
  t.teardown(() => proxyLike.close());
  const e = await cluster.expose('node3', 0, { host: cluster.hiddenHost('node3'), port: (proxyLike.address() as net.AddressInfo).port });
  t.equal(e.host, '127.0.1.3');
  const viaRelay = getFrom('127.0.1.1', e.host, e.port);
  const fromItsNode = getFrom('127.0.1.3', e.host, e.port);
  const order = finishOrder({ viaRelay, fromItsNode });
  t.equal((await viaRelay).body, 'proxy on node3');
  t.same(await order, ['fromItsNode', 'viaRelay'], 'proxies exposed through the network pay the delay too');
});

t.test('emulated cluster: a killed pod fails requests through the relay', async (t) => {
  const model = new ClusterModel(STATE);
  const cluster = await startEmulatedCluster({ model, pods: [{ name: 'victim', revision: 'default/hello-00001', node: 'node1' }] });
  t.teardown(() => cluster.close());
  const ep = model.current.endpoints('default/hello-00001')[0]!;
  const inflight = getFrom('127.0.1.3', ep.address, ep.port, '/sleep?ms=2000');
  await new Promise((r) => setTimeout(r, 150));
  t.equal(cluster.pod('victim')!.busy, 1, 'request reached the pod');
  cluster.pod('victim')!.kill();
  await t.rejects(inflight, 'in-flight request fails without a response');
  await t.rejects(getFrom('127.0.1.3', ep.address, ep.port), 'new request to the dead pod fails (reset by the relay)');
});
