// Checks on the request line and Host before a request is routed (RFC 9112 §3.2):
// exactly one Host, and an absolute-form target ("GET http://host/path") turned into the
// origin form the pods expect, its authority taking the place of Host. Routing then only
// ever looks at one host name, so the proxy can never be aimed at an address outside the
// cluster model.
import type { IncomingMessage } from 'node:http';
import type { Exchange, Handler } from '../exchange.js';
import { NO_NODE } from '../exchange.js';

export function requestTargetStep(next: Handler<Exchange>): Handler<Exchange> {
  return (x) => {
    const problem = normaliseRequestTarget(x.req);
    return problem === undefined ? next(x) : Promise.resolve({ kind: 'answered', status: 400, body: problem, close: true, node: NO_NODE });
  };
}

/** Normalises `req.url` and `req.headers.host` in place; returns why it must be refused (400). */
export function normaliseRequestTarget(req: IncomingMessage): string | undefined {
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i].length === 4 && req.rawHeaders[i].toLowerCase() === 'host') hosts++;
  if (hosts > 1) return `chikai: the request has ${hosts} Host headers; send exactly one\n`;
  const target = req.url ?? '/';
  if (target.startsWith('/') || target === '*') return undefined;
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return `chikai: request target ${JSON.stringify(target.slice(0, 100))} is neither a path nor an absolute http URL\n`;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password) {
    return `chikai: request target ${JSON.stringify(target.slice(0, 100))}: only http(s) URLs without user info are accepted\n`;
  }
  req.headers.host = url.host;
  // The path exactly as sent (URL would resolve dot segments and re-encode it).
  const rest = target.slice(target.indexOf('//') + 2);
  const end = rest.search(/[/?]/);
  const path = end < 0 ? '/' : rest.slice(end);
  req.url = path.startsWith('?') ? `/${path}` : path;
  return undefined;
}
