// The node proxy: one per node, in the Knative activator's place. This module owns the
// listening sockets, the admin port and the lifecycle, and assembles the parts; what
// happens to a request is the chain in chain.ts, which every protocol enters.
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type Http2Session } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { systemClock, type Clock, type Timer } from '../cluster/clock.js';
import type { LoadView } from '../cluster/load.js';
import { loadReportOf } from '../cluster/load-report.js';
import { DEFAULT_PROXY } from '../cluster/config.js';
import type { ClusterModel } from '../cluster/model.js';
import type { QueueConfig, QueueEntry } from '../queue/index.js';
import { requestChain } from './chain.js';
import { ClientConnectionLimit } from './client-connections.js';
import { EndpointTable } from './endpoints.js';
import type { Exchange, Handler } from './exchange.js';
import { H2Exchange } from './h2.js';
import { acceptH2c } from './h2c-listener.js';
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
  /** The activator's 8012: HTTP/1.1 and prior-knowledge h2c. */
  readonly listen: HostPort;
  /** The activator's 8013 (h2c, HTTP/1.1 accepted too); none when absent. */
  readonly h2cListen?: HostPort;
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
  /** Idle connections one client address may hold; its next one gets 503 (default 2048, 0 = no cap). */
  readonly maxIdleConnectionsPerClient?: number;
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
  /** The 8013 listener, when asked for: the same handlers as `server`. */
  private readonly h2cServer: http.Server | undefined;
  /** Every HTTP/2 stream of either port enters the chain here. */
  private readonly h2: http2.Http2Server;
  private readonly connectionLimit: ClientConnectionLimit;
  private readonly h2Sessions = new Set<Http2Session>();
  /** Drops the connections whose protocol is not known yet, per listener. */
  private readonly dropUndecided: (() => void)[] = [];
  /** Client sockets handed over by an upgrade: the HTTP server no longer cuts them, but its close waits for them. */
  private readonly upgraded = new Set<Duplex>();
  private adminServer: http.Server | undefined;
  private readonly clock: Clock;
  private readonly endpoints: EndpointTable;
  private readonly slots: PodSlots<QueueEntry>;
  private readonly queues: RevisionQueues;
  private readonly prober: RttProber;
  private readonly tracker: NodeLoadTracker;
  private readonly reportView: LoadView;
  private readonly unanswered = new UnansweredRequests();
  private readonly lifecycle = new Lifecycle();
  private readonly chain: Handler<Exchange>;

  constructor(private readonly opts: NodeProxyOptions) {
    const clock = (this.clock = opts.clock ?? systemClock);
    this.metrics = new ProxyMetrics(opts.node, opts.processMetrics ?? false, () => this.slots.ownInFlightByRevision(), () => this.slots.ownInFlightByPod());
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
      arrived: (key) => this.tracker.arrived(key),
    });
    this.reportView = this.tracker.reportView((pod) => this.slots.atPod(pod));
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
    this.h2 = http2.createServer({}, (req, res) => void this.chain(new H2Exchange(req, res, now(), maxBody, now)));
    this.h2.on('session', (session: Http2Session) => {
      this.h2Sessions.add(session);
      session.on('error', () => session.destroy());
      session.once('close', () => this.h2Sessions.delete(session));
      if (this.lifecycle.draining) session.close();
    });
    this.connectionLimit = new ClientConnectionLimit(opts.maxIdleConnectionsPerClient ?? DEFAULT_PROXY.maxIdleConnectionsPerClient, () => this.metrics.refusedConnections.inc({ reason: 'idle_per_client' }));
    this.server = this.http1Server(now, maxBody);
    this.h2cServer = opts.h2cListen ? this.http1Server(now, maxBody) : undefined;
  }

  /** An HTTP/1 server with the request path's handlers that also hands h2c connections to `h2`. */
  private http1Server(now: () => number, maxBody: number): http.Server {
    const server = http.createServer({
      // The revision timeout bounds requests; Node's own 300 s cap would cut longer ones.
      requestTimeout: 0,
      // Slowloris: a client must finish its headers within this time. Node checks the
      // deadline only every `connectionsCheckingInterval` (default 30 s, which would let a
      // trickling client hold a connection for up to 45 s); check every second instead.
      headersTimeout: this.opts.headersTimeoutMs ?? 15_000,
      connectionsCheckingInterval: 1000,
      keepAliveTimeout: 65_000,
    }, (req, res) => void this.chain(new Http1Exchange(req, res, now(), maxBody, now)));
    this.dropUndecided.push(acceptH2c(server, this.h2, this.clock, this.opts.headersTimeoutMs ?? 15_000));
    // After acceptH2c, which takes Node's own connection listener over; the cap runs first and
    // is shared by both ports, so a client's idle connections count once.
    this.connectionLimit.attach(server);
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.upgraded.add(socket);
      socket.once('close', () => this.upgraded.delete(socket));
      void this.chain(new UpgradeExchange(req, socket, head, now(), this.opts.localAddress, now));
    });
    // chikai is no forward proxy: a tunnel request is refused, nothing is dialled.
    server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      socket.on('error', () => socket.destroy());
      const body = 'chikai: CONNECT is not served (this is no forward proxy)\n';
      socket.end(`HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      if (!socket.writable) return socket.destroy();
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    });
    return server;
  }

  get node(): string { return this.opts.node; }
  /** Measured RTTs and pod load as this proxy sees them (the cost model's input). */
  get load(): LoadView { return this.tracker; }

  /** What this proxy reports to the xDS server (LoadReporter, admin `/load`): requests on the wire to a remote pod are not in its count. */
  get reportedLoad(): LoadView { return this.reportView; }

  get address(): AddressInfo { return this.server.address() as AddressInfo; }
  /** The 8013 listener's address, when there is one. */
  get h2cAddress(): AddressInfo | undefined { return this.h2cServer?.address() as AddressInfo | undefined; }
  get adminAddress(): AddressInfo | undefined { return this.adminServer?.address() as AddressInfo | undefined; }
  /** Requests being handled now (queued, forwarded or tunnelled). */
  get activeRequests(): number { return this.lifecycle.active; }

  async start(): Promise<void> {
    await listen(this.server, this.opts.listen);
    if (this.h2cServer && this.opts.h2cListen) await listen(this.h2cServer, this.opts.h2cListen);
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
      const body = JSON.stringify(loadReportOf(this.opts.node, this.reportView, this.opts.model.current));
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
    const servers = this.listeners();
    const closed = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const s of servers) s.closeIdleConnections();
    // HTTP/2 clients get GOAWAY: no new streams, the open ones finish.
    for (const session of this.h2Sessions) session.close();
    let finishTimer: Timer | undefined;
    await Promise.race([this.lifecycle.idle(), new Promise<void>((r) => (finishTimer = this.clock.after(finishMs, r)))]);
    finishTimer?.cancel();
    for (const s of servers) s.closeAllConnections();
    this.cutTunnels();
    for (const drop of this.dropUndecided) drop();
    for (const session of this.h2Sessions) session.destroy();
    await closed;
    await this.close();
  }

  /** Ends every upgraded tunnel (WebSockets): the pod's side goes with it (proxy/upgrade.ts). */
  private cutTunnels(): void {
    for (const socket of this.upgraded) socket.destroy();
    this.upgraded.clear();
  }

  private listeners(): http.Server[] {
    return this.h2cServer ? [this.server, this.h2cServer] : [this.server];
  }

  /** Stop at once: listeners closed, connections cut, pools destroyed. */
  async close(): Promise<void> {
    this.lifecycle.draining = true;
    this.queues.clear('the proxy is shutting down');
    for (const s of this.listeners()) {
      if (!s.listening) continue;
      const closed = new Promise<void>((r) => s.close(() => r()));
      s.closeAllConnections();
      this.cutTunnels();
      for (const drop of this.dropUndecided) drop();
      for (const session of this.h2Sessions) session.destroy();
      await closed;
    }
    for (const session of this.h2Sessions) session.destroy();
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
