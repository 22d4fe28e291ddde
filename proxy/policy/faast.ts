// The research system's policy (FaaSt / miporin), as published: every 2 s, over a 10 s
// window, R[i][j] = D[i][j] (RTT from this node i to node j) + P[j] (mean request latency
// of the revision's pods on node j); w[i][j] = (1/r) / Σ_k (1/r) × 100 with r = 0 read as
// 0.1 ms; nodes without pods get 0, nodes with pods but weight 0 get 1, and the row is
// renormalised. The node is a weighted choice by w, the pod inside it round robin.
import { systemClock, type Clock } from '../../cluster/clock.js';
import { rttOrConfigured } from '../../cluster/load.js';
import type { EndpointState } from '../endpoints.js';
import { RoundRobin, weighted, type Random } from './choosers.js';
import type { PickContext, Policy } from './policy.js';

const WINDOW_MS = 10_000;
const RECOMPUTE_MS = 2_000;

interface Sample {
  readonly at: number;
  readonly ms: number;
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
  /** Latencies seen per `revision node`, for the window. */
  private readonly samples = new Map<string, Sample[]>();
  private readonly rows = new Map<string, { readonly weights: Map<string, number>; readonly at: number }>();
  private readonly turns = new RoundRobin();

  constructor(private readonly random: Random = Math.random, private readonly clock: Clock = systemClock) {}

  observe(endpoint: EndpointState, ttfbMs: number): void {
    const key = `${endpoint.info.revision} ${endpoint.node}`;
    const list = this.samples.get(key) ?? [];
    list.push({ at: this.clock.now(), ms: ttfbMs });
    this.samples.set(key, list);
  }

  /** This node's weights for the revision, recomputed every 2 s. */
  private row(ctx: PickContext): Map<string, number> {
    const now = this.clock.now();
    const cached = this.rows.get(ctx.revisionKey);
    if (cached && now - cached.at < RECOMPUTE_MS) return cached.weights;
    const withPods = new Set(ctx.snapshot.readyEndpoints(ctx.revisionKey).map((e) => e.node));
    const d = new Map<string, number>();
    const p = new Map<string, number>();
    for (const j of withPods) {
      const rtt = rttOrConfigured(ctx.load, ctx.snapshot, ctx.node, j);
      d.set(j, rtt);
      const key = `${ctx.revisionKey} ${j}`;
      const recent = (this.samples.get(key) ?? []).filter((s) => now - s.at <= WINDOW_MS);
      this.samples.set(key, recent);
      // P[j] is the pods' own latency (Knative's revision_request_latencies, measured at the
      // queue-proxy), so the network part of what the proxy saw is taken out; D adds it back.
      if (recent.length > 0) p.set(j, Math.max(0, recent.reduce((a, s) => a + s.ms, 0) / recent.length - rtt));
    }
    const weights = faastWeights(d, p, withPods);
    this.rows.set(ctx.revisionKey, { weights, at: now });
    return weights;
  }

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState | undefined {
    if (candidates.length === 0) return undefined;
    const w = this.row(ctx);
    const byNode = new Map<string, EndpointState[]>();
    for (const c of candidates) {
      const l = byNode.get(c.node);
      if (l) l.push(c);
      else byNode.set(c.node, [c]);
    }
    const node = weighted([...byNode.keys()], (n) => w.get(n) ?? 0, this.random)!;
    return this.turns.next(`${ctx.revisionKey} ${node}`, byNode.get(node)!);
  }
}
