// Measured round trips from this node to every other node: an active probe to each peer
// proxy over a keep-alive connection (the activator probe request, answered by the proxy
// itself), corrected by passive samples from forwarded requests. A peer that has not
// answered for `unreachableAfterMs` is unreachable until it answers again.
import { Pool } from 'undici';
import type { ClusterModel } from '../cluster/model.js';
import { NETWORK_PROBE_HEADER } from './headers.js';

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
}

interface Peer {
  readonly node: string;
  pool: Pool;
  url: string;
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
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class RttProber {
  private readonly peers = new Map<string, Peer>();
  private timer: NodeJS.Timeout | undefined;
  private readonly started = performance.now();
  private readonly interval: number;
  private readonly timeout: number;
  private readonly unreachableAfter: number;
  private readonly window: number;
  private peerPort: number;

  constructor(private readonly opts: RttProberOptions) {
    this.interval = opts.intervalMs ?? 500;
    this.timeout = opts.timeoutMs ?? 1000;
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
    this.timer = setInterval(() => this.tick(), Math.min(250, this.interval));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all([...this.peers.values()].map((p) => p.pool.destroy().catch(() => undefined)));
    this.peers.clear();
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
    const snap = this.opts.model.current;
    const wanted = new Set<string>();
    for (const n of snap.nodes) {
      if (n.name === this.opts.node) continue;
      wanted.add(n.name);
      const url = `http://${n.address}:${this.peerPort}`;
      const cur = this.peers.get(n.name);
      if (cur && cur.url === url) continue;
      if (cur) void cur.pool.destroy().catch(() => undefined);
      this.peers.set(n.name, {
        node: n.name,
        url,
        pool: new Pool(url, {
          connections: 2,
          localAddress: this.opts.localAddress,
          connect: { timeout: this.timeout },
          keepAliveTimeout: 60_000,
        }),
        samples: [],
        estimate: undefined,
        lastSuccess: performance.now(),
        reachable: true,
        busy: false,
        lastProbe: 0,
      });
    }
    for (const [name, p] of this.peers) {
      if (!wanted.has(name)) {
        void p.pool.destroy().catch(() => undefined);
        this.peers.delete(name);
      }
    }
  }

  private tick(): void {
    this.syncPeers();
    const now = performance.now();
    for (const p of this.peers.values()) {
      if (p.reachable && now - p.lastSuccess > this.unreachableAfter && now - this.started > this.unreachableAfter) {
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
    const t0 = performance.now();
    p.lastProbe = t0;
    try {
      const res = await p.pool.request({
        method: 'GET',
        path: '/',
        headers: { [NETWORK_PROBE_HEADER]: 'activator' },
        signal: AbortSignal.timeout(this.timeout),
      });
      await res.body.dump();
      // Any answer (a draining peer says 503) proves the node is there.
      const ms = performance.now() - t0;
      p.lastSuccess = performance.now();
      this.record(p, ms);
      p.reachable = true;
      this.opts.onUpdate?.(p.node, p.estimate, true);
    } catch {
      // Timeouts and refusals only count through lastSuccess.
    } finally {
      p.busy = false;
    }
  }
}
