// HTTP/2 cleartext and gRPC through the node proxy, real sockets end to end: a real
// @grpc/grpc-js client calls emulated gRPC pods (real grpc-js servers) of an h2c revision
// through the proxy's 8012 (h2c sniffed) and its 8013 listener. Unary, server streaming and
// bidirectional calls; grpc-status in trailers; deadlines; a call held while the revision
// is at zero; calls over one HTTP/2 connection spread over the pods per request
// (knative/serving#14011); a pod killed mid-stream ends the call with an error.
import t, { type Test } from 'tap';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { request } from 'undici';
import { ClusterModel, type ClusterState } from '../cluster/model.js';
import { startEmulatedCluster, type EmulatedCluster } from '../cluster/emulated/cluster.js';
import { greeterClient, healthCheck, healthClient, sayHello, SERVING, type GreeterClient, type HelloReply } from '../cluster/emulated/greeter.js';
import { NodeProxy } from '../proxy/server.js';
import { createPolicy } from '../proxy/policy/index.js';
import { DEFAULT_QUEUE_CONFIG } from '../queue/index.js';
import { until } from './support.js';

const GREETER_HOST = 'greeter.default.svc.cluster.local';
const REV = 'default/greeter-00001';

function state(): ClusterState {
  return {
    domain: 'cluster.local',
    externalDomains: [],
    nodes: [{ name: 'node1', region: 'r', zone: 'z1', address: '127.0.1.1' }, { name: 'node2', region: 'r', zone: 'z2', address: '127.0.1.2' }],
    revisions: [
      { namespace: 'default', service: 'greeter', name: 'greeter-00001', hosts: [], containerConcurrency: 0, timeoutSeconds: 60, protocol: 'h2c' },
      { namespace: 'default', service: 'hello', name: 'hello-00001', hosts: [], containerConcurrency: 0, timeoutSeconds: 60, protocol: 'http1' },
    ],
    endpoints: [],
    latency: {},
  };
}

interface Setup {
  readonly cluster: EmulatedCluster;
  readonly proxy: NodeProxy;
  readonly model: ClusterModel;
}

async function setup(t: Test, pods: readonly { node: string; name: string; revision?: string }[], policy = 'round-robin'): Promise<Setup> {
  const model = new ClusterModel(state());
  const cluster = await startEmulatedCluster({ model, pods: pods.map((p) => ({ revision: REV, ...p })), seed: 1 });
  t.teardown(() => cluster.close());
  const proxy = new NodeProxy({
    model,
    node: 'node1',
    listen: { host: '127.0.1.1', port: 0 },
    h2cListen: { host: '127.0.1.1', port: 0 },
    policy: createPolicy(policy),
    queue: DEFAULT_QUEUE_CONFIG,
    drainSeconds: 0,
    localAddress: '127.0.1.1',
  });
  await proxy.start();
  t.teardown(() => proxy.close());
  return { cluster, proxy, model };
}

function client(t: Test, port: number): GreeterClient {
  const c = greeterClient(`127.0.1.1:${port}`, GREETER_HOST);
  t.teardown(() => c.close());
  return c;
}

function collect(stream: grpc.ClientReadableStream<HelloReply>): Promise<{ replies: HelloReply[]; error?: grpc.ServiceError }> {
  const replies: HelloReply[] = [];
  return new Promise((resolve) => {
    stream.on('data', (r: HelloReply) => replies.push(r));
    stream.on('error', (error: grpc.ServiceError) => resolve({ replies, error }));
    stream.on('end', () => resolve({ replies }));
  });
}

t.test('unary and health through 8012 (h2c prior knowledge) and 8013; the status in the trailers reaches the client', async (t) => {
  const { proxy } = await setup(t, [{ node: 'node1', name: 'greeter-a' }]);
  for (const [port, name] of [[proxy.address.port, '8012'], [proxy.h2cAddress!.port, '8013']] as const) {
    const reply = await sayHello(client(t, port), { name: 'chikai' });
    t.equal(reply.message, 'Konnichiwa chikai from greeter-a in node1', `unary call through the proxy's ${name}`);
    const health = healthClient(`127.0.1.1:${port}`, GREETER_HOST);
    t.teardown(() => health.close());
    t.equal((await healthCheck(health)).status, SERVING, `grpc.health.v1.Health/Check → SERVING through ${name}`);
    // An error status only exists in the trailers (here a trailers-only response).
    const err = await healthCheck(health, 'no.such.Service').then(() => undefined, (e: grpc.ServiceError) => e);
    t.equal(err?.code, grpc.status.NOT_FOUND, 'the pod\'s grpc-status NOT_FOUND reaches the client');
    t.match(err?.details, /unknown service no\.such\.Service/, 'with its grpc-message');
  }
  const metrics = await proxy.metrics.registry.metrics();
  t.match(metrics, /chikai_requests_total\{revision="default\/greeter-00001",target_node="node1",code="200",node="node1"\} 6/, "every call counted like any request (3 per port; a gRPC error is an HTTP 200)");
});

t.test('server streaming and bidirectional calls stream both ways without buffering', async (t) => {
  const { proxy } = await setup(t, [{ node: 'node1', name: 'greeter-a' }]);
  const c = client(t, proxy.address.port);
  const { replies, error } = await collect(c.sayHellos({ name: 'stream', count: 5, delayMs: 5 }));
  t.notOk(error, 'the stream ends with OK');
  t.same(replies.map((r) => r.message), [1, 2, 3, 4, 5].map((i) => `Konnichiwa stream #${i} from greeter-a in node1`));

  // Bidirectional: each reply must arrive before the next request is sent, so neither
  // direction may be held back until the call ends.
  const chat = c.chat();
  const got: string[] = [];
  const next = () => new Promise<HelloReply>((resolve) => chat.once('data', resolve));
  for (const name of ['one', 'two', 'three']) {
    const reply = next();
    chat.write({ name });
    got.push((await reply).message);
  }
  const ended = new Promise<void>((resolve) => chat.on('end', () => resolve()));
  chat.end();
  await ended;
  t.same(got, ['one', 'two', 'three'].map((n) => `Konnichiwa ${n} from greeter-a in node1`), 'every message answered while the call is open');
});

t.test('a deadline ends the call with DEADLINE_EXCEEDED and the proxy lets go of it', async (t) => {
  const { proxy } = await setup(t, [{ node: 'node1', name: 'greeter-a' }]);
  const c = client(t, proxy.address.port);
  const err = await sayHello(c, { name: 'slow', delayMs: 600_000 }, { deadline: Date.now() + 300 }).then(() => undefined, (e: grpc.ServiceError) => e);
  t.equal(err?.code, grpc.status.DEADLINE_EXCEEDED);
  await until('the proxy to finish the cancelled call', () => proxy.activeRequests === 0);
  t.pass('no request left in the proxy');
});

t.test('a call to a revision at zero is held until a pod is ready', async (t) => {
  const { proxy, cluster } = await setup(t, []);
  const c = client(t, proxy.address.port);
  const call = sayHello(c, { name: 'early' });
  await until('the call to wait in the proxy', () => proxy.activeRequests === 1);
  await cluster.addGrpcPod({ revision: REV, node: 'node2', name: 'greeter-late' });
  t.equal((await call).message, 'Konnichiwa early from greeter-late in node2', 'served by the pod that came up');
});

t.test('calls over one HTTP/2 connection are balanced per call, not per connection', async (t) => {
  const { proxy, cluster } = await setup(t, [{ node: 'node1', name: 'greeter-a' }, { node: 'node1', name: 'greeter-b' }]);
  const c = client(t, proxy.address.port);
  const pods: string[] = [];
  for (let i = 0; i < 20; i++) pods.push((await sayHello(c, { name: `n${i}` })).pod);
  const per = Object.fromEntries(['greeter-a', 'greeter-b'].map((p) => [p, pods.filter((x) => x === p).length]));
  t.comment(`calls per pod over one connection (round-robin): ${JSON.stringify(per)}`);
  t.same(per, { 'greeter-a': 10, 'greeter-b': 10 }, 'round robin over both pods, one call at a time');
  t.same(cluster.grpcPods.map((p) => p.served), [10, 10]);
});

t.test('a pod killed mid-stream ends the call with a gRPC error, not a hang', async (t) => {
  const { proxy, cluster } = await setup(t, [{ node: 'node1', name: 'greeter-a' }]);
  const c = client(t, proxy.address.port);
  const stream = c.sayHellos({ name: 'doomed', count: 1000, delayMs: 20 });
  const result = collect(stream);
  await new Promise<void>((resolve) => stream.once('data', () => resolve()));
  cluster.grpcPod('greeter-a')!.kill();
  const { replies, error } = await result;
  t.ok(replies.length >= 1 && replies.length < 1000, 'the stream had started and did not finish');
  t.ok(error, 'the call ended with an error');
  t.not(error?.code, grpc.status.OK);
  t.comment(`gRPC status after the kill: ${error?.code} ${error?.details}`);
  await until('the proxy to let go of the call', () => proxy.activeRequests === 0);
});

t.test('either protocol to either kind of revision: HTTP/2 to an HTTP/1 pod, HTTP/1 to an h2c pod', async (t) => {
  const { proxy } = await setup(t, [{ node: 'node1', name: 'greeter-a' }, { node: 'node1', name: 'hello-a', revision: 'default/hello-00001' }]);
  const session = http2.connect(`http://127.0.1.1:${proxy.h2cAddress!.port}`);
  t.teardown(() => session.close());
  const stream = session.request({ ':path': '/', ':authority': 'hello.default.svc.cluster.local' });
  const [status, body] = await new Promise<[number, string]>((resolve, reject) => {
    let code = 0;
    let text = '';
    stream.on('response', (h) => (code = Number(h[':status'])));
    stream.on('data', (c: Buffer) => (text += String(c)));
    stream.on('end', () => resolve([code, text]));
    stream.on('error', reject);
  });
  t.same([status, body], [200, 'Konnichiwa from hello-a in node1\n'], 'an HTTP/2 request to an HTTP/1 revision goes out as HTTP/1.1');

  // A gRPC frame (SayHello{name: "h1"}) posted over HTTP/1.1: the proxy speaks HTTP/2 to the pod.
  const message = Buffer.from([0x0a, 0x02, 0x68, 0x31]);
  const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
  const res = await request(`http://127.0.1.1:${proxy.address.port}/chikai.greeter.v1.Greeter/SayHello`, {
    method: 'POST',
    headers: { host: GREETER_HOST, 'content-type': 'application/grpc', te: 'trailers' },
    body: frame,
  });
  t.equal(res.statusCode, 200);
  t.match(Buffer.from(await res.body.arrayBuffer()).toString('latin1'), /Konnichiwa h1 from greeter-a in node1/, 'an HTTP/1.1 request to an h2c revision goes out over HTTP/2');
});
