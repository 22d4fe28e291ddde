// Linkerd's balancer: power of two choices over peak-EWMA latency × (pending + 1).
import { systemClock, type Clock } from '../../cluster/clock.js';
import type { EndpointState } from '../endpoints.js';
import { powerOfTwo, type Random } from './choosers.js';
import { PeakEwma } from './load-metrics.js';
import type { PickContext, Policy } from './policy.js';

export class PeakEwmaPolicy implements Policy {
  readonly name = 'peak-ewma';
  readonly latency: PeakEwma;

  constructor(private readonly random: Random = Math.random, clock: Clock = systemClock) {
    this.latency = new PeakEwma(() => clock.now());
  }

  observe(endpoint: EndpointState, ttfbMs: number): void {
    this.latency.observe(endpoint.pod, ttfbMs);
  }

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    return powerOfTwo(candidates, this.latency.cost(ctx), this.random);
  }
}
