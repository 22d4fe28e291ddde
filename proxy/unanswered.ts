// Forwarded requests still waiting for their response headers, by target node. When a
// node stops answering (RTT probes mark it unreachable) its connections hang rather than
// fail, so without this the requests already sent there would wait for the revision
// timeout (300 s by default). Abandoning them lets the proxy retry the idempotent ones on
// another node and answer the rest at once.
import type { AbortSource, RequestSignal } from './exchange.js';

export class NodeUnreachableError extends Error {
  constructor(readonly node: string) {
    super(`node ${node} stopped answering (unreachable)`);
  }
}

/**
 * One forwarding attempt, aborted with its request or when its node is abandoned. Not an
 * AbortController of its own: a listener goes straight onto the request's signal (this is
 * the proxy's hottest path, and Node's AbortSignal costs several µs to create; see bench/
 * overhead).
 */
export class Attempt implements AbortSource {
  private abandonedWith: NodeUnreachableError | undefined = undefined;
  private readonly listeners: (() => void)[] = [];

  constructor(private readonly parent: RequestSignal, private readonly set: Set<Attempt>) {}

  get aborted(): boolean {
    return this.abandonedWith !== undefined || this.parent.aborted;
  }

  get reason(): unknown {
    return this.abandonedWith ?? this.parent.reason;
  }

  /** Set when the attempt was abandoned because its node became unreachable. */
  get unreachable(): NodeUnreachableError | undefined {
    return this.abandonedWith;
  }

  /** The AbortSource forwarding listens to. */
  get signal(): AbortSource {
    return this;
  }

  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.abandonedWith) return;
    this.listeners.push(listener);
    this.parent.addEventListener('abort', listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const i = this.listeners.indexOf(listener);
    if (i < 0) return;
    this.listeners.splice(i, 1);
    this.parent.removeEventListener('abort', listener);
  }

  /** Response headers arrived: no longer abandoned with its node, but the request's own aborts (its timeouts, the client gone) still reach it. */
  answered(): void {
    this.set.delete(this);
  }

  /** Attempt over: forget it. */
  end(): void {
    this.set.delete(this);
    for (const l of this.listeners) this.parent.removeEventListener('abort', l);
    this.listeners.length = 0;
  }

  /** @internal Its node stopped answering (UnansweredRequests.abandonNode). */
  abandon(err: NodeUnreachableError): void {
    if (this.aborted) return;
    this.abandonedWith = err;
    const listeners = this.listeners.splice(0);
    for (const l of listeners) {
      this.parent.removeEventListener('abort', l);
      l();
    }
  }
}

export class UnansweredRequests {
  private readonly byNode = new Map<string, Set<Attempt>>();

  begin(node: string, parent: RequestSignal): Attempt {
    let set = this.byNode.get(node);
    if (!set) this.byNode.set(node, (set = new Set()));
    const attempt = new Attempt(parent, set);
    set.add(attempt);
    return attempt;
  }

  /** Abort every attempt on `node` that has no response yet; returns how many. */
  abandonNode(node: string): number {
    const set = this.byNode.get(node);
    if (!set || set.size === 0) return 0;
    const err = new NodeUnreachableError(node);
    const n = set.size;
    const attempts = [...set];
    set.clear();
    for (const a of attempts) a.abandon(err);
    return n;
  }
}
