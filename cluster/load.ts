// What the cost model needs to know beyond the cluster model: measured round trips
// between nodes and the live load of each pod. The proxy fills a LoadView from its RTT
// probes and the load it shares with the other proxies; the xDS server reads the same
// view. `podCostInputs` turns a snapshot plus a view into the cost model's inputs, so both
// halves feed the cost model identically.
import type { ClusterSnapshot, EndpointInfo, RevisionInfo } from './model.js';
import { atOverloadBound, offeredUtilization, type PodCostInput } from './cost.js';

/** Service time assumed for a pod before anything was observed (the paper's 3–5 ms function). */
export const DEFAULT_SERVICE_TIME_MS = 4;

/** What moved in a LoadView, so a reader can redo only what depends on it. */
export interface LoadChange {
  /** Pods whose in-flight count, service time or capacity moved. */
  readonly pods: ReadonlySet<string>;
  /** Revisions whose arrivals at some node moved. */
  readonly revisions?: ReadonlySet<string>;
  /** Nodes whose measured RTTs or reachability to other nodes moved. */
  readonly fromNodes: ReadonlySet<string>;
}

export interface LoadView {
  /** Measured round trip between two nodes in ms, or undefined while unmeasured. */
  rttMs(from: string, to: string): number | undefined;
  /** False once `to` stopped answering `from`'s probes. */
  reachable(from: string, to: string): boolean;
  /** Requests in flight at the pod now, over every proxy (this one's own plus the others'). */
  inFlight(pod: string): number;
  /**
   * The same count as the pod's own node sees it (a view merged from many nodes' reports):
   * what a sender on that node weighs its local pods by. Absent: `inFlight`.
   */
  localInFlight?(pod: string, node: string): number;
  /** Expected service time of the pod (EWMA), or undefined while unobserved. */
  serviceTimeMs(pod: string): number | undefined;
  /** Requests the pod serves in parallel, when known from the pod itself. */
  capacity(pod: string): number | undefined;
  /**
   * Requests for a revision arriving at `node` per second, or undefined where this view
   * does not see them: the node proxy sees its own node's, the xDS server each gateway's
   * (from the gateway's load reports). With the pods' slots and time per request they make
   * the node's offered utilization (`nodeOfferedUtilization`).
   */
  arrivalsPerSecond?(revKey: string, node: string): number | undefined;
  /** The pod's own time per request (its ORCA report: no network, no queue), when known. */
  workMs?(pod: string): number | undefined;
  /**
   * Tells `listener` what moved, each time something does; returns the unsubscriber. A view
   * without it may change at any time and readers re-read it periodically.
   */
  onChange?(listener: (change: LoadChange) => void): () => void;
}

/** A view with no measurements: configured latencies, idle pods, default service time. */
export function configuredLoadView(snapshot: () => ClusterSnapshot): LoadView {
  return {
    rttMs: (from, to) => snapshot().link(from, to).rttMs,
    reachable: () => true,
    inFlight: () => 0,
    serviceTimeMs: () => undefined,
    capacity: () => undefined,
    // Nothing here is measured: the configured latencies change only with the model.
    onChange: () => () => undefined,
  };
}

/** Parallel capacity of a pod: containerConcurrency when set, else what the pod reports, else 1. */
export function podCapacity(rev: RevisionInfo | undefined, pod: string, load: LoadView): number {
  if (rev && rev.containerConcurrency > 0) return rev.containerConcurrency;
  return Math.max(1, load.capacity(pod) ?? 1);
}

/** The measured round trip from one node to another, else the configured one (0 inside a node). */
export function rttOrConfigured(load: LoadView, snapshot: ClusterSnapshot, from: string, to: string): number {
  return from === to ? 0 : load.rttMs(from, to) ?? snapshot.link(from, to).rttMs;
}

/**
 * How much work `node` offers its ready pods of a revision (`offeredUtilization` in the cost
 * model), where the view sees the node's arrivals; undefined elsewhere, or without a ready
 * pod there.
 */
export function nodeOfferedUtilization(snapshot: ClusterSnapshot, revKey: string, node: string, load: LoadView): number | undefined {
  const rate = load.arrivalsPerSecond?.(revKey, node);
  if (rate === undefined) return undefined;
  const rev = snapshot.revision(revKey);
  const pods: { slots: number; msPerRequest: number }[] = [];
  for (const e of snapshot.endpoints(revKey)) {
    if (!e.ready || e.node !== node) continue;
    pods.push({ slots: podCapacity(rev, e.pod, load), msPerRequest: load.workMs?.(e.pod) ?? load.serviceTimeMs(e.pod) ?? DEFAULT_SERVICE_TIME_MS });
  }
  return offeredUtilization(rate, pods);
}

export function podCostInput(
  snapshot: ClusterSnapshot,
  e: EndpointInfo,
  fromNode: string,
  load: LoadView,
  /** Price a local pod by the overload bound (per request, in the proxy); weights leave it out. */
  overloadBound = true,
): PodCostInput {
  const rev = snapshot.revision(e.revision);
  const local = e.node === fromNode;
  const inFlight = local && load.localInFlight ? load.localInFlight(e.pod, e.node) : load.inFlight(e.pod);
  const capacity = podCapacity(rev, e.pod, load);
  return {
    pod: e.pod,
    node: e.node,
    rttMs: rttOrConfigured(load, snapshot, fromNode, e.node),
    inFlight,
    capacity,
    serviceTimeMs: load.serviceTimeMs(e.pod) ?? DEFAULT_SERVICE_TIME_MS,
    reachable: local || load.reachable(fromNode, e.node),
    // Per request on the proxy's hot path: the node's arrivals are summed over its pods only
    // for a local pod whose queue has reached the bound, the one case the cost model reads them.
    offeredUtilization: overloadBound && local && atOverloadBound(inFlight, capacity) ? nodeOfferedUtilization(snapshot, e.revision, fromNode, load) : undefined,
  };
}

/**
 * Cost-model inputs for every ready endpoint of a revision, seen from `fromNode`, for a
 * gateway's weights. They leave out the overload bound: it prices a local pod per request,
 * for the proxy (in the path by the time it applies); weights that hold a whole push would
 * drop the pod from priority 0 until the next report, the swing the proxy is there to avoid.
 */
export function podCostInputs(snapshot: ClusterSnapshot, revKey: string, fromNode: string, load: LoadView): PodCostInput[] {
  return snapshot.readyEndpoints(revKey).map((e) => podCostInput(snapshot, e, fromNode, load, false));
}
