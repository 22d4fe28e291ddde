// The autoscaler stat stream: a local websocket server stands in for Knative's autoscaler
// and decodes every frame with proxy/stat.proto (test/fixtures/stat-server.ts). The
// reporter's periods run on a manual clock, so every average is exact.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createServer, type AddressInfo } from 'node:net';
import { AutoscalerReporter, encodeWireStatMessages, DEFAULT_AUTOSCALER_URL, type StatMessage } from '../proxy/autoscaler.js';
import { ManualClock } from './fixtures/clock.js';
import { StatServer, decodeStatFrame } from './fixtures/stat-server.js';
import { until } from './support.js';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const REV = 'default/hello-00001';

t.test('the frames are byte for byte what the hand-written encoder wrote before protobufjs did it', async (t) => {
  const golden = JSON.parse(readFileSync(fileURLToPath(new URL('../../test/fixtures/autoscaler/wire-stat-golden.json', import.meta.url)), 'utf8')) as { name: string; messages: StatMessage[]; hex: string }[];
  t.ok(golden.length >= 5);
  for (const g of golden) t.equal(encodeWireStatMessages(g.messages).toString('hex'), g.hex, g.name);
});

t.test('the encoder writes what stat.proto describes, field by field', async (t) => {
  const frame = encodeWireStatMessages([
    { namespace: 'default', name: 'hello-00001', podName: 'chikai-proxy-x', averageConcurrentRequests: 2.5, averageProxiedConcurrentRequests: 0.5, requestCount: 7, proxiedRequestCount: 3, processUptime: 12.25, timestamp: 1_700_000_000 },
    { namespace: 'ns-ü', name: 'b-00002', podName: 'p', averageConcurrentRequests: 0, requestCount: 0 },
  ]);
  t.same(decodeStatFrame(frame), [
    { namespace: 'default', name: 'hello-00001', stat: { podName: 'chikai-proxy-x', averageConcurrentRequests: 2.5, averageProxiedConcurrentRequests: 0.5, requestCount: 7, proxiedRequestCount: 3, processUptime: 12.25, timestamp: 1_700_000_000 } },
    { namespace: 'ns-ü', name: 'b-00002', stat: { podName: 'p', averageConcurrentRequests: 0, averageProxiedConcurrentRequests: 0, requestCount: 0, proxiedRequestCount: 0, processUptime: 0, timestamp: 0 } },
  ]);
  t.same(decodeStatFrame(encodeWireStatMessages([])), [], 'an empty report is an empty message');
  t.equal(DEFAULT_AUTOSCALER_URL, 'ws://autoscaler.knative-serving:8080');
});

t.test('a first request is reported at once with concurrency 1, then every period with the time-averaged concurrency', async (t) => {
  const server = await StatServer.start();
  t.teardown(() => server.close());
  const clock = new ManualClock();
  const reporter = new AutoscalerReporter({ url: server.url, podName: 'chikai-proxy-abc12', clock });
  t.teardown(() => reporter.close());
  reporter.start();
  await server.connected();
  await until('the reporter to see its connection open', () => reporter.connected);

  const done1 = reporter.requestStarted(REV);
  const done2 = reporter.requestStarted(REV);
  t.same(await server.frame(0), [{ namespace: 'default', name: 'hello-00001', stat: { podName: 'chikai-proxy-abc12', averageConcurrentRequests: 1, averageProxiedConcurrentRequests: 0, requestCount: 1, proxiedRequestCount: 0, processUptime: 0, timestamp: 0 } }],
    'the scale-from-zero stat: concurrency 1, one request, before any periodic report (and only one for two requests)');

  clock.advance(1000);
  const first = (await server.frame(1))[0]!;
  t.same([first.name, first.stat.averageConcurrentRequests, first.stat.requestCount], ['hello-00001', 1, 1], 'first period: two in flight all along and two arrivals, minus the one already reported');

  clock.advance(1000);
  const second = (await server.frame(2))[0]!;
  t.same([second.stat.averageConcurrentRequests, second.stat.requestCount], [2, 0], 'concurrency 2, no new arrivals');

  clock.advance(250);
  done1();
  done1();
  clock.advance(250);
  done2();
  clock.advance(500);
  const third = (await server.frame(3))[0]!;
  t.equal(third.stat.averageConcurrentRequests, 0.75, 'two for a quarter, one for a quarter, none for half the period: 0.75 (a second done() changes nothing)');
  clock.advance(1000);
  const fourth = (await server.frame(4))[0]!;
  t.same([fourth.stat.averageConcurrentRequests, fourth.stat.requestCount], [0, 0], 'an idle period is reported once…');
  clock.advance(1000);
  reporter.requestStarted(REV)();
  t.equal((await server.frame(5))[0]!.stat.averageConcurrentRequests, 1, '…then the revision is forgotten: its next request is a first request again');
  t.equal(server.textFrames.length, 0, 'only binary frames');
});

t.test('cold starts: at most one per revision and period, kept while the autoscaler is away, never an error', async (t) => {
  const port = await freePort();
  const warnings: string[] = [];
  const clock = new ManualClock();
  const reporter = new AutoscalerReporter({
    url: `ws://127.0.0.1:${port}`,
    podName: 'chikai-proxy-node1',
    intervalMs: 60_000,
    reconnect: { initialMs: 20, maxMs: 100 },
    onWarning: (m) => warnings.push(m),
    clock,
  });
  t.teardown(() => reporter.close());
  reporter.start();

  // Nobody listens yet: the proxy's calls must simply work.
  reporter.coldStart(REV);
  const done = reporter.requestStarted('default/other-00001');
  done();
  t.notOk(reporter.connected);

  const server = await StatServer.start(port);
  t.teardown(() => server.close());
  // Reconnecting backs off on the reporter's clock.
  await until('the reporter to reconnect', () => (clock.advance(100), server.clients.size > 0));
  const delivered = [await server.frame(0), await server.frame(1)].map((f) => f[0]!.name).sort();
  t.same(delivered, ['hello-00001', 'other-00001'], 'both pending scale-from-zero stats are sent once connected');
  t.equal(server.frames[0]![0]!.stat.averageConcurrentRequests, 1);
  t.match(warnings[0], new RegExp(`cannot reach the Knative autoscaler at ws://127\\.0\\.0\\.1:${port}.*requests are not affected`));

  reporter.coldStart(REV);
  reporter.coldStart('default/third-00001');
  const next = await server.frame(2);
  t.equal(next[0]!.name, 'third-00001', 'a second cold start of the same revision in one period is not sent again');

  // The autoscaler restarts (Knative closes with 1012): the reporter comes back by itself.
  for (const c of server.clients) c.close(1012, 'Restarting');
  await until('the old connection to close', () => !reporter.connected);
  await until('the reporter to reconnect', () => (clock.advance(100), reporter.connected));
  reporter.coldStart('default/fourth-00001');
  t.equal((await server.frame(3))[0]!.name, 'fourth-00001');
  t.ok(reporter.counts.connects >= 2, 'reconnected');
});

t.test('calls before start() and after close() are harmless', async (t) => {
  const reporter = new AutoscalerReporter({ url: 'ws://127.0.0.1:9', podName: 'p' });
  const done = reporter.requestStarted(REV);
  reporter.coldStart(REV);
  done();
  await reporter.close();
  await reporter.close();
  reporter.requestStarted(REV)();
  t.throws(() => new AutoscalerReporter({ url: 'http://autoscaler:8080', podName: 'p' }), /expected ws:\/\/host:port/);
});
