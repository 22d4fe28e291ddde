// What every step of the request path works on, whatever the protocol: an Exchange (one
// request from a client, and how to answer it or forward it), and the Outcome each step
// hands back up the chain. HTTP/1 requests (http1.ts), upgrades (upgrade.ts) and HTTP/2
// streams (h2.ts) are Exchanges.
import type { IncomingHttpHeaders } from 'node:http';
import type { ClusterSnapshot, RevisionInfo } from '../cluster/model.js';
import type { EndpointState } from './endpoints.js';
import type { QueueEntry, RequestHeaders } from '../queue/index.js';

export type { RequestHeaders } from '../queue/index.js';
export type ResponseHeaders = Record<string, string | string[] | undefined>;

/** Response headers arrived from the pod, `ttfbMs` after the request was sent. */
export type ResponseObserver = (status: number, headers: ResponseHeaders, ttfbMs: number) => void;

export type ForwardResult =
  | { readonly kind: 'done'; readonly status: number }
  /** No response byte reached the client; `retryable` when the pod cannot have acted on it. */
  | { readonly kind: 'failed-before-response'; readonly error: Error; readonly retryable: boolean }
  /** The client already has the status line: the only thing left is to cut the connection. */
  | { readonly kind: 'failed-mid-response'; readonly status: number; readonly error: Error }
  /** A body without Content-Length grew past the limit before the pod answered. */
  | { readonly kind: 'body-too-large'; readonly limit: number };

/** An answer the proxy gives itself. */
export interface Answer {
  readonly status: number;
  readonly body: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Close the connection after it (the request's framing cannot be trusted). */
  readonly close?: boolean;
}

/** The head of the proxy's own plain-text answer, whatever the protocol (`hop`: HTTP/1's connection headers). */
export function answerHeaders(a: Answer, hop: Readonly<Record<string, string>> = {}): Record<string, string | number> {
  return { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(a.body), ...hop, ...a.headers };
}

/** The revision a request is for, found by the resolve step. */
export interface Route {
  readonly revision: RevisionInfo;
  readonly revisionKey: string;
  readonly snapshot: ClusterSnapshot;
  /** The request as the queue sees it: its upstream headers (hooks rewrite them) and deadline. */
  readonly entry: QueueEntry;
}

/**
 * A request's head as the steps read it, whatever the protocol: Node's IncomingMessage is
 * one; an HTTP/2 stream's is made from its headers (h2.ts: `:authority` as Host, no
 * pseudo-headers). The request-target step may rewrite `url` and Host.
 */
export interface RequestHead {
  readonly method?: string | undefined;
  url?: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly headersDistinct: NodeJS.Dict<string[]>;
  readonly rawHeaders: readonly string[];
  readonly socket: { readonly remoteAddress?: string | undefined };
}

/**
 * Tells the timeout step when response bytes reach the client (Knative's response-start
 * and idle timeouts count from the last write). Exchanges call `wrote()` on every write.
 */
export class WriteWatch {
  private listener: (() => void) | undefined;
  /** Something was written to the client. */
  started = false;

  wrote(): void {
    this.started = true;
    this.listener?.();
  }

  onWrite(listener: (() => void) | undefined): void {
    this.listener = listener;
  }
}

/**
 * A request's abort: the client went away or a step gave up on it (the reason says which).
 * Listeners are plain callbacks; a real AbortSignal is made only for an API that takes one
 * (the queue), because creating one per request is among the proxy's largest costs (bench/
 * overhead).
 */
export class RequestSignal {
  private done = false;
  private why: unknown = undefined;
  private listeners: (() => void)[] = [];
  private controller: AbortController | undefined = undefined;

  get aborted(): boolean {
    return this.done;
  }

  get reason(): unknown {
    return this.why;
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    if (!this.done) this.listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const i = this.listeners.indexOf(listener);
    if (i >= 0) this.listeners.splice(i, 1);
  }

  /** The first abort wins; every listener is called once. */
  abort(reason: unknown): void {
    if (this.done) return;
    this.done = true;
    this.why = reason;
    const listeners = this.listeners;
    this.listeners = [];
    this.controller?.abort(reason);
    for (const l of listeners) l();
  }

  /** The same abort as an AbortSignal. */
  asAbortSignal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.done) this.controller.abort(this.why);
    }
    return this.controller.signal;
  }
}

export interface Exchange {
  readonly protocol: 'http1' | 'upgrade' | 'h2';
  /** Method, target, headers and the client's address. */
  readonly req: RequestHead;
  /** Response bytes written to the client, for the timeouts. */
  readonly writes: WriteWatch;
  /** When it arrived (clock ms). */
  readonly arrivedAt: number;
  /** Aborts when the client goes away or a step gives up on the request (the reason says which). */
  readonly signal: RequestSignal;
  abort(reason: Error): void;
  /** Set by the resolve step; metrics label by it. */
  route: Route | undefined;
  /** The proxy's own answer; a connection whose response already started is cut instead. */
  answer(a: Answer): void;
  /** A response started and cannot be completed: cut the connection. */
  cut(): void;
  /** Ask the client to close the connection after this response (draining). */
  closeAfterResponse(): void;
  /** Send the request to a pod and relay what it answers. */
  forward(to: EndpointState, headers: RequestHeaders, signal: RequestSignal, onResponse: ResponseObserver): Promise<ForwardResult>;
}

/** An exchange whose revision is known. */
export interface Routed {
  readonly x: Exchange;
  readonly route: Route;
}

/** The client closed the connection before its response was complete. */
export class ClientGoneError extends Error {
  constructor() {
    super('client closed the connection');
  }
}

/** One of the revision's timeouts passed (timeoutSeconds, responseStartTimeoutSeconds, idleTimeoutSeconds). */
export class RequestTimeoutError extends Error {
  constructor(readonly which: 'timeoutSeconds' | 'responseStartTimeoutSeconds' | 'idleTimeoutSeconds' = 'timeoutSeconds') {
    super('activator request timeout');
  }
}

/** How a request ended, as each step reports it up the chain. */
export type Outcome =
  /** The proxy answered itself (probe, 400, 404, 413, 503). */
  | (Answer & { readonly kind: 'answered'; readonly node: string })
  /** The pod's response (or the upgraded tunnel) went to the client. */
  | { readonly kind: 'relayed'; readonly status: number; readonly node: string }
  /** The pod failed before any response byte: 502, unless the retry step sends it elsewhere. */
  | { readonly kind: 'failed'; readonly pod: string; readonly node: string; readonly reason: string; readonly detail: string; readonly retryable: boolean }
  /** The revision timeout passed before the pod answered: 504. */
  | { readonly kind: 'timed-out'; readonly node: string }
  /** The response had started when it failed: the connection is cut. */
  | { readonly kind: 'cut'; readonly status: number; readonly node: string }
  /** The client went away: nothing to send (499 in the metrics, as nginx counts it). */
  | { readonly kind: 'gone'; readonly node: string };

/** The node whose pod the outcome came from ("none" when no pod was involved). */
export const NO_NODE = 'none';

/** The status code an outcome is counted with. */
export function statusOf(o: Outcome): number {
  switch (o.kind) {
    case 'answered':
    case 'relayed':
    case 'cut':
      return o.status;
    case 'failed':
      return 502;
    case 'timed-out':
      return 504;
    case 'gone':
      return 499;
  }
}

/** A request the chain turns into an Outcome. */
export type Handler<T> = (request: T) => Promise<Outcome>;
