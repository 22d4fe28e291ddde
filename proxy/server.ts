// The node proxy: one per node, in the Knative activator's place. A request goes through
// a chain of small steps, composed here and nowhere else:
//   probe → resolve revision → admit (policy + queue) → forward (retry once) → metrics
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ClusterModel } from '../cluster/model.js';
import { EndpointTable, type EndpointState } from './endpoints.js';
import { forwardRequest, idempotentWithoutBody } from './forward.js';
import { NETWORK_HASH_HEADER, NETWORK_PROBE_HEADER, PROXY_REQUEST_HEADER, upstreamRequestHeaders, KNATIVE_NAMESPACE_HEADER, KNATIVE_REVISION_HEADER } from './headers.js';
import { ProxyMetrics } from './metrics.js';
import { loadReportOf } from '../cluster/load-report.js';
import type { Policy } from './policy/policy.js';
import { resolveRevision } from './resolve.js';
import { normaliseRequestTarget } from './request-target.js';
import { UnansweredRequests } from './unanswered.js';
import { Throttle, type Admission } from './throttle.js';
import { UpgradeForwarder } from './upgrade.js';
import { RttProber } from './rtt.js';
import { NodeLoadTracker } from './load.js';
import { ORCA_HEADER } from '../cluster/orca.js';
import type { LoadView } from '../cluster/load.js';
import { RevisionQueues, queueFailure, type QueueSettings, type QueuedRequest } from './queueing.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface NodeProxyOptions {
  readonly model: ClusterModel;
  /** The node this proxy serves. */
  readonly node: string;
  readonly listen: HostPort;
  /** Admin port: /metrics, /healthz, /readyz. Kept apart from traffic. */
  readonly admin?: HostPort;
  readonly policy: Policy;
  readonly queue: QueueSettings;
  /** Seconds to keep serving after `drain()` before new connections are refused. */
  readonly drainSeconds: number;
  /** Largest request body in bytes (0 = unlimited): larger ones get 413. */
  readonly maxBodyBytes?: number;
  /** Time a client has to send its complete request headers (default 15 s). */
  readonly headersTimeoutMs?: number;
  /** Source address for connections to pods (the node's own address). */
  readonly localAddress?: string;
  /** Also export Node.js process metrics (one proxy per process). */
  readonly processMetrics?: boolean;
  /** Port of the other nodes' proxies, for RTT probes; no probing when absent. */
  readonly peerPort?: number;
  readonly probeIntervalMs?: number;
  /** Where request concurrency goes for Knative's autoscaler (proxy/autoscaler.ts). */
  readonly concurrency?: ConcurrencyReporter;
}

/** What the autoscaler needs from the request path, as the activator reports it. */
export interface ConcurrencyReporter {
  /** A request for the revision started; the returned function is called once when it ends. */
  requestStarted(revisionKey: string): () => void;
  /** A request waits for a revision with no ready pod: scale it from zero now. */
  coldStart(revisionKey: string): void;
}

type Outcome = { status: number; targetNode: string };

function send(res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

export class NodeProxy {
  readonly metrics: ProxyMetrics;
  private readonly server: http.Server;
  private adminServer: http.Server | undefined;
  private readonly endpoints: EndpointTable;
  private readonly throttle: Throttle<QueuedRequest>;
  private readonly queues: RevisionQueues;
  private readonly upgrades: UpgradeForwarder;
  private readonly prober: RttProber;
  private readonly tracker: NodeLoadTracker;
  private readonly unanswered = new UnansweredRequests();
  private draining = false;
  private active = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: NodeProxyOptions) {
    this.metrics = new ProxyMetrics(opts.node, opts.processMetrics ?? false);
    this.queues = new RevisionQueues(opts.queue, this.metrics);
    this.endpoints = new EndpointTable(opts.model, opts.localAddress, () => {
      this.tracker.prune();
      this.throttle.wake();
    });
    this.prober = new RttProber({
      node: opts.node,
      model: opts.model,
      peerPort: opts.peerPort ?? 0,
      localAddress: opts.localAddress,
      intervalMs: opts.probeIntervalMs,
      onUpdate: (to, rtt, reachable) => {
        const labels = { from: opts.node, to };
        if (rtt !== undefined) {
          this.metrics.latencyBetweenNodes.set(labels, rtt);
          this.metrics.nodeRtt.set(labels, rtt / 1000);
        }
        this.metrics.nodeReachable.set(labels, reachable ? 1 : 0);
        if (!reachable) this.unanswered.abandonNode(to);
      },
    });
    this.tracker = new NodeLoadTracker(opts.node, opts.model, this.prober, (pod) => this.endpoints.get(pod)?.inFlight ?? 0);
    this.throttle = new Throttle(opts.node, this.endpoints, opts.policy, (k) => this.queues.room(k), () => opts.model.current, this.tracker);
    this.upgrades = new UpgradeForwarder(opts.localAddress);
    this.server = http.createServer({
      // The revision timeout bounds requests; Node's own 300 s cap would cut longer ones.
      requestTimeout: 0,
      // Slowloris: a client must finish its headers within this time. Node checks the
      // deadline only every `connectionsCheckingInterval` (default 30 s, which would let a
      // trickling client hold a connection for up to 45 s); check every second instead.
      headersTimeout: opts.headersTimeoutMs ?? 15_000,
      connectionsCheckingInterval: 1000,
      keepAliveTimeout: 65_000,
    }, (req, res) => void this.handle(req, res));
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.handleUpgrade(req, socket, head));
    // chikai is no forward proxy: a tunnel request is refused, nothing is dialled.
    this.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      socket.on('error', () => socket.destroy());
      const body = 'chikai: CONNECT is not served (this is no forward proxy)\n';
      socket.end(`HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (!socket.writable) return socket.destroy();
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
  }

  get node(): string { return this.opts.node; }
  /** Measured RTTs and pod load as this proxy sees them (the cost model's input). */
  get load(): LoadView { return this.tracker; }

  get address(): AddressInfo { return this.server.address() as AddressInfo; }
  get adminAddress(): AddressInfo | undefined { return this.adminServer?.address() as AddressInfo | undefined; }
  get isDraining(): boolean { return this.draining; }
  /** Requests being handled now (queued or forwarded). */
  get activeRequests(): number { return this.active; }

  async start(): Promise<void> {
    await listen(this.server, this.opts.listen);
    if (this.opts.admin) {
      this.adminServer = http.createServer((req, res) => void this.handleAdmin(req, res));
      await listen(this.adminServer, this.opts.admin);
    }
    if (this.opts.peerPort) this.prober.start();
  }

  /** Start (or re-aim) RTT probes at the peers' proxy port. */
  setPeerPort(port: number): void {
    this.prober.setPeerPort(port);
    this.prober.start();
  }

  // ---- the request path ----------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.answerProbe(req, res)) return;
    const problem = normaliseRequestTarget(req);
    if (problem) {
      send(res, problem.status, problem.body, { connection: 'close' });
      this.metrics.requests.inc({ revision: 'unknown', target_node: 'none', code: String(problem.status) });
      return;
    }
    const started = performance.now();
    const snapshot = this.opts.model.current;
    const resolved = resolveRevision(req.headers, snapshot);
    if ('notFound' in resolved) {
      send(res, 404, `chikai: no revision for ${resolved.notFound}\n`);
      this.metrics.requests.inc({ revision: 'unknown', target_node: 'none', code: '404' });
      return;
    }
    const { revision, key } = resolved;
    const max = this.opts.maxBodyBytes ?? 0;
    if (max > 0 && Number(req.headers['content-length'] ?? 0) > max) {
      send(res, 413, `chikai: request body larger than ${max} bytes\n`, { connection: 'close' });
      this.metrics.requests.inc({ revision: key, target_node: 'none', code: '413' });
      return;
    }
    if (this.draining) res.setHeader('connection', 'close');

    this.active++;
    this.metrics.addInFlight(key, 1);
    const reported = this.opts.concurrency?.requestStarted(key);
    if (reported && !snapshot.endpoints(key).some((e) => e.ready)) this.opts.concurrency?.coldStart(key);
    const abort = new AbortController();
    const timeoutMs = revision.timeoutSeconds * 1000;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort(new Error('activator request timeout'));
    }, timeoutMs);
    // The client went away: stop waiting and stop the upstream request.
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new Error('client closed the connection'));
    });
    let outcome: Outcome = { status: 0, targetNode: 'none' };
    try {
      outcome = await this.admitAndForward(req, res, { revision, revisionKey: key, snapshot }, abort.signal, () => timedOut);
    } finally {
      clearTimeout(timer);
      reported?.();
      this.active--;
      this.metrics.addInFlight(key, -1);
      this.metrics.requests.inc({ revision: key, target_node: outcome.targetNode, code: String(outcome.status) });
      this.metrics.duration.observe({ revision: key, target_node: outcome.targetNode }, (performance.now() - started) / 1000);
      if (this.active === 0) this.idleWaiters.splice(0).forEach((f) => f());
    }
  }

  private async admitAndForward(
    req: IncomingMessage,
    res: ServerResponse,
    a: Admission,
    signal: AbortSignal,
    timedOut: () => boolean,
  ): Promise<Outcome> {
    const headers = upstreamRequestHeaders(req.headers, req.socket.remoteAddress, false);
    const entry = this.queues.entry(req, headers, a, Date.now() + a.revision.timeoutSeconds * 1000);
    const tried = new Set<string>();
    for (let round = 0; round < 2; round++) {
      let endpoint: EndpointState;
      try {
        endpoint = await this.throttle.acquire(a, entry, signal, tried);
      } catch (err) {
        if (res.destroyed || req.destroyed) return { status: 499, targetNode: 'none' };
        const f = queueFailure(err, timedOut());
        send(res, f.status, f.body, f.headers);
        return { status: f.status, targetNode: 'none' };
      }
      tried.add(endpoint.pod);
      let result;
      const attempt = this.unanswered.begin(endpoint.node, signal);
      try {
        result = await forwardRequest(req, res, endpoint, entry.headers as Record<string, string | string[]>, attempt.signal, (_status, headers, ttfbMs) => {
          attempt.answered();
          this.tracker.observe(endpoint.pod, endpoint.node, ttfbMs, headers[ORCA_HEADER], endpoint.inFlight);
          this.opts.policy.observe?.(endpoint, ttfbMs);
        }, this.opts.maxBodyBytes ?? 0);
      } finally {
        attempt.end();
        this.throttle.release(endpoint, a.revisionKey);
      }
      const targetNode = endpoint.node;
      if (result.kind === 'done') return { status: result.status, targetNode };
      if (result.kind === 'body-too-large') {
        send(res, 413, `chikai: request body larger than ${result.limit} bytes\n`, { connection: 'close' });
        return { status: 413, targetNode };
      }
      if (result.kind === 'failed-mid-response') {
        res.destroy();
        return { status: result.status, targetNode };
      }
      if (timedOut()) {
        send(res, 504, 'activator request timeout\n');
        return { status: 504, targetNode };
      }
      if (signal.aborted) return { status: 499, targetNode };
      const unreachable = attempt.unreachable;
      if (unreachable) {
        // The pod may have the request, but nothing came back: only a repeatable one goes elsewhere.
        if (round === 0 && idempotentWithoutBody(req)) {
          this.metrics.retries.inc({ revision: a.revisionKey, reason: 'node-unreachable' });
          continue;
        }
        send(res, 502, `chikai: pod ${endpoint.pod} on ${endpoint.node} failed: ${unreachable.message}\n`);
        return { status: 502, targetNode };
      }
      if (round === 0 && result.retryable) {
        this.metrics.retries.inc({ revision: a.revisionKey, reason: (result.error as { code?: string }).code ?? 'connection' });
        continue;
      }
      send(res, 502, `chikai: pod ${endpoint.pod} on ${endpoint.node} failed: ${describe(result.error)}\n`);
      return { status: 502, targetNode };
    }
    /* c8 ignore next */
    return { status: 502, targetNode: 'none' };
  }

  /** Knative's probes of the activator, its ingress status prober's, and the kubelet's. */
  private answerProbe(req: IncomingMessage, res: ServerResponse): boolean {
    const probe = req.headers[NETWORK_PROBE_HEADER];
    if (probe === 'activator') {
      send(res, this.draining ? 503 : 200, 'activator');
      return true;
    }
    if (probe === 'probe') {
      // The gateway's probe route appended the KIngress hash; echoing it tells the prober
      // this gateway serves that version of the KIngress.
      const hash = req.headersDistinct[NETWORK_HASH_HEADER]?.[0];
      if (hash) send(res, 200, '', { [NETWORK_HASH_HEADER]: hash });
      else send(res, 400, `a probe request must contain a non-empty K-Network-Hash header\n`);
      return true;
    }
    if (req.headers['user-agent']?.startsWith('kube-probe/') && !req.headers[KNATIVE_REVISION_HEADER] && !req.headers[KNATIVE_NAMESPACE_HEADER]) {
      send(res, this.draining ? 503 : 200, this.draining ? 'draining' : 'ok');
      return true;
    }
    return false;
  }

  private async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy());
    const problem = normaliseRequestTarget(req);
    if (problem) {
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(problem.body)}\r\nConnection: close\r\n\r\n${problem.body}`);
      return;
    }
    const snapshot = this.opts.model.current;
    const resolved = resolveRevision(req.headers, snapshot);
    if ('notFound' in resolved) {
      const body = `chikai: no revision for ${resolved.notFound}\n`;
      socket.end(`HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    const a: Admission = { revision: resolved.revision, revisionKey: resolved.key, snapshot };
    const abort = new AbortController();
    socket.once('close', () => abort.abort());
    const headers = upstreamRequestHeaders(req.headers, req.socket.remoteAddress, false);
    const entry = this.queues.entry(req, headers, a, Date.now() + a.revision.timeoutSeconds * 1000);
    let endpoint: EndpointState;
    try {
      endpoint = await this.throttle.acquire(a, entry, abort.signal);
    } catch (err) {
      const f = queueFailure(err, false);
      if (!socket.destroyed) socket.end(`HTTP/1.1 ${f.status} ${http.STATUS_CODES[f.status]}\r\nContent-Length: ${Buffer.byteLength(f.body)}\r\nConnection: close\r\n\r\n${f.body}`);
      return;
    }
    // http-proxy forwards req.headers: give it the rewritten ones, keeping the upgrade pair.
    for (const k of Object.keys(req.headers)) if (k !== 'upgrade' && k !== 'connection') delete req.headers[k];
    Object.assign(req.headers, entry.headers, { [PROXY_REQUEST_HEADER]: 'activator' });
    this.active++;
    try {
      await this.upgrades.forward(req, socket, head, endpoint);
    } finally {
      this.active--;
      this.throttle.release(endpoint, a.revisionKey);
      if (this.active === 0) this.idleWaiters.splice(0).forEach((f) => f());
    }
  }

  // ---- admin ---------------------------------------------------------------------------

  private async handleAdmin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      for (const [rev, depth] of this.queues.depths()) this.metrics.buffered.set({ revision: rev }, depth);
      const text = await this.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(text);
    } else if (path === '/load') {
      // What this proxy measures, for the xDS server's locality weights (cluster/load-report.ts).
      const body = JSON.stringify(loadReportOf(this.opts.node, this.tracker, this.opts.model.current));
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(body);
    } else if (path === '/healthz') {
      send(res, 200, 'ok\n');
    } else if (path === '/readyz') {
      send(res, this.draining ? 503 : 200, this.draining ? 'draining\n' : 'ready\n');
    } else {
      send(res, 404, 'chikai admin: /metrics, /load, /healthz, /readyz\n');
    }
  }

  // ---- lifecycle -----------------------------------------------------------------------

  /**
   * SIGTERM: readiness fails at once; requests keep being served for `drainSeconds` (the
   * load balancers take the proxy out meanwhile); then new connections are refused and the
   * in-flight requests finish, bounded by `finishMs`.
   */
  async drain(finishMs = 30_000): Promise<void> {
    this.draining = true;
    await new Promise((r) => setTimeout(r, this.opts.drainSeconds * 1000));
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.server.closeIdleConnections();
    const idle = this.active === 0 ? Promise.resolve() : new Promise<void>((r) => this.idleWaiters.push(r));
    await Promise.race([idle, new Promise((r) => setTimeout(r, finishMs))]);
    this.server.closeAllConnections();
    await closed;
    await this.close();
  }

  /** Stop at once: listeners closed, connections cut, pools destroyed. */
  async close(): Promise<void> {
    this.draining = true;
    this.queues.clear('the proxy is shutting down');
    if (this.server.listening) {
      const closed = new Promise<void>((r) => this.server.close(() => r()));
      this.server.closeAllConnections();
      await closed;
    }
    if (this.adminServer?.listening) {
      const a = this.adminServer;
      await new Promise<void>((r) => a.close(() => r()));
      a.closeAllConnections();
    }
    this.upgrades.close();
    await this.prober.stop();
    await this.endpoints.close();
  }
}

function describe(err: Error): string {
  const code = (err as { code?: string }).code;
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return [code, cause?.code, err.message].filter(Boolean).join(' ');
}

function listen(server: http.Server, at: HostPort): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
