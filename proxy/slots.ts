// A pod's slots, and the one component that owns them (the activator's throttler). A pod
// serves at most containerConcurrency requests at once over every proxy, so its count has
// two parts:
//   own in flight     this proxy's requests holding a slot there (counted here, exactly);
//   others in flight  the other proxies' requests there, as the pod last reported in its
//                     ORCA header (its in-flight count minus ours); trusted for ORCA_TTL_MS;
//   in flight         own + others: what "free" is measured against.
// (A request the proxy is handling, queued or forwarded, is "active": the lifecycle's
// count and the autoscaler's concurrency. "In flight" always means at a pod.)
// A request takes a slot and gives it back in `run` and nowhere else. When no pod has a
// free slot it waits in its revision's queue, and every change of the accounting — a slot
// given back, a lower report from a pod, a report going stale, endpoints changing — hands
// waiting requests their turn. A pod that is full only by the others' count is asked for a
// fresh count while requests wait for it, so they are served as soon as the others leave.
import type { Clock, Timer } from '../cluster/clock.js';
import type { LoadView } from '../cluster/load.js';
import type { ClusterSnapshot, RevisionInfo } from '../cluster/model.js';
import type { EndpointState, EndpointTable } from './endpoints.js';
import type { RequestSignal } from './exchange.js';
import type { PickContext, Policy } from './policy/policy.js';

/** How long a pod's report of the other proxies' requests counts. */
export const ORCA_TTL_MS = 1000;
/** While requests wait for a pod that only the others fill, ask it for its count this often. */
export const REFRESH_MS = 50;

/** What slots need of a queue (queue/ implements it). */
export interface WaitingRoom<E> {
  /** Resolves when the entry is given its turn; rejects when full, past its deadline or aborted. */
  wait(entry: E, signal: AbortSignal): Promise<void>;
  /** Hand the turn to the next entry in order; false when nobody waits. */
  next(): boolean;
  readonly depth: number;
}

/** Ready endpoints exist, but the policy may use none of them (local-only without a local pod). */
export class NoEligibleEndpointError extends Error {
  constructor(readonly revisionKey: string, readonly policy: string) {
    super(`policy ${policy} may use none of the ready pods of ${revisionKey}`);
  }
}

/** A request asking for a slot. */
export interface SlotRequest<E> {
  readonly revisionKey: string;
  /** The revision as the request found it (a newer snapshot's settings win). */
  readonly revision: RevisionInfo;
  /** Its place in the revision's queue (kept across retries). */
  readonly entry: E;
  readonly signal: RequestSignal;
  /** Pods it must not use (already tried). */
  readonly exclude?: ReadonlySet<string>;
}

export interface PodSlotsOptions<E> {
  readonly node: string;
  readonly endpoints: EndpointTable;
  readonly policy: Policy;
  readonly current: () => ClusterSnapshot;
  /** The cost model's inputs for policies (its in-flight counts come from here). */
  readonly load: LoadView;
  readonly room: (revisionKey: string) => WaitingRoom<E>;
  readonly clock: Clock;
  /** Ask a pod for its in-flight count now (an ORCA-stamped probe); undefined = it does not say. */
  readonly refresh?: (endpoint: EndpointState) => Promise<number | undefined>;
  /** A request for the revision arrived (the load view's arrival rate). */
  readonly arrived?: (revisionKey: string) => void;
}

interface PodCount {
  own: number;
  others: number;
  /** The pod's own count in its last report (every proxy's requests inside it). */
  reported: number;
  reportedAt: number;
}

interface Line<E> {
  readonly room: WaitingRoom<E>;
  /** Turns handed out whose request has not run yet: arrivals must not take their slots. */
  reserved: number;
}

export class PodSlots<E> {
  private readonly counts = new Map<string, PodCount>();
  /** Own in flight summed per revision (the in-flight gauge). */
  private readonly byRevision = new Map<string, number>();
  private readonly lines = new Map<string, Line<E>>();
  private readonly refreshing = new Set<string>();
  private expiry: Timer | undefined;
  private readonly ownOf = (pod: string): number => this.counts.get(pod)?.own ?? 0;

  constructor(private readonly o: PodSlotsOptions<E>) {}

  // ---- the accounting ------------------------------------------------------------------

  /** This proxy's requests holding a slot at `pod`. */
  ownInFlight(pod: string): number {
    return this.ownOf(pod);
  }

  /** The other proxies' requests at `pod`, per its last report while that is fresh. */
  othersInFlight(pod: string): number {
    const c = this.counts.get(pod);
    return c && c.others > 0 && this.o.clock.now() - c.reportedAt <= ORCA_TTL_MS ? c.others : 0;
  }

  /** Requests in flight at `pod` over every proxy. */
  inFlight(pod: string): number {
    return this.ownInFlight(pod) + this.othersInFlight(pod);
  }

  /**
   * Requests inside `pod`, as the load reports tell the xDS server. On this node, every
   * proxy's (own + others). On another node, the pod's own count from its last report while
   * that is fresh: this proxy's requests still on the wire hold no slot there yet, and 70 ms
   * away most of them are on the wire (counting them made a half-loaded cloud pod look full).
   */
  atPod(pod: string): number {
    if (this.o.endpoints.get(pod)?.info.node === this.o.node) return this.inFlight(pod);
    const c = this.counts.get(pod);
    return c && this.o.clock.now() - c.reportedAt <= ORCA_TTL_MS ? c.reported : 0;
  }

  /** Slots `pod` has free under containerConcurrency `cc` (0 = no limit). The one definition of free. */
  freeSlots(pod: string, cc: number): number {
    return cc === 0 ? Infinity : Math.max(0, cc - this.inFlight(pod));
  }

  /**
   * `pod` reported `podInFlight` requests inside it, `ownIncluded` of them this proxy's:
   * the rest are the others'. A lower count than before frees slots, so waiters are woken.
   */
  report(pod: string, podInFlight: number, ownIncluded: number): void {
    const c = this.count(pod);
    const before = this.othersInFlight(pod);
    c.others = Math.max(0, podInFlight - ownIncluded);
    c.reported = podInFlight;
    c.reportedAt = this.o.clock.now();
    if (c.others > 0) this.armExpiry(ORCA_TTL_MS);
    if (c.others < before) this.changed(pod);
  }

  /** The endpoints changed: forget pods that left, and let waiters try the new set. */
  endpointsChanged(): void {
    for (const [pod, c] of this.counts) if (c.own === 0 && !this.o.endpoints.get(pod)) this.counts.delete(pod);
    for (const key of this.lines.keys()) this.wake(key);
  }

  /** This proxy's requests in flight at pods, per revision. */
  ownInFlightByRevision(): Iterable<[string, number]> {
    return this.byRevision;
  }

  /** This proxy's requests holding a slot, per pod that has any: [revision, pod, requests]. */
  *ownInFlightByPod(): Iterable<[string, string, number]> {
    for (const [pod, c] of this.counts) {
      const revision = c.own > 0 ? this.o.endpoints.get(pod)?.info.revision : undefined;
      if (revision !== undefined) yield [revision, pod, c.own];
    }
  }

  // ---- taking and giving back ------------------------------------------------------------

  /**
   * Run `fn` holding a slot on a pod the policy chose among those with one free, waiting
   * in the revision's queue until there is one. The slot is given back when `fn` settles.
   */
  async run<T>(req: SlotRequest<E>, fn: (endpoint: EndpointState) => Promise<T>): Promise<T> {
    this.o.arrived?.(req.revisionKey);
    const line = this.line(req.revisionKey);
    // Arrivals queue behind requests already waiting or already handed a turn.
    let endpoint = line.room.depth + line.reserved === 0 ? this.take(req) : undefined;
    while (!endpoint) {
      this.watchBlocked(req.revisionKey);
      await line.room.wait(req.entry, req.signal.asAbortSignal());
      line.reserved = Math.max(0, line.reserved - 1);
      endpoint = this.take(req);
    }
    const revisionKey = endpoint.info.revision;
    this.byRevision.set(revisionKey, (this.byRevision.get(revisionKey) ?? 0) + 1);
    try {
      return await fn(endpoint);
    } finally {
      const c = this.count(endpoint.pod);
      c.own = Math.max(0, c.own - 1);
      this.byRevision.set(revisionKey, (this.byRevision.get(revisionKey) ?? 1) - 1);
      this.changed(endpoint.pod, revisionKey);
    }
  }

  /** Choose and take a slot now, or undefined when none is free. */
  private take(req: SlotRequest<E>): EndpointState | undefined {
    const snapshot = this.o.current();
    const revision = snapshot.revision(req.revisionKey) ?? req.revision;
    const ctx = this.context(snapshot, revision, req.revisionKey);
    const ready = this.o.endpoints.ready(snapshot, req.revisionKey);
    const eligible = this.eligible(ready, ctx);
    if (ready.length > 0 && eligible.length === 0) throw new NoEligibleEndpointError(req.revisionKey, this.o.policy.name);
    const cc = revision.containerConcurrency;
    const exclude = req.exclude;
    // Without a limit and nothing tried yet every eligible pod is a candidate (the common case).
    const candidates = cc === 0 && !exclude?.size ? eligible : eligible.filter((e) => this.freeSlots(e.pod, cc) > 0 && !exclude?.has(e.pod));
    const chosen = this.o.policy.pick(candidates, ctx);
    if (chosen) this.count(chosen.pod).own++;
    return chosen;
  }

  // ---- waking ----------------------------------------------------------------------------

  /** `pod`'s count went down: its revision's waiters may go. */
  private changed(pod: string, revisionKey = this.o.endpoints.get(pod)?.info.revision): void {
    if (revisionKey !== undefined) this.wake(revisionKey);
  }

  /** Hand as many turns as there are free slots (every waiter when the policy can use no pod). */
  private wake(revisionKey: string): void {
    const line = this.lines.get(revisionKey);
    if (!line || line.room.depth === 0) return;
    const snapshot = this.o.current();
    const revision = snapshot.revision(revisionKey);
    if (!revision) return;
    const ready = this.o.endpoints.ready(snapshot, revisionKey);
    if (ready.length === 0) return;
    const eligible = this.eligible(ready, this.context(snapshot, revision, revisionKey));
    let turns = eligible.length === 0 ? line.room.depth : -line.reserved;
    for (const e of eligible) turns += this.freeSlots(e.pod, revision.containerConcurrency);
    while (turns-- > 0 && line.room.next()) line.reserved++;
  }

  /** Wake when the earliest report of the others' load goes stale. */
  private armExpiry(inMs: number): void {
    if (this.expiry) return;
    this.expiry = this.o.clock.after(inMs, () => {
      this.expiry = undefined;
      const now = this.o.clock.now();
      let next = Infinity;
      for (const [pod, c] of this.counts) {
        if (c.others === 0) continue;
        const staleAt = c.reportedAt + ORCA_TTL_MS;
        if (staleAt <= now) {
          c.others = 0;
          this.changed(pod);
        } else next = Math.min(next, staleAt - now);
      }
      if (next < Infinity) this.armExpiry(next);
    }).unref();
  }

  /** Ask pods that only the others' requests fill for a fresh count while requests wait. */
  private watchBlocked(revisionKey: string): void {
    const refresh = this.o.refresh;
    if (!refresh) return;
    const snapshot = this.o.current();
    const cc = snapshot.revision(revisionKey)?.containerConcurrency ?? 0;
    if (cc === 0) return;
    for (const e of this.o.endpoints.ready(snapshot, revisionKey)) {
      const pod = e.pod;
      if (this.refreshing.has(pod) || this.ownInFlight(pod) >= cc || this.freeSlots(pod, cc) > 0) continue;
      this.refreshing.add(pod);
      this.o.clock.after(REFRESH_MS, () => {
        refresh(e).then((reported) => {
          this.refreshing.delete(pod);
          if (reported !== undefined) this.report(pod, reported, this.ownInFlight(pod));
          if ((this.lines.get(revisionKey)?.room.depth ?? 0) > 0) this.watchBlocked(revisionKey);
        }, () => this.refreshing.delete(pod));
      }).unref();
    }
  }

  // ---- helpers ---------------------------------------------------------------------------

  private count(pod: string): PodCount {
    let c = this.counts.get(pod);
    if (!c) this.counts.set(pod, (c = { own: 0, others: 0, reported: 0, reportedAt: 0 }));
    return c;
  }

  private line(revisionKey: string): Line<E> {
    let l = this.lines.get(revisionKey);
    if (!l) this.lines.set(revisionKey, (l = { room: this.o.room(revisionKey), reserved: 0 }));
    return l;
  }

  private context(snapshot: ClusterSnapshot, revision: RevisionInfo, revisionKey: string): PickContext {
    return { node: this.o.node, revision, revisionKey, snapshot, load: this.o.load, ownInFlight: this.ownOf };
  }

  private eligible(ready: EndpointState[], ctx: PickContext): EndpointState[] {
    const policy = this.o.policy;
    return policy.eligible ? ready.filter((e) => policy.eligible!(e, ctx)) : ready;
  }
}
