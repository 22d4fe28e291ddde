// Plain round robin over the candidates of a revision.
import type { EndpointState } from '../endpoints.js';
import type { PickContext, Policy } from './policy.js';

export class RoundRobinPolicy implements Policy {
  readonly name = 'round-robin';
  private readonly cursor = new Map<string, number>();

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    if (candidates.length === 0) return undefined;
    const i = this.cursor.get(ctx.revisionKey) ?? 0;
    this.cursor.set(ctx.revisionKey, (i + 1) % 1_000_000_007);
    return candidates[i % candidates.length];
  }
}
