// Who goes next. An ordering gives each entry a rank when it joins (after the push hooks);
// the queue serves the smallest rank first and equal ranks in arrival order. Orderings are
// chosen by name in the config; users add their own with `registerOrdering`.
import { matches } from './match.js';
import type { PriorityConfig, QueueConfig } from './config.js';
import type { QueueEntry } from './types.js';

/** What the queue already worked out about an entry, for the ordering to use. */
export interface RankFacts {
  readonly priorityClass: string;
  /** Position of the class in `priority.classes`: 0 is served first. */
  readonly classIndex: number;
  /** The effective deadline (ms since the epoch); Infinity when there is none. */
  readonly deadline: number;
  /** When the entry first joined (ms since the epoch). */
  readonly enqueuedAt: number;
}

export interface QueueOrdering {
  readonly name: string;
  /**
   * The entry's rank, computed once when it first joins: smaller is served sooner, equal
   * ranks in arrival order. Must not be NaN (Infinity is allowed: last).
   */
  rank(entry: Readonly<QueueEntry>, facts: RankFacts): number;
}

export type OrderingFactory = (config: QueueConfig) => QueueOrdering;

export const fifoOrdering: OrderingFactory = () => ({ name: 'fifo', rank: () => 0 });

/** Class first (in `priority.classes` order), first come first served inside a class. */
export const priorityOrdering: OrderingFactory = () => ({ name: 'priority', rank: (_e, f) => f.classIndex });

/** Earliest deadline first; entries without a deadline after all that have one. */
export const deadlineOrdering: OrderingFactory = () => ({ name: 'deadline', rank: (_e, f) => f.deadline });

const registry = new Map<string, OrderingFactory>([
  ['fifo', fifoOrdering],
  ['priority', priorityOrdering],
  ['deadline', deadlineOrdering],
]);

/** Make an ordering selectable as `queue.ordering: <name>`. Register before parsing the config. */
export function registerOrdering(name: string, factory: OrderingFactory): void {
  if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new Error(`ordering name ${JSON.stringify(name)}: expected lower-case letters, digits and -`);
  if (registry.has(name)) throw new Error(`ordering ${JSON.stringify(name)} is already registered`);
  registry.set(name, factory);
}

export function orderingNames(): string[] {
  return [...registry.keys()];
}

export function createOrdering(config: QueueConfig): QueueOrdering {
  const factory = registry.get(config.ordering);
  if (!factory) throw new Error(`unknown queue ordering ${JSON.stringify(config.ordering)}; expected one of ${orderingNames().join(', ')}`);
  return factory(config);
}

/** The first value of a header, trimmed; undefined when absent. */
export function headerValue(entry: QueueEntry, name: string): string | undefined {
  const v = entry.headers[name];
  const first = Array.isArray(v) ? v[0] : v;
  return first === undefined ? undefined : first.trim();
}

/**
 * The entry's priority class: `entry.priorityClass` when the caller set a known class, else
 * the priority header when it names a known class, else the first rule that matches, else
 * the default.
 */
export function classify(entry: QueueEntry, p: PriorityConfig): { readonly name: string; readonly index: number } {
  const pick = (name: string | undefined): { name: string; index: number } | undefined => {
    if (name === undefined) return undefined;
    const index = p.classes.indexOf(name);
    return index < 0 ? undefined : { name, index };
  };
  const fromHeader = p.header === null ? undefined : headerValue(entry, p.header)?.toLowerCase();
  const chosen =
    pick(entry.priorityClass) ??
    pick(fromHeader) ??
    pick(p.rules.find((r) => matches(r.match, entry, undefined))?.priorityClass) ??
    pick(p.default);
  // The config parser guarantees the default is one of the classes.
  return chosen ?? { name: p.default, index: p.classes.length };
}
