// Knative's three request timeouts (activator pkg/http/handler/timeout.go), counted from
// arrival with the injected clock. When one passes the request is aborted with a
// RequestTimeoutError naming it, which the inner steps turn into their answer: 503 while
// still waiting for a pod, 504 once sent to one and nothing was written yet, the
// connection cut when the response had started.
//   timeoutSeconds               the whole request, unconditionally
//   responseStartTimeoutSeconds  only while no response byte has been written
//   idleTimeoutSeconds           no byte written for that long (0 = off); every write rearms it
// An upgrade that got its 101 has written, so the response-start timeout no longer
// applies to it, and the tunnel ignores aborts (upgrade.ts; knative/serving#16169).
import type { Clock, Timer } from '../../cluster/clock.js';
import { responseStartTimeoutSeconds } from '../../cluster/model.js';
import { RequestTimeoutError, type Handler, type Routed } from '../exchange.js';

export function timeoutStep(clock: Clock, next: Handler<Routed>): Handler<Routed> {
  return async (r) => {
    const { x } = r;
    const rev = r.route.revision;
    const fire = (which: RequestTimeoutError['which']) => () => x.abort(new RequestTimeoutError(which));
    const timers: Timer[] = [clock.after(x.arrivedAt + rev.timeoutSeconds * 1000 - clock.now(), fire('timeoutSeconds'))];
    const startDue = x.arrivedAt + responseStartTimeoutSeconds(rev) * 1000;
    if (startDue < x.arrivedAt + rev.timeoutSeconds * 1000) {
      const start = clock.after(startDue - clock.now(), () => {
        if (!x.writes.started) fire('responseStartTimeoutSeconds')();
      });
      timers.push(start);
    }
    const idleMs = (rev.idleTimeoutSeconds ?? 0) * 1000;
    let idle: Timer | undefined;
    if (idleMs > 0) {
      // A write only records its time (a streamed body writes per chunk); the one timer, when
      // due, fires or waits out what is left since the last write.
      let lastWrite = x.arrivedAt;
      const check = (): void => {
        const left = lastWrite + idleMs - clock.now();
        if (left > 0) idle = clock.after(left, check);
        else fire('idleTimeoutSeconds')();
      };
      idle = clock.after(lastWrite + idleMs - clock.now(), check);
      x.writes.onWrite(() => { lastWrite = clock.now(); });
    }
    try {
      return await next(r);
    } finally {
      for (const t of timers) t.cancel();
      idle?.cancel();
      x.writes.onWrite(undefined);
    }
  };
}
