// Forwarded requests still waiting for their response headers, by target node. When a
// node stops answering (RTT probes mark it unreachable) its connections hang rather than
// fail, so without this the requests already sent there would wait for the revision
// timeout (300 s by default). Abandoning them lets the proxy retry the idempotent ones on
// another node and answer the rest at once.
export class NodeUnreachableError extends Error {
  constructor(readonly node: string) {
    super(`node ${node} stopped answering (unreachable)`);
  }
}

/** One forwarding attempt: its own abort signal, tied to the request's. */
export interface Attempt {
  readonly signal: AbortSignal;
  /** Response headers arrived: the attempt is no longer abandoned with its node. */
  answered(): void;
  /** Attempt over: forget it. */
  end(): void;
  /** Set when the attempt was abandoned because its node became unreachable. */
  readonly unreachable: NodeUnreachableError | undefined;
}

export class UnansweredRequests {
  private readonly byNode = new Map<string, Set<AbortController>>();

  begin(node: string, parent: AbortSignal): Attempt {
    const ctl = new AbortController();
    const onParent = () => ctl.abort(parent.reason);
    if (parent.aborted) ctl.abort(parent.reason);
    else parent.addEventListener('abort', onParent, { once: true });
    let set = this.byNode.get(node);
    if (!set) this.byNode.set(node, (set = new Set()));
    set.add(ctl);
    const forget = () => {
      set!.delete(ctl);
      parent.removeEventListener('abort', onParent);
    };
    return {
      signal: ctl.signal,
      // Answered: no longer abandoned with its node, but the request's own aborts (its
      // timeouts, the client gone) still reach it.
      answered: () => set!.delete(ctl),
      end: forget,
      get unreachable() {
        return ctl.signal.reason instanceof NodeUnreachableError ? ctl.signal.reason : undefined;
      },
    };
  }

  /** Abort every attempt on `node` that has no response yet; returns how many. */
  abandonNode(node: string): number {
    const set = this.byNode.get(node);
    if (!set || set.size === 0) return 0;
    const err = new NodeUnreachableError(node);
    const n = set.size;
    for (const ctl of [...set]) ctl.abort(err);
    set.clear();
    return n;
  }
}
