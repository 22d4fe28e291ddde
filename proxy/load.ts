// What this proxy knows about load, as the cost model's LoadView: measured round trips
// (RttProber), each pod's service time (EWMA of what was observed), and each pod's
// in-flight requests over every proxy — this proxy's own count plus what the pod last
// reported in its ORCA header about everybody else's.
import type { LoadView } from '../cluster/load.js';
import type { ClusterModel } from '../cluster/model.js';
import { parseOrcaHeader } from '../cluster/orca.js';
import type { RttProber } from './rtt.js';

/** How long a pod's ORCA report counts before only this proxy's own count is trusted. */
const ORCA_TTL_MS = 1000;
/** Weight of a new service-time sample. */
const SERVICE_ALPHA = 0.25;

interface PodLoad {
  serviceMs: number | undefined;
  /** In-flight at the pod from other proxies, per its last report. */
  others: number;
  reportedAt: number;
  capacity: number | undefined;
}

export class NodeLoadTracker implements LoadView {
  private readonly pods = new Map<string, PodLoad>();

  constructor(
    readonly node: string,
    private readonly model: ClusterModel,
    private readonly prober: RttProber | undefined,
    /** This proxy's own in-flight requests at a pod. */
    private readonly localInFlight: (pod: string) => number,
  ) {}

  rttMs(from: string, to: string): number | undefined {
    if (from === to) return 0;
    if (from === this.node && this.prober) return this.prober.rttMs(to);
    return undefined;
  }

  reachable(from: string, to: string): boolean {
    if (from === to || from !== this.node || !this.prober) return true;
    return this.prober.reachable(to);
  }

  inFlight(pod: string): number {
    const own = this.localInFlight(pod);
    const p = this.pods.get(pod);
    if (!p || performance.now() - p.reportedAt > ORCA_TTL_MS) return own;
    return own + p.others;
  }

  serviceTimeMs(pod: string): number | undefined {
    return this.pods.get(pod)?.serviceMs;
  }

  capacity(pod: string): number | undefined {
    return this.pods.get(pod)?.capacity;
  }

  private pod(pod: string): PodLoad {
    let p = this.pods.get(pod);
    if (!p) {
      p = { serviceMs: undefined, others: 0, reportedAt: 0, capacity: undefined };
      this.pods.set(pod, p);
    }
    return p;
  }

  /**
   * A response's headers arrived from `pod` on `node` after `ttfbMs`; `ownInFlight` is
   * this proxy's count at the pod including this request.
   */
  observe(pod: string, node: string, ttfbMs: number, orcaHeader: string | string[] | undefined, ownInFlight: number): void {
    const p = this.pod(pod);
    const rtt = node === this.node ? 0 : this.prober?.rttMs(node) ?? this.model.current.link(this.node, node).rttMs;
    const sample = Math.max(0.1, ttfbMs - rtt);
    p.serviceMs = p.serviceMs === undefined ? sample : p.serviceMs + SERVICE_ALPHA * (sample - p.serviceMs);
    if (node !== this.node) this.prober?.passiveSample(node, ttfbMs);
    const orca = parseOrcaHeader(orcaHeader);
    const reported = orca?.named['in_flight'];
    if (reported !== undefined) {
      p.others = Math.max(0, reported - ownInFlight);
      p.reportedAt = performance.now();
    }
    const cap = orca?.named['capacity'];
    if (cap !== undefined && cap >= 1) p.capacity = cap;
  }

  /** Forget pods that left the model. */
  prune(): void {
    const live = new Set(this.model.current.state.endpoints.map((e) => e.pod));
    for (const pod of this.pods.keys()) if (!live.has(pod)) this.pods.delete(pod);
  }
}
