// chikai's policy: the shared cost model (expected completion time) with the least-cost
// chooser, applied to the node-local pods and to all of them: the best local pod wins
// unless a remote one is faster by the preference margin.
import { remoteIsFaster, DEFAULT_PREFERENCE, type LocalityPreference } from '../../cluster/cost.js';
import type { EndpointState } from '../endpoints.js';
import { leastCost, type Random } from './choosers.js';
import { expectedCompletion } from './load-metrics.js';
import type { PickContext, Policy } from './policy.js';

const byCost = (p: { readonly cost: number }): number => p.cost;

export class ChikaiPolicy implements Policy {
  readonly name = 'chikai';

  constructor(
    private readonly preference: LocalityPreference = DEFAULT_PREFERENCE,
    private readonly random: Random = Math.random,
  ) {}

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    if (candidates.length === 0) return undefined;
    // Each candidate priced once (the cost model reads the load view, per request).
    const cost = expectedCompletion(ctx);
    const priced = candidates.map((endpoint) => ({ endpoint, cost: cost(endpoint) }));
    const best = leastCost(priced, byCost, this.random);
    const local = leastCost(priced.filter((p) => p.endpoint.node === ctx.node), byCost, this.random);
    if (local && !remoteIsFaster(local.cost, best!.cost, this.preference)) return local.item.endpoint;
    // Every candidate unreachable: still try one rather than hold the request forever.
    return best?.item.endpoint ?? candidates[Math.floor(this.random() * candidates.length)];
  }
}
