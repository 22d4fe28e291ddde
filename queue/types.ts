// The shapes the queue shares with the proxy and with users' own orderings and hooks.

/** Request headers as the proxy will forward them (lower-case names). Hooks rewrite them in place. */
export type RequestHeaders = Record<string, string | string[] | undefined>;

/** One request waiting for a slot. The proxy builds it; the queue reads and updates it. */
export interface QueueEntry {
  readonly method: string;
  /** Path and query, as in the request line. */
  readonly path: string;
  /** Host header as received (may carry a port). */
  readonly host: string;
  /** The headers the proxy will forward; push and pop hooks rewrite these. */
  headers: RequestHeaders;
  readonly remoteAddress: string;
  /** `namespace/name` of the revision; used for `${revision}` when the queue was not given one. */
  readonly revision?: string;
  /**
   * When the entry first joined a queue (ms since the epoch). The queue sets it on the
   * first `wait`; a value passed in is overwritten.
   */
  enqueuedAt?: number;
  /**
   * When the request must stop waiting (ms since the epoch), normally now + the revision's
   * timeout; absent = no limit. On the first `wait` the queue lowers it to the deadline a
   * `chikai-timeout-ms` / `chikai-deadline` request header asks for (a header can only
   * shorten it, never extend it past the revision timeout).
   */
  deadline?: number;
  /**
   * Priority class. Set it to force a class; otherwise the queue fills it in on the first
   * `wait` (from the priority header, then the priority rules, then the default).
   */
  priorityClass?: string;
}

/** How a wait ended, as reported to the observer. */
export type WaitOutcome = 'served' | 'full' | 'deadline' | 'abandoned' | 'cleared' | 'error';

/** Metrics sink; the proxy wires it to its own prom-client registry. */
export interface QueueObserver {
  /** Called whenever the number of waiting entries changes. */
  onDepth?(depth: number, revision: string): void;
  /**
   * Called once per `wait` that settled, with the time that wait spent queued. A request
   * that waits again (its turn was lost, or it retries) reports each wait.
   */
  onWaited?(seconds: number, outcome: WaitOutcome, revision: string): void;
}

/** What a hook knows besides the entry itself. */
export interface HookContext {
  readonly phase: 'push' | 'pop';
  readonly revision: string;
  /** Time since the entry first joined, in ms (0 at push). */
  readonly waitMs: number;
  /** At push: entries waiting including this one. At pop: entries still waiting after it left. */
  readonly depth: number;
  /** Its priority class; undefined at push (classes are decided after the push hooks). */
  readonly priorityClass: string | undefined;
  /** The clock reading the hook runs at (ms since the epoch). */
  readonly now: number;
}

/**
 * A programmatic hook: reads the entry and may rewrite `entry.headers` in place. A hook that
 * throws at push fails that request; at pop it fails that request and the turn passes on.
 */
export type QueueHook = (entry: QueueEntry, context: HookContext) => void;

/** Rejected at once: the queue already holds `maxDepth` entries. Answer 503 with Retry-After. */
export class QueueFullError extends Error {
  override readonly name = 'QueueFullError';
  constructor(
    readonly depth: number,
    readonly maxDepth: number,
    readonly retryAfterSeconds: number,
  ) {
    super(`the queue is full (${depth} of ${maxDepth} waiting)`);
  }
}

/** The entry's deadline passed while it waited (or before it could join). */
export class QueueDeadlineError extends Error {
  override readonly name = 'QueueDeadlineError';
  constructor(
    readonly deadline: number,
    readonly waitedMs: number,
  ) {
    super(`the request's deadline passed after ${Math.round(waitedMs)} ms in the queue`);
  }
}

/** The wait's AbortSignal fired (the client went away); `cause` is the signal's reason. */
export class QueueAbortedError extends Error {
  override readonly name = 'AbortError';
  constructor(reason: unknown) {
    super('the request left the queue: its signal was aborted', { cause: reason });
  }
}

/** `clear(reason)` emptied the queue (e.g. the proxy is shutting down). */
export class QueueClearedError extends Error {
  override readonly name = 'QueueClearedError';
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** A push or pop hook threw; `cause` is what it threw. */
export class QueueHookError extends Error {
  override readonly name = 'QueueHookError';
  constructor(
    readonly phase: 'push' | 'pop',
    cause: unknown,
  ) {
    super(`a ${phase} hook failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}
