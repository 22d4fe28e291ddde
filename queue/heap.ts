// A binary min-heap whose items know their own position, so any item (not only the top)
// can be removed in O(log n). The queue needs that: a client that goes away must leave at
// once, and lazy deletion would keep abandoned requests in memory until they surfaced.

/** Where an item keeps its index in one particular heap (an item may sit in several). */
export interface HeapPosition<T> {
  get(item: T): number;
  set(item: T, index: number): void;
}

export class IndexedHeap<T> {
  private readonly items: T[] = [];

  constructor(
    /** True when `a` must come out before `b`. */
    private readonly before: (a: T, b: T) => boolean,
    private readonly position: HeapPosition<T>,
  ) {}

  get size(): number {
    return this.items.length;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    this.items.push(item);
    this.position.set(item, this.items.length - 1);
    this.up(this.items.length - 1);
  }

  pop(): T | undefined {
    const top = this.items[0];
    if (top !== undefined) this.removeAt(0);
    return top;
  }

  /** Take `item` out wherever it is; false when it is not in this heap. */
  remove(item: T): boolean {
    const i = this.position.get(item);
    if (i < 0 || i >= this.items.length || this.items[i] !== item) return false;
    this.removeAt(i);
    return true;
  }

  has(item: T): boolean {
    const i = this.position.get(item);
    return i >= 0 && i < this.items.length && this.items[i] === item;
  }

  /** Empty the heap, returning what it held (in no particular order). */
  drain(): T[] {
    const all = this.items.splice(0);
    for (const item of all) this.position.set(item, -1);
    return all;
  }

  private removeAt(i: number): void {
    const gone = this.items[i];
    const last = this.items.pop() as T;
    this.position.set(gone, -1);
    if (i === this.items.length) return;
    this.items[i] = last;
    this.position.set(last, i);
    // The moved item may belong above or below its new place.
    if (!this.up(i)) this.down(i);
  }

  /** Returns true when the item moved. */
  private up(i: number): boolean {
    const items = this.items;
    const item = items[i];
    const start = i;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(item, items[parent])) break;
      items[i] = items[parent];
      this.position.set(items[i], i);
      i = parent;
    }
    items[i] = item;
    this.position.set(item, i);
    return i !== start;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[i];
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && this.before(items[right], items[left]) ? right : left;
      if (!this.before(items[child], item)) break;
      items[i] = items[child];
      this.position.set(items[i], i);
      i = child;
    }
    items[i] = item;
    this.position.set(item, i);
  }
}
