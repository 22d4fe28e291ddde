// The Knative activator's own choice: containerConcurrency 0 → power of two choices by
// its own in-flight count; 1–3 → first pod with a free slot; > 3 → round robin over pods
// with a free slot.
import type { EndpointState } from '../endpoints.js';
import { powerOfTwo, RoundRobin, type Random } from './choosers.js';
import { ownInFlight } from './load-metrics.js';
import type { PickContext, Policy } from './policy.js';

export class KnativePolicy implements Policy {
  readonly name = 'knative';
  private readonly turns = new RoundRobin();

  constructor(private readonly random: Random = Math.random) {}

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    const cc = ctx.revision.containerConcurrency;
    if (cc === 0) return powerOfTwo(candidates, ownInFlight(ctx), this.random);
    if (cc <= 3) return candidates[0];
    return this.turns.next(ctx.revisionKey, candidates);
  }
}
