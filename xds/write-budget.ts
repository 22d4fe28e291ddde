// A bound on response bytes handed to gRPC but not yet sent. A thousand gateways syncing at
// once would otherwise queue every one's full configuration (about 1.5 MB each at 1000
// revisions) in the server's memory at the same time, waiting for the clients to read it;
// with the budget, responses beyond it wait their turn (in order), holding only the shared
// encoded message, and gRPC makes its framed copy of it when there is room. Protocol state is not delayed: a stream counts a
// response as sent when it decides to send it, and its client cannot answer before it
// arrives anyway.
export class WriteBudget {
  private inFlight = 0;
  private readonly queue: Pending[] = [];
  private readonly live = new Map<object, Set<Pending>>();

  constructor(readonly limitBytes: number) {
    if (!(limitBytes > 0)) throw new Error(`the write budget must be a positive number of bytes, got ${limitBytes}`);
  }

  /** Bytes handed to writers and not yet reported done. */
  get bytesInFlight(): number {
    return this.inFlight;
  }

  /** Writes waiting for room. */
  get waiting(): number {
    return this.queue.length;
  }

  /**
   * Runs `write` now when the budget has room (or nothing is in flight: one response larger
   * than the budget still goes), else once it has; `write` calls `done` when its bytes left.
   */
  submit(owner: object, bytes: number, write: (done: () => void) => void): void {
    const p: Pending = { owner, bytes, write, started: false, finished: false };
    let set = this.live.get(owner);
    if (!set) this.live.set(owner, (set = new Set()));
    set.add(p);
    if (this.queue.length === 0 && this.fits(bytes)) this.start(p);
    else this.queue.push(p);
  }

  /** The owner is gone (its stream closed): its waiting writes are dropped, its bytes returned. */
  forget(owner: object): void {
    const set = this.live.get(owner);
    if (!set) return;
    this.live.delete(owner);
    for (const p of set) this.finish(p);
    this.pump();
  }

  private fits(bytes: number): boolean {
    return this.inFlight === 0 || this.inFlight + bytes <= this.limitBytes;
  }

  private start(p: Pending): void {
    p.started = true;
    this.inFlight += p.bytes;
    p.write(() => {
      this.finish(p);
      this.pump();
    });
  }

  private finish(p: Pending): void {
    if (p.finished) return;
    p.finished = true;
    if (p.started) this.inFlight -= p.bytes;
    this.live.get(p.owner)?.delete(p);
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (next.finished) {
        this.queue.shift();
        continue;
      }
      if (!this.fits(next.bytes)) return;
      this.queue.shift();
      this.start(next);
    }
  }
}

interface Pending {
  readonly owner: object;
  readonly bytes: number;
  readonly write: (done: () => void) => void;
  started: boolean;
  finished: boolean;
}
