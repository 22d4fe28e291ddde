// The traffic map's server on its own: the page, the map as JSON and as server-sent events,
// a scrape every interval, targets that are down reported on the map, bad requests answered.
import t from 'tap';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { TrafficMapServer } from '../map/server.js';
import type { TrafficMap } from '../map/model.js';

const METRICS = [
  'chikai_requests_total{revision="default/hello-00001",target_node="node1",code="200",node="node1"} 42',
  'chikai_requests_in_flight{revision="default/hello-00001",node="node1"} 2',
].join('\n') + '\n';

let proxy: Server;
let map: TrafficMapServer;
let base = '';

t.before(async () => {
  // node1's proxy admin answers; its gateway and the xDS admin are a closed port.
  proxy = createServer((req, res) => {
    res.writeHead(req.url === '/metrics' ? 200 : 404, { 'content-type': 'text/plain' });
    res.end(req.url === '/metrics' ? METRICS : 'no\n');
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const closedUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise<void>((r) => closed.close(() => r()));
  map = new TrafficMapServer({
    intervalMs: 200,
    targets: {
      nodes: [{ name: 'node1', region: 'cloud', zone: 'a', address: '127.0.1.1' }],
      xdsAdmin: closedUrl,
      gatewayAdmin: () => closedUrl,
      proxyAdmin: () => `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    },
  });
  const a = await map.listen('127.0.0.1', 0);
  base = `http://127.0.0.1:${a.port}`;
});
t.teardown(async () => {
  await map.close();
  await new Promise<void>((r) => proxy.close(() => r()));
});

t.test('the page, and what is not there', async (t) => {
  const page = await request(`${base}/`);
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /text\/html/);
  t.match(await page.body.text(), /new EventSource\('events'\)/, 'the page follows the server-sent events');
  const post = await request(`${base}/`, { method: 'POST', body: 'x' });
  t.equal(post.statusCode, 405);
  t.equal(post.headers['allow'], 'GET, HEAD');
  await post.body.text();
  const missing = await request(`${base}/nope`);
  t.equal(missing.statusCode, 404);
  t.match(await missing.body.text(), /no such page \/nope: .*\/map\.json .*\/events/);
});

t.test('server-sent events carry a new map every scrape; a target that is down is on it', async (t) => {
  const res = await request(`${base}/events`);
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /text\/event-stream/);
  const maps: TrafficMap[] = [];
  let buffer = '';
  for await (const chunk of res.body) {
    buffer += chunk.toString();
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = /^event: map\ndata: (.*)$/s.exec(frame)?.[1];
      if (data) maps.push(JSON.parse(data) as TrafficMap);
    }
    if (maps.length >= 3) break;
  }
  res.body.destroy();
  const seqs = maps.map((m) => m.seq);
  t.ok(seqs[1] === seqs[0] + 1 && seqs[2] === seqs[1] + 1, `consecutive scrapes ${seqs.join(', ')}`);
  const last = maps[2];
  t.match(last.nodes[0].gatewayError, /Envoy admin: .*ECONNREFUSED.*xDS view: .*ECONNREFUSED/s);
  t.equal(last.nodes[0].proxyError, null);
  t.same(last.queues, [{ node: 'node1', revision: 'default/hello-00001', queued: 0, inFlight: 2 }]);
  t.same(last.flows.map((f) => [f.from, f.via, f.to, f.total, f.ratePerSecond]), [['node1', 'proxy', 'node1', 42, 0]]);

  const json = await request(`${base}/map.json`);
  t.equal(json.statusCode, 200);
  t.ok(((await json.body.json()) as TrafficMap).seq >= last.seq, '/map.json: the latest map');
});
