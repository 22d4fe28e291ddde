// What this proxy knows about load, as the cost model's LoadView: measured round trips
// (RttProber), each pod's service time (EWMA of what was observed) and capacity (what the
// pod reports), and each pod's in-flight requests over every proxy (PodSlots counts them).
import { rttOrConfigured, type LoadView } from '../cluster/load.js';
import type { ClusterModel } from '../cluster/model.js';
import type { OrcaLoad } from '../cluster/orca.js';
import type { RttProber } from './rtt.js';

/** Weight of a new service-time sample. */
const SERVICE_ALPHA = 0.25;

interface PodObservations {
  serviceMs: number | undefined;
  capacity: number | undefined;
}

export class NodeLoadTracker implements LoadView {
  private readonly pods = new Map<string, PodObservations>();

  constructor(
    readonly node: string,
    private readonly model: ClusterModel,
    private readonly prober: RttProber | undefined,
    /** In flight at a pod over every proxy (PodSlots). */
    private readonly podInFlight: (pod: string) => number,
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
    return this.podInFlight(pod);
  }

  serviceTimeMs(pod: string): number | undefined {
    return this.pods.get(pod)?.serviceMs;
  }

  capacity(pod: string): number | undefined {
    return this.pods.get(pod)?.capacity;
  }

  /** A response's headers arrived from `pod` on `node` `ttfbMs` after the request was sent. */
  observe(pod: string, node: string, ttfbMs: number, orca: OrcaLoad | undefined): void {
    let p = this.pods.get(pod);
    if (!p) this.pods.set(pod, (p = { serviceMs: undefined, capacity: undefined }));
    const sample = Math.max(0.1, ttfbMs - rttOrConfigured(this, this.model.current, this.node, node));
    p.serviceMs = p.serviceMs === undefined ? sample : p.serviceMs + SERVICE_ALPHA * (sample - p.serviceMs);
    if (node !== this.node) this.prober?.passiveSample(node, ttfbMs);
    const cap = orca?.named['capacity'];
    if (cap !== undefined && cap >= 1) p.capacity = cap;
  }

  /** Forget pods that left the model. */
  prune(): void {
    const live = new Set(this.model.current.state.endpoints.map((e) => e.pod));
    for (const pod of this.pods.keys()) if (!live.has(pod)) this.pods.delete(pod);
  }
}
