// Sends one HTTP/1 request to one endpoint and streams the response back, bodies never
// buffered whole. Tells the caller whether a failure happened before anything was sent
// back (so the request may be retried elsewhere) or after.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { EndpointState } from './endpoints.js';
import type { ForwardResult, RequestHeaders, ResponseObserver } from './exchange.js';
import { downstreamResponseHeaders } from './headers.js';

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

/** The error's code, looking through undici's socket wrapper. */
export function errorCode(err: unknown): string | undefined {
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

/**
 * Forward with undici's dispatch API straight into `res`: no Readable for the response
 * body and no stream pipeline in between (the proxy's hottest path; see bench/ overhead).
 * Backpressure: a full client socket pauses the upstream read until it drains.
 */
export function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  endpoint: EndpointState,
  headers: RequestHeaders,
  signal: AbortSignal,
  onResponse: ResponseObserver,
  /** Largest body without Content-Length (0 = unlimited); a declared length is checked before. */
  maxBodyBytes: number,
  now: () => number,
): Promise<ForwardResult> {
  const hasBody = requestHasBody(req);
  const method = req.method ?? 'GET';
  const limit = hasBody && maxBodyBytes > 0 && req.headers['content-length'] === undefined ? new BodyLimit(maxBodyBytes) : undefined;
  if (limit) req.pipe(limit);
  const sent = now();
  return new Promise<ForwardResult>((resolve) => {
    let controller: Dispatcher.DispatchController | undefined;
    let status = 0;
    let settled = false;
    const onAbort = () => controller?.abort((signal.reason as Error | undefined) ?? new Error('aborted'));
    const onDrain = () => controller?.resume();
    const settle = (r: ForwardResult) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      res.off('drain', onDrain);
      resolve(r);
    };
    const failed = (err: Error) => {
      if (limit) req.unpipe(limit);
      if (status === 0) {
        if (limit?.exceeded) return settle({ kind: 'body-too-large', limit: maxBodyBytes });
        const bodyStarted = hasBody && (req.readableDidRead || req.readableEnded);
        settle({ kind: 'failed-before-response', error: err, retryable: retryableFailure(err, method, hasBody, bodyStarted) });
      } else settle({ kind: 'failed-mid-response', status, error: err });
    };
    if (signal.aborted) {
      failed((signal.reason as Error | undefined) ?? new Error('aborted'));
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (signal.aborted) onAbort();
      },
      onResponseStart(c, statusCode, upstreamHeaders) {
        // 1xx (100 Continue, 103 Early Hints) are not passed on, as with request().
        if (statusCode < 200) return;
        status = statusCode;
        onResponse(statusCode, upstreamHeaders, now() - sent);
        if (res.destroyed) {
          c.abort(new Error('client closed the connection'));
          return;
        }
        res.writeHead(statusCode, downstreamResponseHeaders(upstreamHeaders));
      },
      onResponseData(c, chunk) {
        if (res.destroyed) {
          c.abort(new Error('client closed the connection'));
          return;
        }
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', onDrain);
        }
      },
      onResponseEnd() {
        if (res.destroyed) {
          failed(new Error('client closed the connection'));
          return;
        }
        res.end();
        settle({ kind: 'done', status });
      },
      onResponseError(_c, err) {
        failed(err);
      },
    };
    try {
      endpoint.pool.dispatch({ method: method as Dispatcher.HttpMethod, path: req.url ?? '/', headers, body: hasBody ? limit ?? req : null }, handler);
    } catch (err) {
      failed(err as Error);
    }
  });
}
