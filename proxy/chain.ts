// The request path, composed here and nowhere else, the way Knative's activator nests its
// handlers. Each step is a function of the next one (proxy/steps/), so reading the list
// top to bottom is reading what happens to a request, outermost first:
//
//   respond      the Outcome becomes the client's answer (the only writer of the proxy's own answers)
//   probe        Knative's and the kubelet's probes, answered here
//   lifecycle    requests being handled (drain waits for them); Connection: close while draining
//   metrics      requests_total / duration per revision, target node and status
//   target       one Host; absolute-form targets to origin form (400 otherwise)
//   resolve      revision from the Knative headers or Host (404); the request's context
//   body limit   a declared body over maxBodyBytes (413)
//   concurrency  the autoscaler's concurrency report, and its cold-start stat
//   timeout      the revision's timeoutSeconds
//   retry        a second try on another pod when the first failed before any byte
//   admit        a slot on a pod the policy chose, waiting in the revision's queue
//   attempt      forward to that pod, relay its answer, learn from its headers
//
// Every protocol enters at the top as an Exchange (exchange.ts): HTTP/1 requests
// (http1.ts) and upgrades (upgrade.ts) today; HTTP/2 (h2c) is a third adapter and needs
// nothing below to change. No path can skip a step.
import type { Clock } from '../cluster/clock.js';
import type { ClusterModel } from '../cluster/model.js';
import type { QueueEntry } from '../queue/index.js';
import type { Exchange, Handler } from './exchange.js';
import type { NodeLoadTracker } from './load.js';
import type { ProxyMetrics } from './metrics.js';
import type { Policy } from './policy/policy.js';
import type { PodSlots } from './slots.js';
import { admitStep } from './steps/admit.js';
import { attemptStep } from './steps/attempt.js';
import { bodyLimitStep } from './steps/body-limit.js';
import { concurrencyStep, type ConcurrencyReporter } from './steps/concurrency.js';
import type { Lifecycle } from './steps/lifecycle.js';
import { metricsStep } from './steps/metrics.js';
import { probeStep } from './steps/probe.js';
import { requestTargetStep } from './steps/request-target.js';
import { resolveStep } from './steps/resolve.js';
import { respondStep } from './steps/respond.js';
import { retryStep } from './steps/retry.js';
import { timeoutStep } from './steps/timeout.js';
import type { UnansweredRequests } from './unanswered.js';

export interface ChainDeps {
  readonly model: ClusterModel;
  readonly clock: Clock;
  readonly lifecycle: Lifecycle;
  readonly metrics: ProxyMetrics;
  readonly maxBodyBytes: number;
  readonly concurrency: ConcurrencyReporter | undefined;
  readonly slots: PodSlots<QueueEntry>;
  readonly policy: Policy;
  readonly tracker: NodeLoadTracker;
  readonly unanswered: UnansweredRequests;
}

export function requestChain(d: ChainDeps): Handler<Exchange> {
  const attempt = attemptStep({ unanswered: d.unanswered, tracker: d.tracker, slots: d.slots, policy: d.policy });
  const admitted = admitStep(d.slots, attempt);
  const retried = retryStep(d.metrics, admitted);
  const timed = timeoutStep(d.clock, retried);
  const reported = concurrencyStep(d.concurrency, timed);
  const limited = bodyLimitStep(d.maxBodyBytes, reported);
  const resolved = resolveStep(d.model, limited);
  const targeted = requestTargetStep(resolved);
  const counted = metricsStep(d.metrics, d.clock, targeted);
  const tracked = d.lifecycle.step(counted);
  const probed = probeStep(() => d.lifecycle.draining, tracked);
  return respondStep(probed);
}
