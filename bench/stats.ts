// Small statistics over latency samples.

/** Samples sorted ascending (a copy). */
export function sorted(xs: ArrayLike<number>): Float64Array {
  return Float64Array.from(xs as ArrayLike<number>).sort();
}

/** Nearest-rank percentile of ascending samples; NaN when there are none. */
export function percentile(asc: Float64Array, p: number): number {
  if (asc.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * asc.length);
  return asc[Math.min(asc.length - 1, Math.max(0, rank - 1))]!;
}

export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return xs.length === 0 ? Number.NaN : s / xs.length;
}

/** Round to `digits` decimals (JSON and tables). */
export function round(x: number, digits = 2): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** At most `points` (value, fraction ≤ value) pairs of an empirical CDF, evenly spaced in rank. */
export function cdfPoints(asc: Float64Array, points = 200): [number, number][] {
  const n = asc.length;
  if (n === 0) return [];
  const out: [number, number][] = [];
  const step = Math.max(1, Math.floor(n / points));
  for (let i = 0; i < n; i += step) out.push([asc[i]!, (i + 1) / n]);
  if (out[out.length - 1]![1] !== 1) out.push([asc[n - 1]!, 1]);
  return out;
}
