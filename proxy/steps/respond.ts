// Outcome → the client's answer. The one place the proxy's own answers are written: steps
// only say how a request ended (exchange.ts, Outcome), this turns it into a status.
import type { Exchange, Handler, Outcome } from '../exchange.js';
import { NO_NODE } from '../exchange.js';

/** The answer for a request whose outcome is not yet on the wire. */
function write(x: Exchange, o: Outcome): void {
  switch (o.kind) {
    case 'answered':
      return x.answer(o);
    case 'failed':
      return x.answer({ status: 502, body: `chikai: pod ${o.pod} on ${o.node} failed: ${o.detail}\n` });
    case 'timed-out':
      return x.answer({ status: 504, body: 'activator request timeout\n' });
    case 'cut':
      return x.cut();
    case 'relayed':
    case 'gone':
      return;
  }
}

export function respondStep(next: Handler<Exchange>, log: (line: string) => void = console.error): Handler<Exchange> {
  return async (x) => {
    let o: Outcome;
    try {
      o = await next(x);
    } catch (err) {
      // A bug, not a request's fault: answer it, keep serving everyone else.
      log(`chikai proxy: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      o = { kind: 'answered', status: 500, body: 'chikai: internal error\n', close: true, node: NO_NODE };
    }
    write(x, o);
    return o;
  };
}
