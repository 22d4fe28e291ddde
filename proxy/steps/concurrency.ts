// Request concurrency for Knative's autoscaler, as the activator reports it: every request
// counts while it is in the proxy, and one for a revision without a ready pod is a cold
// start, reported at once (that stat is what wakes a revision scaled to zero). Every
// protocol passes here, so a WebSocket-only revision is woken like any other.
import type { Handler, Routed } from '../exchange.js';

/** What the autoscaler needs from the request path (proxy/autoscaler.ts implements it). */
export interface ConcurrencyReporter {
  /** A request for the revision started; the returned function is called once when it ends. */
  requestStarted(revisionKey: string): () => void;
  /** A request waits for a revision with no ready pod: scale it from zero now. */
  coldStart(revisionKey: string): void;
}

export function concurrencyStep(reporter: ConcurrencyReporter | undefined, next: Handler<Routed>): Handler<Routed> {
  if (!reporter) return next;
  return async (r) => {
    const { revisionKey, snapshot } = r.route;
    const ended = reporter.requestStarted(revisionKey);
    if (!snapshot.hasReadyEndpoint(revisionKey)) reporter.coldStart(revisionKey);
    try {
      return await next(r);
    } finally {
      ended();
    }
  };
}
