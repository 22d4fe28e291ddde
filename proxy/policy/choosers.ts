// The choosers every policy is built from: given a load metric (a number per candidate,
// lower is better) or a weight, pick one. Each exists once.

export type Random = () => number;

/**
 * Power of two choices: two different candidates drawn at random, the one with the lower
 * load wins (a tie goes to the first drawn, so ties do not lean toward any position).
 */
export function powerOfTwo<T>(items: readonly T[], load: (item: T) => number, random: Random): T | undefined {
  const n = items.length;
  if (n <= 1) return items[0];
  const i = Math.floor(random() * n);
  let j = Math.floor(random() * (n - 1));
  if (j >= i) j++;
  return load(items[j]!) < load(items[i]!) ? items[j] : items[i];
}

/** One item with probability proportional to its weight; the first when every weight is 0. */
export function weighted<T>(items: readonly T[], weight: (item: T) => number, random: Random): T | undefined {
  let total = 0;
  for (const it of items) total += weight(it);
  if (total <= 0) return items[0];
  let x = random() * total;
  for (const it of items) {
    x -= weight(it);
    if (x < 0) return it;
  }
  return items[items.length - 1];
}

export interface Cheapest<T> {
  readonly item: T;
  readonly cost: number;
}

/** The item of least finite cost, ties broken at random; undefined when no cost is finite. */
export function leastCost<T>(items: readonly T[], cost: (item: T) => number, random: Random): Cheapest<T> | undefined {
  let best: T | undefined;
  let bestCost = Infinity;
  let ties = 0;
  for (const it of items) {
    const c = cost(it);
    if (c < bestCost) {
      best = it;
      bestCost = c;
      ties = 1;
    } else if (c === bestCost && c < Infinity && random() * ++ties < 1) {
      best = it; // reservoir: every tied item equally likely
    }
  }
  return best === undefined ? undefined : { item: best, cost: bestCost };
}

/** Round robin per key (a revision, a node): each call takes the next item in turn. */
export class RoundRobin {
  private readonly cursors = new Map<string, number>();

  next<T>(key: string, items: readonly T[]): T | undefined {
    if (items.length === 0) return undefined;
    const i = this.cursors.get(key) ?? 0;
    this.cursors.set(key, (i + 1) % 1_000_000_007);
    return items[i % items.length];
  }
}
