// The Knative activator's own choice: containerConcurrency 0 → random choice of two by
// in-flight count; 1–3 → first pod with a free slot; > 3 → round robin over pods with a
// free slot.
import type { EndpointState } from '../endpoints.js';
import type { PickContext, Policy } from './policy.js';

export function randomChoiceOfTwo(candidates: readonly EndpointState[], random: () => number = Math.random): EndpointState | undefined {
  const n = candidates.length;
  if (n <= 1) return candidates[0];
  const i = Math.floor(random() * n);
  let j = Math.floor(random() * (n - 1));
  if (j >= i) j++;
  const a = candidates[i];
  const b = candidates[j];
  return b.inFlight < a.inFlight ? b : a;
}

export class KnativePolicy implements Policy {
  readonly name = 'knative';
  private readonly cursor = new Map<string, number>();

  constructor(private readonly random: () => number = Math.random) {}

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    if (candidates.length === 0) return undefined;
    const cc = ctx.revision.containerConcurrency;
    if (cc === 0) return randomChoiceOfTwo(candidates, this.random);
    if (cc <= 3) return candidates[0];
    const next = (this.cursor.get(ctx.revisionKey) ?? 0) % candidates.length;
    this.cursor.set(ctx.revisionKey, next + 1);
    return candidates[next];
  }
}
