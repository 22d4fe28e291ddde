// A load-balancing policy picks one endpoint among the candidates that have a free slot.
// Policies are selected by name (`--policy`, `proxy.policy` in the cluster file); each is a
// load metric composed with a chooser (choosers.ts, load-metrics.ts).
import type { LoadView } from '../../cluster/load.js';
import type { ClusterSnapshot, RevisionInfo } from '../../cluster/model.js';
import type { EndpointState } from '../endpoints.js';

export interface PickContext {
  /** The node this proxy runs on. */
  readonly node: string;
  readonly revision: RevisionInfo;
  readonly revisionKey: string;
  readonly snapshot: ClusterSnapshot;
  /** Measured RTTs and pod load as this proxy knows them (in flight over every proxy). */
  readonly load: LoadView;
  /** This proxy's own requests in flight at a pod (all an activator's balancing sees). */
  readonly ownInFlight: (pod: string) => number;
}

export interface Policy {
  readonly name: string;
  /**
   * Which ready endpoints the policy may ever use (default: all). When ready endpoints
   * exist but none is eligible the request is refused at once instead of waiting.
   */
  eligible?(endpoint: EndpointState, ctx: PickContext): boolean;
  /** One of `candidates` (eligible, ready, none full), or undefined to make the request wait. */
  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined;
  /** Response headers from `endpoint` arrived `ttfbMs` after the request was sent. */
  observe?(endpoint: EndpointState, ttfbMs: number): void;
}
