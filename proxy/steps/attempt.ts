// One try: the request goes to the admitted pod and the pod's answer to the client. What
// the response headers tell (time to first byte, the pod's ORCA load report) feeds load
// tracking, the slots' count of other proxies' requests and the policy. How it ended
// becomes the Outcome: relayed, cut mid-response, or failed before any byte (retryable or
// not), timed out, or the client gone.
import { ORCA_HEADER, parseOrcaHeader } from '../../cluster/orca.js';
import type { QueueEntry } from '../../queue/index.js';
import type { EndpointState } from '../endpoints.js';
import { ClientGoneError, RequestTimeoutError, type ForwardResult, type Outcome, type Routed } from '../exchange.js';
import { errorCode, idempotentWithoutBody } from '../forward.js';
import type { NodeLoadTracker } from '../load.js';
import type { Policy } from '../policy/policy.js';
import type { PodSlots } from '../slots.js';
import type { Attempt, UnansweredRequests } from '../unanswered.js';
import type { AttemptHandler } from './admit.js';

export interface AttemptDeps {
  readonly unanswered: UnansweredRequests;
  readonly tracker: NodeLoadTracker;
  readonly slots: PodSlots<QueueEntry>;
  readonly policy: Policy;
}

function describe(err: Error): string {
  const cause = (err as { cause?: { code?: string } }).cause;
  return [(err as { code?: string }).code, cause?.code, err.message].filter(Boolean).join(' ');
}

/** How a forwarding result ends the request. */
export function attemptOutcome(result: ForwardResult, r: Routed, endpoint: EndpointState, attempt: Attempt): Outcome {
  const node = endpoint.node;
  switch (result.kind) {
    case 'done':
      return { kind: 'relayed', status: result.status, node };
    case 'body-too-large':
      return { kind: 'answered', status: 413, body: `chikai: request body larger than ${result.limit} bytes\n`, close: true, node };
    case 'failed-mid-response':
      return { kind: 'cut', status: result.status, node };
    case 'failed-before-response': {
      const why = r.x.signal.reason;
      if (why instanceof RequestTimeoutError) return { kind: 'timed-out', node };
      if (why instanceof ClientGoneError) return { kind: 'gone', node };
      const unreachable = attempt.unreachable;
      // The pod may have the request, but nothing came back: only a repeatable one goes elsewhere.
      if (unreachable) return { kind: 'failed', pod: endpoint.pod, node, reason: 'node-unreachable', detail: unreachable.message, retryable: idempotentWithoutBody(r.x.req) };
      return { kind: 'failed', pod: endpoint.pod, node, reason: errorCode(result.error) ?? 'connection', detail: describe(result.error), retryable: result.retryable };
    }
  }
}

export function attemptStep(d: AttemptDeps): AttemptHandler {
  return async (r, endpoint) => {
    const attempt = d.unanswered.begin(endpoint.node, r.x.signal);
    let result: ForwardResult;
    try {
      result = await r.x.forward(endpoint, r.route.entry.headers, attempt.signal, (_status, headers, ttfbMs) => {
        attempt.answered();
        const orca = parseOrcaHeader(headers[ORCA_HEADER]);
        d.tracker.observe(endpoint.pod, endpoint.node, ttfbMs, orca);
        // The pod's count leaves out the request it is answering; ours still holds its slot.
        const podInFlight = orca?.named['in_flight'];
        if (podInFlight !== undefined) d.slots.report(endpoint.pod, podInFlight, d.slots.ownInFlight(endpoint.pod) - 1);
        d.policy.observe?.(endpoint, ttfbMs);
      });
    } finally {
      attempt.end();
    }
    return attemptOutcome(result, r, endpoint, attempt);
  };
}
