// The proxy's side of queue/: one queue per revision, built from the `queue:` settings,
// its metrics wired to the proxy's registry, and its failures turned into HTTP answers.
import type { IncomingMessage } from 'node:http';
import {
  RequestQueue,
  QueueFullError,
  QueueDeadlineError,
  parseQueueConfig,
  type QueueConfig,
  type QueueEntry,
} from '../queue/index.js';
import type { ProxyMetrics } from './metrics.js';
import { NoEligibleEndpointError, type Admission, type WaitingRoom } from './throttle.js';

export type QueueSettings = QueueConfig;
export type QueuedRequest = QueueEntry;

/** Parse the cluster file's `queue:` section (absent = defaults). */
export function parseQueueSettings(raw: unknown, source: string): QueueSettings {
  return parseQueueConfig(raw ?? {}, source);
}

export interface FailureAnswer {
  readonly status: number;
  readonly body: string;
  readonly headers: Record<string, string>;
}

/** The answer for a request that could not get a slot. */
export function queueFailure(err: unknown, timedOut: boolean): FailureAnswer {
  if (err instanceof QueueFullError) {
    return { status: 503, body: 'chikai: queue full, retry later\n', headers: { 'retry-after': String(err.retryAfterSeconds) } };
  }
  if (err instanceof NoEligibleEndpointError) {
    return { status: 503, body: `chikai: ${err.message} (no node-local pod)\n`, headers: {} };
  }
  if (err instanceof QueueDeadlineError || timedOut) {
    return { status: 503, body: 'chikai: no pod became available before the request timeout\n', headers: {} };
  }
  return { status: 503, body: `chikai: ${err instanceof Error ? err.message : 'request could not be queued'}\n`, headers: {} };
}

export class RevisionQueues {
  private readonly queues = new Map<string, RequestQueue>();

  constructor(
    private readonly settings: QueueSettings,
    private readonly metrics: ProxyMetrics,
  ) {}

  room(revisionKey: string): WaitingRoom<QueuedRequest> {
    let q = this.queues.get(revisionKey);
    if (!q) {
      q = new RequestQueue(this.settings, {
        revision: revisionKey,
        observer: {
          onDepth: (depth) => this.metrics.buffered.set({ revision: revisionKey }, depth),
          onWaited: (seconds, outcome) => this.metrics.queueWait.observe({ revision: revisionKey, outcome }, seconds),
        },
      });
      this.queues.set(revisionKey, q);
    }
    return q;
  }

  /** The queue entry for a request: the headers it will be forwarded with, its deadline. */
  entry(req: IncomingMessage, headers: Record<string, string | string[]>, a: Admission, deadline: number): QueuedRequest {
    return {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      host: String(req.headers.host ?? ''),
      headers,
      remoteAddress: req.socket.remoteAddress ?? '',
      revision: a.revisionKey,
      enqueuedAt: Date.now(),
      deadline,
    };
  }

  depths(): [string, number][] {
    return [...this.queues].map(([k, q]) => [k, q.depth]);
  }

  clear(reason: string): void {
    for (const q of this.queues.values()) q.clear(reason);
  }
}
