// The autoscaler stat stream: a local websocket server stands in for Knative's autoscaler
// and decodes every frame with proxy/stat.proto (protobufjs), independently of the
// hand-written encoder.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { createServer, type AddressInfo } from 'node:net';
import protobuf from 'protobufjs';
import { WebSocketServer, type WebSocket } from 'ws';
import { AutoscalerReporter, encodeWireStatMessages, DEFAULT_AUTOSCALER_URL } from '../proxy/autoscaler.js';

const root = protobuf.loadSync(fileURLToPath(new URL('../../proxy/stat.proto', import.meta.url)));
const WireStatMessages = root.lookupType('metrics.WireStatMessages');

interface DecodedStat {
  podName: string;
  averageConcurrentRequests: number;
  averageProxiedConcurrentRequests: number;
  requestCount: number;
  proxiedRequestCount: number;
  processUptime: number;
  timestamp: number;
}
interface Decoded { namespace: string; name: string; stat: DecodedStat }

function decode(frame: Buffer): Decoded[] {
  const obj = WireStatMessages.toObject(WireStatMessages.decode(frame), { defaults: true, longs: Number }) as { messages: Decoded[] };
  return obj.messages;
}

/** The autoscaler's stat server: records every binary frame, decoded. */
class StatServer {
  readonly frames: Decoded[][] = [];
  readonly textFrames: number[] = [];
  readonly clients = new Set<WebSocket>();
  private waiters: (() => void)[] = [];
  private constructor(private readonly wss: WebSocketServer) {
    wss.on('connection', (ws) => {
      this.clients.add(ws);
      ws.on('close', () => this.clients.delete(ws));
      ws.on('message', (data, isBinary) => {
        if (!isBinary) return void this.textFrames.push(1);
        this.frames.push(decode(Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer)));
        for (const w of this.waiters.splice(0)) w();
      });
    });
  }

  static async start(port = 0): Promise<StatServer> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    });
    return new StatServer(wss);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss.address() as AddressInfo).port}`;
  }

  /** The frame with this index (0-based), waiting for it if needed. */
  async frame(index: number, timeoutMs = 5000): Promise<Decoded[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length <= index) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame #${index} within ${timeoutMs} ms (got ${this.frames.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.frames[index];
  }

  async connected(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.clients.size === 0) {
      if (Date.now() > deadline) throw new Error('the reporter did not connect');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

const REV = 'default/hello-00001';

t.test('the encoder writes what stat.proto describes, field by field', async (t) => {
  const frame = encodeWireStatMessages([
    { namespace: 'default', name: 'hello-00001', podName: 'chikai-proxy-x', averageConcurrentRequests: 2.5, averageProxiedConcurrentRequests: 0.5, requestCount: 7, proxiedRequestCount: 3, processUptime: 12.25, timestamp: 1_700_000_000 },
    { namespace: 'ns-ü', name: 'b-00002', podName: 'p', averageConcurrentRequests: 0, requestCount: 0 },
  ]);
  t.same(decode(frame), [
    { namespace: 'default', name: 'hello-00001', stat: { podName: 'chikai-proxy-x', averageConcurrentRequests: 2.5, averageProxiedConcurrentRequests: 0.5, requestCount: 7, proxiedRequestCount: 3, processUptime: 12.25, timestamp: 1_700_000_000 } },
    { namespace: 'ns-ü', name: 'b-00002', stat: { podName: 'p', averageConcurrentRequests: 0, averageProxiedConcurrentRequests: 0, requestCount: 0, proxiedRequestCount: 0, processUptime: 0, timestamp: 0 } },
  ]);
  t.same(decode(encodeWireStatMessages([])), [], 'an empty report is an empty message');
  t.equal(DEFAULT_AUTOSCALER_URL, 'ws://autoscaler.knative-serving:8080');
});

t.test('a first request is reported at once with concurrency 1, then every second with the averaged concurrency', async (t) => {
  const server = await StatServer.start();
  t.teardown(() => server.close());
  const reporter = new AutoscalerReporter({ url: server.url, podName: 'chikai-proxy-abc12' });
  t.teardown(() => reporter.close());
  reporter.start();
  await server.connected();

  const done1 = reporter.requestStarted(REV);
  const done2 = reporter.requestStarted(REV);
  const immediate = await server.frame(0);
  t.same(immediate, [{ namespace: 'default', name: 'hello-00001', stat: { podName: 'chikai-proxy-abc12', averageConcurrentRequests: 1, averageProxiedConcurrentRequests: 0, requestCount: 1, proxiedRequestCount: 0, processUptime: 0, timestamp: 0 } }],
    'the scale-from-zero stat: concurrency 1, one request, before any periodic report (and only one for two requests)');

  // First period: two requests in flight all along, minus the one already reported.
  const first = (await server.frame(1))[0];
  t.equal(first.name, 'hello-00001');
  t.equal(first.stat.requestCount, 1, 'two arrivals, one of them already reported');
  t.ok(first.stat.averageConcurrentRequests > 0.9 && first.stat.averageConcurrentRequests <= 1, `averaged concurrency ${first.stat.averageConcurrentRequests} ≈ 2 − 1`);

  // Second period: both requests still in flight for the whole period.
  const second = (await server.frame(2))[0];
  t.same([second.stat.averageConcurrentRequests, second.stat.requestCount], [2, 0], 'concurrency 2, no new arrivals');

  done1();
  done1();
  done2();
  const third = (await server.frame(3))[0];
  t.ok(third.stat.averageConcurrentRequests < 2, 'concurrency falls once the requests are done');
  t.equal(server.textFrames.length, 0, 'only binary frames');
});

t.test('cold starts: at most one per revision and period, kept while the autoscaler is away, never an error', async (t) => {
  const port = await freePort();
  const warnings: string[] = [];
  const reporter = new AutoscalerReporter({
    url: `ws://127.0.0.1:${port}`,
    podName: 'chikai-proxy-node1',
    intervalMs: 60_000,
    reconnect: { initialMs: 20, maxMs: 100 },
    onWarning: (m) => warnings.push(m),
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
  const delivered = [await server.frame(0), await server.frame(1)].map((f) => f[0].name).sort();
  t.same(delivered, ['hello-00001', 'other-00001'], 'both pending scale-from-zero stats are sent once connected');
  t.equal(server.frames[0][0].stat.averageConcurrentRequests, 1);
  t.match(warnings[0], new RegExp(`cannot reach the Knative autoscaler at ws://127\\.0\\.0\\.1:${port}.*requests are not affected`));

  reporter.coldStart(REV);
  reporter.coldStart('default/third-00001');
  const next = await server.frame(2);
  t.equal(next[0].name, 'third-00001', 'a second cold start of the same revision in one period is not sent again');

  // The autoscaler restarts (Knative closes with 1012): the reporter comes back by itself.
  for (const c of server.clients) c.close(1012, 'Restarting');
  await new Promise((r) => setTimeout(r, 50));
  await server.connected();
  reporter.coldStart('default/fourth-00001');
  t.equal((await server.frame(3))[0].name, 'fourth-00001');
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
