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

const stepKey = (k: StepKey) => `${k.path}|${k.policy}|${k.latency_ms}|${k.users}|${k.side}`;

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

export function aggregate(samples: readonly Sample[]): PaperRow[] {
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    const k = stepKey(s);
    const g = groups.get(k);
    if (g) g.push(s);
    else groups.set(k, [s]);
  }
  const rows: PaperRow[] = [];
  for (const g of groups.values()) {
    const first = g[0]!;
    const byRound = new Map(g.map((s) => [s.round, s.result]));
    const rounds = [...byRound.keys()].sort((a, b) => a - b);
    const perRound = rounds.map((r) => byRound.get(r)!);
    const latencies = pool(g);
    const p50s = perRound.map((s) => q(s.latencies, 50));
    const p99s = perRound.map((s) => q(s.latencies, 99));
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
      p50_ms: q(latencies, 50),
      p50_lo: p50.lo,
      p50_hi: p50.hi,
      p90_ms: q(latencies, 90),
      p99_ms: q(latencies, 99),
      p99_lo: p99.lo,
      p99_hi: p99.hi,
      p50_vs_oracle: null,
      p50_vs_oracle_lo: null,
      p50_vs_oracle_hi: null,
      p99_vs_oracle: null,
      p99_vs_oracle_lo: null,
      p99_vs_oracle_hi: null,
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
  // Ratios to the oracle of the same path, step and side, round by round.
  const byKey = new Map(rows.map((r) => [stepKey(r), r]));
  return rows.map((r) => {
    const oracle = r.policy === 'oracle' ? undefined : byKey.get(stepKey({ ...r, policy: 'oracle' }));
    if (!oracle) return r;
    const r50 = roundRatio(r, oracle, 50);
    const r99 = roundRatio(r, oracle, 99);
    return { ...r, p50_vs_oracle: r50.value, p50_vs_oracle_lo: r50.lo, p50_vs_oracle_hi: r50.hi, p99_vs_oracle: r99.value, p99_vs_oracle_lo: r99.lo, p99_vs_oracle_hi: r99.hi };
  });
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

/**
 * `a` over `b` at percentile `p`, taken per round (both measured in the same round, same
 * step and side; every system runs in every round, so the i-th entries are one round):
 * the median of the rounds' ratios and the lowest and highest of them.
 */
export function roundRatio(a: PaperRow, b: PaperRow, p: 50 | 99): { value: number | null; lo: number | null; hi: number | null } {
  const xs = p === 50 ? a.p50_rounds : a.p99_rounds;
  const ys = p === 50 ? b.p50_rounds : b.p99_rounds;
  const ratios = xs.map((x, i) => {
    const y = ys[i];
    return x !== null && y !== null && y !== undefined && y > 0 ? x / y : null;
  });
  return { value: median(ratios, 3), ...spread(ratios, 3) };
}
