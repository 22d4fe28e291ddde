// From rounds to rows: every (path, policy, latency, users, side) is measured once per
// round; a row reports the percentiles of all its rounds' requests pooled, and as its
// interval the lowest and highest value of any single round. Ratios to the oracle are
// taken per round (the oracle measured in the same round, same step and side), so a drift
// of the machine between rounds moves both sides of the ratio; the row's ratio is the
// median of its per-round ratios, its interval the lowest and highest of them.
//
// With 3 rounds, two rows whose intervals do not overlap differ beyond chance: if both had
// the same distribution, all three rounds of one falling below all three of the other has
// a probability of 1 in 20 (1 in 70 with 4 rounds).
import { percentile, round, sorted } from '../stats.js';
import type { Path } from './systems.js';

export type Side = 'edge' | 'cloud';

/** One side of one step in one round. */
export interface SideSample {
  /** Latencies of the 2xx answers, ms, ascending. */
  readonly latencies: Float64Array;
  readonly offered: number;
  readonly completed: number;
  readonly errors: number;
  /** 2xx answers served on the node where the request arrived. */
  readonly local: number;
}

export interface StepKey {
  readonly path: Path;
  readonly policy: string;
  readonly latency_ms: number;
  readonly users: number;
  readonly side: Side;
}

export interface Sample extends StepKey {
  readonly round: number;
  readonly result: SideSample;
}

export interface PaperRow extends StepKey {
  readonly rounds: number;
  /** Percentiles of every round's answered requests pooled; _lo/_hi: the lowest and highest single round. */
  readonly p50_ms: number | null;
  readonly p50_lo: number | null;
  readonly p50_hi: number | null;
  readonly p90_ms: number | null;
  readonly p99_ms: number | null;
  readonly p99_lo: number | null;
  readonly p99_hi: number | null;
  /** Ratio to the oracle of the same path and round: median over the rounds, lowest, highest (null for the oracle itself, or without one). */
  readonly p50_vs_oracle: number | null;
  readonly p50_vs_oracle_lo: number | null;
  readonly p50_vs_oracle_hi: number | null;
  readonly p99_vs_oracle: number | null;
  readonly p99_vs_oracle_lo: number | null;
  readonly p99_vs_oracle_hi: number | null;
  /** Sums over the rounds. */
  readonly offered: number;
  readonly completed: number;
  readonly errors: number;
  /** Answered with 2xx / offered: lowest and highest single round. */
  readonly done_lo: number | null;
  readonly done_hi: number | null;
  /** Share of the 2xx answers served on the node the request arrived at (pooled, lowest, highest round). */
  readonly local_share: number | null;
  readonly local_lo: number | null;
  readonly local_hi: number | null;
  /** Each round's p50 and p99, in round order. */
  readonly p50_rounds: (number | null)[];
  readonly p99_rounds: (number | null)[];
}

export const stepKey = (k: StepKey) => `${k.path}|${k.policy}|${k.latency_ms}|${k.users}|${k.side}`;

const q = (asc: Float64Array, p: number) => (asc.length === 0 ? null : round(percentile(asc, p), 2));
const share = (num: number, den: number) => (den > 0 ? num / den : null);

function spread(xs: readonly (number | null)[], digits: number): { lo: number | null; hi: number | null } {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x));
  return v.length === 0 ? { lo: null, hi: null } : { lo: round(Math.min(...v), digits), hi: round(Math.max(...v), digits) };
}

function median(xs: readonly (number | null)[], digits: number): number | null {
  const v = xs.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length % 2 === 1 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  return round(m, digits);
}

function pool(samples: readonly Sample[]): Float64Array {
  const all = new Float64Array(samples.reduce((a, s) => a + s.result.latencies.length, 0));
  let i = 0;
  for (const s of samples) {
    all.set(s.result.latencies, i);
    i += s.result.latencies.length;
  }
  return sorted(all);
}

interface Pooled {
  readonly byRound: Map<number, SideSample>;
  readonly latencies: Float64Array;
}

export function aggregate(samples: readonly Sample[]): PaperRow[] {
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    const k = stepKey(s);
    const g = groups.get(k);
    if (g) g.push(s);
    else groups.set(k, [s]);
  }
  const pooled = new Map<string, Pooled>();
  for (const [k, g] of groups) pooled.set(k, { byRound: new Map(g.map((s) => [s.round, s.result])), latencies: pool(g) });

  const rows: PaperRow[] = [];
  for (const [k, g] of groups) {
    const first = g[0]!;
    const me = pooled.get(k)!;
    const rounds = [...me.byRound.keys()].sort((a, b) => a - b);
    const perRound = rounds.map((r) => me.byRound.get(r)!);
    const p50s = perRound.map((s) => q(s.latencies, 50));
    const p99s = perRound.map((s) => q(s.latencies, 99));
    const oracle = first.policy === 'oracle' ? undefined : pooled.get(stepKey({ ...first, policy: 'oracle' }));
    const vsOracle = (p: number) => {
      if (!oracle) return { value: null, lo: null, hi: null };
      const perRoundRatio = rounds.map((r) => {
        const o = oracle.byRound.get(r);
        const a = q(me.byRound.get(r)!.latencies, p);
        const b = o ? q(o.latencies, p) : null;
        return a !== null && b !== null && b > 0 ? a / b : null;
      });
      return { value: median(perRoundRatio, 3), ...spread(perRoundRatio, 3) };
    };
    const r50 = vsOracle(50);
    const r99 = vsOracle(99);
    const p50 = spread(p50s, 2);
    const p99 = spread(p99s, 2);
    const done = spread(perRound.map((s) => share(s.completed, s.offered)), 4);
    const local = spread(perRound.map((s) => share(s.local, s.completed)), 4);
    const sum = (f: (s: SideSample) => number) => perRound.reduce((a, s) => a + f(s), 0);
    const localShare = share(sum((s) => s.local), sum((s) => s.completed));
    rows.push({
      path: first.path,
      policy: first.policy,
      latency_ms: first.latency_ms,
      users: first.users,
      side: first.side,
      rounds: rounds.length,
      p50_ms: q(me.latencies, 50),
      p50_lo: p50.lo,
      p50_hi: p50.hi,
      p90_ms: q(me.latencies, 90),
      p99_ms: q(me.latencies, 99),
      p99_lo: p99.lo,
      p99_hi: p99.hi,
      p50_vs_oracle: r50.value,
      p50_vs_oracle_lo: r50.lo,
      p50_vs_oracle_hi: r50.hi,
      p99_vs_oracle: r99.value,
      p99_vs_oracle_lo: r99.lo,
      p99_vs_oracle_hi: r99.hi,
      offered: sum((s) => s.offered),
      completed: sum((s) => s.completed),
      errors: sum((s) => s.errors),
      done_lo: done.lo,
      done_hi: done.hi,
      local_share: localShare === null ? null : round(localShare, 4),
      local_lo: local.lo,
      local_hi: local.hi,
      p50_rounds: p50s,
      p99_rounds: p99s,
    });
  }
  return rows;
}

/** Pooled latencies of one step over every round (for the CDF chart). */
export function pooledLatencies(samples: readonly Sample[], key: StepKey): Float64Array {
  const k = stepKey(key);
  return pool(samples.filter((s) => stepKey(s) === k));
}

/**
 * How two rows compare beyond the rounds' spread: 'lower' when every round of `a` is below
 * every round of `b` (their intervals do not overlap), 'higher' the other way round, else 'tie'.
 */
export function compareIntervals(a: { lo: number | null; hi: number | null }, b: { lo: number | null; hi: number | null }): 'lower' | 'higher' | 'tie' {
  if (a.lo === null || a.hi === null || b.lo === null || b.hi === null) return 'tie';
  if (a.hi < b.lo) return 'lower';
  if (a.lo > b.hi) return 'higher';
  return 'tie';
}
