// Linkerd's balancer: power of two choices over peak-EWMA cost = latency estimate ×
// (pending + 1). A slower sample jumps the estimate to the peak; faster ones pull it down
// with time constant τ.
import type { EndpointState } from '../endpoints.js';
import type { PickContext, Policy } from './policy.js';

const TAU_MS = 10_000;
const DEFAULT_RTT_MS = 30;

interface Estimate {
  ms: number;
  at: number;
}

export class PeakEwmaPolicy implements Policy {
  readonly name = 'peak-ewma';
  private readonly estimates = new Map<string, Estimate>();

  constructor(private readonly random: () => number = Math.random, private readonly now: () => number = () => performance.now()) {}

  /** Current latency estimate of an endpoint, decayed to now. */
  estimate(pod: string): number {
    return this.estimates.get(pod)?.ms ?? DEFAULT_RTT_MS;
  }

  cost(e: EndpointState): number {
    return this.estimate(e.pod) * (e.inFlight + 1);
  }

  observe(endpoint: EndpointState, ttfbMs: number): void {
    const now = this.now();
    const cur = this.estimates.get(endpoint.pod);
    if (!cur || ttfbMs > cur.ms) {
      this.estimates.set(endpoint.pod, { ms: ttfbMs, at: now });
      return;
    }
    const w = Math.exp(-(now - cur.at) / TAU_MS);
    this.estimates.set(endpoint.pod, { ms: cur.ms * w + ttfbMs * (1 - w), at: now });
  }

  pick(candidates: readonly EndpointState[], _ctx: PickContext): EndpointState | undefined {
    const n = candidates.length;
    if (n <= 1) return candidates[0];
    const i = Math.floor(this.random() * n);
    let j = Math.floor(this.random() * (n - 1));
    if (j >= i) j++;
    return this.cost(candidates[j]) < this.cost(candidates[i]) ? candidates[j] : candidates[i];
  }
}
