// Admission to the pods of a revision: a request takes a slot on an endpoint chosen by the
// policy among those with a free slot (containerConcurrency), or waits in the revision's
// queue until a slot frees or an endpoint appears — the activator's "throttler".
import type { LoadView } from '../cluster/load.js';
import type { ClusterSnapshot, RevisionInfo } from '../cluster/model.js';
import type { EndpointState, EndpointTable } from './endpoints.js';
import type { Policy } from './policy/policy.js';

/** What the throttle needs of a queue (queue/ implements it). */
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

export interface Admission {
  readonly revision: RevisionInfo;
  readonly revisionKey: string;
  readonly snapshot: ClusterSnapshot;
}

interface RevisionLine<E> {
  readonly room: WaitingRoom<E>;
  /** Turns handed out whose waiter has not yet run: new arrivals must not take their slots. */
  reserved: number;
}

export class Throttle<E> {
  private readonly lines = new Map<string, RevisionLine<E>>();

  constructor(
    private readonly node: string,
    private readonly endpoints: EndpointTable,
    private readonly policy: Policy,
    private readonly newRoom: (revisionKey: string) => WaitingRoom<E>,
    private readonly current: () => ClusterSnapshot,
    private readonly load: LoadView,
  ) {}

  private line(revKey: string): RevisionLine<E> {
    let l = this.lines.get(revKey);
    if (!l) {
      l = { room: this.newRoom(revKey), reserved: 0 };
      this.lines.set(revKey, l);
    }
    return l;
  }

  depth(revKey: string): number { return this.lines.get(revKey)?.room.depth ?? 0; }

  /**
   * A slot is free while the pod's in-flight requests — this proxy's, plus what the pod
   * reported of the others' — stay below containerConcurrency (0 = no limit).
   */
  private hasFreeSlot(e: EndpointState, rev: RevisionInfo): boolean {
    const cc = rev.containerConcurrency;
    return cc === 0 || (e.inFlight < cc && this.load.inFlight(e.pod) < cc);
  }

  /** Pick now, without waiting; undefined when no ready endpoint has a free slot. */
  private tryPick(a: Admission, exclude: ReadonlySet<string> | undefined): EndpointState | undefined {
    const snapshot = this.current();
    const rev = snapshot.revision(a.revisionKey) ?? a.revision;
    const ctx = { node: this.node, revision: rev, revisionKey: a.revisionKey, snapshot, load: this.load };
    const ready = this.endpoints.ready(snapshot, a.revisionKey);
    const eligible = this.policy.eligible ? ready.filter((e) => this.policy.eligible!(e, ctx)) : ready;
    if (ready.length > 0 && eligible.length === 0) throw new NoEligibleEndpointError(a.revisionKey, this.policy.name);
    let candidates = eligible.filter((e) => this.hasFreeSlot(e, rev));
    if (exclude && exclude.size > 0) candidates = candidates.filter((e) => !exclude.has(e.pod));
    return this.policy.pick(candidates, ctx);
  }

  /** A slot on an endpoint; the caller must `release` it. */
  async acquire(a: Admission, entry: E, signal: AbortSignal, exclude?: ReadonlySet<string>): Promise<EndpointState> {
    const line = this.line(a.revisionKey);
    let myTurn = false;
    for (;;) {
      if (myTurn || line.room.depth + line.reserved === 0) {
        const e = this.tryPick(a, exclude);
        if (e) {
          e.inFlight++;
          return e;
        }
      }
      myTurn = false;
      await line.room.wait(entry, signal);
      line.reserved = Math.max(0, line.reserved - 1);
      myTurn = true;
    }
  }

  release(e: EndpointState, revKey: string): void {
    e.inFlight = Math.max(0, e.inFlight - 1);
    const line = this.lines.get(revKey);
    if (line && line.room.next()) line.reserved++;
  }

  /** Endpoints changed: let as many waiters try as there may be free slots. */
  wake(): void {
    const snapshot = this.current();
    for (const [revKey, line] of this.lines) {
      if (line.room.depth === 0) continue;
      const rev = snapshot.revision(revKey);
      const ready = this.endpoints.ready(snapshot, revKey);
      if (!rev || ready.length === 0) continue;
      let free = rev.containerConcurrency === 0
        ? line.room.depth
        : ready.reduce((n, e) => n + Math.max(0, rev.containerConcurrency - e.inFlight), 0) - line.reserved;
      while (free-- > 0 && line.room.next()) line.reserved++;
    }
  }
}
