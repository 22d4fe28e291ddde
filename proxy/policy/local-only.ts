// Kubernetes `internalTrafficPolicy: Local`: node-local pods only. Without one the request
// is refused (503) rather than sent elsewhere; a full local pod makes requests wait.
import type { EndpointState } from '../endpoints.js';
import { randomChoiceOfTwo } from './knative.js';
import type { PickContext, Policy } from './policy.js';

export class LocalOnlyPolicy implements Policy {
  readonly name = 'local-only';

  eligible(endpoint: EndpointState, ctx: PickContext): boolean {
    return endpoint.node === ctx.node;
  }

  pick(candidates: readonly EndpointState[]): EndpointState | undefined {
    return randomChoiceOfTwo(candidates);
  }
}
