// Whether a gateway sends a revision's traffic through its node's chikai proxy rather than
// straight to the pods: chikai's counterpart of Knative putting the activator in the path
// when a revision runs short of spare capacity.
//
// Straight to the pods, a gateway splits traffic by locality weights that follow load
// reports up to a second old. At the knee (the node's own pods full) such a split overshoots
// both ways: it piles requests onto the local pod, then sends too many over the link. The
// node proxy places each request on the in-flight counts of that moment and queues instead
// of overloading a pod. Below the knee the extra local hop costs more than it saves.
//
// Enter at the knee; leave only once the knee has not been seen for `holdMs` (Knative's
// stable window, 60 s): load hovering around the knee does not flip the path with every
// report, and a burst that comes back finds the proxy already in the path.

/** Knative's stable window: how long a revision's recent peak keeps shaping its path. */
export const DEFAULT_PROXY_IN_PATH_HOLD_MS = 60_000;

export interface ProxyInPathOptions {
  /** How long after the knee was last seen the proxy stays in the path (ms). */
  readonly holdMs?: number;
  /** Milliseconds clock. */
  readonly now: () => number;
}

export class ProxyInPath {
  /** When each (gateway node, revision) was last at its knee. */
  private readonly lastKnee = new Map<string, { node: string; revision: string; at: number }>();
  readonly holdMs: number;
  private readonly now: () => number;

  constructor(opts: ProxyInPathOptions) {
    this.holdMs = opts.holdMs ?? DEFAULT_PROXY_IN_PATH_HOLD_MS;
    if (!(this.holdMs >= 0)) throw new Error(`the proxy-in-path hold must be ≥ 0 ms, got ${opts.holdMs}`);
    this.now = opts.now;
  }

  /** Whether `node`'s gateway goes through its proxy for `revision`, given whether it is at its knee now. */
  decide(node: string, revision: string, atKnee: boolean): boolean {
    const key = `${node}|${revision}`;
    const now = this.now();
    if (atKnee) {
      this.lastKnee.set(key, { node, revision, at: now });
      return true;
    }
    const last = this.lastKnee.get(key);
    if (last === undefined) return false;
    if (now - last.at < this.holdMs) return true;
    this.lastKnee.delete(key);
    return false;
  }

  /** Revisions some gateway keeps its proxy in the path for only by the hold, now run out: rebuild them to leave. */
  expired(): string[] {
    const now = this.now();
    const out = new Set<string>();
    for (const k of this.lastKnee.values()) if (now - k.at >= this.holdMs) out.add(k.revision);
    return [...out];
  }

  /** Forgets revisions and nodes that left the cluster. */
  retain(revisions: { has(name: string): boolean }, nodes: { has(name: string): boolean }): void {
    for (const [key, k] of this.lastKnee) if (!revisions.has(k.revision) || !nodes.has(k.node)) this.lastKnee.delete(key);
  }

}
