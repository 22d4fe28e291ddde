// The xDS server's side of the load reports: an LRS service (xds/lrs.ts) on the ADS port,
// for two kinds of reporter. Every node proxy keeps one StreamLoadStats stream open to every
// xDS replica and sends what changed each interval (proxy/load-reporter.ts); a proxy's
// values hold while its stream lives: a stream that ends, or sends nothing for 60 intervals
// (30 s; a live proxy sends every interval, empty or not), takes its values with it and
// ends, so the proxy reconnects and sends its whole state again. The limit is long on
// purpose: a server busy with a thousand proxies' first reports must not mistake its own
// delay for silent proxies and cut them all off, which would make them all send everything
// again. Every Envoy gateway reports too (its bootstrap's load_stats_config): each of its
// reports covers one interval, so it replaces what that gateway said before (its pods' load,
// and the requests it issued per revision: its arrivals, which decide whether it goes
// through its node's proxy), and a gateway silent for four intervals no longer counts. Both go into one ReportedLoad, the LoadView
// the builder weighs localities with.
import { EventEmitter } from 'node:events';
import type { Clock } from '../cluster/clock.js';
import { status, type ServerDuplexStream } from '@grpc/grpc-js';
import { Counter, Gauge, type Registry } from 'prom-client';
import { GATEWAY_REPORTER_PREFIX, ReportedLoad, type LoadDelta } from '../cluster/load-report.js';
import { configuredLoadView, type LoadView } from '../cluster/load.js';
import type { ClusterModel, ClusterSnapshot } from '../cluster/model.js';
import { PROXY_NODE_CLUSTER, duration, lrsServiceDefinition, readClusterStats, readGatewayClusterStats, type LoadStatsRequest, type LoadStatsResponse } from './lrs.js';
import { RateLimitedLog, peerHost } from './log-limit.js';
import { certificateNode } from './mtls.js';
import { startXdsServer, type XdsServer, type XdsServerOptions } from './server.js';

export interface LoadReportServiceOptions {
  readonly model: ClusterModel;
  /** Used for whatever no proxy reports (default: the configured latencies, idle pods). */
  readonly fallback?: LoadView;
  /** How often proxies report, asked for in every LoadStatsResponse (default 500 ms). */
  readonly intervalMs?: number;
  readonly log?: (line: string) => void;
  /** Clock of the refusal log's rate limit (default: the system clock). */
  readonly clock?: Clock;
  /** Milliseconds clock for the quiet-stream check (tests). */
  readonly now?: () => number;
}

export interface LoadReportServiceEvents {
  /** A report arrived and was applied (`delta` holds what it changed). */
  report: [reporter: string, delta: LoadDelta];
}

interface ReportStream {
  /** The proxy's node, or `gateway/<node>` for an Envoy gateway. */
  readonly reporter: string;
  /** An Envoy gateway: complete reports per interval (else a chikai proxy: changes). */
  readonly gateway: boolean;
  readonly call: ServerDuplexStream<LoadStatsRequest, LoadStatsResponse>;
  lastReportAt: number;
  problemsLogged: boolean;
  /** A gateway's running service-time estimates, per pod. */
  readonly serviceMs: Map<string, number>;
}

export class LoadReportService extends EventEmitter<LoadReportServiceEvents> {
  readonly load: ReportedLoad;
  readonly intervalMs: number;
  private readonly streams = new Map<string, ReportStream>();
  private readonly refusals: RateLimitedLog;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  private readonly onModel = (snap: ClusterSnapshot) => this.load.prune((pod) => this.podIndex(snap).has(pod));
  private index: { snap: ClusterSnapshot; pods: Set<string> } | undefined;
  /** Report messages received and their bytes (protobuf, as on the wire). */
  reportsReceived = 0;
  bytesReceived = 0;

  constructor(private readonly opts: LoadReportServiceOptions) {
    super();
    this.intervalMs = opts.intervalMs ?? 500;
    if (!(this.intervalMs > 0)) throw new Error(`the load reporting interval must be a positive number of milliseconds, got ${opts.intervalMs}`);
    this.now = opts.now ?? Date.now;
    this.refusals = new RateLimitedLog({ write: (line) => opts.log?.(line), clock: opts.clock });
    this.load = new ReportedLoad(opts.fallback ?? configuredLoadView(() => opts.model.current));
  }

  /** The gRPC service to add to a server: `[definition, implementation]`. */
  service(): { definition: ReturnType<typeof lrsServiceDefinition>; implementation: { StreamLoadStats: (call: ServerDuplexStream<LoadStatsRequest, LoadStatsResponse>) => void } } {
    const definition = lrsServiceDefinition();
    const method = definition.StreamLoadStats!;
    const counted = {
      ...method,
      requestDeserialize: (b: Buffer) => {
        this.reportsReceived += 1;
        this.bytesReceived += b.length;
        return method.requestDeserialize(b);
      },
    };
    return { definition: { StreamLoadStats: counted }, implementation: { StreamLoadStats: (call) => this.accept(call) } };
  }

  start(): void {
    if (this.timer) return;
    this.opts.model.on('change', this.onModel);
    this.timer = setInterval(() => this.endQuietStreams(), this.intervalMs);
    this.timer.unref();
  }

  close(): void {
    this.opts.model.off('change', this.onModel);
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const s of [...this.streams.values()]) this.drop(s, undefined);
  }

  /** Its Prometheus metrics, in the xDS server's registry. */
  register(registry: Registry): void {
    const service = this;
    new Gauge({ name: 'chikai_xds_load_reporters', help: 'Node proxies with a load report stream open now', registers: [registry], collect() { this.set(service.streams.size); } });
    new Counter({ name: 'chikai_xds_load_reports_total', help: 'Load report messages received (LRS)', registers: [registry], collect() { this.reset(); this.inc(service.reportsReceived); } });
    new Counter({ name: 'chikai_xds_load_report_bytes_total', help: 'Bytes of load report messages received (protobuf)', registers: [registry], collect() { this.reset(); this.inc(service.bytesReceived); } });
  }

  /** Reporters with a stream now: proxies by node name, gateways as `gateway/<node>`. */
  reporters(): string[] {
    return [...this.streams.keys()].sort();
  }

  private podIndex(snap: ClusterSnapshot): Set<string> {
    if (this.index?.snap !== snap) this.index = { snap, pods: new Set(snap.state.endpoints.map((e) => e.pod)) };
    return this.index.pods;
  }

  private accept(call: ServerDuplexStream<LoadStatsRequest, LoadStatsResponse>): void {
    let stream: ReportStream | undefined;
    call.on('data', (req: LoadStatsRequest) => {
      if (!stream) {
        const node = req.node?.locality?.sub_zone ?? '';
        const gateway = req.node?.cluster !== PROXY_NODE_CLUSTER;
        if (!gateway && !this.opts.model.current.node(node)) {
          call.emit('error', { code: status.INVALID_ARGUMENT, details: `load reports: node.locality.sub_zone must name a node of the cluster (the reporting proxy's node), got ${JSON.stringify(node.slice(0, 100))}` });
          return;
        }
        // With mutual TLS a reporter speaks only for the node its certificate names.
        const cert = certificateNode(call);
        if (cert.tls && cert.node !== node) {
          const why = `its certificate is for node ${JSON.stringify(cert.node ?? '')} but it reports as sub_zone ${JSON.stringify(node.slice(0, 100))}`;
          this.refusals.log(peerHost(call.getPeer()), `xds: refused load reports from ${peerHost(call.getPeer())}: ${why}`);
          call.emit('error', { code: status.PERMISSION_DENIED, details: `load reports: ${why}` });
          return;
        }
        const reporter = gateway ? `${GATEWAY_REPORTER_PREFIX}${node || req.node?.id || call.getPeer()}` : node;
        const before = this.streams.get(reporter);
        // A reporter that reconnects starts over: what it said on the old stream is replaced.
        if (before) this.drop(before, 'replaced by a newer stream from the same reporter');
        stream = { reporter, gateway, call, lastReportAt: this.now(), problemsLogged: false, serviceMs: new Map() };
        this.streams.set(reporter, stream);
        call.write({ send_all_clusters: true, report_endpoint_granularity: true, load_reporting_interval: duration(this.intervalMs) });
        if (gateway) return;
      }
      if (this.streams.get(stream.reporter) !== stream) return;
      stream.lastReportAt = this.now();
      const snap = this.opts.model.current;
      if (stream.gateway) {
        const { pods, arrivals } = readGatewayClusterStats(req.cluster_stats ?? [], snap, stream.serviceMs);
        this.load.replace(stream.reporter, pods);
        // Arrivals count for a gateway on a node of the model (the node its proxy is on).
        const node = stream.reporter.slice(GATEWAY_REPORTER_PREFIX.length);
        if (snap.node(node)) this.load.replaceArrivals(node, arrivals);
        this.emit('report', stream.reporter, { peers: new Map(), pods });
        return;
      }
      const { delta, problems } = readClusterStats(req.cluster_stats ?? [], snap);
      if (problems.length > 0 && !stream.problemsLogged) {
        stream.problemsLogged = true;
        this.opts.log?.(`xds: load report from ${stream.reporter}'s proxy: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? ` (and ${problems.length - 3} more)` : ''}; skipped (further problems on this stream are not logged)`);
      }
      if (delta.peers.size > 0 || delta.pods.size > 0) this.load.apply(stream.reporter, delta);
      this.emit('report', stream.reporter, delta);
    });
    const gone = () => {
      if (stream && this.streams.get(stream.reporter) === stream) this.drop(stream, undefined);
    };
    call.on('end', gone);
    call.on('error', gone);
    call.on('close', gone);
  }

  private drop(s: ReportStream, why: string | undefined): void {
    if (this.streams.get(s.reporter) === s) {
      this.streams.delete(s.reporter);
      this.load.forget(s.reporter);
    }
    try {
      if (why) s.call.emit('error', { code: status.UNAVAILABLE, details: `load reports: ${why}` });
      else s.call.end();
    } catch {
      // already closed
    }
  }

  private endQuietStreams(): void {
    const limit = this.intervalMs * 60;
    for (const s of [...this.streams.values()]) {
      const quiet = this.now() - s.lastReportAt;
      // A gateway's report covers one interval: after four without one, it says nothing.
      if (s.gateway) {
        if (quiet > this.intervalMs * 4) this.load.forget(s.reporter);
        continue;
      }
      if (quiet <= limit) continue;
      this.opts.log?.(`xds: no load report from ${s.reporter}'s proxy for ${quiet} ms (it reports every ${this.intervalMs} ms); its load no longer counts until it reconnects`);
      this.drop(s, `no report for ${quiet} ms`);
    }
  }
}

/**
 * The xDS server weighing localities with what the node proxies report over LRS on the same
 * port: the report service starts with it, and closing the server stops it too.
 */
export async function startXdsServerWithLoadReports(
  opts: Omit<XdsServerOptions, 'load'> & { readonly loadReportIntervalMs?: number },
): Promise<XdsServer & { readonly loadReports: LoadReportService }> {
  const reports = new LoadReportService({ model: opts.model, intervalMs: opts.loadReportIntervalMs, log: opts.log, clock: opts.clock });
  reports.start();
  let server: XdsServer;
  try {
    server = await startXdsServer({ ...opts, load: reports.load, services: [...(opts.services ?? []), reports.service()] });
    reports.register(server.metrics.registry);
  } catch (err) {
    reports.close();
    throw err;
  }
  // The server is a plain object whose methods close over its state: spreading keeps them.
  return {
    ...server,
    loadReports: reports,
    async close() {
      reports.close();
      await server.close();
    },
  };
}
