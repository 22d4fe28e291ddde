// Load reports on the wire: Envoy's Load Reporting Service (envoy.service.load_stats.v3,
// StreamLoadStats), the protocol Envoy uses to report load to its management server. Two
// kinds of reporter use it on the xDS server's port: the node proxies (what they measure,
// below) and the Envoy gateways themselves (what their own traffic does to the pods, which
// never passes a proxy; `readGatewayClusterStats`).
//
// Why LRS and not a stream of our own: what a proxy reports fits its fields without
// stretching them. A pod is an upstream endpoint of its revision's cluster (named
// `<namespace>/<revision>` as in CDS), in the locality of its node, identified by its
// address: UpstreamEndpointStats under UpstreamLocalityStats. Its in-flight requests are
// `total_requests_in_progress`; its service time and capacity are named load metrics
// (`load_metric_stats`, value = total_metric_value / num_requests_finished_with_metric, a
// count of 0 meaning "not measured"). A proxy's round trips belong to node pairs, not to a
// cluster, so they travel in one more ClusterStats named `chikai.nodes` (no '/', so it never
// clashes with a revision's cluster) whose localities are the peer nodes, each with the
// named metrics `rtt_ms` and `reachable`. The server states what it wants in its
// LoadStatsResponse (every cluster, endpoint granularity, the reporting interval), as an
// Envoy management server does. A message of our own would carry the same fields in the
// same protobuf encoding; LRS gives them names every Envoy operator knows.
//
// One departure from Envoy's use, stated here because a reader of the wire would notice: a
// report carries only what changed since the previous one on that stream, and a value
// holds until replaced (Envoy's counters cover one interval each). `total_requests_in_progress`
// is a gauge in Envoy too, so the meaning of each field is unchanged; only omission differs.
import type { ServiceDefinition } from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import type { LoadDelta, PeerReport, PodReport } from '../cluster/load-report.js';
import type { ClusterSnapshot, EndpointInfo } from '../cluster/model.js';
import { bidiMethod, protoCodec, type NodeIdentity } from './wire.js';

export const LRS_SERVICE = 'envoy.service.load_stats.v3.LoadReportingService';

/** The ClusterStats whose localities carry the reporter's round trips to the other nodes. */
export const NODES_CLUSTER = 'chikai.nodes';

const RTT_MS = 'rtt_ms';
const REACHABLE = 'reachable';
const SERVICE_TIME_MS = 'service_time_ms';
const CAPACITY = 'capacity';

interface Metric {
  metric_name?: string;
  num_requests_finished_with_metric?: number;
  total_metric_value?: number;
}

interface EndpointStats {
  address?: { socket_address?: { address?: string; port_value?: number } };
  total_requests_in_progress?: number;
  total_successful_requests?: number;
  load_metric_stats?: Metric[];
}

interface LocalityStats {
  locality?: { region?: string; zone?: string; sub_zone?: string };
  load_metric_stats?: Metric[];
  upstream_endpoint_stats?: EndpointStats[];
  total_requests_in_progress?: number;
  /** Requests the reporter sent to the locality over the interval (a uint64: a string when decoded). */
  total_issued_requests?: number | string;
}

interface ClusterStats {
  cluster_name?: string;
  upstream_locality_stats?: LocalityStats[];
  load_report_interval?: { seconds?: number; nanos?: number };
}

export interface LoadStatsRequest {
  node?: NodeIdentity;
  cluster_stats?: ClusterStats[];
}

export interface LoadStatsResponse {
  clusters?: string[];
  send_all_clusters?: boolean;
  load_reporting_interval?: { seconds?: number; nanos?: number };
  report_endpoint_granularity?: boolean;
}

/** LoadReportingService for @grpc/grpc-js (server.addService, makeGenericClientConstructor). */
export function lrsServiceDefinition(): ServiceDefinition {
  // Counts are uint64: read as numbers (they never come near 2^53).
  const longs: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: false, arrays: true, objects: true };
  const req = protoCodec<LoadStatsRequest>('envoy.service.load_stats.v3.LoadStatsRequest', longs);
  const res = protoCodec<LoadStatsResponse>('envoy.service.load_stats.v3.LoadStatsResponse', longs);
  return { StreamLoadStats: bidiMethod(LRS_SERVICE, 'StreamLoadStats', req, res) };
}

export function durationMs(d: { seconds?: number; nanos?: number } | undefined): number | undefined {
  if (!d) return undefined;
  return Number(d.seconds ?? 0) * 1000 + Number(d.nanos ?? 0) / 1e6;
}

export function duration(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) };
}

/** A named metric; undefined values are sent with a count of 0 ("not measured"). */
function metric(name: string, value: number | undefined): Metric {
  return value === undefined ? { metric_name: name, num_requests_finished_with_metric: 0, total_metric_value: 0 } : { metric_name: name, num_requests_finished_with_metric: 1, total_metric_value: value };
}

function metricValue(list: Metric[] | undefined, name: string): { present: boolean; value: number | undefined } {
  const m = list?.find((x) => x.metric_name === name);
  if (!m) return { present: false, value: undefined };
  const n = Number(m.num_requests_finished_with_metric ?? 0);
  return { present: true, value: n > 0 ? Number(m.total_metric_value ?? 0) / n : undefined };
}

/** The node cluster a chikai proxy reports as; any other reporter is taken for an Envoy gateway. */
export const PROXY_NODE_CLUSTER = 'chikai-proxy';

/** The identity a reporting proxy presents: its node as locality.sub_zone, as the gateways do. */
export function reporterIdentity(snap: ClusterSnapshot, node: string): NodeIdentity {
  const n = snap.node(node);
  return { id: `chikai-proxy/${node}`, cluster: PROXY_NODE_CLUSTER, locality: { region: n?.region ?? '', zone: n?.zone ?? '', sub_zone: node }, user_agent_name: 'chikai-proxy' };
}

/** Reporter side: the ClusterStats that carry `delta`. */
export function clusterStatsOf(delta: LoadDelta, snap: ClusterSnapshot, intervalMs: number): ClusterStats[] {
  const interval = duration(intervalMs);
  const out: ClusterStats[] = [];
  const locality = (node: string) => {
    const n = snap.node(node);
    return { region: n?.region ?? '', zone: n?.zone ?? '', sub_zone: node };
  };
  if (delta.peers.size > 0) {
    out.push({
      cluster_name: NODES_CLUSTER,
      load_report_interval: interval,
      upstream_locality_stats: [...delta.peers].map(([peer, r]) => ({
        locality: locality(peer),
        load_metric_stats: [metric(RTT_MS, r.rttMs), metric(REACHABLE, r.reachable ? 1 : 0)],
      })),
    });
  }
  // Pods grouped by revision (cluster) and node (locality).
  const byCluster = new Map<string, Map<string, EndpointStats[]>>();
  const endpoints = endpointsByPod(snap);
  for (const [pod, r] of delta.pods) {
    const e = endpoints.get(pod);
    if (!e) continue;
    let byNode = byCluster.get(e.revision);
    if (!byNode) byCluster.set(e.revision, (byNode = new Map()));
    const list = byNode.get(e.node) ?? [];
    list.push({
      address: { socket_address: { address: e.address, port_value: e.port } },
      total_requests_in_progress: Math.max(0, Math.round(r.inFlight)),
      load_metric_stats: [metric(SERVICE_TIME_MS, r.serviceTimeMs), metric(CAPACITY, r.capacity)],
    });
    byNode.set(e.node, list);
  }
  for (const [cluster, byNode] of byCluster) {
    out.push({
      cluster_name: cluster,
      load_report_interval: interval,
      upstream_locality_stats: [...byNode].map(([node, list]) => ({
        locality: locality(node),
        total_requests_in_progress: list.reduce((s, x) => s + (x.total_requests_in_progress ?? 0), 0),
        upstream_endpoint_stats: list,
      })),
    });
  }
  return out;
}

const podIndexes = new WeakMap<ClusterSnapshot, Map<string, EndpointInfo>>();
const addressIndexes = new WeakMap<ClusterSnapshot, Map<string, EndpointInfo>>();

function endpointsByPod(snap: ClusterSnapshot): Map<string, EndpointInfo> {
  let m = podIndexes.get(snap);
  if (!m) podIndexes.set(snap, (m = new Map(snap.state.endpoints.map((e) => [e.pod, e]))));
  return m;
}

/** Pods by `<revision>|<address>:<port>` (an address is unique within a revision's assignment). */
function endpointsByAddress(snap: ClusterSnapshot): Map<string, EndpointInfo> {
  let m = addressIndexes.get(snap);
  if (!m) addressIndexes.set(snap, (m = new Map(snap.state.endpoints.map((e) => [`${e.revision}|${e.address}:${e.port}`, e]))));
  return m;
}

/**
 * Server side: what a report says changed. Endpoints and nodes the model does not know are
 * skipped and named in `problems` (a proxy on an older model, or a confused client); nothing
 * is stored for them.
 */
export function readClusterStats(stats: readonly ClusterStats[], snap: ClusterSnapshot): { delta: LoadDelta; problems: string[] } {
  const peers = new Map<string, PeerReport>();
  const pods = new Map<string, PodReport>();
  const problems: string[] = [];
  const byAddress = endpointsByAddress(snap);
  for (const c of stats) {
    const cluster = c.cluster_name ?? '';
    for (const l of c.upstream_locality_stats ?? []) {
      const node = l.locality?.sub_zone ?? '';
      if (cluster === NODES_CLUSTER) {
        if (!snap.node(node)) {
          problems.push(`${NODES_CLUSTER}: locality sub_zone ${JSON.stringify(node)} is not a node of the cluster`);
          continue;
        }
        const rtt = metricValue(l.load_metric_stats, RTT_MS);
        const reachable = metricValue(l.load_metric_stats, REACHABLE);
        peers.set(node, { ...(rtt.value === undefined ? {} : { rttMs: rtt.value }), reachable: reachable.present ? reachable.value !== 0 : true });
        continue;
      }
      for (const ep of l.upstream_endpoint_stats ?? []) {
        const sa = ep.address?.socket_address;
        const e = byAddress.get(`${cluster}|${sa?.address ?? ''}:${sa?.port_value ?? 0}`);
        if (!e) {
          problems.push(`cluster ${JSON.stringify(cluster)}: no endpoint ${sa?.address ?? '?'}:${sa?.port_value ?? '?'} in the cluster model`);
          continue;
        }
        const service = metricValue(ep.load_metric_stats, SERVICE_TIME_MS).value;
        const capacity = metricValue(ep.load_metric_stats, CAPACITY).value;
        pods.set(e.pod, {
          inFlight: Math.max(0, Number(ep.total_requests_in_progress ?? 0)),
          ...(service === undefined ? {} : { serviceTimeMs: service }),
          ...(capacity === undefined ? {} : { capacity }),
        });
      }
    }
  }
  return { delta: { peers, pods }, problems };
}

/**
 * The pods' ORCA load (`endpoint-load-metrics` response header) that Envoy passes on in its
 * load reports (the clusters' `lrs_report_endpoint_metrics`, xds/resources.ts).
 */
export const GATEWAY_POD_METRICS = { inFlight: 'named_metrics.in_flight', capacity: 'named_metrics.capacity', serviceMs: 'named_metrics.service_ms' } as const;

/** Weight of a new interval's service-time average in a gateway's running estimate. */
const GATEWAY_SERVICE_ALPHA = 0.5;

/** What one report of an Envoy gateway says. */
export interface GatewayReport {
  /** The pods' load, as the gateway sees it. */
  readonly pods: Map<string, PodReport>;
  /** Requests per second the gateway sent for each revision (its cluster), wherever to: pods or a proxy. */
  readonly arrivals: Map<string, number>;
}

/**
 * Server side, for an Envoy gateway's report: its stats cover one interval, so they are the
 * gateway's whole state for now (the caller replaces what it said before). In flight is the
 * pod's own ORCA count (every sender) or, without it, the gateway's requests in progress;
 * the service time is a running average of the intervals' means, kept per gateway in
 * `serviceMs` while the pod gets no traffic. A revision's arrivals are what the gateway
 * issued to every locality of its cluster over the report's interval.
 */
export function readGatewayClusterStats(stats: readonly ClusterStats[], snap: ClusterSnapshot, serviceMs: Map<string, number>): GatewayReport {
  const pods = new Map<string, PodReport>();
  const arrivals = new Map<string, number>();
  const byAddress = endpointsByAddress(snap);
  for (const c of stats) {
    const intervalMs = durationMs(c.load_report_interval);
    const issued = (c.upstream_locality_stats ?? []).reduce((n, l) => n + Number(l.total_issued_requests ?? 0), 0);
    if (c.cluster_name && snap.revision(c.cluster_name) && intervalMs !== undefined && intervalMs > 0 && Number.isFinite(issued)) {
      arrivals.set(c.cluster_name, (issued * 1000) / intervalMs);
    }
    for (const l of c.upstream_locality_stats ?? []) {
      for (const ep of l.upstream_endpoint_stats ?? []) {
        const sa = ep.address?.socket_address;
        // A node proxy (a revision without ready pods), or a pod gone meanwhile: not a pod's load.
        const e = byAddress.get(`${c.cluster_name ?? ''}|${sa?.address ?? ''}:${sa?.port_value ?? 0}`);
        if (!e) continue;
        const service = metricValue(ep.load_metric_stats, GATEWAY_POD_METRICS.serviceMs).value;
        if (service !== undefined) {
          const prev = serviceMs.get(e.pod);
          serviceMs.set(e.pod, prev === undefined ? service : prev + GATEWAY_SERVICE_ALPHA * (service - prev));
        }
        const capacity = metricValue(ep.load_metric_stats, GATEWAY_POD_METRICS.capacity).value;
        const inFlight = metricValue(ep.load_metric_stats, GATEWAY_POD_METRICS.inFlight).value ?? Number(ep.total_requests_in_progress ?? 0);
        pods.set(e.pod, capacity === undefined ? { inFlight } : { inFlight, capacity });
      }
    }
  }
  const live = new Set(snap.state.endpoints.map((e) => e.pod));
  for (const pod of serviceMs.keys()) if (!live.has(pod)) serviceMs.delete(pod);
  for (const [pod, serviceTimeMs] of serviceMs) pods.set(pod, { ...(pods.get(pod) ?? { inFlight: 0 }), serviceTimeMs });
  return { pods, arrivals };
}
