// The load-report bench's cluster: N nodes, each with a simulated node proxy whose
// measurements move the way a busy fleet's do — every interval, a few of its round trips
// drift by more than the reporting deadband and its few busy pods change load. Both ends
// (the proxies' process and the receiving xDS side) build the same model from N.
import type { LoadChange, LoadView } from '../../../cluster/load.js';
import { ClusterModel, revisionKey, type EndpointInfo, type NodeInfo, type RevisionInfo } from '../../../cluster/model.js';

/** Revisions (one pod each, spread over the nodes). */
export const REVISIONS = 1000;
/** Pods each proxy has load on at a time. */
const BUSY_PODS = 5;
/** Share of a proxy's round trips that move past the deadband each interval. */
const RTT_MOVES = 0.02;

export function simulatedModel(nodes: number): ClusterModel {
  const ns: NodeInfo[] = Array.from({ length: nodes }, (_, i) => ({ name: `node${i + 1}`, region: 'r', zone: `z${i % 10}`, address: `127.1.${(i >> 8) & 255}.${i & 255}` }));
  const revs: RevisionInfo[] = Array.from({ length: REVISIONS }, (_, i) => ({
    namespace: 'default', service: `fn${i}`, name: `fn${i}-00001`, hosts: [], containerConcurrency: 0, timeoutSeconds: 300, protocol: 'http1',
  }));
  const endpoints: EndpointInfo[] = revs.map((r, i) => ({ pod: `${r.name}-pod`, revision: revisionKey(r.namespace, r.name), node: ns[i % nodes]!.name, address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 8012, ready: true }));
  return new ClusterModel({ domain: 'cluster.local', externalDomains: [], nodes: ns, revisions: revs, endpoints, latency: {} });
}

/** A small deterministic generator, so every run moves the same way. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** Every node's simulated proxy load. */
export function simulatedLoads(model: ClusterModel): Map<string, SimulatedProxyLoad> {
  const nodes = model.current.nodes.map((n) => n.name);
  const indexOf = new Map(nodes.map((n, i) => [n, i]));
  const pods = model.current.state.endpoints.map((e) => e.pod);
  return new Map(nodes.map((n, i) => [n, new SimulatedProxyLoad(n, i, nodes, indexOf, pods)]));
}

/** One simulated proxy's measurements. */
export class SimulatedProxyLoad implements LoadView {
  private readonly rtt: Float64Array;
  private readonly busy = new Map<string, { inFlight: number; serviceTimeMs: number }>();
  private readonly random: () => number;
  private readonly listeners = new Set<(change: LoadChange) => void>();

  constructor(
    private readonly node: string,
    private readonly nodeIndex: number,
    private readonly nodes: readonly string[],
    private readonly indexOf: ReadonlyMap<string, number>,
    pods: readonly string[],
  ) {
    this.random = rng(nodeIndex + 1);
    this.rtt = Float64Array.from(nodes, (_, j) => (j === nodeIndex ? 0 : 1 + ((nodeIndex * 7 + j * 13) % 100)));
    while (this.busy.size < BUSY_PODS) this.busy.set(pods[Math.floor(this.random() * pods.length)]!, { inFlight: 1, serviceTimeMs: 4 });
  }

  /** One interval passes: some round trips drift, the busy pods' load changes. */
  step(): void {
    const moves = Math.max(1, Math.round(this.nodes.length * RTT_MOVES));
    for (let k = 0; k < moves; k++) {
      const j = Math.floor(this.random() * this.nodes.length);
      if (j !== this.nodeIndex) this.rtt[j] = Math.max(0.5, this.rtt[j]! + (this.random() < 0.5 ? -1 : 1) * (1 + 2 * this.random()));
    }
    for (const b of this.busy.values()) {
      b.inFlight = Math.floor(this.random() * 5);
      b.serviceTimeMs *= 0.95 + 0.1 * this.random();
    }
    const change: LoadChange = { pods: new Set(this.busy.keys()), fromNodes: new Set([this.node]) };
    for (const l of this.listeners) l(change);
  }

  /** Says what moved, as a view should: its reporter then reads only that (1000 of them share one process here). */
  onChange(listener: (change: LoadChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  rttMs(from: string, to: string): number | undefined {
    if (from !== this.node) return undefined;
    const j = this.indexOf.get(to);
    return j === undefined ? undefined : this.rtt[j];
  }

  reachable(): boolean {
    return true;
  }

  inFlight(pod: string): number {
    return this.busy.get(pod)?.inFlight ?? 0;
  }

  serviceTimeMs(pod: string): number | undefined {
    return this.busy.get(pod)?.serviceTimeMs;
  }

  capacity(): number | undefined {
    return undefined;
  }
}
