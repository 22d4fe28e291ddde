// Request concurrency reports to the Knative autoscaler, as the activator sends them:
// a websocket to the autoscaler carrying binary protobuf WireStatMessages (stat.proto,
// encoded with protobufjs),
// one frame per second with every active revision's time-averaged concurrency and
// request count, plus an immediate concurrency-1 stat when a revision sees its first
// request — that stat is what wakes a revision scaled to zero.
//
// The autoscaler being away never blocks or fails a request: frames are dropped while
// disconnected (the next second's report carries the state again), pending scale-from-
// zero stats are sent as soon as the connection is back, and reconnects back off.
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import WebSocket from 'ws';
import { every, systemClock, type Clock, type Timer } from '../cluster/clock.js';

export const DEFAULT_AUTOSCALER_URL = 'ws://autoscaler.knative-serving:8080';

/** One stat about one revision (knative/serving metrics.StatMessage). */
export interface StatMessage {
  readonly namespace: string;
  /** Revision name. */
  readonly name: string;
  readonly podName: string;
  readonly averageConcurrentRequests: number;
  readonly requestCount: number;
  readonly averageProxiedConcurrentRequests?: number;
  readonly proxiedRequestCount?: number;
  readonly processUptime?: number;
  /** Seconds since the epoch; leave 0 and the autoscaler uses the arrival time. */
  readonly timestamp?: number;
}

// ---- protobuf encoding ------------------------------------------------------------------

const WireStatMessagesType = protobuf
  .loadSync(fileURLToPath(new URL('../../proxy/stat.proto', import.meta.url)))
  .lookupType('metrics.WireStatMessages');

/** proto3 leaves zero values out; only the fields that are set go into the message. */
function setFields<T extends object>(fields: T): Partial<T> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined && v !== 0 && v !== '')) as Partial<T>;
}

/** metrics.WireStatMessages holding the given stats, ready to send as one binary frame. */
export function encodeWireStatMessages(messages: readonly StatMessage[]): Buffer {
  const wire = messages.map((m) => ({
    ...setFields({ namespace: m.namespace, name: m.name }),
    // A message with an empty stat still carries the field, so the receiver sees a non-nil Stat.
    stat: setFields({
      podName: m.podName,
      averageConcurrentRequests: m.averageConcurrentRequests,
      averageProxiedConcurrentRequests: m.averageProxiedConcurrentRequests,
      requestCount: m.requestCount,
      proxiedRequestCount: m.proxiedRequestCount,
      processUptime: m.processUptime,
      timestamp: m.timestamp === undefined ? undefined : Math.trunc(m.timestamp),
    }),
  }));
  return Buffer.from(WireStatMessagesType.encode(WireStatMessagesType.fromObject({ messages: wire })).finish());
}

// ---- the reporter -----------------------------------------------------------------------

export interface AutoscalerReporterOptions {
  /** Default: ws://autoscaler.knative-serving:8080. */
  readonly url?: string;
  /** This proxy's pod name: the autoscaler counts reporters by it. */
  readonly podName: string;
  /** Reporting period; Knative's activator reports every second. */
  readonly intervalMs?: number;
  /** Back-off between connection attempts. */
  readonly reconnect?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Where connection problems are reported (once per outage); default: console.warn. */
  readonly onWarning?: (message: string) => void;
  /** Time for the periods and the averaging (tests move a manual clock). */
  readonly clock?: Clock;
}

interface RevisionLoad {
  /** Requests for the revision in this proxy now (queued or forwarded): the concurrency. */
  active: number;
  /** ∫ active dt over the current period, in request·ms. */
  area: number;
  lastChange: number;
  periodStart: number;
  requests: number;
  /** 1 while the immediate first-request stat still has to be subtracted from the period. */
  firstReported: number;
}

/** Frames waiting to be written beyond this are dropped: a stuck socket must not hold memory. */
const MAX_BUFFERED_BYTES = 1 << 20;
const KEEPALIVE_MS = 10_000;

export class AutoscalerReporter {
  readonly url: string;
  private readonly intervalMs: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly warn: (message: string) => void;
  private readonly revisions = new Map<string, RevisionLoad>();
  /** When each revision last got an immediate stat, so one period holds at most one. */
  private readonly lastPoke = new Map<string, number>();
  /** Immediate stats that could not be sent yet (revision keys). */
  private readonly pendingPokes = new Set<string>();
  private socket: WebSocket | undefined;
  private readonly clock: Clock;
  private ticker: Timer | undefined;
  private keepalive: Timer | undefined;
  private reconnectTimer: Timer | undefined;
  private backoffMs: number;
  private started = false;
  private closed = false;
  private awaitingPong = false;
  private warnedOutage = false;
  /** Connections opened so far. */
  readonly counts = { connects: 0 };

  constructor(private readonly opts: AutoscalerReporterOptions) {
    this.url = opts.url ?? DEFAULT_AUTOSCALER_URL;
    this.clock = opts.clock ?? systemClock;
    this.intervalMs = opts.intervalMs ?? 1000;
    this.initialBackoffMs = opts.reconnect?.initialMs ?? 200;
    this.maxBackoffMs = opts.reconnect?.maxMs ?? 5000;
    this.backoffMs = this.initialBackoffMs;
    this.warn = opts.onWarning ?? ((m) => console.warn(`chikai autoscaler reporter: ${m}`));
    if (!/^wss?:\/\//.test(this.url)) throw new Error(`autoscaler URL ${JSON.stringify(this.url)}: expected ws://host:port (Knative: ${DEFAULT_AUTOSCALER_URL})`);
  }

  get connected(): boolean {
    return this.socket?.readyState === WebSocket.OPEN;
  }

  /** Connect and report every interval until close(). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    this.connect();
    this.ticker = every(this.clock, this.intervalMs, () => this.report()).unref();
    this.keepalive = every(this.clock, KEEPALIVE_MS, () => this.checkAlive()).unref();
  }

  /**
   * A request for `revisionKey` (`<namespace>/<revision>`) arrived; call the returned
   * function once when it is finished. The first request of a revision that had no
   * activity is reported at once with concurrency 1, as the activator does.
   */
  requestStarted(revisionKey: string): () => void {
    const now = this.clock.now();
    let load = this.revisions.get(revisionKey);
    if (!load) {
      load = { active: 0, area: 0, lastChange: now, periodStart: now, requests: 0, firstReported: 1 };
      this.revisions.set(revisionKey, load);
      this.poke(revisionKey, now);
    }
    const l = load;
    l.area += l.active * (now - l.lastChange);
    l.lastChange = now;
    l.active += 1;
    l.requests += 1;
    let finished = false;
    return () => {
      if (finished) return;
      finished = true;
      const end = this.clock.now();
      l.area += l.active * (end - l.lastChange);
      l.lastChange = end;
      l.active = Math.max(0, l.active - 1);
    };
  }

  /**
   * A request is waiting for a revision with no ready pod: tell the autoscaler now
   * (concurrency 1). At most one such stat per revision per reporting period.
   */
  coldStart(revisionKey: string): void {
    const now = this.clock.now();
    const last = this.lastPoke.get(revisionKey);
    if (last !== undefined && now - last < this.intervalMs) return;
    this.poke(revisionKey, now);
  }

  private poke(revisionKey: string, now: number): void {
    this.lastPoke.set(revisionKey, now);
    if (!this.sendPoke(revisionKey)) this.pendingPokes.add(revisionKey);
  }

  private sendPoke(revisionKey: string): boolean {
    const [namespace, name] = splitKey(revisionKey);
    return this.send([{ namespace, name, podName: this.opts.podName, averageConcurrentRequests: 1, requestCount: 1 }]);
  }

  /** Cut this period's report: time-averaged concurrency and arrivals per revision. */
  private report(): void {
    const now = this.clock.now();
    const messages: StatMessage[] = [];
    for (const [key, l] of this.revisions) {
      l.area += l.active * (now - l.lastChange);
      l.lastChange = now;
      const elapsed = now - l.periodStart;
      const average = elapsed > 0 ? l.area / elapsed : l.active;
      const [namespace, name] = splitKey(key);
      // The immediate stat already counted one request at concurrency 1.
      messages.push({
        namespace,
        name,
        podName: this.opts.podName,
        averageConcurrentRequests: Math.max(0, average - l.firstReported),
        requestCount: Math.max(0, l.requests - l.firstReported),
      });
      // A revision idle for a whole period is forgotten: its next request pokes again.
      if (average === 0 && l.active === 0) this.revisions.delete(key);
      l.area = 0;
      l.requests = 0;
      l.periodStart = now;
      l.firstReported = 0;
    }
    for (const [key, at] of this.lastPoke) if (now - at >= this.intervalMs && !this.revisions.has(key)) this.lastPoke.delete(key);
    if (messages.length > 0) this.send(messages);
  }

  /** Send one frame now; false (the frame is dropped) while there is no open, unclogged connection. */
  private send(messages: readonly StatMessage[]): boolean {
    const ws = this.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN || ws.bufferedAmount > MAX_BUFFERED_BYTES) return false;
    try {
      ws.send(encodeWireStatMessages(messages), { binary: true });
      return true;
    } catch {
      return false;
    }
  }

  private connect(): void {
    if (this.closed) return;
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.url, { handshakeTimeout: 5000, perMessageDeflate: false });
    } catch (err) {
      this.outage(err);
      this.scheduleReconnect();
      return;
    }
    this.socket = ws;
    this.awaitingPong = false;
    ws.on('open', () => {
      this.counts.connects += 1;
      this.backoffMs = this.initialBackoffMs;
      if (this.warnedOutage) this.warn(`connected to ${this.url} again`);
      this.warnedOutage = false;
      for (const key of [...this.pendingPokes]) if (this.sendPoke(key)) this.pendingPokes.delete(key);
    });
    ws.on('pong', () => (this.awaitingPong = false));
    // The autoscaler only listens; anything it sends is ignored.
    ws.on('message', () => undefined);
    ws.on('error', (err) => this.outage(err));
    ws.on('close', () => {
      if (this.socket === ws) this.socket = undefined;
      this.scheduleReconnect();
    });
  }

  private outage(err: unknown): void {
    if (this.warnedOutage || this.closed) return;
    this.warnedOutage = true;
    const why = err instanceof Error ? err.message : String(err);
    this.warn(`cannot reach the Knative autoscaler at ${this.url} (${why}); stats are dropped until it is back, requests are not affected`);
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.maxBackoffMs, Math.round(this.backoffMs * (1.6 + Math.random() * 0.4)));
    this.reconnectTimer = this.clock.after(delay, () => {
      this.reconnectTimer = undefined;
      this.connect();
    }).unref();
  }

  /** A connection whose peer vanished without closing would swallow frames: ping, and drop it if silent. */
  private checkAlive(): void {
    const ws = this.socket;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (this.awaitingPong) {
      ws.terminate();
      return;
    }
    this.awaitingPong = true;
    try {
      ws.ping();
    } catch {
      ws.terminate();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ticker?.cancel();
    this.keepalive?.cancel();
    this.reconnectTimer?.cancel();
    const ws = this.socket;
    this.socket = undefined;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const done = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 1000);
      done.unref();
      ws.once('close', () => {
        clearTimeout(done);
        resolve();
      });
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(1000, 'chikai proxy stopping');
    });
  }
}

function splitKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return i < 0 ? ['', key] : [key.slice(0, i), key.slice(i + 1)];
}
