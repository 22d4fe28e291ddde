// The research system's policy (FaaSt / miporin), as published: every 2 s, over a 10 s
// window, R[i][j] = D[i][j] (RTT from this node i to node j) + P[j] (mean request latency
// of the revision's pods on node j); w[i][j] = (1/r) / Σ_k (1/r) × 100 with r = 0 read as
// 0.1 ms; nodes without pods get 0, nodes with pods but weight 0 get 1, and the row is
// renormalised. A request picks a node by weight, then round robin inside the node.
import type { EndpointState } from '../endpoints.js';
import type { PickContext, Policy } from './policy.js';

const WINDOW_MS = 10_000;
const RECOMPUTE_MS = 2_000;

interface Sample {
  at: number;
  ms: number;
}

/** The published weight formula for one row (this node i): node → weight in percent. */
export function faastWeights(d: ReadonlyMap<string, number>, p: ReadonlyMap<string, number>, nodesWithPods: ReadonlySet<string>): Map<string, number> {
  const inv = new Map<string, number>();
  for (const j of nodesWithPods) {
    const r = (d.get(j) ?? 0) + (p.get(j) ?? 0);
    inv.set(j, 1 / (r === 0 ? 0.1 : r));
  }
  const sum = [...inv.values()].reduce((a, b) => a + b, 0);
  const w = new Map<string, number>();
  for (const [j, v] of inv) w.set(j, Math.floor((v / sum) * 100) || 1);
  const total = [...w.values()].reduce((a, b) => a + b, 0);
  for (const [j, v] of w) w.set(j, (v / total) * 100);
  return w;
}

export class FaastPolicy implements Policy {
  readonly name = 'faast';
  private readonly samples = new Map<string, Sample[]>();
  private weights = new Map<string, Map<string, number>>();
  private computedAt = new Map<string, number>();
  private readonly cursor = new Map<string, number>();

  constructor(private readonly random: () => number = Math.random, private readonly now: () => number = () => performance.now()) {}

  observe(endpoint: EndpointState, ttfbMs: number): void {
    // P[j] is the pods' own latency (Knative's revision_request_latencies, measured at the
    // queue-proxy), so the network part is taken out; it is added back as D.
    const list = this.samples.get(endpoint.info.revision + ' ' + endpoint.node) ?? [];
    list.push({ at: this.now(), ms: ttfbMs });
    this.samples.set(endpoint.info.revision + ' ' + endpoint.node, list);
  }

  private row(ctx: PickContext): Map<string, number> {
    const now = this.now();
    const at = this.computedAt.get(ctx.revisionKey);
    const cached = this.weights.get(ctx.revisionKey);
    if (cached && at !== undefined && now - at < RECOMPUTE_MS) return cached;
    const withPods = new Set(ctx.snapshot.readyEndpoints(ctx.revisionKey).map((e) => e.node));
    const d = new Map<string, number>();
    const p = new Map<string, number>();
    for (const j of withPods) {
      const rtt = j === ctx.node ? 0 : ctx.load.rttMs(ctx.node, j) ?? ctx.snapshot.link(ctx.node, j).rttMs;
      d.set(j, rtt);
      const key = ctx.revisionKey + ' ' + j;
      const recent = (this.samples.get(key) ?? []).filter((s) => now - s.at <= WINDOW_MS);
      this.samples.set(key, recent);
      if (recent.length > 0) p.set(j, Math.max(0, recent.reduce((a, s) => a + s.ms, 0) / recent.length - rtt));
    }
    const w = faastWeights(d, p, withPods);
    this.weights.set(ctx.revisionKey, w);
    this.computedAt.set(ctx.revisionKey, now);
    return w;
  }

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    if (candidates.length === 0) return undefined;
    const w = this.row(ctx);
    const byNode = new Map<string, EndpointState[]>();
    for (const c of candidates) {
      const l = byNode.get(c.node) ?? [];
      l.push(c);
      byNode.set(c.node, l);
    }
    // Weighted draw among the nodes that have a candidate now.
    const nodes = [...byNode.keys()];
    const total = nodes.reduce((a, n) => a + (w.get(n) ?? 0), 0);
    let node = nodes[0];
    if (total > 0) {
      let x = this.random() * total;
      for (const n of nodes) {
        x -= w.get(n) ?? 0;
        if (x < 0) {
          node = n;
          break;
        }
      }
    }
    const list = byNode.get(node)!;
    const key = ctx.revisionKey + ' ' + node;
    const i = this.cursor.get(key) ?? 0;
    this.cursor.set(key, i + 1);
    return list[i % list.length];
  }
}
