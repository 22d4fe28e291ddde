// Sends one request to one endpoint and streams the response back, bodies never buffered
// whole. Tells the caller whether a failure happened before anything was sent back (so the
// request may be retried elsewhere) or after.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import type { EndpointState } from './endpoints.js';
import { downstreamResponseHeaders } from './headers.js';

export type ForwardResult =
  | { readonly kind: 'done'; readonly status: number }
  /** No response byte reached the client; `retryable` when the pod never saw the request body. */
  | { readonly kind: 'failed-before-response'; readonly error: Error; readonly retryable: boolean }
  /** The client already has the status line: the only thing left is to cut the connection. */
  | { readonly kind: 'failed-mid-response'; readonly status: number; readonly error: Error }
  /** A body without Content-Length grew past the limit before the pod answered. */
  | { readonly kind: 'body-too-large'; readonly limit: number };

/**
 * Passes a body through and fails it once more than `limit` bytes went by: a chunked
 * body has no Content-Length to check up front, so the limit is enforced while streaming.
 */
class BodyLimit extends Transform {
  private seen = 0;
  exceeded = false;

  constructor(private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      this.exceeded = true;
      done(new Error(`request body larger than ${this.limit} bytes`));
      return;
    }
    done(null, chunk);
  }
}

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

/** A request that may be sent again after its first try went unanswered. */
export function idempotentWithoutBody(req: IncomingMessage): boolean {
  return IDEMPOTENT.has(req.method ?? 'GET') && !requestHasBody(req);
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
  /** Largest body without Content-Length (0 = unlimited); a declared length is checked before. */
  maxBodyBytes = 0,
): Promise<ForwardResult> {
  const hasBody = requestHasBody(req);
  const method = req.method ?? 'GET';
  const limit = hasBody && maxBodyBytes > 0 && req.headers['content-length'] === undefined ? new BodyLimit(maxBodyBytes) : undefined;
  if (limit) req.pipe(limit);
  let upstream: Dispatcher.ResponseData;
  const sent = performance.now();
  try {
    upstream = await endpoint.pool.request({
      method: method as Dispatcher.HttpMethod,
      path: req.url ?? '/',
      headers,
      body: hasBody ? limit ?? req : null,
      signal,
    });
  } catch (err) {
    if (limit) req.unpipe(limit);
    if (limit?.exceeded) return { kind: 'body-too-large', limit: maxBodyBytes };
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
    if (limit) req.unpipe(limit);
    return { kind: 'failed-mid-response', status, error: err as Error };
  }
}
