// The cost model that decides "local or remote". One pure function family, used by the
// node proxy (per request, per pod) and by the xDS server (per gateway node, per locality).
//
// Expected completion time of the next request sent to a pod, seen from the sender's node:
//   cost = RTT(sender node → pod node) + expected wait at the pod + expected service time
// The wait comes from the pod's current load: with `capacity` requests served in parallel
// and `inFlight` already there, the new request queues behind (inFlight + 1 − capacity)
// others, and the queue drains `capacity` requests per service time.

export interface PodCostInput {
  readonly pod: string;
  readonly node: string;
  /** Measured round trip from the sender's node to the pod's node (0 when local). */
  readonly rttMs: number;
  /** Requests at the pod now, from every proxy (not only this one). */
  readonly inFlight: number;
  /** Requests the pod serves in parallel (containerConcurrency, or its observed parallelism). */
  readonly capacity: number;
  /** Expected service time (EWMA of observed service times). */
  readonly serviceTimeMs: number;
  /** False when the pod's node does not answer probes: never chosen while others exist. */
  readonly reachable: boolean;
  /**
   * For a pod on the sender's own node: the work the node offers its pods of the revision
   * over what they serve (`offeredUtilization`: arrivals per second × the pods' own time per
   * request ÷ their slots), where the sender sees the arrivals (the node proxy; the xDS
   * server sees a gateway's but leaves this out of the weights). Undefined elsewhere, and
   * where it cannot matter (the pod is below its overload bound, `atOverloadBound`).
   */
  readonly offeredUtilization?: number | undefined;
}

/**
 * Offered utilization from which a local queue is taken to persist: arrivals keep up with
 * (or outrun) what the node's pods serve, so a queue there does not drain between bursts.
 */
export const SUSTAINED_OVERLOAD = 0.9;
/**
 * Under sustained overload, how many requests a pod may hold per slot, served and waiting:
 * enough to keep the slot busy across the gaps between arrivals, no more.
 */
export const OVERLOAD_REQUESTS_PER_SLOT = 4;

/**
 * The work a node offers its pods of a revision over what they serve: requests arriving per
 * second × the pods' time per request ÷ their slots (1 means every slot busy all the time).
 * Undefined without a slot to serve on.
 */
export function offeredUtilization(arrivalsPerSecond: number, pods: readonly { readonly slots: number; readonly msPerRequest: number }[]): number | undefined {
  let slots = 0;
  let work = 0;
  for (const p of pods) {
    slots += p.slots;
    work += p.slots * p.msPerRequest;
  }
  if (slots <= 0) return undefined;
  return (arrivalsPerSecond * (work / slots)) / 1000 / slots;
}

/** Whether arrivals keep up with (or outrun) what the node's pods serve (`SUSTAINED_OVERLOAD`). */
export function inSustainedOverload(offered: number | undefined): boolean {
  return (offered ?? 0) >= SUSTAINED_OVERLOAD;
}

/** Whether a pod holds its bound of requests under sustained overload (if the overload is there). */
export function atOverloadBound(inFlight: number, capacity: number): boolean {
  return inFlight >= OVERLOAD_REQUESTS_PER_SLOT * Math.max(1, capacity);
}

export function expectedWaitMs(inFlight: number, capacity: number, serviceTimeMs: number): number {
  const cap = Math.max(1, capacity);
  const ahead = Math.max(0, inFlight + 1 - cap);
  return (ahead / cap) * serviceTimeMs;
}

/**
 * Expected time until the response is back at the sender. Unreachable pods cost Infinity,
 * and so does a local pod under sustained overload once it holds its bound of requests.
 *
 * Why the bound: below the knee a queue is a burst that drains, and waiting in it beats a
 * slow link until the wait reaches the round trip (the comparison the costs make). Under
 * sustained overload the queue never drains: a request that joins it delays every later
 * one too, so filling it up to the round trip makes most requests slow (the median at the
 * round trip, though the pods cannot serve more than a fraction anyway). Kept short, the
 * node's pods still serve all they can, and do it fast, while the excess goes elsewhere.
 */
export function expectedCompletionMs(p: PodCostInput): number {
  if (!p.reachable) return Number.POSITIVE_INFINITY;
  if (inSustainedOverload(p.offeredUtilization) && atOverloadBound(p.inFlight, p.capacity)) {
    return Number.POSITIVE_INFINITY;
  }
  return p.rttMs + expectedWaitMs(p.inFlight, p.capacity, p.serviceTimeMs) + p.serviceTimeMs;
}

export interface LocalityPreference {
  /** A remote choice must beat the local one by at least this many ms… */
  readonly marginMs: number;
  /** …and by at least this fraction of the local cost. */
  readonly marginRatio: number;
}

export const DEFAULT_PREFERENCE: LocalityPreference = { marginMs: 2, marginRatio: 0.1 };

/** Whether a remote cost beats a local one by the preference's margin. */
export function remoteIsFaster(localMs: number, remoteMs: number, pref: LocalityPreference = DEFAULT_PREFERENCE): boolean {
  if (!Number.isFinite(remoteMs)) return false;
  if (!Number.isFinite(localMs)) return true;
  return remoteMs + Math.max(pref.marginMs, pref.marginRatio * localMs) < localMs;
}

export interface LocalityShare {
  readonly node: string;
  /** Expected completion via the best pod of this node. */
  readonly costMs: number;
  /** Envoy LocalityLbEndpoints.load_balancing_weight, 1..100 within a priority. */
  readonly weight: number;
  /** Envoy priority: 0 is used first; contiguous. */
  readonly priority: number;
}

/**
 * Locality weights for one sender node (the xDS server's per-gateway view).
 * Priority 0 holds the sender's own node while its cost is finite, plus every remote node
 * that is cheaper; such a node takes the share of the local cost it saves,
 * (local − remote) ÷ local, and the local node keeps the rest. A gateway's weights hold
 * until the next push, so they must not swing on one report: a pod a hair cheaper takes a
 * hair of the traffic (with weights ∝ 1/cost two cloud gateways that each saw the other
 * pod a little cheaper sent half their traffic across, and one that saw it cheaper by the
 * margin sent all of it, then the other way round). A queue that persists keeps growing,
 * and so does the share that leaves it. Without a local pod (or with one that costs
 * Infinity: unreachable, or at its overload bound) priority 0 holds the cheapest node and
 * those within the margin of it, weights ∝ 1/cost. The other nodes follow as failover
 * priorities, cheapest first.
 */
export function localityShares(
  senderNode: string,
  pods: readonly PodCostInput[],
  pref: LocalityPreference = DEFAULT_PREFERENCE,
): LocalityShare[] {
  const best = new Map<string, number>();
  for (const p of pods) {
    const c = expectedCompletionMs(p);
    const prev = best.get(p.node);
    if (prev === undefined || c < prev) best.set(p.node, c);
  }
  const byCost = [...best.entries()]
    .filter(([, c]) => Number.isFinite(c))
    .sort((a, b) => a[1] - b[1] || a[0].localeCompare(b[0]));
  if (byCost.length === 0) return [];
  const cheapest = byCost[0][1];
  const localCost = best.get(senderNode);
  const local = localCost !== undefined && Number.isFinite(localCost) ? localCost : undefined;
  const inFirst = ([node, cost]: [string, number]): boolean => {
    if (local !== undefined) return node === senderNode || cost < local;
    return cost <= cheapest + Math.max(pref.marginMs, pref.marginRatio * cheapest);
  };
  const first = byCost.filter(inFirst);
  const rest = byCost.filter((e) => !first.includes(e));
  const raw = local === undefined ? first.map(([, c]) => 1 / Math.max(c, 0.1)) : savedShares(senderNode, local, first);
  const sum = raw.reduce((a, b) => a + b, 0);
  const shares: LocalityShare[] = first.map(([node, costMs], i) => ({
    node,
    costMs,
    weight: Math.max(1, Math.round((raw[i]! / sum) * 100)),
    priority: 0,
  }));
  rest.forEach(([node, costMs], i) => shares.push({ node, costMs, weight: 1, priority: i + 1 }));
  return shares;
}

/** Each cheaper remote node's share of what it saves, (local − remote) ÷ local; the local node the rest. */
function savedShares(senderNode: string, localCost: number, first: readonly [string, number][]): number[] {
  const saved = first.map(([node, cost]) => (node === senderNode ? 0 : Math.max(0, localCost - cost) / Math.max(localCost, 0.1)));
  const total = saved.reduce((a, b) => a + b, 0);
  // Several cheaper nodes together take at most 99 %: the local node stays in priority 0.
  const scale = total > 0.99 ? 0.99 / total : 1;
  return first.map(([node], i) => (node === senderNode ? 1 - total * scale : saved[i]! * scale));
}
