// Measured round trips from this node to every other node: an active probe to each peer
// proxy over a keep-alive connection (the activator probe request, answered by the proxy
// itself), corrected by passive samples from forwarded requests. A peer that has not
// answered for `unreachableAfterMs` is unreachable until it answers again. Time is read
// from the injected clock; the probe itself goes through a transport (real HTTP by default).
import { Pool } from 'undici';
import { every, systemClock, type Clock, type Timer } from '../cluster/clock.js';
import type { ClusterModel } from '../cluster/model.js';
import { NETWORK_PROBE_HEADER } from './headers.js';

/** Sends probes; one connection set per peer URL. */
export interface ProbeTransport {
  /** Resolves when the peer answered (any status proves it is there); rejects otherwise. */
  probe(url: string): Promise<void>;
  /** The peer left (or moved): drop its connections. */
  forget(url: string): void;
  close(): Promise<void>;
}

/** The activator probe over a small keep-alive pool per peer, bound to this node's address. */
export class HttpProbeTransport implements ProbeTransport {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly localAddress: string | undefined, private readonly timeoutMs: number) {}

  async probe(url: string): Promise<void> {
    let pool = this.pools.get(url);
    if (!pool) {
      pool = new Pool(url, { connections: 2, localAddress: this.localAddress, connect: { timeout: this.timeoutMs }, keepAliveTimeout: 60_000 });
      this.pools.set(url, pool);
    }
    const res = await pool.request({ method: 'GET', path: '/', headers: { [NETWORK_PROBE_HEADER]: 'activator' }, signal: AbortSignal.timeout(this.timeoutMs) });
    await res.body.dump();
  }

  forget(url: string): void {
    void this.pools.get(url)?.destroy().catch(() => undefined);
    this.pools.delete(url);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.destroy().catch(() => undefined)));
    this.pools.clear();
  }
}

export interface RttProberOptions {
  readonly node: string;
  readonly model: ClusterModel;
  /** Port of the peer proxies on their node addresses. */
  readonly peerPort: number;
  readonly localAddress?: string;
  readonly intervalMs?: number;
  readonly timeoutMs?: number;
  readonly unreachableAfterMs?: number;
  /** Samples kept per peer; the estimate is their median (robust to jitter). */
  readonly window?: number;
  /** Called when an estimate or reachability changes. */
  readonly onUpdate?: (to: string, rttMs: number | undefined, reachable: boolean) => void;
  readonly clock?: Clock;
  readonly transport?: ProbeTransport;
}

interface Peer {
  readonly node: string;
  readonly url: string;
  samples: number[];
  estimate: number | undefined;
  lastSuccess: number;
  reachable: boolean;
  busy: boolean;
  lastProbe: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export class RttProber {
  private readonly peers = new Map<string, Peer>();
  private timer: Timer | undefined;
  private readonly clock: Clock;
  private readonly transport: ProbeTransport;
  private readonly startedAt: number;
  private readonly interval: number;
  private readonly unreachableAfter: number;
  private readonly window: number;
  private peerPort: number;

  constructor(private readonly opts: RttProberOptions) {
    this.clock = opts.clock ?? systemClock;
    this.transport = opts.transport ?? new HttpProbeTransport(opts.localAddress, opts.timeoutMs ?? 1000);
    this.startedAt = this.clock.now();
    this.interval = opts.intervalMs ?? 500;
    // Checked every quarter second, so a silent peer is marked within 2.75 s.
    this.unreachableAfter = opts.unreachableAfterMs ?? 2500;
    this.window = opts.window ?? 9;
    this.peerPort = opts.peerPort;
  }

  setPeerPort(port: number): void {
    this.peerPort = port;
  }

  start(): void {
    if (this.timer) return;
    this.tick();
    this.timer = every(this.clock, Math.min(250, this.interval), () => this.tick()).unref();
  }

  async stop(): Promise<void> {
    this.timer?.cancel();
    this.timer = undefined;
    this.peers.clear();
    await this.transport.close();
  }

  rttMs(to: string): number | undefined {
    return to === this.opts.node ? 0 : this.peers.get(to)?.estimate;
  }

  reachable(to: string): boolean {
    if (to === this.opts.node) return true;
    const p = this.peers.get(to);
    // Not probed yet: assume reachable until proven otherwise.
    return p ? p.reachable : true;
  }

  /**
   * A forwarded request to `to` took `ms` from send to response headers: the round trip is
   * at most that, so an estimate above it is pulled down.
   */
  passiveSample(to: string, ms: number): void {
    const p = this.peers.get(to);
    if (!p || p.estimate === undefined || ms >= p.estimate) return;
    this.record(p, ms);
  }

  private syncPeers(): void {
    const wanted = new Set<string>();
    for (const n of this.opts.model.current.nodes) {
      if (n.name === this.opts.node) continue;
      wanted.add(n.name);
      const url = `http://${n.address}:${this.peerPort}`;
      const cur = this.peers.get(n.name);
      if (cur && cur.url === url) continue;
      if (cur) this.transport.forget(cur.url);
      this.peers.set(n.name, { node: n.name, url, samples: [], estimate: undefined, lastSuccess: this.clock.now(), reachable: true, busy: false, lastProbe: -Infinity });
    }
    for (const [name, p] of this.peers) {
      if (wanted.has(name)) continue;
      this.transport.forget(p.url);
      this.peers.delete(name);
    }
  }

  private tick(): void {
    this.syncPeers();
    const now = this.clock.now();
    for (const p of this.peers.values()) {
      if (p.reachable && now - p.lastSuccess > this.unreachableAfter && now - this.startedAt > this.unreachableAfter) {
        p.reachable = false;
        this.opts.onUpdate?.(p.node, p.estimate, false);
      }
      if (!p.busy && now - p.lastProbe >= this.interval) void this.probe(p);
    }
  }

  private record(p: Peer, ms: number): void {
    p.samples.push(ms);
    if (p.samples.length > this.window) p.samples.shift();
    p.estimate = median(p.samples);
  }

  private async probe(p: Peer): Promise<void> {
    p.busy = true;
    const sentAt = this.clock.now();
    p.lastProbe = sentAt;
    try {
      await this.transport.probe(p.url);
      const now = this.clock.now();
      p.lastSuccess = now;
      this.record(p, now - sentAt);
      p.reachable = true;
      this.opts.onUpdate?.(p.node, p.estimate, true);
    } catch {
      // Timeouts and refusals only count through lastSuccess.
    } finally {
      p.busy = false;
    }
  }
}
