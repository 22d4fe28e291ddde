// What this proxy knows about load, as the cost model's LoadView: measured round trips
// (RttProber), each pod's service time (EWMA of what was observed) and capacity (what the
// pod reports), each pod's in-flight requests over every proxy (PodSlots counts them), and
// the requests arriving for each revision, which make the node's offered utilization.
import type { Clock } from '../cluster/clock.js';
import { DEFAULT_SERVICE_TIME_MS, rttOrConfigured, type LoadView } from '../cluster/load.js';
import { revisionKey, type ClusterModel } from '../cluster/model.js';
import type { OrcaLoad } from '../cluster/orca.js';
import type { RttProber } from './rtt.js';

/** Weight of a new service-time sample. */
const SERVICE_ALPHA = 0.25;
/**
 * Without new samples a service-time estimate returns to the default with this time
 * constant. A pod that looked slow once (a first request on a cold connection, a busy
 * moment) would otherwise get no traffic, hence no samples, and look slow for ever.
 */
const SERVICE_DECAY_MS = 1000;

/** Time constant of the arrival rate per revision (ms): a second, like the pods' own rps window. */
const ARRIVAL_TAU_MS = 1000;

interface PodObservations {
  serviceMs: number | undefined;
  observedAt: number;
  capacity: number | undefined;
  /** The pod's own time per request from its ORCA report (no network, no queue), EWMA. */
  workMs: number | undefined;
}

/** An exponentially decaying count of arrivals: each adds 1/τ, so the value is a rate. */
interface ArrivalRate {
  perMs: number;
  at: number;
}

export class NodeLoadTracker implements LoadView {
  private readonly pods = new Map<string, PodObservations>();
  private readonly arrivals = new Map<string, ArrivalRate>();

  constructor(
    readonly node: string,
    private readonly model: ClusterModel,
    private readonly prober: RttProber | undefined,
    /** In flight at a pod over every proxy (PodSlots). */
    private readonly podInFlight: (pod: string) => number,
    private readonly clock: Clock,
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

  /** The service-time estimate, decayed toward the default for the time without samples. */
  serviceTimeMs(pod: string): number | undefined {
    const p = this.pods.get(pod);
    if (p?.serviceMs === undefined) return undefined;
    const keep = Math.exp(-(this.clock.now() - p.observedAt) / SERVICE_DECAY_MS);
    return DEFAULT_SERVICE_TIME_MS + (p.serviceMs - DEFAULT_SERVICE_TIME_MS) * keep;
  }

  capacity(pod: string): number | undefined {
    return this.pods.get(pod)?.capacity;
  }

  /** A request for the revision arrived at this node's proxy. */
  arrived(revKey: string): void {
    const now = this.clock.now();
    const a = this.arrivals.get(revKey);
    if (!a) return void this.arrivals.set(revKey, { perMs: 1 / ARRIVAL_TAU_MS, at: now });
    a.perMs = a.perMs * Math.exp(-(now - a.at) / ARRIVAL_TAU_MS) + 1 / ARRIVAL_TAU_MS;
    a.at = now;
  }

  /** Requests for the revision arriving at this node per second (decayed to now); other nodes' this proxy does not see. */
  arrivalsPerSecond(revKey: string, node: string): number | undefined {
    if (node !== this.node) return undefined;
    const a = this.arrivals.get(revKey);
    return a ? 1000 * a.perMs * Math.exp(-(this.clock.now() - a.at) / ARRIVAL_TAU_MS) : 0;
  }

  workMs(pod: string): number | undefined {
    return this.pods.get(pod)?.workMs;
  }

  /** A response's headers arrived from `pod` on `node` `ttfbMs` after the request was sent. */
  observe(pod: string, node: string, ttfbMs: number, orca: OrcaLoad | undefined): void {
    const before = this.serviceTimeMs(pod);
    let p = this.pods.get(pod);
    if (!p) this.pods.set(pod, (p = { serviceMs: undefined, observedAt: 0, capacity: undefined, workMs: undefined }));
    const sample = Math.max(0.1, ttfbMs - rttOrConfigured(this, this.model.current, this.node, node));
    p.serviceMs = before === undefined ? sample : before + SERVICE_ALPHA * (sample - before);
    p.observedAt = this.clock.now();
    if (node !== this.node) this.prober?.passiveSample(node, ttfbMs);
    const cap = orca?.named['capacity'];
    if (cap !== undefined && cap >= 1) p.capacity = cap;
    const work = orca?.named['service_ms'];
    if (work !== undefined && work > 0) p.workMs = p.workMs === undefined ? work : p.workMs + SERVICE_ALPHA * (work - p.workMs);
  }

  /**
   * The view the load reports read: this one, with each pod's in-flight count as `atPod`
   * says (without this proxy's requests still on the wire to it).
   */
  reportView(atPod: (pod: string) => number): LoadView {
    return {
      rttMs: (from, to) => this.rttMs(from, to),
      reachable: (from, to) => this.reachable(from, to),
      inFlight: atPod,
      serviceTimeMs: (pod) => this.serviceTimeMs(pod),
      capacity: (pod) => this.capacity(pod),
    };
  }

  /** Forget pods that left the model. */
  prune(): void {
    const live = new Set(this.model.current.state.endpoints.map((e) => e.pod));
    for (const pod of this.pods.keys()) if (!live.has(pod)) this.pods.delete(pod);
    const revisions = new Set(this.model.current.revisions.map((r) => revisionKey(r.namespace, r.name)));
    for (const rev of this.arrivals.keys()) if (!revisions.has(rev)) this.arrivals.delete(rev);
  }
}
