// Idle connections are capped per client address: a client holding its cap of idle
// connections to the proxy gets its next one refused (503 naming the limit), while its
// busy connections and every other client keep being served.
import t from 'tap';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { request, Agent } from 'undici';
import { ClusterModel } from '../cluster/model.js';
import { NodeProxy } from '../proxy/server.js';
import { createPolicy } from '../proxy/policy/index.js';
import { DEFAULT_QUEUE_CONFIG } from '../queue/index.js';
import { REV, clusterState } from './fixtures/cluster-state.js';
import { HELLO_HOST, until } from './support.js';

const PROXY_HOST = '127.0.1.1';
const CLIENT_A = '127.0.3.1';
const CLIENT_B = '127.0.3.2';

/** A raw connection from `localAddress`; collects what the proxy writes and notices its close. */
function connect(port: number, localAddress: string): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    let data = '';
    const socket = net.connect({ host: PROXY_HOST, port, localAddress });
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (data += d));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('error', reject);
    socket.once('connect', () => resolve({ socket, received: () => data, closed }));
  });
}

function get(socket: net.Socket, path: string): void {
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${HELLO_HOST}\r\n\r\n`);
}

t.test('the capped client is refused, its busy connections and other clients are served', async (t) => {
  // The revision's one pod: answers at once, or holds /hold until released.
  const held: http.ServerResponse[] = [];
  const pod = http.createServer((req, res) => (req.url === '/hold' ? held.push(res) : res.end('hello\n')));
  await new Promise<void>((r) => pod.listen(0, '127.0.2.50', r));
  t.teardown(() => { pod.closeAllConnections(); pod.close(); });
  const model = new ClusterModel(clusterState({ nodes: 1, endpoints: [{ pod: 'p1', revision: REV, node: 'node1', address: '127.0.2.50', port: (pod.address() as AddressInfo).port, ready: true }] }));
  const proxy = new NodeProxy({
    model, node: 'node1', listen: { host: PROXY_HOST, port: 0 }, admin: { host: PROXY_HOST, port: 0 },
    policy: createPolicy('chikai'), queue: DEFAULT_QUEUE_CONFIG, drainSeconds: 0, localAddress: PROXY_HOST,
    maxIdleConnectionsPerClient: 3,
  });
  await proxy.start();
  t.teardown(() => proxy.close());
  const port = proxy.address.port;

  const a = await Promise.all([1, 2, 3].map(() => connect(port, CLIENT_A)));
  t.teardown(() => a.forEach((c) => c.socket.destroy()));
  const refused = await connect(port, CLIENT_A);
  await refused.closed;
  t.match(refused.received(), /^HTTP\/1\.1 503 Service Unavailable\r\n[\s\S]*127\.0\.3\.1 already holds 3 idle connections to this proxy \(limit 3\)/, 'the 4th idle connection from A: 503 naming the limit, closed');

  const b = new Agent({ connect: { localAddress: CLIENT_B } });
  t.teardown(() => b.close());
  const fromB = await request(`http://${PROXY_HOST}:${port}/`, { headers: { host: HELLO_HOST }, dispatcher: b });
  t.equal(fromB.statusCode, 200, 'client B is served meanwhile');
  t.equal(await fromB.body.text(), 'hello\n');

  // A's open connections still work; one busy with a request is not idle, so A may open one more.
  get(a[0].socket, '/');
  await until('A served on a connection it already had', () => /\r\n\r\nhello\n$/.test(a[0].received()));
  get(a[1].socket, '/hold');
  await until('the request at the pod', () => held.length === 1);
  const extra = await connect(port, CLIENT_A);
  t.teardown(() => extra.socket.destroy());
  get(extra.socket, '/');
  await until('A\'s new connection served while one of its connections is busy', () => /\r\n\r\nhello\n$/.test(extra.received()));
  t.match(extra.received(), /^HTTP\/1\.1 200/);
  extra.socket.destroy();
  await extra.closed;

  // The held request ends: A holds 3 idle connections again and is refused; closing one lets it in.
  held[0]!.end('done\n');
  await until('the held response at A', () => /done\n$/.test(a[1].received()));
  const again = await connect(port, CLIENT_A);
  await again.closed;
  t.match(again.received(), /^HTTP\/1\.1 503/, 'back at the cap once the request ended');
  // The proxy may see the close a moment after this side does; attempts refused meanwhile are counted.
  let refusals = 2;
  a[2]!.socket.destroy();
  await a[2]!.closed;
  const after = await until('a connection accepted once A closed one', async () => {
    const c = await connect(port, CLIENT_A);
    get(c.socket, '/');
    await Promise.race([c.closed, until('answer', () => /hello\n$/.test(c.received()), 2000).catch(() => undefined)]);
    if (/^HTTP\/1\.1 200/.test(c.received())) return c;
    if (/^HTTP\/1\.1 503/.test(c.received())) refusals += 1;
    c.socket.destroy();
    return undefined;
  }, 10_000, 50);
  after.socket.destroy();

  const metrics = await (await request(`http://${PROXY_HOST}:${proxy.adminAddress!.port}/metrics`)).body.text();
  t.match(metrics, new RegExp(`chikai_connections_refused_total\\{[^}]*reason="idle_per_client"[^}]*\\} ${refusals}\\n`), 'every refusal counted');
});
