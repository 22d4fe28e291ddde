// When a revision goes from zero to one pod and back, as Knative's KPA decides it for a
// revision whose target is one pod's worth of demand: any demand while at zero scales to
// one at once (the activator's stat triggers an immediate decision), and one pod is kept
// until the stable window has passed without demand (the window's average concurrency
// is then 0) plus the scale-to-zero grace period (Knative's time for the activator to be
// back in the path before the last pod goes). Pure bookkeeping on an injected clock: the
// autoscaler feeds it demand and asks it what to do; it starts and stops nothing.
import type { Clock } from '../clock.js';

export interface ScaleToZeroSettings {
  /** Knative's `stable-window`. */
  readonly stableWindowMs: number;
  /** Knative's `scale-to-zero-grace-period`. */
  readonly scaleToZeroGraceMs: number;
}

/** What the autoscaler should do for a revision now. */
export type ScaleDecision =
  | { readonly kind: 'scale-up'; readonly node: string | undefined }
  | { readonly kind: 'scale-down' }
  | { readonly kind: 'hold' };

/** Where a revision stands, for tests and logs. */
export type ScalePhase = 'zero' | 'active' | 'inactive';

interface RevisionScale {
  scale: 0 | 1;
  /** Last demand seen (clock ms); -Infinity when none. */
  lastDemandAt: number;
  /** When the revision last reached its current scale. */
  since: number;
  /** Demand per reporting node (last time seen), for placement. */
  readonly byNode: Map<string, number>;
  /** The node whose demand came last. */
  lastNode: string | undefined;
}

export class ScaleToZeroDecider {
  private readonly revisions = new Map<string, RevisionScale>();

  constructor(
    private readonly settings: ScaleToZeroSettings,
    private readonly clock: Clock,
  ) {}

  private state(revision: string): RevisionScale {
    let s = this.revisions.get(revision);
    if (!s) {
      s = { scale: 0, lastDemandAt: -Infinity, since: this.clock.now(), byNode: new Map(), lastNode: undefined };
      this.revisions.set(revision, s);
    }
    return s;
  }

  /** Requests for `revision` are waiting or being served; `node` is where they were seen (unknown: a pod's own count). */
  demand(revision: string, node?: string): void {
    const s = this.state(revision);
    const now = this.clock.now();
    s.lastDemandAt = now;
    if (node !== undefined) {
      s.byNode.set(node, now);
      s.lastNode = node;
    }
  }

  /** The pods the revision has now (the kubelet's report). */
  scaled(revision: string, scale: 0 | 1): void {
    const s = this.state(revision);
    if (s.scale === scale) return;
    s.scale = scale;
    s.since = this.clock.now();
  }

  /**
   * The pod turned ready. It is not idle before it could serve (Knative's KPA does not scale
   * an activating revision to zero): the window restarts now, which gives the requests held
   * during the cold start time to reach it, however long the cold start was.
   */
  ready(revision: string): void {
    const s = this.state(revision);
    if (s.scale === 1) s.since = this.clock.now();
  }

  phase(revision: string): ScalePhase {
    const s = this.state(revision);
    if (s.scale === 0) return 'zero';
    return this.clock.now() - Math.max(s.lastDemandAt, s.since) >= this.settings.stableWindowMs ? 'inactive' : 'active';
  }

  /** Nodes that reported demand within the stable window, the most recent first. */
  demandNodes(revision: string): string[] {
    const s = this.state(revision);
    const now = this.clock.now();
    return [...s.byNode].filter(([, at]) => now - at < this.settings.stableWindowMs).sort((a, b) => b[1] - a[1]).map(([n]) => n);
  }

  decide(revision: string): ScaleDecision {
    const s = this.state(revision);
    const now = this.clock.now();
    if (s.scale === 0) {
      // Demand that arrived since the revision reached zero and is still recent (a start
      // that failed for want of room is tried again while requests keep waiting).
      const wanted = s.lastDemandAt >= s.since && now - s.lastDemandAt < this.settings.stableWindowMs;
      return wanted ? { kind: 'scale-up', node: s.lastNode } : { kind: 'hold' };
    }
    const idle = now - Math.max(s.lastDemandAt, s.since);
    return idle >= this.settings.stableWindowMs + this.settings.scaleToZeroGraceMs ? { kind: 'scale-down' } : { kind: 'hold' };
  }

  /** When the next scale-down could fall due (clock ms), for arming one timer. */
  scaleDownDueAt(revision: string): number | undefined {
    const s = this.state(revision);
    if (s.scale === 0) return undefined;
    return Math.max(s.lastDemandAt, s.since) + this.settings.stableWindowMs + this.settings.scaleToZeroGraceMs;
  }
}
