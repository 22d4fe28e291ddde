// chikai's policy: every candidate is priced by the shared cost model (RTT + expected wait
// + expected service time); the best node-local pod wins unless a remote one is faster by
// the preference margin.
import { expectedCompletionMs, remoteIsFaster, DEFAULT_PREFERENCE, type LocalityPreference } from '../../cluster/cost.js';
import { podCostInput } from '../../cluster/load.js';
import type { EndpointState } from '../endpoints.js';
import type { PickContext, Policy } from './policy.js';

export class ChikaiPolicy implements Policy {
  readonly name = 'chikai';

  constructor(
    private readonly preference: LocalityPreference = DEFAULT_PREFERENCE,
    private readonly random: () => number = Math.random,
  ) {}

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    if (candidates.length === 0) return undefined;
    let best: EndpointState | undefined;
    let bestCost = Number.POSITIVE_INFINITY;
    let bestLocal: EndpointState | undefined;
    let bestLocalCost = Number.POSITIVE_INFINITY;
    let ties = 0;
    for (const c of candidates) {
      const cost = expectedCompletionMs(podCostInput(ctx.snapshot, c.info, ctx.node, ctx.load));
      if (cost < bestCost) {
        best = c;
        bestCost = cost;
        ties = 1;
      } else if (cost === bestCost && Number.isFinite(cost) && this.random() * ++ties < 1) {
        best = c; // reservoir choice among equal costs
      }
      if (c.node === ctx.node && cost < bestLocalCost) {
        bestLocal = c;
        bestLocalCost = cost;
      }
    }
    if (bestLocal && !remoteIsFaster(bestLocalCost, bestCost, this.preference)) return bestLocal;
    // Every candidate unreachable: still try one rather than hold the request forever.
    return best ?? candidates[Math.floor(this.random() * candidates.length)];
  }
}
