// Admission end to end, real sockets: the two defects issue 12 names. A request waiting
// for a pod whose only slot other proxies hold is served as soon as they let go (not at
// its deadline), and a WebSocket to a revision at zero gets the same admission as any
// request: the autoscaler hears of it, and it is counted.
import t from 'tap';
import { request } from 'undici';
import WebSocket from 'ws';
import { parseClusterFile } from '../cluster/config.js';
import { ClusterModel } from '../cluster/model.js';
import { startEmulatedCluster } from '../cluster/emulated/cluster.js';
import { startEmulatedStack } from '../bin/stack.js';
import { NodeProxy } from '../proxy/server.js';
import { createPolicy } from '../proxy/policy/index.js';
import { AutoscalerReporter } from '../proxy/autoscaler.js';
import { DEFAULT_QUEUE_CONFIG } from '../queue/index.js';
import { StatServer } from './fixtures/stat-server.js';
import { HELLO_HOST, until } from './support.js';

// One pod on node1 that could serve two at once, but the revision allows one
// (containerConcurrency 1): the proxies must keep it to one over both of them.
const ONE_SLOT = `
nodes:
  - { name: node1, region: r, zone: z1, address: 127.0.1.1 }
  - { name: node2, region: r, zone: z2, address: 127.0.1.2 }
revisions:
  - { namespace: default, service: hello, name: hello-00001, containerConcurrency: 1, timeoutSeconds: 20 }
pods:
  - { name: only-pod, revision: default/hello-00001, node: node1, capacity: 2, serviceTimeMs: { min: 1, max: 1 } }
proxy: { policy: knative }
`;

async function metric(adminUrl: string, pattern: RegExp): Promise<number | undefined> {
  const text = await (await request(`${adminUrl}/metrics`)).body.text();
  const m = pattern.exec(text);
  return m ? Number(m[1]) : undefined;
}

t.test('other proxies hold the pod\'s only slot, then release it: the request waiting here is served, not held to its deadline', async (t) => {
  const stack = await startEmulatedStack({ file: parseClusterFile(ONE_SLOT, 'one-slot.yaml'), proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 5 });
  t.teardown(() => stack.close());
  const pod = stack.cluster.pod('only-pod')!;
  const here = stack.proxyUrl('node1');

  // node2's proxy takes the slot and holds it until the test lets go.
  const holder = new AbortController();
  const held = request(`${stack.proxyUrl('node2')}/sleep?ms=600000`, { headers: { host: HELLO_HOST }, signal: holder.signal }).catch((err: Error) => err);
  await until('node2\'s request to hold the pod', () => pod.busy === 1);

  // node1 sends two requests: the first takes the slot as node1 sees it and comes back
  // with the pod's load report (one request there is somebody else's); the second queues
  // behind it and, once it is back, still finds the pod full by node2's request.
  const peek = request(`${here}/sleep?ms=300`, { headers: { host: HELLO_HOST } });
  await until('node1\'s first request at the pod', () => pod.busy === 2);
  const waiting = request(here, { headers: { host: HELLO_HOST } });
  const first = await peek;
  t.equal(first.statusCode, 200);
  await first.body.dump();
  await until('the second request to wait in node1\'s queue', async () => (await metric(stack.adminUrl('node1'), /chikai_requests_buffered\{[^}]*revision="default\/hello-00001"[^}]*\} (\d+)/)) === 1);
  t.equal(stack.proxies.get('node1')!.load.inFlight('only-pod'), 1, 'node1 counts node2\'s request at the pod');
  t.equal(pod.busy, 1, 'the pod holds only node2\'s request: containerConcurrency kept across proxies');

  // node2's request leaves the pod.
  holder.abort();
  await held;
  const res = await waiting;
  const body = await res.body.text();
  t.equal(res.statusCode, 200, 'served once the other proxy let go (a stall would end in 503 at the 20 s deadline)');
  t.match(body, /^Konnichiwa from only-pod in node1/);
});

t.test('a WebSocket to a revision at zero: the autoscaler gets the cold-start stat, the upgrade waits for the pod, and it is counted', async (t) => {
  const stats = await StatServer.start();
  t.teardown(() => stats.close());
  const model = new ClusterModel({
    domain: 'cluster.local',
    externalDomains: [],
    nodes: [{ name: 'node1', region: 'r', zone: 'z', address: '127.0.1.1' }],
    revisions: [{ namespace: 'default', service: 'chat', name: 'chat-00001', hosts: [], containerConcurrency: 0, timeoutSeconds: 30, protocol: 'http1' }],
    endpoints: [],
    latency: {},
  });
  const cluster = await startEmulatedCluster({ model, pods: [], seed: 1 });
  t.teardown(() => cluster.close());
  const reporter = new AutoscalerReporter({ url: stats.url, podName: 'chikai-proxy-node1', intervalMs: 3_600_000 });
  t.teardown(() => reporter.close());
  reporter.start();
  await stats.connected();
  const proxy = new NodeProxy({
    model,
    node: 'node1',
    listen: { host: '127.0.1.1', port: 0 },
    admin: { host: '127.0.1.1', port: 0 },
    policy: createPolicy('chikai'),
    queue: DEFAULT_QUEUE_CONFIG,
    drainSeconds: 0,
    localAddress: '127.0.1.1',
    concurrency: reporter,
  });
  await proxy.start();
  t.teardown(() => proxy.close());

  const ws = new WebSocket(`ws://127.0.1.1:${proxy.address.port}/chat`, { headers: { host: 'chat.default.svc.cluster.local' } });
  ws.on('error', () => undefined);
  const refused = new Promise<string>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(`the upgrade got ${res.statusCode} before the autoscaler heard of it`)));
  const first = await Promise.race([stats.frame(0), refused]);
  if (typeof first === 'string') return t.fail(first);
  t.same(first.map((m) => [m.namespace, m.name, m.stat.averageConcurrentRequests]), [['default', 'chat-00001', 1]], 'the scale-from-zero stat: concurrency 1 for the revision');

  // The autoscaler scales the revision up: the held upgrade goes through to the new pod.
  await cluster.addPod({ revision: 'default/chat-00001', node: 'node1', name: 'chat-pod' });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    void refused.then((why) => reject(new Error(why)));
  });
  const echoed = await new Promise<string>((resolve) => {
    ws.once('message', (m: Buffer) => resolve(m.toString()));
    ws.send('konnichiwa');
  });
  t.equal(echoed, 'konnichiwa', 'the tunnel echoes through the proxy');
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  ws.close();
  await closed;
  const admin = `http://127.0.1.1:${proxy.adminAddress!.port}`;
  const counted = await until('the upgrade to be counted once it closed', () => metric(admin, /chikai_requests_total\{revision="default\/chat-00001",target_node="node1",code="101"[^}]*\} (\d+)/));
  t.equal(counted, 1, 'the upgrade is counted in chikai_requests_total with code 101');
});
