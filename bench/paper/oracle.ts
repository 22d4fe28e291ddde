// The oracle's routing: a fixed split of one node's traffic over nodes, set by the bench.
// It looks at nothing at run time; the bench finds the best split by sweeping it. Inside
// a node the pod with the fewest requests from this proxy wins.
import type { EndpointState } from '../../proxy/endpoints.js';
import type { PickContext, Policy } from '../../proxy/policy/index.js';

export type Split = Readonly<Record<string, number>>;

/**
 * The oracle's split for one node: the edge sends `edgeRemoteShare` of its requests to the
 * cloud (half to each cloud node) and keeps the rest; a cloud node keeps its own requests.
 */
export function edgeShareSplit(node: string, edge: string, cloud: readonly string[], edgeRemoteShare: number): Split {
  if (node !== edge) return { [node]: 1 };
  const split: Record<string, number> = { [edge]: 1 - edgeRemoteShare };
  for (const n of cloud) split[n] = edgeRemoteShare / cloud.length;
  return split;
}

export class StaticSplitPolicy implements Policy {
  readonly name = 'oracle';
  private weights: Split = {};
  /** Smooth weighted round robin state: deterministic, so a 30/70 split is 30/70 within every 10 requests. */
  private readonly current = new Map<string, number>();

  constructor(split: Split = {}) {
    this.setSplit(split);
  }

  /** Share of this node's requests each node gets (any positive scale; missing nodes get none). */
  setSplit(split: Split): void {
    this.weights = { ...split };
    this.current.clear();
  }

  get split(): Split {
    return this.weights;
  }

  eligible(endpoint: EndpointState): boolean {
    return (this.weights[endpoint.node] ?? 0) > 0;
  }

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    if (candidates.length === 0) return undefined;
    const nodes = [...new Set(candidates.map((c) => c.node))];
    let total = 0;
    let best: string | undefined;
    for (const n of nodes) {
      const w = this.weights[n] ?? 0;
      total += w;
      const c = (this.current.get(n) ?? 0) + w;
      this.current.set(n, c);
      if (best === undefined || c > this.current.get(best)!) best = n;
    }
    if (best === undefined) return undefined;
    this.current.set(best, this.current.get(best)! - total);
    let pick: EndpointState | undefined;
    for (const c of candidates) if (c.node === best && (!pick || ctx.ownInFlight(c.pod) < ctx.ownInFlight(pick.pod))) pick = c;
    return pick;
  }
}
