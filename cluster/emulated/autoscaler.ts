// The emulated Knative autoscaler, with the part of the kubelet that starts its pods. It
// listens where Knative's autoscaler does (a websocket, port 8080) and reads what the
// proxies send there: binary protobuf `WireStatMessages`. Demand for a revision at zero
// scales it to one pod, placed on the node whose proxy reported the demand (the source
// address of its websocket says which node), or when that node is full (`maxPods`) on
// the nearest node with room. The pod's container comes up `coldStartSeconds` later and
// the pod turns ready after its first successful readiness probe, as a kubelet does; only
// then does its endpoint become ready in the model (what an EndpointSlice says). When the
// stable window and the grace period pass without demand the pod is removed again
// (ScaleToZeroDecider decides when; this module does it).
//
// Where Knative's autoscaler scrapes every pod's queue-proxy for its concurrency, this one
// reads the emulated pods' own counters in-process once per tick: both sides are emulated
// and there is no wire between them to be faithful to.
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { decodeWireStatMessages } from '../../proxy/autoscaler.js';
import { every, systemClock, type Clock, type Timer } from '../clock.js';
import type { AutoscalerSettings, ScaledRevision } from '../config.js';
import type { EmulatedCluster } from './cluster.js';
import { plainAddress } from './network.js';
import type { EmulatedPod } from './pod.js';
import { ScaleToZeroDecider, type ScalePhase } from './scaling.js';

export interface EmulatedAutoscalerOptions {
  readonly cluster: EmulatedCluster;
  readonly settings: AutoscalerSettings;
  /** Pods each node can hold (ClusterFile.maxPods); a node not listed has no limit. */
  readonly maxPods?: Readonly<Record<string, number>>;
  /** Listen here instead of `settings.listen` (tests: port 0). */
  readonly listen?: { readonly host: string; readonly port: number };
  readonly clock?: Clock;
  /** Scale decisions and problems, one line each (default: nowhere). */
  readonly log?: (line: string) => void;
}

export interface ScaleEvent {
  readonly revision: string;
  readonly pod: string;
  readonly node: string;
}

export interface EmulatedAutoscalerEvents {
  /** A pod was started for a revision at zero (not ready yet). */
  'scaled-up': [ScaleEvent];
  /** Its readiness probe succeeded: the endpoint is ready. */
  ready: [ScaleEvent];
  /** The revision went back to zero. */
  'scaled-down': [ScaleEvent];
}

export interface RevisionStatus {
  readonly revision: string;
  readonly phase: ScalePhase;
  readonly pod: string | undefined;
  readonly node: string | undefined;
  readonly ready: boolean;
}

/** Knative's queue-proxy probes a container without `periodSeconds` aggressively; this often. */
const AGGRESSIVE_PROBE_MS = 50;
/** Knative's autoscaler ticks (and scrapes) once a second. */
const TICK_MS = 1000;
const KUBELET_PROBE_TIMEOUT_MS = 1000;

interface Scaled {
  readonly spec: ScaledRevision;
  pod: EmulatedPod | undefined;
  ready: boolean;
  /** A start or stop is under way: no new decision until it is done. */
  busy: boolean;
  lastServed: number;
  readonly timers: Set<Timer>;
}

export class EmulatedAutoscaler extends EventEmitter<EmulatedAutoscalerEvents> {
  private readonly clock: Clock;
  private readonly decider: ScaleToZeroDecider;
  private readonly revisions = new Map<string, Scaled>();
  private readonly log: (line: string) => void;
  private wss: WebSocketServer | undefined;
  private bound: { host: string; port: number } | undefined;
  private ticker: Timer | undefined;
  private closed = false;
  /** Frames received, stats decoded from them, frames dropped for not being WireStatMessages. */
  readonly counts = { frames: 0, stats: 0, badFrames: 0 };

  constructor(private readonly opts: EmulatedAutoscalerOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? (() => undefined);
    const s = opts.settings;
    this.decider = new ScaleToZeroDecider({ stableWindowMs: s.stableWindowSeconds * 1000, scaleToZeroGraceMs: s.scaleToZeroGracePeriodSeconds * 1000 }, this.clock);
    for (const spec of s.revisions) this.revisions.set(spec.revision, { spec, pod: undefined, ready: false, busy: false, lastServed: 0, timers: new Set() });
  }

  /** Listen for the proxies' stat websockets; resolves with the address. */
  async start(): Promise<{ host: string; port: number }> {
    const listen = this.opts.listen ?? this.opts.settings.listen;
    const wss = new WebSocketServer({ host: listen.host, port: listen.port, perMessageDeflate: false, maxPayload: 1 << 20 });
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    });
    wss.on('error', (err) => this.log(`autoscaler: ${err.message}`));
    wss.on('connection', (ws, req) => this.accept(ws, req.socket.remoteAddress));
    this.wss = wss;
    this.ticker = every(this.clock, TICK_MS, () => this.tick()).unref();
    const a = wss.address() as AddressInfo;
    this.bound = { host: listen.host, port: a.port };
    return this.bound;
  }

  /** Where the stat websocket listens (after start()). */
  get address(): { host: string; port: number } {
    if (!this.bound) throw new Error('the autoscaler has not started');
    return this.bound;
  }

  /** Stat websockets open now (one per proxy). */
  get connections(): number {
    return this.wss?.clients.size ?? 0;
  }

  status(revision: string): RevisionStatus {
    const r = this.scaledRevision(revision);
    return { revision, phase: this.decider.phase(revision), pod: r.pod?.name, node: r.pod?.node, ready: r.ready };
  }

  private scaledRevision(revision: string): Scaled {
    const r = this.revisions.get(revision);
    if (!r) throw new Error(`the autoscaler does not scale ${JSON.stringify(revision)}`);
    return r;
  }

  private accept(ws: WebSocket, remote: string | undefined): void {
    const address = remote === undefined ? undefined : plainAddress(remote);
    // A connection from an address that is no node's still counts, without a placement hint.
    const node = address === undefined ? undefined : this.opts.cluster.model.current.nodeByAddress(address)?.name;
    ws.on('error', () => undefined);
    let warned = false;
    ws.on('message', (data, isBinary) => {
      this.counts.frames += 1;
      const frame = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data;
      let stats;
      try {
        if (!isBinary) throw new Error('a text frame');
        stats = decodeWireStatMessages(frame);
      } catch (err) {
        // Knative's autoscaler drops a frame it cannot decode and keeps the connection.
        this.counts.badFrames += 1;
        // Once per connection: a sender stuck on bad frames must not flood the log.
        if (!warned) this.log(`autoscaler: dropped a frame from ${address ?? 'unknown'} that is no WireStatMessages (${err instanceof Error ? err.message : String(err)}); further bad frames on this connection are dropped silently`);
        warned = true;
        return;
      }
      for (const stat of stats) {
        this.counts.stats += 1;
        const key = `${stat.namespace}/${stat.name}`;
        if (!this.revisions.has(key)) continue;
        if (stat.averageConcurrentRequests > 0 || stat.requestCount > 0) {
          this.decider.demand(key, node);
          this.reconcile(key);
        }
      }
    });
  }

  /** Read the pods' own load (Knative scrapes queue-proxy), then act on every revision. */
  private tick(): void {
    for (const [key, r] of this.revisions) {
      const pod = r.pod;
      if (pod) {
        if (pod.inFlight > 0 || pod.served !== r.lastServed) this.decider.demand(key);
        r.lastServed = pod.served;
      }
      this.reconcile(key);
    }
  }

  private reconcile(key: string): void {
    const r = this.scaledRevision(key);
    if (this.closed || r.busy) return;
    const decision = this.decider.decide(key);
    if (decision.kind === 'scale-up') void this.scaleUp(key, r, decision.node);
    // A pod still starting is never idle: requests are waiting for it.
    else if (decision.kind === 'scale-down' && r.ready) void this.scaleDown(key, r);
  }

  /** The requesting nodes first, then the others nearest to the first requesting node, each only with room. */
  private placement(key: string, preferred: string | undefined): string | undefined {
    const snapshot = this.opts.cluster.model.current;
    const wanted = [...new Set([...(preferred ? [preferred] : []), ...this.decider.demandNodes(key)])];
    const from = wanted[0];
    const others = snapshot.nodes
      .map((n) => n.name)
      .filter((n) => !wanted.includes(n))
      .sort((a, b) => (from ? snapshot.link(from, a).rttMs - snapshot.link(from, b).rttMs : 0));
    const podsOn = (node: string) => this.opts.cluster.pods.filter((p) => p.node === node).length;
    return [...wanted, ...others].find((n) => snapshot.node(n) && podsOn(n) < (this.opts.maxPods?.[n] ?? Infinity));
  }

  private async scaleUp(key: string, r: Scaled, preferred: string | undefined): Promise<void> {
    const node = this.placement(key, preferred);
    if (!node) {
      this.log(`autoscaler: ${key} wants a pod but no node has room (maxPods); trying again while demand lasts`);
      return;
    }
    r.busy = true;
    let pod: EmulatedPod;
    try {
      pod = await this.opts.cluster.addPod({ revision: key, node, serviceTimeMs: r.spec.serviceTimeMs, capacity: r.spec.capacity }, { starting: true });
    } catch (err) {
      r.busy = false;
      this.log(`autoscaler: could not start a pod of ${key} on ${node}: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    r.busy = false;
    if (this.closed) return;
    r.pod = pod;
    r.ready = false;
    r.lastServed = 0;
    this.decider.scaled(key, 1);
    const event = { revision: key, pod: pod.name, node };
    this.log(`autoscaler: ${key} 0 → 1, pod ${pod.name} on ${node} (demand from ${preferred ?? 'unknown'})`);
    this.emit('scaled-up', event);
    // The container comes up after the cold start; until then it answers probes 503.
    this.arm(r, this.opts.settings.coldStartSeconds * 1000, () => pod.setReady(true));
    this.probeUntilReady(r, pod, event);
    this.armScaleDown(key, r);
  }

  /** The kubelet's readiness probe, every period, until the first success marks the endpoint ready. */
  private probeUntilReady(r: Scaled, pod: EmulatedPod, event: ScaleEvent): void {
    const period = this.opts.settings.readinessPeriodSeconds * 1000 || AGGRESSIVE_PROBE_MS;
    const probe = () => {
      if (this.closed || r.pod !== pod) return;
      void kubeletProbe(pod).then((ok) => {
        if (this.closed || r.pod !== pod) return;
        if (!ok) {
          this.arm(r, period, probe);
          return;
        }
        r.ready = true;
        this.decider.ready(event.revision);
        this.opts.cluster.model.setReady(pod.name, true);
        this.log(`autoscaler: ${event.pod} ready`);
        this.emit('ready', event);
        this.armScaleDown(event.revision, r);
      });
    };
    this.arm(r, period, probe);
  }

  /** One timer for the earliest time the revision could go back to zero (the tick also checks). */
  private armScaleDown(key: string, r: Scaled): void {
    const due = this.decider.scaleDownDueAt(key);
    if (due === undefined) return;
    this.arm(r, Math.max(0, due - this.clock.now()), () => {
      this.reconcile(key);
      // Demand moved the time on: wait for it. (Held for a pod not ready yet: its readiness re-arms.)
      if (r.pod && (this.decider.scaleDownDueAt(key) ?? 0) > this.clock.now()) this.armScaleDown(key, r);
    });
  }

  private async scaleDown(key: string, r: Scaled): Promise<void> {
    const pod = r.pod;
    if (!pod) {
      this.decider.scaled(key, 0);
      return;
    }
    r.busy = true;
    for (const t of r.timers) t.cancel();
    r.timers.clear();
    r.pod = undefined;
    r.ready = false;
    this.decider.scaled(key, 0);
    this.log(`autoscaler: ${key} 1 → 0, pod ${pod.name} on ${pod.node} removed`);
    try {
      await this.opts.cluster.removePod(pod.name);
    } catch (err) {
      this.log(`autoscaler: removing ${pod.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
    r.busy = false;
    this.emit('scaled-down', { revision: key, pod: pod.name, node: pod.node });
    // Demand that arrived while the pod was going away scales it up again.
    this.reconcile(key);
  }

  private arm(r: Scaled, ms: number, fn: () => void): void {
    const t = this.clock.after(ms, () => {
      r.timers.delete(t);
      fn();
    });
    t.unref();
    r.timers.add(t);
  }

  /** Stop listening and deciding; the cluster closes the pods. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ticker?.cancel();
    for (const r of this.revisions.values()) {
      for (const t of r.timers) t.cancel();
      r.timers.clear();
    }
    const wss = this.wss;
    if (!wss) return;
    for (const ws of wss.clients) ws.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  }
}

/** A kubelet HTTP readiness probe on a new connection: true on 200. */
function kubeletProbe(pod: EmulatedPod): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: pod.address.host, port: pod.address.port, path: '/healthz', agent: false, timeout: KUBELET_PROBE_TIMEOUT_MS, headers: { 'user-agent': 'kube-probe/1.34', 'k-network-probe': 'queue' } },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}
