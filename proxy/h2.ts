// HTTP/2 (h2c) streams as Exchanges: each stream is one request through the same chain
// as HTTP/1, so one long-lived connection from a gateway is balanced per request, not per
// connection (knative/serving#14011). Answers and the pod's response go out on the stream;
// the pod's trailers (gRPC's grpc-status) follow the body; a response that cannot be
// completed resets the stream, which a gRPC client reports as an error, never a hang.
import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { IncomingHttpHeaders } from 'node:http';
import type { EndpointState } from './endpoints.js';
import { ClientGoneError, WriteWatch, answerHeaders, type Answer, type Exchange, type ForwardResult, RequestSignal, type RequestHead, type RequestHeaders, type ResponseObserver, type Route } from './exchange.js';
import { forwardRequest, type ResponseSink } from './forward.js';

/** The request head as the steps read it: `:authority` as Host, pseudo-headers left out. */
export function h2RequestHead(req: Http2ServerRequest): RequestHead {
  const headers: IncomingHttpHeaders = {};
  const headersDistinct: NodeJS.Dict<string[]> = {};
  const rawHeaders: string[] = [];
  for (const [name, value] of Object.entries(req.headers)) {
    if (name.startsWith(':') || value === undefined) continue;
    headers[name] = value;
    const values = Array.isArray(value) ? value : [value];
    headersDistinct[name] = values;
    for (const v of values) rawHeaders.push(name, v);
  }
  const authority = req.headers[':authority'];
  if (authority) {
    // RFC 9113 §8.3.1: :authority takes the place of Host.
    headers.host = authority;
    headersDistinct.host = [authority];
    if (!rawHeaders.some((h, i) => i % 2 === 0 && h === 'host')) rawHeaders.push('host', authority);
  }
  return { method: req.method, url: req.url, headers, headersDistinct, rawHeaders, socket: { remoteAddress: req.socket?.remoteAddress } };
}

export class H2Exchange implements Exchange {
  readonly protocol = 'h2';
  readonly req: RequestHead;
  readonly writes = new WriteWatch();
  route: Route | undefined = undefined;
  private readonly ctl = new RequestSignal();
  private readonly sink: ResponseSink;
  private ended = false;

  constructor(
    private readonly request: Http2ServerRequest,
    private readonly res: Http2ServerResponse,
    readonly arrivedAt: number,
    private readonly maxBodyBytes: number,
    private readonly now: () => number,
  ) {
    this.req = h2RequestHead(request);
    res.stream.on('error', () => undefined);
    res.stream.once('close', () => {
      if (!this.ended) this.ctl.abort(new ClientGoneError());
    });
    const writes = this.writes;
    this.sink = {
      get destroyed() { return res.stream.destroyed; },
      writeHead(status, headers) {
        if (headers['grpc-status'] === undefined) {
          res.writeHead(status, headers);
        } else {
          // gRPC's trailers-only response (an error status at once): its one HEADERS frame
          // must end the stream, so it goes out with end(), not before it.
          res.statusCode = status;
          for (const [name, value] of Object.entries(headers)) if (value !== undefined) res.setHeader(name, value);
        }
        writes.wrote();
      },
      write(chunk) { const ok = res.write(chunk); writes.wrote(); return ok; },
      onDrain(fn) { res.once('drain', fn); },
      offDrain(fn) { res.off('drain', fn); },
      end: (trailers) => {
        if (trailers) res.addTrailers(trailers);
        this.ended = true;
        res.end();
      },
    };
  }

  get signal(): RequestSignal {
    return this.ctl;
  }

  abort(reason: Error): void {
    this.ctl.abort(reason);
  }

  answer(a: Answer): void {
    const { res } = this;
    if (res.headersSent || res.stream.destroyed) return this.cut();
    this.ended = true;
    // No Connection header in HTTP/2: `close` has no meaning for one stream.
    res.writeHead(a.status, answerHeaders(a));
    res.end(a.body);
    this.writes.wrote();
  }

  cut(): void {
    this.ended = true;
    if (!this.res.stream.destroyed) this.res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }

  closeAfterResponse(): void {
    // Draining: GOAWAY, so the client opens its next streams elsewhere; open ones finish.
    const session = this.res.stream.session;
    if (session && !session.closed) session.close();
  }

  forward(to: EndpointState, headers: RequestHeaders, signal: RequestSignal, onResponse: ResponseObserver): Promise<ForwardResult> {
    const source = { head: this.req, body: this.request, hasBody: !this.request.stream.endAfterHeaders };
    return forwardRequest(source, this.sink, to, this.route?.revision.protocol ?? 'http1', headers, signal, onResponse, this.maxBodyBytes, this.now);
  }
}
