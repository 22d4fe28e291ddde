// Shared subscription sets: a thousand gateways subscribing to the same thousand EDS names
// hold one set, keyed by the digest of the names as they sent them.
export class SubscriptionPool {
  private readonly sets = new Map<string, { readonly names: ReadonlySet<string>; refs: number }>();

  /** Distinct subscriptions held (for tests). */
  get size(): number {
    return this.sets.size;
  }

  /** The shared set for `digest`, if some stream holds it (then the names need not be decoded again). */
  peek(digest: string): ReadonlySet<string> | undefined {
    return this.sets.get(digest)?.names;
  }

  /** The shared set for `digest` (made from `names()` the first time); release it when done. */
  acquire(digest: string, names: () => readonly string[]): ReadonlySet<string> {
    let held = this.sets.get(digest);
    if (!held) this.sets.set(digest, (held = { names: new Set(names().filter((n) => n !== '*')), refs: 0 }));
    held.refs += 1;
    return held.names;
  }

  release(digest: string | undefined): void {
    if (digest === undefined) return;
    const held = this.sets.get(digest);
    if (!held) return;
    held.refs -= 1;
    if (held.refs <= 0) this.sets.delete(digest);
  }
}
