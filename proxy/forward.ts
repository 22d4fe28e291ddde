// Sends one request to one endpoint and streams the response back, bodies never buffered
// whole. Tells the caller whether a failure happened before anything was sent back (so the
// request may be retried elsewhere) or after.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import type { EndpointState } from './endpoints.js';
import { downstreamResponseHeaders } from './headers.js';

export type ForwardResult =
  | { readonly kind: 'done'; readonly status: number }
  /** No response byte reached the client; `retryable` when the pod never saw the request body. */
  | { readonly kind: 'failed-before-response'; readonly error: Error; readonly retryable: boolean }
  /** The client already has the status line: the only thing left is to cut the connection. */
  | { readonly kind: 'failed-mid-response'; readonly status: number; readonly error: Error };

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** Errors that mean the connection broke before the pod answered. */
const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'EHOSTUNREACH', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT']);

export function requestHasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: string; cause?: { code?: string } };
  return e?.code === 'UND_ERR_SOCKET' && e.cause?.code ? e.cause.code : e?.code ?? e?.cause?.code;
}

/** Whether an error before the response may be retried on another endpoint. */
export function retryableFailure(err: unknown, method: string, hasBody: boolean, bodyStarted: boolean): boolean {
  const code = errorCode(err);
  if (!code || !CONNECTION_ERRORS.has(code)) return false;
  if (code === 'ECONNREFUSED' && !bodyStarted) return true; // nothing reached the pod
  return IDEMPOTENT.has(method) && !hasBody;
}

export async function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  endpoint: EndpointState,
  headers: Record<string, string | string[]>,
  signal: AbortSignal,
  /** Response headers arrived, `ttfbMs` after the request was sent. */
  onResponse?: (status: number, headers: Record<string, string | string[] | undefined>, ttfbMs: number) => void,
): Promise<ForwardResult> {
  const hasBody = requestHasBody(req);
  const method = req.method ?? 'GET';
  let upstream: Dispatcher.ResponseData;
  const sent = performance.now();
  try {
    upstream = await endpoint.pool.request({
      method: method as Dispatcher.HttpMethod,
      path: req.url ?? '/',
      headers,
      body: hasBody ? req : null,
      signal,
    });
  } catch (err) {
    const bodyStarted = hasBody && (req.readableDidRead || req.readableEnded);
    return { kind: 'failed-before-response', error: err as Error, retryable: retryableFailure(err, method, hasBody, bodyStarted) };
  }
  const status = upstream.statusCode;
  onResponse?.(status, upstream.headers, performance.now() - sent);
  try {
    res.writeHead(status, downstreamResponseHeaders(upstream.headers));
    // HEAD and bodiless statuses have nothing to stream; drain to free the connection.
    await pipeline(upstream.body, res);
    return { kind: 'done', status };
  } catch (err) {
    upstream.body.destroy();
    return { kind: 'failed-mid-response', status, error: err as Error };
  }
}
