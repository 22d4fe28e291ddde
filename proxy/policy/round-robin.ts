// Plain round robin over the candidates of a revision.
import type { EndpointState } from '../endpoints.js';
import { RoundRobin } from './choosers.js';
import type { PickContext, Policy } from './policy.js';

export class RoundRobinPolicy implements Policy {
  readonly name = 'round-robin';
  private readonly turns = new RoundRobin();

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    return this.turns.next(ctx.revisionKey, candidates);
  }
}
