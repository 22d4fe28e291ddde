// The load metrics policies rank pods by (lower is better). A policy is one of these
// composed with a chooser (choosers.ts).
import { expectedCompletionMs } from '../../cluster/cost.js';
import { podCostInput } from '../../cluster/load.js';
import type { EndpointState } from '../endpoints.js';
import type { PickContext } from './policy.js';

export type LoadMetric = (endpoint: EndpointState) => number;

/** This proxy's own requests at the pod: what the Knative activator balances by. */
export function ownInFlight(ctx: PickContext): LoadMetric {
  return (e) => ctx.ownInFlight(e.pod);
}

/** The shared cost model: RTT + expected wait + expected service time, over every proxy's load. */
export function expectedCompletion(ctx: PickContext): LoadMetric {
  return (e) => expectedCompletionMs(podCostInput(ctx.snapshot, e.info, ctx.node, ctx.load));
}

const TAU_MS = 10_000;
const DEFAULT_RTT_MS = 30;

interface Estimate {
  readonly ms: number;
  readonly at: number;
}

/**
 * Linkerd's peak-EWMA latency per pod. A sample slower than the estimate jumps it to that
 * peak; a faster one is blended in with weight 1 − e^(−Δt/τ). Without samples the estimate
 * decays toward 0 with the same τ, computed when read: a pod that was slow once is tried
 * again after a quiet while instead of being shunned on an old sample forever.
 */
export class PeakEwma {
  private readonly estimates = new Map<string, Estimate>();

  constructor(private readonly now: () => number, private readonly tauMs = TAU_MS, private readonly defaultMs = DEFAULT_RTT_MS) {}

  /** The estimate for `pod` now (the default before any sample). */
  estimate(pod: string): number {
    const e = this.estimates.get(pod);
    return e ? e.ms * Math.exp(-(this.now() - e.at) / this.tauMs) : this.defaultMs;
  }

  observe(pod: string, ms: number): void {
    const now = this.now();
    const cur = this.estimates.get(pod);
    if (!cur) return void this.estimates.set(pod, { ms, at: now });
    const w = Math.exp(-(now - cur.at) / this.tauMs);
    const decayed = cur.ms * w;
    this.estimates.set(pod, { ms: ms > decayed ? ms : decayed + ms * (1 - w), at: now });
  }

  /** Linkerd's cost: latency estimate × (this proxy's pending requests + 1). */
  cost(ctx: PickContext): LoadMetric {
    return (e) => this.estimate(e.pod) * (ctx.ownInFlight(e.pod) + 1);
  }
}
