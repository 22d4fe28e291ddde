// The proxy's side of queue/: one queue per revision, built from the `queue:` settings on
// the proxy's clock, its depth and wait times going to the proxy's metrics.
import type { Clock } from '../cluster/clock.js';
import { RequestQueue, type QueueConfig, type QueueEntry } from '../queue/index.js';
import type { ProxyMetrics } from './metrics.js';
import type { WaitingRoom } from './slots.js';

export class RevisionQueues {
  private readonly queues = new Map<string, RequestQueue>();

  constructor(
    private readonly config: QueueConfig,
    private readonly metrics: ProxyMetrics,
    private readonly clock: Clock,
  ) {}

  room(revisionKey: string): WaitingRoom<QueueEntry> {
    let q = this.queues.get(revisionKey);
    if (!q) {
      q = new RequestQueue(this.config, {
        revision: revisionKey,
        clock: this.clock,
        observer: {
          onDepth: (depth) => this.metrics.buffered.set({ revision: revisionKey }, depth),
          onWaited: (seconds, outcome) => this.metrics.queueWait.observe({ revision: revisionKey, outcome }, seconds),
        },
      });
      this.queues.set(revisionKey, q);
      // The depth series exists from a revision's first request, so dashboards and alerts see 0, not "no data".
      this.metrics.buffered.set({ revision: revisionKey }, 0);
    }
    return q;
  }

  clear(reason: string): void {
    for (const q of this.queues.values()) q.clear(reason);
  }
}
