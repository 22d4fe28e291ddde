// The nonna-style request queue: per-revision waiting room with pluggable ordering and
// header hooks. The proxy uses RequestQueue and parseQueueConfig; the rest is for users
// who add their own orderings or hooks.
export { RequestQueue, effectiveDeadline, type RequestQueueOptions } from './queue.js';
export {
  parseQueueConfig,
  DEFAULT_QUEUE_CONFIG,
  DEFAULT_MAX_DEPTH,
  PRIORITY_HEADER,
  TIMEOUT_HEADER,
  DEADLINE_HEADER,
  type QueueConfig,
  type PriorityConfig,
  type PriorityRule,
  type DeadlineConfig,
} from './config.js';
export {
  registerOrdering,
  orderingNames,
  createOrdering,
  classify,
  fifoOrdering,
  priorityOrdering,
  deadlineOrdering,
  type QueueOrdering,
  type OrderingFactory,
  type RankFacts,
} from './ordering.js';
export { compileHeaderRules, parseTemplate, renderTemplate, TEMPLATE_VARIABLES, type HeaderRule, type Template, type TemplateVariable } from './hooks.js';
export type { RequestMatch } from './match.js';
export { IndexedHeap, type HeapPosition } from './heap.js';
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
