// Forwarded requests still waiting for their response headers, by target node. When a
// node stops answering (RTT probes mark it unreachable) its connections hang rather than
// fail, so without this the requests already sent there would wait for the revision
// timeout (300 s by default). Abandoning them lets the proxy retry the idempotent ones on
// another node and answer the rest at once.
import { RequestSignal } from './exchange.js';

export class NodeUnreachableError extends Error {
  constructor(readonly node: string) {
    super(`node ${node} stopped answering (unreachable)`);
  }
}

/**
 * One forwarding attempt: its own RequestSignal, aborted with its request's or when its
 * node is abandoned (a RequestSignal, not an AbortController: this is the proxy's hottest
 * path, and Node's AbortSignal costs several µs to create; see bench/ overhead).
 */
export class Attempt {
  readonly signal = new RequestSignal();
  private readonly onParent = (): void => this.signal.abort(this.parent.reason);

  constructor(private readonly parent: RequestSignal, private readonly set: Set<Attempt>) {
    if (parent.aborted) this.onParent();
    else parent.addEventListener('abort', this.onParent);
  }

  /** Set when the attempt was abandoned because its node became unreachable. */
  get unreachable(): NodeUnreachableError | undefined {
    const why = this.signal.reason;
    return why instanceof NodeUnreachableError ? why : undefined;
  }

  /** Response headers arrived: no longer abandoned with its node, but the request's own aborts (its timeouts, the client gone) still reach it. */
  answered(): void {
    this.set.delete(this);
  }

  /** Attempt over: forget it. */
  end(): void {
    this.set.delete(this);
    this.parent.removeEventListener('abort', this.onParent);
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
    for (const a of attempts) a.signal.abort(err);
    return n;
  }
}
