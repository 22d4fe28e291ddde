// Every request that is not a probe is counted once it ended: by revision ("unknown"
// before one was found), the node of the pod that answered ("none") and status code, with
// its duration from arrival.
import type { Clock } from '../../cluster/clock.js';
import { statusOf, type Exchange, type Handler } from '../exchange.js';
import type { ProxyMetrics } from '../metrics.js';

export function metricsStep(metrics: ProxyMetrics, clock: Clock, next: Handler<Exchange>): Handler<Exchange> {
  return async (x) => {
    const o = await next(x);
    const revision = x.route?.revisionKey ?? 'unknown';
    metrics.requests.inc({ revision, target_node: o.node, code: String(statusOf(o)) });
    metrics.duration.observe({ revision, target_node: o.node }, (clock.now() - x.arrivedAt) / 1000);
    return o;
  };
}
