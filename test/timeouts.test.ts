// Knative's response-start and idle timeouts through the proxy, real sockets, the proxy on
// a manual clock (no wall-clock assertion: the test moves the proxy's time, the pods keep
// their own). A revision with responseStartTimeoutSeconds 1 answers 504 when its pod has
// written nothing by then, but neither a streaming response that started nor an upgraded
// WebSocket is cut (knative/serving#16169); one with idleTimeoutSeconds 2 answers 504
// when nothing came at all and cuts a stream that went quiet.
import t, { type Test } from 'tap';
import { request } from 'undici';
import WebSocket from 'ws';
import { parseClusterFile } from '../cluster/config.js';
import { ClusterModel } from '../cluster/model.js';
import { startEmulatedCluster } from '../cluster/emulated/cluster.js';
import { NodeProxy } from '../proxy/server.js';
import { createPolicy } from '../proxy/policy/index.js';
import { DEFAULT_QUEUE_CONFIG } from '../queue/index.js';
import { ManualClock } from './fixtures/clock.js';
import { until } from './support.js';

const START_HOST = 'start.default.svc.cluster.local';
const IDLE_HOST = 'idle.default.svc.cluster.local';

async function setup(t: Test) {
  const model = new ClusterModel({
    domain: 'cluster.local',
    externalDomains: [],
    nodes: [{ name: 'node1', region: 'r', zone: 'z', address: '127.0.1.1' }],
    revisions: [
      { namespace: 'default', service: 'start', name: 'start-00001', hosts: [], containerConcurrency: 0, timeoutSeconds: 60, responseStartTimeoutSeconds: 1, protocol: 'http1' },
      { namespace: 'default', service: 'idle', name: 'idle-00001', hosts: [], containerConcurrency: 0, timeoutSeconds: 60, idleTimeoutSeconds: 2, protocol: 'http1' },
    ],
    endpoints: [],
    latency: {},
  });
  const cluster = await startEmulatedCluster({
    model,
    pods: [{ revision: 'default/start-00001', node: 'node1', name: 'start-pod', capacity: 4 }, { revision: 'default/idle-00001', node: 'node1', name: 'idle-pod', capacity: 4 }],
    seed: 1,
  });
  t.teardown(() => cluster.close());
  const clock = new ManualClock();
  const proxy = new NodeProxy({ model, node: 'node1', listen: { host: '127.0.1.1', port: 0 }, policy: createPolicy('chikai'), queue: DEFAULT_QUEUE_CONFIG, drainSeconds: 0, localAddress: '127.0.1.1', clock });
  await proxy.start();
  t.teardown(() => proxy.close());
  const url = (path: string) => `http://127.0.1.1:${proxy.address.port}${path}`;
  return { cluster, clock, proxy, url };
}

/** The first body chunk of a streaming response, the rest left to read. */
async function firstChunk(body: AsyncIterable<Buffer>): Promise<{ first: string; rest: Promise<string> }> {
  const it = body[Symbol.asyncIterator]();
  const first = await it.next();
  const rest = (async () => {
    let s = '';
    for (let r = await it.next(); !r.done; r = await it.next()) s += String(r.value);
    return s;
  })();
  rest.catch(() => undefined);
  return { first: String(first.value), rest };
}

t.test('responseStartTimeoutSeconds: 504 when the pod wrote nothing; a started stream and a WebSocket run on', async (t) => {
  const { cluster, clock, proxy, url } = await setup(t);
  const pod = cluster.pod('start-pod')!;
  const silent = request(url('/sleep?ms=600000'), { headers: { host: START_HOST } });
  await until('the request to reach the pod', () => pod.busy === 1);
  clock.advance(999);
  t.equal(proxy.activeRequests, 1, 'still waiting before 1 s');
  clock.advance(1);
  const res = await silent;
  t.equal(res.statusCode, 504, 'no byte by responseStartTimeoutSeconds: 504');
  t.equal(await res.body.text(), 'activator request timeout\n');

  const streaming = await request(url('/stream?chunks=2&intervalMs=200'), { headers: { host: START_HOST } });
  t.equal(streaming.statusCode, 200);
  const { first, rest } = await firstChunk(streaming.body);
  clock.advance(5000);
  t.equal(first + (await rest), 'chunk 0\nchunk 1\n', 'a response that started is not cut by the response-start timeout');

  const ws = new WebSocket(`ws://127.0.1.1:${proxy.address.port}/chat`, { headers: { host: START_HOST } });
  ws.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('unexpected-response', (_req, r) => reject(new Error(`upgrade refused: ${r.statusCode}`)));
  });
  clock.advance(5000);
  const echo = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
  ws.send('still here');
  t.equal(await echo, 'still here', 'an upgraded WebSocket outlives the response-start timeout (knative/serving#16169)');
  ws.close();
  await until('the tunnel to close', () => proxy.activeRequests === 0);
});

t.test('idleTimeoutSeconds: 504 when nothing came; a stream that went quiet is cut', async (t) => {
  const { cluster, clock, url } = await setup(t);
  const pod = cluster.pod('idle-pod')!;
  const silent = request(url('/sleep?ms=600000'), { headers: { host: IDLE_HOST } });
  await until('the request to reach the pod', () => pod.busy === 1);
  clock.advance(2000);
  const res = await silent;
  t.equal(res.statusCode, 504, 'nothing written for idleTimeoutSeconds from arrival: 504');
  await res.body.text();

  const quiet = await request(url('/stream?chunks=2&intervalMs=600000'), { headers: { host: IDLE_HOST } });
  t.equal(quiet.statusCode, 200);
  const { first, rest } = await firstChunk(quiet.body);
  t.equal(first, 'chunk 0\n');
  clock.advance(1999);
  clock.advance(1);
  await t.rejects(rest, 'the stream is cut once nothing was written for 2 s');
});

t.test('the cluster file: both timeouts per revision, neither past timeoutSeconds', async (t) => {
  const file = (extra: string) => parseClusterFile([
    'nodes: [{ name: node1, region: r, zone: z, address: 127.0.1.1 }]',
    'revisions:',
    `  - { service: s, name: s-00001, timeoutSeconds: 120${extra} }`,
  ].join('\n'), 'timeouts.yaml');
  t.match(file(', responseStartTimeoutSeconds: 10, idleTimeoutSeconds: 5').state.revisions[0], { timeoutSeconds: 120, responseStartTimeoutSeconds: 10, idleTimeoutSeconds: 5 });
  t.notOk('idleTimeoutSeconds' in file('').state.revisions[0], 'unset: off (Knative\'s default 0)');
  t.throws(() => file(', responseStartTimeoutSeconds: 300'), { name: 'ConfigError', message: /^timeouts\.yaml:3: revisions\[0\]\.responseStartTimeoutSeconds: expected a number from 0 to 120, got 300/ });
  t.throws(() => file(', idleTimeoutSeconds: "long"'), { name: 'ConfigError', message: /revisions\[0\]\.idleTimeoutSeconds: expected a number from 0 to 120, got "long"/ });
});
