// Sends one request to one endpoint and streams the response back, bodies never buffered
// whole, whatever the client spoke (HTTP/1 or HTTP/2) and whatever the pod speaks (HTTP/1,
// or h2c for a revision whose port is named h2c). Trailers (gRPC's status) reach a client
// that can take them. Tells the caller whether a failure happened before anything was
// sent back (so the request may be retried elsewhere) or after.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { RevisionInfo } from '../cluster/model.js';
import type { EndpointState } from './endpoints.js';
import type { ForwardResult, RequestHead, RequestHeaders, RequestSignal, ResponseObserver } from './exchange.js';
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

/** An HTTP/1 request has a body when it declares one (HTTP/2 knows from its frames, h2.ts). */
export function requestHasBody(req: { readonly headers: IncomingHttpHeaders }): boolean {
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
export function idempotentWithoutBody(req: RequestHead): boolean {
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
 * The trailers of an HTTP/2 response. undici 7's HTTP/2 client hands its trailers object
 * to a parser that expects HTTP/1's raw name/value array, so `onResponseEnd` gets {} (and
 * gRPC's grpc-status would be lost); the object itself stays on the controller.
 */
function h2Trailers(c: Dispatcher.DispatchController): Record<string, string | string[]> {
  const raw = (c as { rawTrailers?: unknown }).rawTrailers;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return {};
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof value === 'string' || (Array.isArray(value) && value.every((v) => typeof v === 'string'))) out[name] = value as string | string[];
  }
  return out;
}

/** The client's request as forwarding needs it. */
export interface RequestSource {
  readonly head: RequestHead;
  readonly body: Readable;
  readonly hasBody: boolean;
}

/** Where the pod's response goes: the client's HTTP/1 response or HTTP/2 stream. */
export interface ResponseSink {
  readonly destroyed: boolean;
  writeHead(status: number, headers: OutgoingHttpHeaders): void;
  /** false: the client is full; `onDrain` is called once it takes more. */
  write(chunk: Buffer): boolean;
  onDrain(fn: () => void): void;
  offDrain(fn: () => void): void;
  /** Ends the response; `trailers` go out where the protocol carries them (HTTP/2). */
  end(trailers: Record<string, string | string[]> | undefined): void;
}

/**
 * Forward with undici's dispatch API straight into the sink: no Readable for the response
 * body and no stream pipeline in between (the proxy's hottest path; see bench/ overhead).
 * Backpressure: a full client pauses the upstream read until it drains.
 */
export function forwardRequest(
  req: RequestSource,
  res: ResponseSink,
  endpoint: EndpointState,
  protocol: RevisionInfo['protocol'],
  headers: RequestHeaders,
  signal: RequestSignal,
  onResponse: ResponseObserver,
  /** Largest body without Content-Length (0 = unlimited); a declared length is checked before. */
  maxBodyBytes: number,
  now: () => number,
): Promise<ForwardResult> {
  return new Promise<ForwardResult>((resolve) => {
    const call = new ForwardCall(req, res, signal, onResponse, maxBodyBytes, now, resolve);
    if (signal.aborted) {
      call.failed((signal.reason as Error | undefined) ?? new Error('aborted'));
      return;
    }
    signal.addEventListener('abort', call.onAbort);
    try {
      endpoint.pool(protocol).dispatch({ method: call.method as Dispatcher.HttpMethod, path: req.head.url ?? '/', headers, body: req.hasBody ? call.limit ?? req.body : null }, call);
    } catch (err) {
      call.failed(err as Error);
    }
  });
}

/** One forwarded request as undici's dispatch handler: one object per request, its methods on the prototype. */
class ForwardCall implements Dispatcher.DispatchHandler {
  readonly method: string;
  readonly limit: BodyLimit | undefined;
  private readonly sent: number;
  private controller: Dispatcher.DispatchController | undefined = undefined;
  private status = 0;
  private settled = false;

  constructor(
    private readonly req: RequestSource,
    private readonly res: ResponseSink,
    private readonly signal: RequestSignal,
    private readonly observe: ResponseObserver,
    private readonly maxBodyBytes: number,
    private readonly now: () => number,
    private readonly resolve: (r: ForwardResult) => void,
  ) {
    this.method = req.head.method ?? 'GET';
    this.limit = req.hasBody && maxBodyBytes > 0 && req.head.headers['content-length'] === undefined ? new BodyLimit(maxBodyBytes) : undefined;
    if (this.limit) req.body.pipe(this.limit);
    this.sent = now();
  }

  readonly onAbort = (): void => {
    this.controller?.abort((this.signal.reason as Error | undefined) ?? new Error('aborted'));
  };

  private readonly onDrain = (): void => {
    this.controller?.resume();
  };

  private settle(r: ForwardResult): void {
    if (this.settled) return;
    this.settled = true;
    this.signal.removeEventListener('abort', this.onAbort);
    this.res.offDrain(this.onDrain);
    this.resolve(r);
  }

  failed(err: Error): void {
    const { req, limit } = this;
    if (limit) req.body.unpipe(limit);
    if (this.status === 0) {
      if (limit?.exceeded) return this.settle({ kind: 'body-too-large', limit: this.maxBodyBytes });
      const bodyStarted = req.hasBody && (req.body.readableDidRead || req.body.readableEnded);
      this.settle({ kind: 'failed-before-response', error: err, retryable: retryableFailure(err, this.method, req.hasBody, bodyStarted) });
    } else this.settle({ kind: 'failed-mid-response', status: this.status, error: err });
  }

  onRequestStart(c: Dispatcher.DispatchController): void {
    this.controller = c;
    if (this.signal.aborted) this.onAbort();
  }

  onResponseStart(c: Dispatcher.DispatchController, statusCode: number, upstreamHeaders: IncomingHttpHeaders): void {
    // 1xx (100 Continue, 103 Early Hints) are not passed on, as with request().
    if (statusCode < 200) return;
    this.status = statusCode;
    this.observe(statusCode, upstreamHeaders, this.now() - this.sent);
    if (this.res.destroyed) {
      c.abort(new Error('client closed the connection'));
      return;
    }
    this.res.writeHead(statusCode, downstreamResponseHeaders(upstreamHeaders));
  }

  onResponseData(c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.res.destroyed) {
      c.abort(new Error('client closed the connection'));
      return;
    }
    if (!this.res.write(chunk)) {
      c.pause();
      this.res.onDrain(this.onDrain);
    }
  }

  onResponseEnd(c: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    if (this.res.destroyed) {
      this.failed(new Error('client closed the connection'));
      return;
    }
    const all: Record<string, string | string[]> = h2Trailers(c);
    for (const [name, value] of Object.entries(trailers)) if (value !== undefined) all[name] = value;
    this.res.end(Object.keys(all).length > 0 ? all : undefined);
    this.settle({ kind: 'done', status: this.status });
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.failed(err);
  }
}
