// A node proxy's load reports to the xDS servers (Envoy's Load Reporting Service, xds/lrs.ts):
// one StreamLoadStats stream to every xDS replica, and every interval what changed in the
// proxy's LoadView (its measured RTTs and per-pod load, read as `loadReportOf` reads them).
//
// Every replica must see the same load, or they serve different weights. So the reporter
// keeps one baseline — the values it has reported — and sends the same change to every
// stream; a stream that (re)connects first gets the whole baseline, then the changes. Each
// replica then holds exactly the baseline after the same messages. Values within a small
// deadband of the baseline are not reported (cluster/load-report.ts, samePeer/samePod).
import { lookup } from 'node:dns/promises';
import { credentials, makeGenericClientConstructor, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { isIdlePod, readPeer, readPod, samePeer, samePod, type LoadDelta, type PeerReport, type PodReport } from '../cluster/load-report.js';
import type { LoadView } from '../cluster/load.js';
import type { ClusterModel } from '../cluster/model.js';
import { clusterStatsOf, durationMs, lrsServiceDefinition, reporterIdentity, type LoadStatsRequest, type LoadStatsResponse } from '../xds/lrs.js';

export interface ServerAddress {
  readonly host: string;
  readonly port: number;
}

export interface LoadReporterOptions {
  readonly node: string;
  readonly model: ClusterModel;
  /** What the proxy measures (NodeProxy.load). */
  readonly load: LoadView;
  /** The xDS servers; a host name that resolves to several addresses (a headless Service) gets a stream to each. */
  readonly servers: readonly ServerAddress[];
  /** Reporting interval until a server asks for its own (default 500 ms). */
  readonly intervalMs?: number;
  /** How often host names are resolved again (default 10 s). */
  readonly resolveEveryMs?: number;
  readonly log?: (line: string) => void;
  /** Mutual TLS to the xDS servers (their ADS port requires it in deploy/'s xds-mtls overlay). */
  readonly tls?: ClientTls;
}

/** A client certificate (subject CN = this proxy's node) and the CA and name of the xDS servers' certificate. */
export interface ClientTls {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** The DNS name in the servers' certificate (they are dialled by address). */
  readonly serverName: string;
}

type Call = ClientDuplexStream<LoadStatsRequest, LoadStatsResponse>;

/** One xDS server's report stream; reconnects until closed. */
class ReportStream {
  private client: Client | undefined;
  private call: Call | undefined;
  /** The server answered, so reports may go. */
  private open = false;
  /** The whole baseline went out on the current call. */
  private synced = false;
  private closed = false;
  private retryMs = 500;
  private retry: NodeJS.Timeout | undefined;
  private loggedDown = false;

  constructor(readonly address: string, private readonly reporter: LoadReporter) {
    this.connect();
  }

  private connect(): void {
    const Ctor = makeGenericClientConstructor(lrsServiceDefinition(), 'LoadReportingService');
    const tls = this.reporter.tls;
    this.client = tls
      ? new Ctor(this.address, credentials.createSsl(tls.ca, tls.key, tls.cert), { 'grpc.use_local_subchannel_pool': 1, 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName })
      : new Ctor(this.address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const method = (this.client as unknown as Record<string, () => Call>).StreamLoadStats;
    const call = method.call(this.client);
    this.call = call;
    this.open = false;
    this.synced = false;
    call.on('data', (res: LoadStatsResponse) => {
      if (!this.open) {
        this.open = true;
        this.retryMs = 500;
        if (this.loggedDown) this.reporter.log(`load reports to ${this.address}: connected again`);
        this.loggedDown = false;
      }
      const ms = durationMs(res.load_reporting_interval);
      if (ms !== undefined && ms > 0) this.reporter.askedInterval(this, ms);
    });
    const down = (why: string) => {
      if (this.call !== call) return;
      this.call = undefined;
      this.open = false;
      this.client?.close();
      if (this.closed) return;
      if (!this.loggedDown) this.reporter.log(`load reports to ${this.address}: ${why}; retrying every ${this.retryMs / 1000}–10 s`);
      this.loggedDown = true;
      // Jittered, so proxies cut off together (an xDS restart) do not come back together.
      this.retry = setTimeout(() => this.connect(), this.retryMs * (0.5 + Math.random()));
      this.retry.unref();
      this.retryMs = Math.min(10_000, this.retryMs * 2);
    };
    call.on('error', (err: Error) => down(err.message));
    call.on('end', () => down('the server ended the stream'));
    call.write({ node: reporterIdentity(this.reporter.model.current, this.reporter.node) });
  }

  /** Sends this interval's change, or the whole baseline if this call has not had it yet. */
  send(change: LoadDelta, baseline: () => LoadDelta): void {
    if (!this.open || !this.call) return;
    const delta = this.synced ? change : baseline();
    this.synced = true;
    this.call.write({ cluster_stats: clusterStatsOf(delta, this.reporter.model.current, this.reporter.intervalMs) });
  }

  close(): void {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.call?.end();
    this.call = undefined;
    this.client?.close();
  }
}

export class LoadReporter {
  readonly node: string;
  readonly model: ClusterModel;
  private readonly peers = new Map<string, PeerReport>();
  private readonly pods = new Map<string, PodReport>();
  private readonly streams = new Map<string, ReportStream>();
  private readonly asked = new Map<ReportStream, number>();
  private timer: NodeJS.Timeout | undefined;
  private resolver: NodeJS.Timeout | undefined;
  private closed = false;
  private modelVersion = -1;
  /** With a view that says what moved: what moved since the last interval (peers: this node's RTTs). */
  private moved: { peers: boolean; pods: Set<string> | undefined } | undefined;
  private unsubscribe: (() => void) | undefined;
  intervalMs: number;

  constructor(private readonly opts: LoadReporterOptions) {
    this.node = opts.node;
    this.model = opts.model;
    this.intervalMs = opts.intervalMs ?? 500;
    if (opts.servers.length === 0) throw new Error('load reports need at least one xDS server address');
  }

  log(line: string): void {
    this.opts.log?.(`chikai proxy ${this.node}: ${line}`);
  }

  get tls(): ClientTls | undefined {
    return this.opts.tls;
  }

  async start(): Promise<void> {
    const view = this.opts.load;
    if (view.onChange) {
      this.moved = { peers: true, pods: undefined };
      this.unsubscribe = view.onChange((c) => {
        if (!this.moved) return;
        if (c.fromNodes.has(this.node)) this.moved.peers = true;
        for (const pod of c.pods) this.moved.pods?.add(pod);
      });
    }
    await this.resolve();
    this.restartTimer();
    this.resolver = setInterval(() => void this.resolve(), this.opts.resolveEveryMs ?? 10_000);
    this.resolver.unref();
  }

  close(): void {
    this.closed = true;
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    if (this.resolver) clearInterval(this.resolver);
    for (const s of this.streams.values()) s.close();
    this.streams.clear();
  }

  /** Servers reporting goes to now (resolved addresses). */
  addresses(): string[] {
    return [...this.streams.keys()].sort();
  }

  private async resolve(): Promise<void> {
    const wanted = new Set<string>();
    for (const s of this.opts.servers) {
      try {
        for (const a of await lookup(s.host, { all: true })) wanted.add(`${a.family === 6 ? `[${a.address}]` : a.address}:${s.port}`);
      } catch (err) {
        this.log(`load reports: cannot resolve ${s.host} (${(err as Error).message}); keeping the streams it had`);
        for (const key of this.streams.keys()) if (key.endsWith(`:${s.port}`)) wanted.add(key);
      }
    }
    if (this.closed) return;
    for (const [key, s] of this.streams) {
      if (wanted.has(key)) continue;
      s.close();
      this.streams.delete(key);
      this.asked.delete(s);
    }
    for (const key of wanted) if (!this.streams.has(key)) this.streams.set(key, new ReportStream(key, this));
  }

  /** A server asked for another interval: report as often as the most demanding one asks. */
  askedInterval(stream: ReportStream, ms: number): void {
    this.asked.set(stream, ms);
    const next = Math.min(...this.asked.values());
    if (next !== this.intervalMs) {
      this.intervalMs = next;
      this.restartTimer();
    }
  }

  /** Reports every interval, from a random point of it: proxies started together report out of step. */
  private restartTimer(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    const timer = setTimeout(() => {
      if (this.timer !== timer) return;
      this.tick();
      this.timer = setInterval(() => this.tick(), this.intervalMs);
      this.timer.unref();
    }, Math.random() * this.intervalMs);
    timer.unref();
    this.timer = timer;
  }

  /** Moves the baseline to what the proxy measures now and sends the change to every stream. */
  tick(): void {
    const change = this.advance();
    for (const s of this.streams.values()) s.send(change, () => this.baseline());
  }

  /**
   * What moved past the deadband since the baseline (which moves along), read as
   * `loadReportOf` reads. A view that says what moved (`onChange`) is read only there;
   * otherwise, and after a model change, every node and pod is read.
   */
  private advance(): LoadDelta {
    const snap = this.model.current;
    const view = this.opts.load;
    let scan = this.moved ?? { peers: true, pods: undefined };
    if (snap.version !== this.modelVersion) {
      // Nodes and pods that left the model leave the baseline too (a full sync no longer names them).
      this.modelVersion = snap.version;
      for (const peer of [...this.peers.keys()]) if (!snap.node(peer)) this.peers.delete(peer);
      const pods = new Set(snap.state.endpoints.map((e) => e.pod));
      for (const pod of [...this.pods.keys()]) if (!pods.has(pod)) this.pods.delete(pod);
      scan = { peers: true, pods: undefined };
    }
    if (this.moved) this.moved = { peers: false, pods: new Set() };
    const peers = new Map<string, PeerReport>();
    const pods = new Map<string, PodReport>();
    if (scan.peers) {
      for (const n of snap.nodes) {
        if (n.name === this.node) continue;
        const now = readPeer(view, this.node, n.name);
        if (samePeer(this.peers.get(n.name), now)) continue;
        peers.set(n.name, now);
        this.peers.set(n.name, now);
      }
    }
    for (const pod of scan.pods ?? snap.state.endpoints.map((e) => e.pod)) {
      const now = readPod(view, pod);
      if (samePod(this.pods.get(pod), now)) continue;
      pods.set(pod, now);
      if (isIdlePod(now)) this.pods.delete(pod);
      else this.pods.set(pod, now);
    }
    return { peers, pods };
  }

  /** Everything reported so far: what a server that just connected needs. */
  private baseline(): LoadDelta {
    return { peers: new Map(this.peers), pods: new Map(this.pods) };
  }
}
