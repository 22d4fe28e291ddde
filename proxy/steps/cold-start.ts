// Cold starts as the user sees them: a request that arrives while its revision has no
// ready pod is held (a gauge per revision, which is also the demand per node a scheduler
// can read) until its response starts, and that wait — arrival at zero to the first
// response byte — goes into the cold-start histogram (knative/serving#13459 asks for it).
import type { Clock } from '../../cluster/clock.js';
import type { Exchange, Handler, Routed } from '../exchange.js';
import type { ProxyMetrics } from '../metrics.js';

export function coldStartStep(metrics: ProxyMetrics, clock: Clock, next: Handler<Routed>): Handler<Routed> {
  return async (r) => {
    const { revisionKey, snapshot } = r.route;
    if (snapshot.hasReadyEndpoint(revisionKey)) return next(r);
    const labels = { revision: revisionKey };
    metrics.heldAtZero.inc(labels);
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      metrics.heldAtZero.dec(labels);
    };
    const x = r.x;
    const observed = withResponseStart(x, () => {
      if (held) metrics.coldStart.observe(labels, (clock.now() - x.arrivedAt) / 1000);
      release();
    });
    try {
      return await next({ x: observed, route: r.route });
    } finally {
      release();
    }
  };
}

/** The exchange, telling `started` when a pod's response headers arrive. */
function withResponseStart(x: Exchange, started: () => void): Exchange {
  return {
    protocol: x.protocol,
    req: x.req,
    writes: x.writes,
    arrivedAt: x.arrivedAt,
    get signal() {
      return x.signal;
    },
    get route() {
      return x.route;
    },
    set route(route) {
      x.route = route;
    },
    abort: (reason) => x.abort(reason),
    answer: (a) => x.answer(a),
    cut: () => x.cut(),
    closeAfterResponse: () => x.closeAfterResponse(),
    forward: (to, headers, signal, onResponse) =>
      x.forward(to, headers, signal, (status, h, ttfbMs) => {
        started();
        onResponse(status, h, ttfbMs);
      }),
  };
}
