// The xDS server's log, rate-limited: a client that keeps sending NACKs, unknown types or
// refused certificates must not be able to fill the log (or the disk behind it). Each client
// (key) gets a small burst and then one line per interval; every client together get a
// larger budget. A key's line that passes after some of its lines were dropped says how many
// were.
import { systemClock, type Clock } from '../cluster/clock.js';

export interface RateLimitedLogOptions {
  /** Where lines that pass go. */
  readonly write: (line: string) => void;
  readonly clock?: Clock;
  /** Lines one key may log at once (default 5)… */
  readonly burst?: number;
  /** …then one more per this many ms (default 10 000). */
  readonly intervalMs?: number;
  /** Lines all keys together may log at once (default 50), refilled at 10 per interval. */
  readonly totalBurst?: number;
  /** Keys remembered; the least recently logged is forgotten beyond this (default 10 000). */
  readonly maxKeys?: number;
}

interface Bucket {
  tokens: number;
  refilledAt: number;
  /** Lines of this key not logged since its last line. */
  dropped: number;
}

export class RateLimitedLog {
  private readonly clock: Clock;
  private readonly burst: number;
  private readonly intervalMs: number;
  private readonly totalBurst: number;
  private readonly maxKeys: number;
  private readonly buckets = new Map<string, Bucket>();
  private readonly total: Bucket;

  constructor(private readonly opts: RateLimitedLogOptions) {
    this.clock = opts.clock ?? systemClock;
    this.burst = opts.burst ?? 5;
    this.intervalMs = opts.intervalMs ?? 10_000;
    this.totalBurst = opts.totalBurst ?? 50;
    this.maxKeys = opts.maxKeys ?? 10_000;
    this.total = { tokens: this.totalBurst, refilledAt: this.clock.now(), dropped: 0 };
  }

  /** Log `line` on behalf of `key` (a client address, say) unless that key or everyone is over budget. */
  log(key: string, line: string): void {
    const now = this.clock.now();
    let b = this.buckets.get(key);
    if (b) this.buckets.delete(key);
    else b = { tokens: this.burst, refilledAt: now, dropped: 0 };
    // Re-inserted: the map's order is least recently logged first.
    this.buckets.set(key, b);
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);

    this.refill(b, now, this.burst, 1);
    this.refill(this.total, now, this.totalBurst, 10);
    if (b.tokens < 1 || this.total.tokens < 1) {
      b.dropped += 1;
      return;
    }
    b.tokens -= 1;
    this.total.tokens -= 1;
    const note = b.dropped > 0 ? ` [rate-limited: ${b.dropped} earlier line${b.dropped === 1 ? '' : 's'} about ${key} not logged]` : '';
    b.dropped = 0;
    this.opts.write(line + note);
  }

  private refill(b: Bucket, now: number, cap: number, perInterval: number): void {
    const earned = Math.floor(((now - b.refilledAt) / this.intervalMs) * perInterval);
    if (earned <= 0) return;
    b.tokens = Math.min(cap, b.tokens + earned);
    b.refilledAt = b.tokens === cap ? now : b.refilledAt + (earned * this.intervalMs) / perInterval;
  }
}

/** The host part of a gRPC peer ("ipv4:10.0.0.7:51234", "[::1]:5000", "10.0.0.7:51234"): one key per client machine, not per connection. */
export function peerHost(peer: string): string {
  const p = peer.replace(/^ipv[46]:/, '');
  const bracket = /^\[([^\]]+)\]/.exec(p);
  if (bracket) return bracket[1]!;
  const i = p.lastIndexOf(':');
  return i > 0 && p.indexOf(':') === i ? p.slice(0, i) : p;
}
