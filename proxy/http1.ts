// HTTP/1 requests as Exchanges: answers go out through Node's ServerResponse, forwarding
// through undici (forward.ts).
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { EndpointState } from './endpoints.js';
import { ClientGoneError, WriteWatch, answerHeaders, type Answer, type Exchange, type ForwardResult, RequestSignal, type RequestHeaders, type ResponseObserver, type Route } from './exchange.js';
import { forwardRequest, requestHasBody, type ResponseSink } from './forward.js';

/** Write a plain-text answer; a response already under way is cut instead. */
export function sendAnswer(res: ServerResponse, a: Answer): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(a.status, answerHeaders(a, a.close ? { connection: 'close' } : {}));
  res.end(a.body);
}

/** The client's response as forwarding writes it. HTTP/1 has trailers only in chunked bodies and few clients read them: they stop here. */
class Http1Sink implements ResponseSink {
  constructor(private readonly res: ServerResponse, private readonly writes: WriteWatch) {}

  get destroyed(): boolean {
    return this.res.destroyed;
  }

  writeHead(status: number, headers: OutgoingHttpHeaders): void {
    this.res.writeHead(status, headers);
    this.writes.wrote();
  }

  write(chunk: Buffer): boolean {
    const ok = this.res.write(chunk);
    this.writes.wrote();
    return ok;
  }

  onDrain(fn: () => void): void {
    this.res.once('drain', fn);
  }

  offDrain(fn: () => void): void {
    this.res.off('drain', fn);
  }

  end(): void {
    this.res.end();
  }
}

export class Http1Exchange implements Exchange {
  readonly protocol = 'http1';
  route: Route | undefined = undefined;
  readonly writes = new WriteWatch();
  private readonly ctl = new RequestSignal();
  private readonly sink: ResponseSink;

  constructor(
    readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    readonly arrivedAt: number,
    private readonly maxBodyBytes: number,
    private readonly now: () => number,
  ) {
    // The client went away before its response was complete: stop waiting, stop the upstream request.
    res.on('close', () => {
      if (!res.writableFinished) this.ctl.abort(new ClientGoneError());
    });
    this.sink = new Http1Sink(res, this.writes);
  }

  get signal(): RequestSignal {
    return this.ctl;
  }

  abort(reason: Error): void {
    this.ctl.abort(reason);
  }

  answer(a: Answer): void {
    sendAnswer(this.res, a);
    this.writes.wrote();
  }

  cut(): void {
    this.res.destroy();
  }

  closeAfterResponse(): void {
    this.res.setHeader('connection', 'close');
  }

  forward(to: EndpointState, headers: RequestHeaders, signal: RequestSignal, onResponse: ResponseObserver): Promise<ForwardResult> {
    const source = { head: this.req, body: this.req, hasBody: requestHasBody(this.req) };
    return forwardRequest(source, this.sink, to, this.route?.revision.protocol ?? 'http1', headers, signal, onResponse, this.maxBodyBytes, this.now);
  }
}
