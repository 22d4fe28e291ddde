// The proxy's own lifecycle as the request path sees it: how many requests it is handling
// (a drain waits for them), and while draining each response asks its client to close the
// connection, so load balancers move the traffic elsewhere.
import type { Exchange, Handler } from '../exchange.js';

export class Lifecycle {
  draining = false;
  /** Requests being handled now (queued, forwarded or tunnelled), probes not counted. */
  active = 0;
  private idleWaiters: (() => void)[] = [];

  /** Resolves once no request is being handled. */
  idle(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }

  step(next: Handler<Exchange>): Handler<Exchange> {
    return async (x) => {
      if (this.draining) x.closeAfterResponse();
      this.active++;
      try {
        return await next(x);
      } finally {
        if (--this.active === 0) this.idleWaiters.splice(0).forEach((f) => f());
      }
    };
  }
}
