// Load reports from the gateways: Envoy's Load Reporting Service (LRS,
// envoy.service.load_stats.v3), on the xDS server's gRPC port. Requests that go through a
// gateway straight to a pod never pass a node proxy, so the proxies' `/load` reports cannot
// see them; each gateway reports them itself. chikai asks every gateway for all clusters,
// per endpoint, once a second; Envoy answers with the requests in progress per pod and the
// pods' own ORCA load from their response headers (the names in the clusters'
// `lrs_report_endpoint_metrics`: in flight over every sender, capacity, service time).
// Each report becomes a LoadReport of the gateway, merged with the proxies' reports into
// the LoadView the locality weights are computed from.
import type { ServerDuplexStream, ServiceDefinition } from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import type { LoadReport, PodReport } from '../cluster/load-report.js';
import type { ClusterModel } from '../cluster/model.js';
import { envoyProtos } from './protos.js';
import type { NodeIdentity } from './wire.js';

export const LRS_SERVICE = 'envoy.service.load_stats.v3.LoadReportingService';

interface MetricStats {
  metric_name?: string;
  num_requests_finished_with_metric?: string;
  total_metric_value?: number;
}

interface EndpointStats {
  address?: { socket_address?: { address?: string; port_value?: number } };
  total_requests_in_progress?: string;
  total_successful_requests?: string;
  load_metric_stats?: MetricStats[];
}

export interface LoadStatsRequest {
  node?: NodeIdentity;
  cluster_stats?: {
    cluster_name?: string;
    upstream_locality_stats?: { upstream_endpoint_stats?: EndpointStats[] }[];
  }[];
}

export interface LoadStatsResponse {
  send_all_clusters: boolean;
  load_reporting_interval: { seconds: number; nanos: number };
  report_endpoint_granularity: boolean;
}

const DECODE: protobuf.IConversionOptions = { longs: String, enums: String, defaults: false, arrays: true, objects: true };

/** LoadReportingService for @grpc/grpc-js, (de)serialized with the loaded Envoy protos. */
export function lrsServiceDefinition(): ServiceDefinition {
  const protos = envoyProtos();
  protos.load(['envoy/service/load_stats/v3/lrs.proto']);
  const req = protos.type('envoy.service.load_stats.v3.LoadStatsRequest');
  const res = protos.type('envoy.service.load_stats.v3.LoadStatsResponse');
  return {
    StreamLoadStats: {
      path: `/${LRS_SERVICE}/StreamLoadStats`,
      requestStream: true,
      responseStream: true,
      requestSerialize: (m: LoadStatsRequest) => Buffer.from(req.encode(req.fromObject(m as Record<string, unknown>)).finish()),
      requestDeserialize: (b: Buffer) => req.toObject(req.decode(b), DECODE) as LoadStatsRequest,
      responseSerialize: (m: LoadStatsResponse) => Buffer.from(res.encode(res.fromObject(m as unknown as Record<string, unknown>)).finish()),
      responseDeserialize: (b: Buffer) => res.toObject(res.decode(b), DECODE) as LoadStatsResponse,
    },
  };
}

/** Weight of a new interval's service-time average. */
const SERVICE_ALPHA = 0.5;

export interface GatewayLoadOptions {
  readonly model: ClusterModel;
  /** Where each converted report goes (the xDS server's LoadView). */
  readonly onReport: (report: LoadReport) => void;
  /** Reporting interval asked of every gateway (default 1000 ms: weights are recomputed every second). */
  readonly intervalMs?: number;
}

/** Mean of one ORCA metric over the requests of one interval that carried it. */
function metricMean(stats: readonly MetricStats[] | undefined, name: string): number | undefined {
  const m = stats?.find((s) => s.metric_name === name);
  const n = Number(m?.num_requests_finished_with_metric ?? 0);
  const total = m?.total_metric_value;
  return n > 0 && typeof total === 'number' && Number.isFinite(total) ? total / n : undefined;
}

/** The LRS endpoint: turns every gateway's load reports into LoadReports. */
export class GatewayLoadReports {
  private readonly calls = new Set<ServerDuplexStream<LoadStatsRequest, LoadStatsResponse>>();
  /** Per gateway, per pod: the service time seen so far (kept while the pod gets no traffic). */
  private readonly serviceMs = new Map<string, Map<string, number>>();
  private readonly intervalMs: number;

  constructor(private readonly opts: GatewayLoadOptions) {
    this.intervalMs = opts.intervalMs ?? 1000;
  }

  /** The gRPC handlers to add with `lrsServiceDefinition()`. */
  handlers(): { StreamLoadStats: (call: ServerDuplexStream<LoadStatsRequest, LoadStatsResponse>) => void } {
    return { StreamLoadStats: (call) => this.stream(call) };
  }

  /** Ends every open load-report stream (the gateways reconnect to the next server). */
  close(): void {
    for (const c of this.calls) c.end();
    this.calls.clear();
  }

  private stream(call: ServerDuplexStream<LoadStatsRequest, LoadStatsResponse>): void {
    this.calls.add(call);
    let gateway: string | undefined;
    call.on('data', (req: LoadStatsRequest) => {
      if (gateway === undefined) {
        // The first request carries the node; the Kubernetes node name is its sub_zone.
        gateway = req.node?.locality?.sub_zone || req.node?.id || call.getPeer();
        const ms = this.intervalMs;
        call.write({
          send_all_clusters: true,
          load_reporting_interval: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 },
          report_endpoint_granularity: true,
        });
      }
      if (req.cluster_stats?.length) this.opts.onReport(this.toLoadReport(gateway, req));
    });
    call.on('error', () => this.calls.delete(call));
    call.on('end', () => {
      this.calls.delete(call);
      call.end();
    });
  }

  private toLoadReport(gateway: string, req: LoadStatsRequest): LoadReport {
    const snap = this.opts.model.current;
    const known = this.serviceMs.get(gateway) ?? new Map<string, number>();
    this.serviceMs.set(gateway, known);
    const pods: Record<string, PodReport> = {};
    for (const cs of req.cluster_stats ?? []) {
      const byAddress = new Map(snap.endpoints(cs.cluster_name ?? '').map((e) => [`${e.address}:${e.port}`, e.pod]));
      for (const ls of cs.upstream_locality_stats ?? []) {
        for (const es of ls.upstream_endpoint_stats ?? []) {
          const sa = es.address?.socket_address;
          const pod = byAddress.get(`${sa?.address}:${sa?.port_value}`);
          if (!pod) continue; // a node proxy (revision without ready pods), or a pod gone meanwhile
          const service = metricMean(es.load_metric_stats, 'named_metrics.service_ms');
          if (service !== undefined) {
            const prev = known.get(pod);
            known.set(pod, prev === undefined ? service : prev + SERVICE_ALPHA * (service - prev));
          }
          const capacity = metricMean(es.load_metric_stats, 'named_metrics.capacity');
          // The pod's own count covers every sender; without it, this gateway's requests.
          const inFlight = metricMean(es.load_metric_stats, 'named_metrics.in_flight') ?? Number(es.total_requests_in_progress ?? 0);
          pods[pod] = { inFlight, ...(capacity === undefined ? {} : { capacity }) };
        }
      }
    }
    const live = new Set(snap.state.endpoints.map((e) => e.pod));
    for (const pod of known.keys()) if (!live.has(pod)) known.delete(pod);
    for (const [pod, serviceTimeMs] of known) pods[pod] = { ...(pods[pod] ?? { inFlight: 0 }), serviceTimeMs };
    return { node: `gateway/${gateway}`, at: Date.now(), peers: {}, pods };
  }
}
