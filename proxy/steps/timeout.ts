// The revision's timeoutSeconds, counted from arrival: when it passes, the request is
// aborted with RequestTimeoutError, which the inner steps turn into their answer (503
// while still waiting for a pod, 504 once sent to one).
import type { Clock } from '../../cluster/clock.js';
import { RequestTimeoutError, type Handler, type Routed } from '../exchange.js';

export function timeoutStep(clock: Clock, next: Handler<Routed>): Handler<Routed> {
  return async (r) => {
    const due = r.x.arrivedAt + r.route.revision.timeoutSeconds * 1000;
    const timer = clock.after(due - clock.now(), () => r.x.abort(new RequestTimeoutError()));
    try {
      return await next(r);
    } finally {
      timer.cancel();
    }
  };
}
