// Admission: the request takes a slot on a pod the policy chooses (PodSlots, with the
// revision's queue when every pod is full or none is ready) and holds it while the next
// step forwards it. Why it could not get one becomes its answer: 503, with Retry-After
// when the queue is full.
import { QueueDeadlineError, QueueFullError, type QueueEntry } from '../../queue/index.js';
import type { EndpointState } from '../endpoints.js';
import { ClientGoneError, NO_NODE, RequestTimeoutError, type Outcome, type Routed } from '../exchange.js';
import { NoEligibleEndpointError, type PodSlots } from '../slots.js';
import type { TryHandler } from './retry.js';

/** One try on the pod admission chose. */
export type AttemptHandler = (r: Routed, endpoint: EndpointState) => Promise<Outcome>;

function refused(body: string, headers?: Record<string, string>): Outcome {
  return { kind: 'answered', status: 503, body, headers, node: NO_NODE };
}

/** The answer for a request that could not get a slot. */
export function admissionFailure(err: unknown, signal: { readonly reason: unknown }): Outcome {
  if (signal.reason instanceof ClientGoneError) return { kind: 'gone', node: NO_NODE };
  if (err instanceof QueueFullError) return refused('chikai: queue full, retry later\n', { 'retry-after': String(err.retryAfterSeconds) });
  if (err instanceof NoEligibleEndpointError) return refused(`chikai: ${err.message} (no node-local pod)\n`);
  if (err instanceof QueueDeadlineError || signal.reason instanceof RequestTimeoutError) return refused('chikai: no pod became available before the request timeout\n');
  return refused(`chikai: ${err instanceof Error ? err.message : 'request could not be queued'}\n`);
}

export function admitStep(slots: PodSlots<QueueEntry>, next: AttemptHandler): TryHandler {
  return async (r, exclude) => {
    const { revisionKey, revision, entry } = r.route;
    let admitted = false;
    try {
      return await slots.run({ revisionKey, revision, entry, signal: r.x.signal, exclude }, (endpoint) => {
        admitted = true;
        return next(r, endpoint);
      });
    } catch (err) {
      if (admitted) throw err;
      return admissionFailure(err, r.x.signal);
    }
  };
}
