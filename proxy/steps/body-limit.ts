// A declared request body over `proxy.maxBodyBytes` is refused before anything is queued
// or sent: 413, connection closed. (A chunked body has no length up front; the forwarder
// counts it while streaming.)
import type { Handler, Routed } from '../exchange.js';
import { NO_NODE } from '../exchange.js';

export function bodyLimitStep(maxBodyBytes: number, next: Handler<Routed>): Handler<Routed> {
  if (maxBodyBytes <= 0) return next;
  return (r) => {
    if (Number(r.x.req.headers['content-length'] ?? 0) > maxBodyBytes) {
      return Promise.resolve({ kind: 'answered', status: 413, body: `chikai: request body larger than ${maxBodyBytes} bytes\n`, close: true, node: NO_NODE });
    }
    return next(r);
  };
}
