// HTTP/1 requests as Exchanges: answers go out through Node's ServerResponse, forwarding
// through undici (forward.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { EndpointState } from './endpoints.js';
import { ClientGoneError, type Answer, type Exchange, type ForwardResult, type RequestHeaders, type ResponseObserver, type Route } from './exchange.js';
import { forwardRequest } from './forward.js';

/** Write a plain-text answer; a response already under way is cut instead. */
export function sendAnswer(res: ServerResponse, a: Answer): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(a.status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(a.body),
    ...(a.close ? { connection: 'close' } : {}),
    ...a.headers,
  });
  res.end(a.body);
}

export class Http1Exchange implements Exchange {
  readonly protocol = 'http1';
  route: Route | undefined = undefined;
  private readonly ctl = new AbortController();

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
  }

  get signal(): AbortSignal {
    return this.ctl.signal;
  }

  abort(reason: Error): void {
    this.ctl.abort(reason);
  }

  answer(a: Answer): void {
    sendAnswer(this.res, a);
  }

  cut(): void {
    this.res.destroy();
  }

  closeAfterResponse(): void {
    this.res.setHeader('connection', 'close');
  }

  forward(to: EndpointState, headers: RequestHeaders, signal: AbortSignal, onResponse: ResponseObserver): Promise<ForwardResult> {
    return forwardRequest(this.req, this.res, to, headers, signal, onResponse, this.maxBodyBytes, this.now);
  }
}
