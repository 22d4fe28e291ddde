// One revision's waiting room. The proxy puts a request here when no pod has a free slot
// and calls `next()` whenever a slot frees; the queue decides who gets it (the ordering),
// rewrites headers on the way in and out (the hooks), and drops requests whose client went
// away or whose deadline passed. Every removal is O(log n): waiters sit in indexed heaps.
import { systemClock, type Clock, type Timer } from '../cluster/clock.js';
import { compileHeaderRules } from './hooks.js';
import { IndexedHeap } from './heap.js';
import { classify, createOrdering, headerValue, type QueueOrdering } from './ordering.js';
import { DEFAULT_QUEUE_CONFIG, type DeadlineConfig, type QueueConfig } from './config.js';
import {
  QueueAbortedError,
  QueueClearedError,
  QueueDeadlineError,
  QueueFullError,
  QueueHookError,
  type HookContext,
  type QueueEntry,
  type QueueHook,
  type QueueObserver,
  type WaitOutcome,
} from './types.js';

export interface RequestQueueOptions {
  /** `namespace/name`, for `${revision}` and the observer. */
  readonly revision?: string;
  readonly observer?: QueueObserver;
  /** Code hooks, run after the configured header rules of the same phase. */
  readonly hooks?: { readonly push?: readonly QueueHook[]; readonly pop?: readonly QueueHook[] };
  /** An ordering object, instead of the one `config.ordering` names. */
  readonly ordering?: QueueOrdering;
  /** Time and the deadline timer (tests move a manual clock). */
  readonly clock?: Clock;
}

/** What the queue remembers about an entry across waits (a retry keeps its place). */
interface EntryMemory {
  readonly seq: number;
  readonly rank: number;
  readonly firstJoinedAt: number;
  readonly priorityClass: string;
  waiter: Waiter | undefined;
}

/**
 * One pending `wait`. It is its own abort listener (`handleEvent`), which saves a closure
 * per waiter; Node's listener bookkeeping on the signal is the largest cost left.
 */
class Waiter implements EventListenerObject {
  orderPos = -1;
  deadlinePos = -1;
  agePos = -1;
  constructor(
    private readonly queue: RequestQueue,
    readonly entry: QueueEntry,
    readonly memory: EntryMemory,
    readonly joinedAt: number,
    /** Infinity when there is none. */
    readonly deadline: number,
    readonly signal: AbortSignal,
    readonly resolve: () => void,
    readonly reject: (err: Error) => void,
  ) {}

  handleEvent(): void {
    this.queue.abandon(this);
  }
}

export class RequestQueue {
  readonly config: QueueConfig;
  readonly ordering: QueueOrdering;
  private readonly revision: string;
  private readonly observer: QueueObserver | undefined;
  private readonly pushHooks: QueueHook[];
  private readonly popHooks: QueueHook[];
  private readonly clock: Clock;

  private readonly order = new IndexedHeap<Waiter>(
    (a, b) => a.memory.rank < b.memory.rank || (a.memory.rank === b.memory.rank && a.memory.seq < b.memory.seq),
    { get: (w) => w.orderPos, set: (w, i) => (w.orderPos = i) },
  );
  /** Only waiters with a deadline; its top decides when the one timer fires. */
  private readonly deadlines = new IndexedHeap<Waiter>((a, b) => a.deadline < b.deadline, {
    get: (w) => w.deadlinePos,
    set: (w, i) => (w.deadlinePos = i),
  });
  /** By first arrival, for `oldestWaitMs` whatever the ordering. */
  private readonly ages = new IndexedHeap<Waiter>(
    (a, b) => a.memory.firstJoinedAt < b.memory.firstJoinedAt || (a.memory.firstJoinedAt === b.memory.firstJoinedAt && a.memory.seq < b.memory.seq),
    { get: (w) => w.agePos, set: (w, i) => (w.agePos = i) },
  );
  private readonly memory = new WeakMap<QueueEntry, EntryMemory>();
  private seq = 0;
  private timer: Timer | undefined;
  private timerAt = Infinity;

  constructor(config: QueueConfig = DEFAULT_QUEUE_CONFIG, options: RequestQueueOptions = {}) {
    this.config = config;
    this.ordering = options.ordering ?? createOrdering(config);
    this.revision = options.revision ?? '';
    this.observer = options.observer;
    this.clock = options.clock ?? systemClock;
    this.pushHooks = [...(config.hooks.push.length ? [compileHeaderRules(config.hooks.push)] : []), ...(options.hooks?.push ?? [])];
    this.popHooks = [...(config.hooks.pop.length ? [compileHeaderRules(config.hooks.pop)] : []), ...(options.hooks?.pop ?? [])];
  }

  /** Entries waiting now. */
  get depth(): number {
    return this.order.size;
  }

  /** How long the longest-waiting entry has waited, in ms (0 when empty). */
  get oldestWaitMs(): number {
    const oldest = this.ages.peek();
    return oldest ? Math.max(0, this.clock.now() - oldest.memory.firstJoinedAt) : 0;
  }

  isWaiting(entry: QueueEntry): boolean {
    return this.memory.get(entry)?.waiter !== undefined;
  }

  /**
   * Wait for a turn. Resolves once `next()` picked this entry and the pop hooks rewrote its
   * headers. Rejects at once with QueueFullError when `maxDepth` entries wait; with
   * QueueDeadlineError when its deadline passes first; with QueueAbortedError (name
   * AbortError) as soon as `signal` aborts, leaving the queue at that moment.
   *
   * An entry that waits again (its turn went unused, or the proxy retries it elsewhere)
   * keeps its original place, deadline and class, skips the depth bound (it was admitted
   * already) and does not run the push hooks again.
   */
  wait(entry: QueueEntry, signal: AbortSignal): Promise<void> {
    const now = this.clock.now();
    let memory = this.memory.get(entry);
    if (memory?.waiter) return Promise.reject(new Error('this request is already waiting in the queue'));
    if (signal.aborted) return this.refuse(new QueueAbortedError(signal.reason), 'abandoned');
    if (!memory) {
      if (this.order.size >= this.config.maxDepth) {
        return this.refuse(new QueueFullError(this.order.size, this.config.maxDepth, this.config.retryAfterSeconds), 'full');
      }
      entry.enqueuedAt = now;
      const deadline = effectiveDeadline(entry, this.config.deadline, now);
      entry.deadline = Number.isFinite(deadline) ? deadline : undefined;
      if (deadline <= now) return this.refuse(new QueueDeadlineError(deadline, 0), 'deadline');
      try {
        this.runHooks(this.pushHooks, entry, { phase: 'push', revision: this.revisionOf(entry), waitMs: 0, depth: this.order.size + 1, priorityClass: undefined, now });
      } catch (err) {
        return this.refuse(new QueueHookError('push', err), 'error');
      }
      const cls = classify(entry, this.config.priority);
      entry.priorityClass = cls.name;
      let rank: number;
      try {
        rank = this.ordering.rank(entry, { priorityClass: cls.name, classIndex: cls.index, deadline, enqueuedAt: now });
        if (typeof rank !== 'number' || Number.isNaN(rank)) throw new Error(`ordering ${this.ordering.name} ranked a request ${String(rank)}`);
      } catch (err) {
        return this.refuse(err instanceof Error ? err : new Error(String(err)), 'error');
      }
      memory = { seq: this.seq++, rank, firstJoinedAt: now, priorityClass: cls.name, waiter: undefined };
      this.memory.set(entry, memory);
    }
    const deadline = entry.deadline ?? Infinity;
    if (deadline <= now) return this.refuse(new QueueDeadlineError(deadline, now - memory.firstJoinedAt), 'deadline');

    const mem = memory;
    return new Promise<void>((resolve, reject) => {
      const w = new Waiter(this, entry, mem, now, deadline, signal, resolve, reject);
      mem.waiter = w;
      this.order.push(w);
      this.ages.push(w);
      if (Number.isFinite(deadline)) {
        this.deadlines.push(w);
        this.armTimer();
      }
      signal.addEventListener('abort', w, { once: true });
      this.observer?.onDepth?.(this.order.size, this.revision);
    });
  }

  /** Give the turn to the next entry in order; false when nobody (still) waits. */
  next(): boolean {
    for (;;) {
      const w = this.order.peek();
      if (!w) return false;
      this.detach(w);
      const now = this.clock.now();
      // Its deadline passed and the timer has not fired yet: the turn goes to someone who can use it.
      if (w.deadline <= now) {
        this.settle(w, 'deadline', new QueueDeadlineError(w.deadline, now - w.memory.firstJoinedAt));
        continue;
      }
      try {
        this.runHooks(this.popHooks, w.entry, {
          phase: 'pop',
          revision: this.revisionOf(w.entry),
          waitMs: now - w.memory.firstJoinedAt,
          depth: this.order.size,
          priorityClass: w.memory.priorityClass,
          now,
        });
      } catch (err) {
        this.settle(w, 'error', new QueueHookError('pop', err));
        continue;
      }
      this.settle(w, 'served');
      return true;
    }
  }

  /** Fail every waiting entry with QueueClearedError(reason), e.g. on shutdown. */
  clear(reason: string): void {
    const all = this.order.drain();
    this.deadlines.drain();
    this.ages.drain();
    this.stopTimer();
    for (const w of all) {
      w.signal.removeEventListener('abort', w);
      w.memory.waiter = undefined;
    }
    if (all.length > 0) this.observer?.onDepth?.(0, this.revision);
    for (const w of all) this.finish(w, 'cleared', new QueueClearedError(reason));
  }

  /** @internal The waiter's signal aborted: it leaves now (called by Waiter). */
  abandon(w: Waiter): void {
    if (w.memory.waiter !== w) return;
    this.detach(w);
    this.settle(w, 'abandoned', new QueueAbortedError(w.signal.reason));
  }

  private revisionOf(entry: QueueEntry): string {
    return this.revision || entry.revision || '';
  }

  private runHooks(hooks: readonly QueueHook[], entry: QueueEntry, ctx: HookContext): void {
    for (const hook of hooks) hook(entry, ctx);
  }

  private refuse(err: Error, outcome: WaitOutcome): Promise<void> {
    this.observer?.onWaited?.(0, outcome, this.revision);
    return Promise.reject(err);
  }

  /** Take the waiter out of every structure; it no longer counts in the depth. */
  private detach(w: Waiter): void {
    this.order.remove(w);
    this.ages.remove(w);
    if (this.deadlines.remove(w) && this.deadlines.size === 0) this.stopTimer();
    w.signal.removeEventListener('abort', w);
    w.memory.waiter = undefined;
  }

  /** A detached waiter's end: report the depth, then resolve or reject it. */
  private settle(w: Waiter, outcome: WaitOutcome, err?: Error): void {
    this.observer?.onDepth?.(this.order.size, this.revision);
    this.finish(w, outcome, err);
  }

  private finish(w: Waiter, outcome: WaitOutcome, err?: Error): void {
    // Only a served request may come back (a retry); the others are done with the queue.
    if (outcome !== 'served') this.memory.delete(w.entry);
    if (err) w.reject(err);
    else w.resolve();
    this.observer?.onWaited?.(Math.max(0, this.clock.now() - w.joinedAt) / 1000, outcome, this.revision);
  }

  /** One timer for the whole queue, set for the earliest deadline. */
  private armTimer(): void {
    const first = this.deadlines.peek();
    if (!first) return this.stopTimer();
    if (this.timer && this.timerAt <= first.deadline) return;
    this.stopTimer();
    this.timerAt = first.deadline;
    this.timer = this.clock.after(first.deadline - this.clock.now(), () => this.expire());
  }

  private stopTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private expire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.clock.now();
    for (let w = this.deadlines.peek(); w && w.deadline <= now; w = this.deadlines.peek()) {
      this.detach(w);
      this.settle(w, 'deadline', new QueueDeadlineError(w.deadline, now - w.memory.firstJoinedAt));
    }
    this.armTimer();
  }
}

/**
 * The earliest of the entry's own deadline and what the request headers ask for:
 * `chikai-timeout-ms: N` (N ms from now, when it joins the queue) and
 * `chikai-deadline: T` (T ms since the Unix epoch). Values that are not whole non-negative
 * numbers are ignored. Infinity when there is no deadline at all.
 */
export function effectiveDeadline(entry: QueueEntry, cfg: DeadlineConfig, now: number): number {
  let deadline = entry.deadline ?? Infinity;
  const timeout = cfg.timeoutHeader === null ? undefined : wholeNumber(headerValue(entry, cfg.timeoutHeader));
  if (timeout !== undefined) deadline = Math.min(deadline, now + timeout);
  const absolute = cfg.deadlineHeader === null ? undefined : wholeNumber(headerValue(entry, cfg.deadlineHeader));
  if (absolute !== undefined) deadline = Math.min(deadline, absolute);
  return deadline;
}

function wholeNumber(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d{1,15}$/.test(v)) return undefined;
  return Number(v);
}
