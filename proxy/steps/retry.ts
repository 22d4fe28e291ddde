// A second try on another pod for a request that failed before any response byte, when
// the pod cannot have acted on it (connection refused before the body, or an idempotent
// request without a body: README "Dead pod", "Dark node"). Each try is admitted anew,
// never on a pod already tried.
import type { Handler, Outcome, Routed } from '../exchange.js';
import type { ProxyMetrics } from '../metrics.js';

/** Admission and forwarding of one try, kept off the pods in `exclude`. */
export type TryHandler = (r: Routed, exclude: ReadonlySet<string>) => Promise<Outcome>;

export function retryStep(metrics: ProxyMetrics, next: TryHandler): Handler<Routed> {
  return async (r) => {
    const tried = new Set<string>();
    for (;;) {
      const o = await next(r, tried);
      if (o.kind !== 'failed' || !o.retryable || tried.size > 0) return o;
      tried.add(o.pod);
      metrics.retries.inc({ revision: r.route.revisionKey, reason: o.reason });
    }
  };
}
