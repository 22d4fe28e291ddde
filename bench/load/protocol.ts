// Messages between the bench and its load-generator child process.

/** One stream of requests: `connections` connections, each sending one request per second. */
export interface LoadTarget {
  /** Label the caller uses to find the result (e.g. `edge`, `cloud:node1`). */
  readonly name: string;
  readonly url: string;
  /** Host header (the proxies resolve the revision from it). */
  readonly host?: string;
  readonly connections: number;
  /** Requests each connection sends, one per second: the run lasts this many seconds. */
  readonly requestsPerConnection: number;
  /** A request unanswered after this many seconds counts as an error. */
  readonly timeoutSeconds: number;
  /** Connections are started in this many groups spread evenly over the first second. */
  readonly phases: number;
  /** Count the 2xx responses by the value of this response header (who served them). */
  readonly countHeader?: string;
}

/** Saturation: `connections` connections, each sending its next request as soon as the last is answered. */
export interface ClosedLoopTarget {
  readonly name: string;
  readonly url: string;
  readonly host?: string;
  readonly connections: number;
  readonly seconds: number;
  /** Requests per second over all connections (autocannon `overallRate`); none = as fast as answered. */
  readonly overallRate?: number;
}

export interface TargetResult {
  readonly name: string;
  /** Requests sent. */
  readonly offered: number;
  /** 2xx responses. */
  readonly completed: number;
  /** Non-2xx responses, connection errors and timeouts. */
  readonly errors: number;
  readonly timeouts: number;
  /** Errors by kind (error code, message or `HTTP <status>`). */
  readonly errorKinds: Readonly<Record<string, number>>;
  /** 2xx responses by the value of the target's `countHeader` ('' when absent). */
  readonly servedBy: Readonly<Record<string, number>>;
  /** Latency of every 2xx response, ms, in arrival order. */
  readonly latenciesMs: Float64Array;
  /** Wall-clock seconds from the first request to the last answer. */
  readonly seconds: number;
}

export type WorkerRequest =
  | { readonly kind: 'open'; readonly id: number; readonly targets: readonly LoadTarget[] }
  | { readonly kind: 'closed'; readonly id: number; readonly targets: readonly ClosedLoopTarget[] };

export type WorkerReply =
  | { readonly id: number; readonly ok: true; readonly results: TargetResult[] }
  | { readonly id: number; readonly ok: false; readonly error: string };
