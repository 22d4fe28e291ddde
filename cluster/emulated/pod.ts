// An emulated Knative pod: the user container plus the queue-proxy behaviour chikai relies
// on, in one http.Server. It answers `Konnichiwa from <pod> in <node>` after a sampled
// service time (timers on its clock, never CPU), serves `capacity` requests in parallel and
// queues the rest FIFO, answers queue-proxy readiness probes, and stamps every response
// with an ORCA `endpoint-load-metrics` header so routing policies can see its load.
//
// Routes (any method):
//   K-Network-Probe: <any> or GET /healthz  → 200 `queue` (503 `not ready` after setReady(false))
//   K-Network-Probe: probe                  → 200 echoing K-Network-Hash (400 without one), as queue-proxy
//   /echo                                   → streams the request body back as it arrives
//   /count                                  → {"bytes": n} after consuming the body
//   /headers                                → JSON of the request headers received
//   /stream?chunks=N&intervalMs=M           → N chunks `chunk i\n`, M ms apart
//   /sleep?ms=N                             → holds a slot for N ms, then 200 `slept N ms`
//   anything else                           → holds a slot for the service time, then Konnichiwa
//   Upgrade: websocket (any path)           → echoes every message
import http from 'node:http';
import type net from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { systemClock, type Clock, type Timer } from '../clock.js';
import { ORCA_HEADER, formatOrcaHeader } from '../orca.js';

export interface EmulatedPodOptions {
  readonly name: string;
  readonly node: string;
  /** Revision key, `<namespace>/<revision>`. */
  readonly revision: string;
  /** Address to listen on (the emulated cluster uses the node's hidden address). */
  readonly host?: string;
  /** Port to listen on; 0 (default) picks a free one. */
  readonly port?: number;
  /** Service time, uniform between min and max ms (default 3–5). */
  readonly serviceTimeMs?: { readonly min: number; readonly max: number };
  /** Requests served in parallel (default 1); the rest wait FIFO inside the pod. */
  readonly capacity?: number;
  /** Uniform [0, 1) source for service times (seeded in reproducible runs). */
  readonly random?: () => number;
  /** Time for service times and the request rate (tests move a manual clock). */
  readonly clock?: Clock;
}

export const POD_HEADER = 'x-chikai-pod';
/** The service time the pod drew for a request, and how long it actually held it (ms). */
export const SERVICE_TIME_HEADER = 'x-chikai-service-ms';
export const HELD_TIME_HEADER = 'x-chikai-held-ms';
export const LOAD_HEADER = ORCA_HEADER;

/** Window over which the pod reports its request rate. */
const RPS_WINDOW_MS = 1000;
const RPS_BUCKETS = 10;

function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export class EmulatedPod {
  readonly name: string;
  readonly node: string;
  readonly revision: string;
  readonly capacity: number;
  readonly serviceTimeMs: { readonly min: number; readonly max: number };

  /** Responses completed (probes not counted). */
  served = 0;

  private readonly host: string;
  private readonly wantedPort: number;
  private readonly random: () => number;
  private readonly clock: Clock;
  private readonly server: http.Server;
  private readonly wss: WebSocketServer;
  private readonly sockets = new Set<net.Socket>();
  private readonly timers = new Set<Timer>();
  private readonly waiters: { grant: (freedAt: number) => void }[] = [];
  private busySlots = 0;
  private slowdown = 1;
  private ready = true;
  private dead = false;
  private listening = false;
  private boundPort = 0;
  private readonly rpsBuckets = new Array<number>(RPS_BUCKETS).fill(0);
  private rpsBucketStart = 0;
  private rpsBucketIndex = 0;

  constructor(options: EmulatedPodOptions) {
    this.name = options.name;
    this.node = options.node;
    this.revision = options.revision;
    this.host = options.host ?? '127.0.0.1';
    this.wantedPort = options.port ?? 0;
    this.capacity = Math.max(1, Math.floor(options.capacity ?? 1));
    this.serviceTimeMs = options.serviceTimeMs ?? { min: 3, max: 5 };
    if (!(this.serviceTimeMs.min >= 0 && this.serviceTimeMs.max >= this.serviceTimeMs.min)) {
      throw new Error(`pod ${this.name}: serviceTimeMs needs 0 ≤ min ≤ max, got ${JSON.stringify(this.serviceTimeMs)}`);
    }
    this.random = options.random ?? Math.random;
    this.clock = options.clock ?? systemClock;
    this.server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => this.handle(req, res));
    this.server.on('connection', (s: net.Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.wss = new WebSocketServer({ noServer: true });
    this.wss.on('connection', (ws: WebSocket) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on('error', () => {});
    });
    this.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit('connection', ws, req));
    });
    this.server.on('clientError', (_err, socket: net.Socket) => socket.destroy());
  }

  /** Listen; resolves with the port. */
  async start(): Promise<number> {
    if (this.dead) throw new Error(`pod ${this.name} was killed`);
    if (this.listening) return this.boundPort;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.host, port: this.wantedPort }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.listening = true;
    this.boundPort = (this.server.address() as net.AddressInfo).port;
    return this.boundPort;
  }

  get port(): number {
    return this.boundPort;
  }

  get address(): { host: string; port: number } {
    return { host: this.host, port: this.boundPort };
  }

  /** Requests holding a slot now. */
  get busy(): number {
    return this.busySlots;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Requests inside the pod: being served plus waiting. */
  get inFlight(): number {
    return this.busySlots + this.waiters.length;
  }

  get isReady(): boolean {
    return this.ready && !this.dead;
  }

  /** Multiply every service time from now on (2 = twice as slow). */
  setSlowdown(factor: number): void {
    if (!(factor > 0)) throw new Error(`slowdown must be > 0, got ${factor}`);
    this.slowdown = factor;
  }

  /** Readiness as the queue-proxy probe reports it; requests are still served. */
  setReady(ready: boolean): void {
    this.ready = ready;
  }

  /** Requests per second over the last second. */
  recentRps(): number {
    this.rotateRps(this.clock.now());
    const sum = this.rpsBuckets.reduce((a, b) => a + b, 0);
    return sum / (RPS_WINDOW_MS / 1000);
  }

  /**
   * The ORCA load report stamped on every response. `in_flight` counts the requests inside
   * the pod besides the one being answered (it has left its slot when the header is written);
   * a response that did work also carries how long it took (`service_ms`), which Envoy
   * passes on in its load reports.
   */
  loadHeader(serviceMs?: number): string {
    return formatOrcaHeader({
      cpuUtilization: round(this.busySlots / this.capacity),
      rpsFractional: round(this.recentRps()),
      named: { in_flight: this.inFlight, capacity: this.capacity, ...(serviceMs === undefined ? {} : { service_ms: round(serviceMs) }) },
    });
  }

  /**
   * A dead pod: every open socket is destroyed mid-response and the pod stops listening,
   * so new connections are refused.
   */
  kill(): void {
    if (this.dead) return;
    this.dead = true;
    this.clearTimers();
    this.waiters.length = 0;
    this.busySlots = 0;
    for (const ws of this.wss.clients) ws.terminate();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (this.listening) this.server.close();
    this.listening = false;
  }

  /**
   * Stop listening; requests in flight get up to `graceMs` to finish, then every
   * connection is destroyed.
   */
  async close(graceMs = 1000): Promise<void> {
    if (this.dead) return;
    const closed = this.listening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
    this.listening = false;
    this.server.closeIdleConnections();
    for (const ws of this.wss.clients) ws.close(1001, 'pod shutting down');
    const deadline = Date.now() + graceMs;
    while (this.activeResponses > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
      this.server.closeIdleConnections();
    }
    this.dead = true;
    this.clearTimers();
    for (const ws of this.wss.clients) ws.terminate();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closed;
  }

  // --- internals ---------------------------------------------------------------------

  private activeResponses = 0;

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.dead) {
      req.socket.destroy();
      return;
    }
    res.setHeader(POD_HEADER, this.name);
    const url = new URL(req.url ?? '/', 'http://pod');
    const probe = req.headers['k-network-probe'];
    const ua = req.headers['user-agent'] ?? '';
    if (probe !== undefined || ua.startsWith('kube-probe/') || (url.pathname === '/healthz' && req.method === 'GET')) {
      this.answerProbe(req, res);
      return;
    }
    this.activeResponses++;
    this.countArrival();
    let counted = false;
    const finish = () => {
      if (counted) return;
      counted = true;
      this.activeResponses--;
    };
    res.on('finish', () => {
      if (!counted) this.served++;
      finish();
    });
    res.on('close', finish);

    switch (url.pathname) {
      case '/echo':
        return this.echo(req, res);
      case '/count':
        return this.count(req, res);
      case '/headers':
        return this.headers(req, res);
      case '/stream':
        return this.stream(req, res, url);
      case '/sleep':
        return this.work(req, res, Math.max(0, Number(url.searchParams.get('ms') ?? 0) || 0), (ms) => `slept ${ms} ms\n`);
      default:
        return this.work(req, res, this.sampleServiceTime(), () => `Konnichiwa from ${this.name} in ${this.node}\n`);
    }
  }

  private answerProbe(req: http.IncomingMessage, res: http.ServerResponse): void {
    req.resume();
    // Knative's ingress status probe, as queue-proxy answers it: echo the hash the gateway appended.
    if (req.headers['k-network-probe'] === 'probe') {
      const hash = req.headersDistinct['k-network-hash']?.[0];
      res.writeHead(hash ? 200 : 400, hash ? { 'k-network-hash': hash, 'content-length': 0 } : { 'content-length': 0 });
      res.end();
      return;
    }
    const ok = this.isReady;
    const body = ok ? 'queue' : 'not ready';
    res.writeHead(ok ? 200 : 503, {
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(body),
      [LOAD_HEADER]: this.loadHeader(),
    });
    res.end(body);
  }

  private sampleServiceTime(): number {
    const { min, max } = this.serviceTimeMs;
    return (min + (max - min) * this.random()) * this.slowdown;
  }

  /** Wait for a slot, hold it `ms`, answer. An aborted request gives its place or slot back. */
  private work(req: http.IncomingMessage, res: http.ServerResponse, ms: number, body: (ms: number) => string): void {
    req.resume();
    let state: 'waiting' | 'busy' | 'done' = 'waiting';
    let timer: Timer | undefined;
    const arrivedAt = this.clock.now();
    const waiter = {
      /**
       * `freedAt`: when the slot fell free. A slot falls free at its request's due time,
       * however late this process's timer noticed: a pod has its own CPU, and a busy event
       * loop here (proxies, relays, other pods) must delay answers, not shrink the pod's
       * capacity by the lateness of every request it serves.
       */
      grant: (freedAt: number) => {
        state = 'busy';
        this.busySlots++;
        const granted = Math.max(arrivedAt, freedAt);
        const due = granted + ms;
        // Node's timers truncate to whole ms and count from the loop's cached clock, so they
        // can fire up to ~2 ms early: wait out the rest, or the pod would be faster than drawn.
        const done = () => {
          const left = due - this.clock.now();
          if (left > 0) {
            timer = this.after(left, done);
            return;
          }
          timer = undefined;
          release(due);
          const text = body(round(ms));
          res.writeHead(200, {
            'content-type': 'text/plain; charset=utf-8',
            'content-length': Buffer.byteLength(text),
            [LOAD_HEADER]: this.loadHeader(ms),
            [SERVICE_TIME_HEADER]: String(round(ms)),
            [HELD_TIME_HEADER]: String(round(this.clock.now() - granted)),
          });
          res.end(text);
        };
        timer = this.after(due - this.clock.now(), done);
      },
    };
    const release = (freedAt = this.clock.now()) => {
      if (state === 'busy') {
        state = 'done';
        this.busySlots--;
        this.next(freedAt);
      } else if (state === 'waiting') {
        state = 'done';
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
      }
    };
    res.on('close', () => {
      if (state === 'done') return;
      if (timer) this.cancel(timer);
      release();
    });
    if (this.busySlots < this.capacity && this.waiters.length === 0) waiter.grant(arrivedAt);
    else this.waiters.push(waiter);
  }

  private next(freedAt = this.clock.now()): void {
    while (this.busySlots < this.capacity && this.waiters.length > 0 && !this.dead) {
      this.waiters.shift()!.grant(freedAt);
    }
  }

  private echo(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.writeHead(200, {
      'content-type': req.headers['content-type'] ?? 'application/octet-stream',
      [LOAD_HEADER]: this.loadHeader(),
    });
    res.flushHeaders();
    req.pipe(res);
    req.on('error', () => res.destroy());
  }

  private count(req: http.IncomingMessage, res: http.ServerResponse): void {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => this.json(res, { bytes }));
    req.on('error', () => res.destroy());
  }

  private headers(req: http.IncomingMessage, res: http.ServerResponse): void {
    req.resume();
    req.on('end', () => this.json(res, req.headers));
  }

  private stream(req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
    req.resume();
    const chunks = Math.max(0, Math.floor(Number(url.searchParams.get('chunks') ?? 5) || 0));
    const interval = Math.max(0, Number(url.searchParams.get('intervalMs') ?? 100) || 0);
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', [LOAD_HEADER]: this.loadHeader() });
    res.flushHeaders();
    let i = 0;
    let timer: Timer | undefined;
    const tick = () => {
      timer = undefined;
      if (res.destroyed) return;
      if (i >= chunks) {
        res.end();
        return;
      }
      res.write(`chunk ${i}\n`);
      i++;
      if (i >= chunks) res.end();
      else timer = this.after(interval, tick);
    };
    res.on('close', () => {
      if (timer) this.cancel(timer);
    });
    if (chunks === 0) res.end();
    else tick();
  }

  private json(res: http.ServerResponse, value: unknown): void {
    const text = JSON.stringify(value);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      [LOAD_HEADER]: this.loadHeader(),
    });
    res.end(text);
  }

  private after(ms: number, fn: () => void): Timer {
    const t = this.clock.after(ms, () => {
      this.timers.delete(t);
      fn();
    });
    this.timers.add(t);
    return t;
  }

  private cancel(t: Timer): void {
    t.cancel();
    this.timers.delete(t);
  }

  private clearTimers(): void {
    for (const t of this.timers) t.cancel();
    this.timers.clear();
  }

  private countArrival(): void {
    const now = this.clock.now();
    this.rotateRps(now);
    this.rpsBuckets[this.rpsBucketIndex]!++;
  }

  private rotateRps(now: number): void {
    const width = RPS_WINDOW_MS / RPS_BUCKETS;
    if (this.rpsBucketStart === 0) this.rpsBucketStart = now;
    let steps = Math.floor((now - this.rpsBucketStart) / width);
    if (steps <= 0) return;
    if (steps >= RPS_BUCKETS) {
      this.rpsBuckets.fill(0);
      this.rpsBucketStart += steps * width;
      return;
    }
    while (steps-- > 0) {
      this.rpsBucketIndex = (this.rpsBucketIndex + 1) % RPS_BUCKETS;
      this.rpsBuckets[this.rpsBucketIndex] = 0;
      this.rpsBucketStart += width;
    }
  }
}
