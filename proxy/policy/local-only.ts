// Kubernetes `internalTrafficPolicy: Local`: node-local pods only, power of two choices by
// own in-flight among them. Without one the request is refused (503) rather than sent
// elsewhere; a full local pod makes requests wait.
import type { EndpointState } from '../endpoints.js';
import { powerOfTwo, type Random } from './choosers.js';
import { ownInFlight } from './load-metrics.js';
import type { PickContext, Policy } from './policy.js';

export class LocalOnlyPolicy implements Policy {
  readonly name = 'local-only';

  constructor(private readonly random: Random = Math.random) {}

  eligible(endpoint: EndpointState, ctx: PickContext): boolean {
    return endpoint.node === ctx.node;
  }

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    return powerOfTwo(candidates, ownInFlight(ctx), this.random);
  }
}
