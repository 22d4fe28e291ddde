// Whether a gateway sends a revision's traffic through its node's chikai proxy rather than
// straight to the pods: chikai's counterpart of Knative putting the activator in the path
// when a revision runs short of spare capacity.
//
// Straight to the pods, a gateway splits traffic by locality weights that follow load
// reports up to a second old. At the knee — the gateway's own arrivals offer its node's pods
// as much work as they serve — such a split overshoots both ways: it piles requests onto the
// local pod, then sends too many over the link. The node proxy places each request on the
// in-flight counts of that moment and queues instead of overloading a pod.
//
// When to enter is read from the gateway's own arrival rate (its load reports), not from
// every slot being taken at the moment of a report: busy pods at a third of what they serve
// show that often, and the cloud gateways then went through their proxies at half load,
// whose per-request spreading sent a quarter of the cloud's requests to the other cloud
// node (p50 1.19–1.21× the oracle's at 50 users; straight to the pods, 1.03–1.12×). And it
// is entered before the knee, from half of what the pods serve (`PROXY_IN_PATH_FROM`): the
// gateway learns of a jump in load a report later, and a jump to the knee taken by weights
// leaves the one-slot edge pod a queue it needs seconds to drain (edge p50 at 25 users
// 1.16–1.48× the oracle's when entering at 0.9, 1.08–1.10× from 0.5). Below that the hop is
// not worth its CPU, nor the proxy's spreading of bursts. A local queue already at its
// overload bound brings the proxy in too (a burst from idle, before the rate shows it).
//
// Leave only once that has not been seen for `holdMs` (Knative's stable window, 60 s): load
// hovering around the threshold does not flip the path with every report, and a burst that
// comes back finds the proxy already in the path.

/** From this offered utilization of the gateway's own node (its arrivals ÷ what its pods serve) the proxy is in the path. */
export const PROXY_IN_PATH_FROM = 0.5;

/** Knative's stable window: how long a revision's recent peak keeps shaping its path. */
export const DEFAULT_PROXY_IN_PATH_HOLD_MS = 60_000;

export interface ProxyInPathOptions {
  /** How long after the load last asked for it the proxy stays in the path (ms). */
  readonly holdMs?: number;
  /** Milliseconds clock. */
  readonly now: () => number;
}

export class ProxyInPath {
  /** When the load of each (gateway node, revision) last asked for the proxy. */
  private readonly lastWanted = new Map<string, { node: string; revision: string; at: number }>();
  readonly holdMs: number;
  private readonly now: () => number;

  constructor(opts: ProxyInPathOptions) {
    this.holdMs = opts.holdMs ?? DEFAULT_PROXY_IN_PATH_HOLD_MS;
    if (!(this.holdMs >= 0)) throw new Error(`the proxy-in-path hold must be ≥ 0 ms, got ${opts.holdMs}`);
    this.now = opts.now;
  }

  /** Whether `node`'s gateway goes through its proxy for `revision`, given whether its load asks for it now. */
  decide(node: string, revision: string, wanted: boolean): boolean {
    const key = `${node}|${revision}`;
    const now = this.now();
    if (wanted) {
      this.lastWanted.set(key, { node, revision, at: now });
      return true;
    }
    const last = this.lastWanted.get(key);
    if (last === undefined) return false;
    if (now - last.at < this.holdMs) return true;
    this.lastWanted.delete(key);
    return false;
  }

  /** Revisions some gateway keeps its proxy in the path for only by the hold, now run out: rebuild them to leave. */
  expired(): string[] {
    const now = this.now();
    const out = new Set<string>();
    for (const k of this.lastWanted.values()) if (now - k.at >= this.holdMs) out.add(k.revision);
    return [...out];
  }

  /** Forgets revisions and nodes that left the cluster. */
  retain(revisions: { has(name: string): boolean }, nodes: { has(name: string): boolean }): void {
    for (const [key, k] of this.lastWanted) if (!revisions.has(k.revision) || !nodes.has(k.node)) this.lastWanted.delete(key);
  }

}
