// The emulated network: inter-node latency injected in user space (this kernel has no
// netem). Emulated node N owns loopback address 127.0.1.N; every service a node exposes
// (pods, the node proxy) listens there through a TCP relay that forwards to a hidden
// backend (127.0.2.N). The relay knows the sender's node from the connection's source
// address and the receiver's node from where it listens, and holds every chunk for the
// one-way delay of that link before passing it on, in both directions:
//
//   client (localAddress 127.0.1.3) ──▶ relay 127.0.1.1:port ──▶ backend 127.0.2.1:port
//                                     ◀── each chunk waits rtt/2 ± jitter ──
//
// Traffic inside a node and traffic from addresses that are no node (curl from 127.0.0.1)
// pays nothing. A chunk is delivered at max(previous delivery on that direction,
// now + sampled one-way delay), so byte order is kept even with jitter. The relay reads
// the link from the model when it samples, so a model change applies to the next chunk.
//
// Deliberate simplifications: by default the TCP handshake is free (a new connection costs
// one RTT for its first request, not two; `tcpHandshake` charges it, for scenarios made of
// new connections such as cold starts), and bandwidth is unlimited apart from the relay's
// window (`maxPendingBytes` per direction, which bounds memory and so caps throughput at
// window / one-way delay).
import net from 'node:net';
import { systemClock, type Clock, type Timer } from '../clock.js';
import type { ClusterModel, NodeInfo } from '../model.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface EmulatedNetworkOptions {
  /** Seed for the jitter samples (reproducible runs); random when omitted. */
  readonly seed?: number;
  /** Bytes a relay holds per direction before it pauses the sender (default 1 MiB). */
  readonly maxPendingBytes?: number;
  /** When chunks fall due (tests move a manual clock). */
  readonly clock?: Clock;
  /**
   * Charge TCP's handshake: a connection's first byte leaves one sampled round trip after
   * the connection was opened, as after SYN and SYN-ACK (default off: free, as before).
   */
  readonly tcpHandshake?: boolean;
}

export interface Exposure {
  /** Node the service is exposed on. */
  readonly node: string;
  /** The node's address: where clients connect. */
  readonly host: string;
  readonly port: number;
  /** The hidden backend the relay forwards to. */
  readonly target: HostPort;
  /**
   * Stop listening; connections still open after `graceMs` (default 0) are destroyed.
   */
  close(graceMs?: number): Promise<void>;
}

export interface NetworkStats {
  /** Relayed connections open now. */
  readonly connections: number;
  /** Relayed connections accepted so far. */
  readonly accepted: number;
  /** Most bytes one direction of one relay held at once (queued plus unflushed). */
  readonly peakPendingBytes: number;
  /** Bytes delivered by all relays. */
  readonly bytes: number;
  /** Bytes held by all relays now, waiting for their delivery time. */
  readonly queuedBytes: number;
}

const DEFAULT_MAX_PENDING = 1 << 20;
/** Deliver chunks that are due within this many ms now rather than arm another timer. */
const EARLY_MS = 0.5;
/** How late a Node.js timer fires on average (measured on the development machine). */
const TIMER_LATENESS_MS = 0.5;

/** The hidden address behind node address 127.0.1.N: 127.0.2.N (127.0.0.1 for other addresses). */
export function hiddenAddress(node: Pick<NodeInfo, 'address'>): string {
  const m = /^127\.0\.1\.(\d{1,3})$/.exec(node.address);
  return m ? `127.0.2.${m[1]}` : '127.0.0.1';
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller) from a uniform source. */
export function normalSampler(rand: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = rand();
    const v = rand();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/** An address without the IPv4-mapped IPv6 prefix Node puts on IPv4 peers. */
export function plainAddress(a: string | undefined): string {
  if (!a) return '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/** One timer for all relays: a min-heap of wake-ups on the network's clock, no busy waiting. */
class Scheduler {
  private heap: { due: number; seq: number; fn: () => void }[] = [];
  private seq = 0;
  private timer: Timer | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private armedFor = Infinity;
  private closed = false;

  constructor(readonly clock: Clock) {}

  at(due: number, fn: () => void): void {
    if (this.closed) return;
    const item = { due, seq: this.seq++, fn };
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
    if (due < this.armedFor) this.arm();
  }

  private pop(): { due: number; fn: () => void } | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }

  private arm(): void {
    this.disarm();
    const next = this.heap[0];
    if (!next || this.closed) return;
    this.armedFor = next.due;
    const wait = next.due - this.clock.now();
    // Due (nearly) now: the next turn of the loop, not a timer (a timer costs ≥ 1 ms).
    if (wait <= EARLY_MS) this.immediate = setImmediate(() => this.run());
    // Timers fire about half a millisecond late on average; aim that much earlier (run()
    // accepts anything due within EARLY_MS, so an early wake-up is harmless).
    else this.timer = this.clock.after(wait - TIMER_LATENESS_MS, () => this.run());
  }

  private disarm(): void {
    this.timer?.cancel();
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    this.armedFor = Infinity;
  }

  private run(): void {
    this.timer = undefined;
    this.immediate = undefined;
    this.armedFor = Infinity;
    const limit = this.clock.now() + EARLY_MS;
    while (this.heap.length > 0 && this.heap[0]!.due <= limit) {
      const item = this.pop()!;
      try {
        item.fn();
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
    this.arm();
  }

  close(): void {
    this.closed = true;
    this.disarm();
    this.heap = [];
  }
}

function less(a: { due: number; seq: number }, b: { due: number; seq: number }): boolean {
  return a.due < b.due || (a.due === b.due && a.seq < b.seq);
}

type Item = { due: number; kind: 'data'; data: Buffer } | { due: number; kind: 'end' } | { due: number; kind: 'reset' };

/** One direction of a relayed connection: bytes from `src` (on node `from`) to `dst` (on node `to`). */
class Direction {
  private queue: Item[] = [];
  private head = 0;
  private pending = 0;
  private lastDue = 0;
  private scheduled = false;
  private paused = false;
  private done = false;
  /** Nothing leaves before this (clock ms): the end of the TCP handshake when it is charged. */
  sendableAt = 0;

  constructor(
    private readonly net: EmulatedNetwork,
    readonly src: net.Socket,
    readonly dst: net.Socket,
    readonly from: string | undefined,
    readonly to: string | undefined,
  ) {
    src.on('data', (chunk: Buffer) => this.push({ due: 0, kind: 'data', data: chunk }));
    src.on('end', () => this.push({ due: 0, kind: 'end' }));
    dst.on('drain', () => this.maybeResume());
  }

  /** Bytes held for this direction: queued in the relay plus written but not yet flushed. */
  get held(): number {
    return this.pending + (this.dst.destroyed ? 0 : this.dst.writableLength);
  }

  push(item: Item): void {
    if (this.done) return;
    const delay = this.net.sampleOneWayMs(this.from, this.to);
    const now = this.net.scheduler.clock.now();
    item.due = Math.max(this.lastDue, Math.max(now, this.sendableAt) + delay);
    this.lastDue = item.due;
    if (item.kind === 'data') {
      this.pending += item.data.length;
      this.net.noteQueued(item.data.length, this.held);
    }
    if (item.due <= now && !this.scheduled && this.head === this.queue.length && !this.dark()) {
      // No delay on this link and nothing queued ahead: pass it straight on.
      this.deliver(item);
      if (item.kind === 'reset') this.stopReading();
      this.maybePause();
      return;
    }
    this.queue.push(item);
    if (item.kind === 'reset') this.stopReading();
    this.maybePause();
    if (!this.scheduled) this.schedule();
  }

  private dark(): boolean {
    return this.net.isDark(this.from) || this.net.isDark(this.to);
  }

  private maybePause(): void {
    if (!this.paused && !this.done && this.held > this.net.maxPendingBytes) {
      this.paused = true;
      this.src.pause();
    }
  }

  /** The sender went away without a clean end: the receiver gets a reset after the delay. */
  reset(): void {
    if (this.done) return;
    if (this.queue.length > this.head && this.queue[this.queue.length - 1]!.kind === 'reset') return;
    this.push({ due: 0, kind: 'reset' });
  }

  /** The receiver is gone: nothing more can be delivered. */
  drop(): void {
    this.done = true;
    this.queue = [];
    this.head = 0;
    this.net.noteQueued(-this.pending, 0);
    this.pending = 0;
    this.stopReading();
    this.net.unhold(this);
  }

  private stopReading(): void {
    this.src.removeAllListeners('data');
  }

  private schedule(): void {
    const next = this.queue[this.head];
    if (!next || this.done) return;
    this.scheduled = true;
    this.net.scheduler.at(next.due, () => this.flush());
  }

  /** Called by the network when a node it touches comes back from dark. */
  wake(): void {
    if (!this.scheduled) this.schedule();
  }

  flush(): void {
    this.scheduled = false;
    if (this.done) return;
    if (this.dark()) {
      // Held, not lost: delivery resumes when the node is healed (TCP would retransmit).
      this.net.hold(this);
      return;
    }
    const limit = this.net.scheduler.clock.now() + EARLY_MS;
    while (this.head < this.queue.length && this.queue[this.head]!.due <= limit) {
      const item = this.queue[this.head]!;
      this.queue[this.head++] = undefined as unknown as Item;
      this.deliver(item);
      if (this.done) return;
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.maybeResume();
    this.schedule();
  }

  private deliver(item: Item): void {
    const dst = this.dst;
    switch (item.kind) {
      case 'data':
        this.pending -= item.data.length;
        this.net.noteQueued(-item.data.length, 0);
        if (!dst.destroyed && dst.writable) {
          dst.write(item.data);
          this.net.noteDelivered(item.data.length, this.held);
        }
        break;
      case 'end':
        if (!dst.destroyed) dst.end();
        break;
      case 'reset':
        this.done = true;
        resetSocket(dst);
        break;
    }
  }

  private maybeResume(): void {
    if (this.paused && !this.done && this.held <= this.net.maxPendingBytes / 2) {
      this.paused = false;
      if (!this.src.destroyed) this.src.resume();
    }
  }
}

function resetSocket(s: net.Socket): void {
  if (s.destroyed) return;
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}

/** A listening relay: one exposed service on one node. */
class Relay implements Exposure {
  readonly sockets = new Set<net.Socket>();
  host = '';
  port = 0;

  constructor(
    private readonly network: EmulatedNetwork,
    readonly node: string,
    readonly target: HostPort,
    readonly server: net.Server,
  ) {}

  async close(graceMs = 0): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const deadline = Date.now() + graceMs;
    while (this.sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    this.network.forget(this);
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await closed;
  }

  accept(client: net.Socket): void {
    const network = this.network;
    const snap = network.model.current;
    const from = snap.nodeByAddress(plainAddress(client.remoteAddress))?.name;
    const to = this.node;
    client.setNoDelay(true);
    const backend = net.connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true, noDelay: true });
    this.sockets.add(client);
    this.sockets.add(backend);
    network.opened();
    const up = new Direction(network, client, backend, from, to);
    if (network.tcpHandshake) up.sendableAt = network.scheduler.clock.now() + network.sampleOneWayMs(from, to) + network.sampleOneWayMs(to, from);
    const down = new Direction(network, backend, client, to, from);
    let closedCount = 0;
    const onClose = (self: net.Socket, out: Direction, back: Direction) => (hadError: boolean) => {
      this.sockets.delete(self);
      // A clean close has already sent its 'end' through `out`; anything else is a reset.
      if (hadError || !self.readableEnded) out.reset();
      back.drop();
      if (++closedCount === 2) network.closed();
    };
    client.on('close', onClose(client, up, down));
    backend.on('close', onClose(backend, down, up));
    // Errors end in 'close' (hadError = true), which propagates them as resets.
    client.on('error', () => {});
    backend.on('error', () => {});
  }
}

/**
 * User-space latency between emulated nodes. One instance per emulated cluster.
 */
export class EmulatedNetwork {
  readonly scheduler: Scheduler;
  readonly maxPendingBytes: number;
  readonly tcpHandshake: boolean;
  private readonly normal: () => number;
  private readonly relays = new Set<Relay>();
  private readonly dark = new Set<string>();
  private readonly heldDirections = new Set<Direction>();
  private open = 0;
  private acceptedCount = 0;
  private peakPending = 0;
  private delivered = 0;
  private queued = 0;
  private isClosed = false;

  constructor(
    readonly model: ClusterModel,
    options: EmulatedNetworkOptions = {},
  ) {
    this.maxPendingBytes = options.maxPendingBytes ?? DEFAULT_MAX_PENDING;
    this.tcpHandshake = options.tcpHandshake ?? false;
    this.scheduler = new Scheduler(options.clock ?? systemClock);
    this.normal = normalSampler(seededRandom(options.seed ?? Math.floor(Math.random() * 2 ** 32)));
  }

  /**
   * Listen on `node`'s address:`publicPort` (0 picks a free port) and relay every
   * connection to the hidden backend `target`, paying the inter-node delay both ways.
   */
  async expose(node: string, publicPort: number, target: HostPort): Promise<Exposure> {
    if (this.isClosed) throw new Error('emulated network is closed');
    const info = this.model.current.node(node);
    if (!info) throw new Error(`expose: unknown node ${JSON.stringify(node)}`);
    const server = net.createServer({ allowHalfOpen: true });
    const relay = new Relay(this, node, target, server);
    server.on('connection', (s) => {
      this.acceptedCount++;
      relay.accept(s);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: info.address, port: publicPort }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address() as net.AddressInfo;
    relay.host = info.address;
    relay.port = addr.port;
    this.relays.add(relay);
    return relay;
  }

  /**
   * While a node is dark, connections to or from it hang: accepted, but nothing is
   * delivered either way (no reset). Healing delivers what was held and new connections
   * work again.
   */
  setNodeDark(node: string, dark: boolean): void {
    if (dark) {
      this.dark.add(node);
      return;
    }
    if (!this.dark.delete(node)) return;
    for (const d of [...this.heldDirections]) {
      if (this.isDark(d.from) || this.isDark(d.to)) continue;
      this.heldDirections.delete(d);
      d.wake();
    }
  }

  isDark(node: string | undefined): boolean {
    return node !== undefined && this.dark.has(node);
  }

  /** One-way delay from `from` to `to` now: rtt/2 with normal jitter σ = jitter/√2, ≥ 0. */
  sampleOneWayMs(from: string | undefined, to: string | undefined): number {
    if (from === undefined || to === undefined || from === to) return 0;
    const link = this.model.current.link(from, to);
    if (link.rttMs <= 0 && link.jitterMs <= 0) return 0;
    const d = link.rttMs / 2 + (link.jitterMs > 0 ? this.normal() * (link.jitterMs / Math.SQRT2) : 0);
    return d > 0 ? d : 0;
  }

  stats(): NetworkStats {
    return { connections: this.open, accepted: this.acceptedCount, peakPendingBytes: this.peakPending, bytes: this.delivered, queuedBytes: this.queued };
  }

  /** Destroy every relay and connection. */
  async close(): Promise<void> {
    this.isClosed = true;
    const relays = [...this.relays];
    await Promise.all(relays.map((r) => r.close()));
    this.scheduler.close();
    this.heldDirections.clear();
  }

  // --- used by relays and directions -------------------------------------------------

  /** @internal */ hold(d: Direction): void {
    this.heldDirections.add(d);
  }
  /** @internal */ forget(r: Relay): void {
    this.relays.delete(r);
  }
  /** @internal */ unhold(d: Direction): void {
    this.heldDirections.delete(d);
  }
  /** @internal */ opened(): void {
    this.open++;
  }
  /** @internal */ closed(): void {
    this.open--;
  }
  /** @internal */ noteQueued(bytes: number, held: number): void {
    this.queued += bytes;
    if (held > this.peakPending) this.peakPending = held;
  }
  /** @internal */ noteDelivered(bytes: number, held: number): void {
    this.delivered += bytes;
    if (held > this.peakPending) this.peakPending = held;
  }
}
