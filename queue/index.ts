// The nonna-style request queue: per-revision waiting room with pluggable ordering and
// header hooks. The proxy uses RequestQueue and the config; users who add their own
// orderings or code hooks use registerOrdering and the types below.
export { RequestQueue, type RequestQueueOptions } from './queue.js';
export {
  readQueueConfig,
  parseQueueConfig,
  DEFAULT_QUEUE_CONFIG,
  type QueueConfig,
  type PriorityConfig,
  type PriorityRule,
  type DeadlineConfig,
} from './config.js';
export { registerOrdering, type QueueOrdering, type OrderingFactory, type RankFacts } from './ordering.js';
export type { HeaderRule, Template, TemplateVariable } from './hooks.js';
export type { RequestMatch } from './match.js';
export {
  QueueFullError,
  QueueDeadlineError,
  QueueAbortedError,
  QueueClearedError,
  QueueHookError,
  type QueueEntry,
  type RequestHeaders,
  type QueueObserver,
  type WaitOutcome,
  type HookContext,
  type QueueHook,
} from './types.js';
