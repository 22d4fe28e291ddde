// Upgrade requests (WebSocket and friends) as Exchanges: they go through the same chain as
// any request (admission, concurrency report, timeout, retry, metrics); only answering and
// forwarding differ. The pod's 101 is relayed and then the raw bytes both ways; the slot
// is held until the tunnel closes. Once upgraded, the request timeout no longer applies:
// a WebSocket lives as long as both ends keep it (knative/serving#16169 is that bug).
import http, { type IncomingMessage, type IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { EndpointState } from './endpoints.js';
import { ClientGoneError, WriteWatch, type Answer, type Exchange, type ForwardResult, RequestSignal, type RequestHeaders, type ResponseObserver, type Route } from './exchange.js';
import { retryableFailure } from './forward.js';
import { downstreamResponseHeaders } from './headers.js';

/** A pod's answer other than 101 is passed on whole, up to this size. */
const MAX_REFUSAL_BYTES = 64 * 1024;

function headerLines(headers: Record<string, string | string[] | number | undefined>): string {
  let out = '';
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out += `${k}: ${one}\r\n`;
  }
  return out;
}

/** A complete HTTP/1.1 response written on a raw socket, closing the connection. */
function rawResponse(status: number, headers: Record<string, string | string[] | number | undefined>, body: Buffer | string): string | Buffer {
  const head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\n${headerLines({ ...headers, 'content-length': Buffer.byteLength(body), connection: 'close' })}\r\n`;
  return typeof body === 'string' ? head + body : Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

export class UpgradeExchange implements Exchange {
  readonly protocol = 'upgrade';
  route: Route | undefined = undefined;
  readonly writes = new WriteWatch();
  private readonly ctl = new RequestSignal();
  /** Something was written to the client: no answer of ours can follow. */
  private started = false;

  constructor(
    readonly req: IncomingMessage,
    private readonly socket: Duplex,
    private readonly head: Buffer,
    readonly arrivedAt: number,
    private readonly localAddress: string | undefined,
    private readonly now: () => number,
  ) {
    socket.on('error', () => socket.destroy());
    socket.once('close', () => this.ctl.abort(new ClientGoneError()));
  }

  get signal(): RequestSignal {
    return this.ctl;
  }

  abort(reason: Error): void {
    this.ctl.abort(reason);
  }

  answer(a: Answer): void {
    if (this.started || this.socket.destroyed) return this.cut();
    this.started = true;
    this.writes.wrote();
    this.socket.end(rawResponse(a.status, { 'content-type': 'text/plain; charset=utf-8', ...a.headers }, a.body));
  }

  cut(): void {
    this.socket.destroy();
  }

  closeAfterResponse(): void {
    // An upgrade's connection is never reused for another request.
  }

  forward(to: EndpointState, headers: RequestHeaders, signal: RequestSignal, onResponse: ResponseObserver): Promise<ForwardResult> {
    const { req, socket, head } = this;
    return new Promise<ForwardResult>((resolve) => {
      let status = 0;
      let settled = false;
      const sent = this.now();
      const settle = (r: ForwardResult) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(r);
      };
      const upstream = http.request({
        host: to.info.address,
        port: to.info.port,
        method: req.method,
        path: req.url,
        // The upstream headers drop hop-by-hop ones; an upgrade needs its pair back.
        headers: { ...headers, connection: 'upgrade', upgrade: req.headers.upgrade ?? 'websocket' },
        localAddress: this.localAddress,
        agent: false,
        setHost: false,
      });
      // Before the pod answers, an abort (client gone, timeout, node dark) stops the attempt;
      // an open tunnel ends only when one of its ends closes.
      const onAbort = () => {
        if (status === 0) upstream.destroy(signal.reason as Error);
      };
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort);
      upstream.on('error', (err: Error) => {
        if (status === 0) settle({ kind: 'failed-before-response', error: err, retryable: retryableFailure(err, req.method ?? 'GET', false, false) });
      });
      upstream.on('upgrade', (res: IncomingMessage, tunnel: Socket, tunnelHead: Buffer) => {
        status = 101;
        this.started = true;
        this.writes.wrote();
        onResponse(101, res.headers, this.now() - sent);
        tunnel.on('error', () => tunnel.destroy());
        const end = () => {
          tunnel.destroy();
          socket.destroy();
          settle({ kind: 'done', status: 101 });
        };
        tunnel.once('close', end);
        socket.once('close', end);
        if (socket.destroyed) return end();
        socket.write(`HTTP/1.1 101 Switching Protocols\r\n${headerLines(res.headers as IncomingHttpHeaders)}\r\n`);
        if (tunnelHead.length > 0) socket.write(tunnelHead);
        if (head.length > 0) tunnel.write(head);
        tunnel.pipe(socket);
        socket.pipe(tunnel);
      });
      upstream.on('response', (res: IncomingMessage) => {
        // The pod refused the upgrade: its answer goes back whole (it is small), then the connection closes.
        status = res.statusCode ?? 502;
        this.started = true;
        this.writes.wrote();
        onResponse(status, res.headers, this.now() - sent);
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_REFUSAL_BYTES) chunks.push(c);
          else res.destroy();
        });
        res.on('end', () => {
          const outgoing = downstreamResponseHeaders(res.headers);
          socket.end(rawResponse(status, outgoing as Record<string, string | string[] | number | undefined>, Buffer.concat(chunks)));
          settle({ kind: 'done', status });
        });
        res.on('error', (err: Error) => {
          socket.destroy();
          settle({ kind: 'failed-mid-response', status, error: err });
        });
        res.on('close', () => {
          if (!res.complete) {
            socket.destroy();
            settle({ kind: 'failed-mid-response', status, error: new Error('the pod\'s answer was cut') });
          }
        });
      });
      upstream.end();
    });
  }
}
