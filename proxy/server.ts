// The node proxy: one per node, in the Knative activator's place. This module owns the
// listening sockets, the admin port and the lifecycle, and assembles the parts; what
// happens to a request is the chain in chain.ts, which every protocol enters.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { systemClock, type Clock, type Timer } from '../cluster/clock.js';
import type { LoadView } from '../cluster/load.js';
import { loadReportOf } from '../cluster/load-report.js';
import type { ClusterModel } from '../cluster/model.js';
import type { QueueConfig, QueueEntry } from '../queue/index.js';
import { requestChain } from './chain.js';
import { EndpointTable } from './endpoints.js';
import type { Exchange, Handler } from './exchange.js';
import { Http1Exchange, sendAnswer } from './http1.js';
import { NodeLoadTracker } from './load.js';
import { ProxyMetrics } from './metrics.js';
import type { Policy } from './policy/policy.js';
import { RevisionQueues } from './queueing.js';
import { RttProber } from './rtt.js';
import { PodSlots } from './slots.js';
import type { ConcurrencyReporter } from './steps/concurrency.js';
import { Lifecycle } from './steps/lifecycle.js';
import { UnansweredRequests } from './unanswered.js';
import { UpgradeExchange } from './upgrade.js';

export type { ConcurrencyReporter } from './steps/concurrency.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface NodeProxyOptions {
  readonly model: ClusterModel;
  /** The node this proxy serves. */
  readonly node: string;
  readonly listen: HostPort;
  /** Admin port: /metrics, /load, /healthz, /readyz. Kept apart from traffic. */
  readonly admin?: HostPort;
  readonly policy: Policy;
  /** The cluster file's `queue:` section (ClusterFile.queue). */
  readonly queue: QueueConfig;
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
  /** Time for every part of the proxy (tests pass a manual clock). */
  readonly clock?: Clock;
}

export class NodeProxy {
  readonly metrics: ProxyMetrics;
  private readonly server: http.Server;
  private adminServer: http.Server | undefined;
  private readonly clock: Clock;
  private readonly endpoints: EndpointTable;
  private readonly slots: PodSlots<QueueEntry>;
  private readonly queues: RevisionQueues;
  private readonly prober: RttProber;
  private readonly tracker: NodeLoadTracker;
  private readonly unanswered = new UnansweredRequests();
  private readonly lifecycle = new Lifecycle();
  private readonly chain: Handler<Exchange>;

  constructor(private readonly opts: NodeProxyOptions) {
    const clock = (this.clock = opts.clock ?? systemClock);
    this.metrics = new ProxyMetrics(opts.node, opts.processMetrics ?? false, () => this.slots.ownInFlightByRevision());
    this.queues = new RevisionQueues(opts.queue, this.metrics, clock);
    this.endpoints = new EndpointTable(opts.model, opts.localAddress, () => {
      this.tracker.prune();
      this.slots.endpointsChanged();
    });
    this.prober = new RttProber({
      node: opts.node,
      model: opts.model,
      peerPort: opts.peerPort ?? 0,
      localAddress: opts.localAddress,
      intervalMs: opts.probeIntervalMs,
      clock,
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
    this.tracker = new NodeLoadTracker(opts.node, opts.model, this.prober, (pod) => this.slots.inFlight(pod), clock);
    this.slots = new PodSlots({
      node: opts.node,
      endpoints: this.endpoints,
      policy: opts.policy,
      current: () => opts.model.current,
      load: this.tracker,
      room: (key) => this.queues.room(key),
      clock,
      refresh: (e) => e.reportedInFlight(),
    });
    this.chain = requestChain({
      model: opts.model,
      clock,
      lifecycle: this.lifecycle,
      metrics: this.metrics,
      maxBodyBytes: opts.maxBodyBytes ?? 0,
      concurrency: opts.concurrency,
      slots: this.slots,
      policy: opts.policy,
      tracker: this.tracker,
      unanswered: this.unanswered,
    });
    const now = () => clock.now();
    const maxBody = opts.maxBodyBytes ?? 0;
    this.server = http.createServer({
      // The revision timeout bounds requests; Node's own 300 s cap would cut longer ones.
      requestTimeout: 0,
      // Slowloris: a client must finish its headers within this time. Node checks the
      // deadline only every `connectionsCheckingInterval` (default 30 s, which would let a
      // trickling client hold a connection for up to 45 s); check every second instead.
      headersTimeout: opts.headersTimeoutMs ?? 15_000,
      connectionsCheckingInterval: 1000,
      keepAliveTimeout: 65_000,
    }, (req, res) => void this.chain(new Http1Exchange(req, res, now(), maxBody, now)));
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.chain(new UpgradeExchange(req, socket, head, now(), opts.localAddress, now));
    });
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
  /** Requests being handled now (queued, forwarded or tunnelled). */
  get activeRequests(): number { return this.lifecycle.active; }

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

  // ---- admin ---------------------------------------------------------------------------

  private async handleAdmin(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const text = (status: number, body: string) => sendAnswer(res, { status, body });
    if (path === '/metrics') {
      const body = await this.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(body);
    } else if (path === '/load') {
      // What this proxy measures, for the xDS server's locality weights (cluster/load-report.ts).
      const body = JSON.stringify(loadReportOf(this.opts.node, this.tracker, this.opts.model.current));
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(body);
    } else if (path === '/healthz') {
      text(200, 'ok\n');
    } else if (path === '/readyz') {
      text(this.lifecycle.draining ? 503 : 200, this.lifecycle.draining ? 'draining\n' : 'ready\n');
    } else {
      text(404, 'chikai admin: /metrics, /load, /healthz, /readyz\n');
    }
  }

  // ---- lifecycle -----------------------------------------------------------------------

  /**
   * SIGTERM: readiness fails at once; requests keep being served for `drainSeconds` (the
   * load balancers take the proxy out meanwhile); then new connections are refused and the
   * in-flight requests finish, bounded by `finishMs`.
   */
  async drain(finishMs = 30_000): Promise<void> {
    this.lifecycle.draining = true;
    await new Promise<void>((r) => this.clock.after(this.opts.drainSeconds * 1000, r));
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    this.server.closeIdleConnections();
    let finishTimer: Timer | undefined;
    await Promise.race([this.lifecycle.idle(), new Promise<void>((r) => (finishTimer = this.clock.after(finishMs, r)))]);
    finishTimer?.cancel();
    this.server.closeAllConnections();
    await closed;
    await this.close();
  }

  /** Stop at once: listeners closed, connections cut, pools destroyed. */
  async close(): Promise<void> {
    this.lifecycle.draining = true;
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
    await this.prober.stop();
    await this.endpoints.close();
  }
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
