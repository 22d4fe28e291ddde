// Load reports: how the xDS server learns what the node proxies measure. Each proxy pushes
// what changed in its LoadView to every xDS replica (proxy/load-reporter.ts, over Envoy's
// Load Reporting Service, xds/lrs.ts); each replica merges the reports into one LoadView for
// the cost model (ReportedLoad). The RTT from node A to node B is what A's proxy measured; a
// pod's in-flight count is the largest any reporter saw (a proxy's count of a pod on its own
// node adds the pod's ORCA report of everybody else's to its own; of a pod elsewhere it is
// the pod's own last ORCA count, so requests still on the wire are not in it), and its own
// node weighs it by what that node's reporters saw (`localInFlight`). The proxy also serves
// its report as JSON on its admin port (`GET /load`), for inspection.
import type { LoadChange, LoadView } from './load.js';
import type { ClusterSnapshot } from './model.js';

/** A gateway reports as `gateway/<node>`; a node proxy by its node's name. */
export const GATEWAY_REPORTER_PREFIX = 'gateway/';

export interface PeerReport {
  /** Measured round trip in ms; absent while unmeasured. */
  readonly rttMs?: number;
  readonly reachable: boolean;
}

export interface PodReport {
  readonly inFlight: number;
  readonly serviceTimeMs?: number;
  readonly capacity?: number;
}

export interface LoadReport {
  /** The node whose proxy wrote the report. */
  readonly node: string;
  /** Milliseconds since the epoch, when it was written. */
  readonly at: number;
  readonly peers: Readonly<Record<string, PeerReport>>;
  readonly pods: Readonly<Record<string, PodReport>>;
}

// readPeer and readPod build plain literals, not spreads: a reporter reads thousands of
// these every interval, and a spread costs ten times as much.

/** What `from`'s proxy knows of its link to `to`. */
export function readPeer(view: LoadView, from: string, to: string): PeerReport {
  const rttMs = view.rttMs(from, to);
  const reachable = view.reachable(from, to);
  return rttMs === undefined ? { reachable } : { rttMs, reachable };
}

/** What a proxy knows of one pod's load. */
export function readPod(view: LoadView, pod: string): PodReport {
  const inFlight = view.inFlight(pod);
  const serviceTimeMs = view.serviceTimeMs(pod);
  const capacity = view.capacity(pod);
  if (serviceTimeMs === undefined) return capacity === undefined ? { inFlight } : { inFlight, capacity };
  return capacity === undefined ? { inFlight, serviceTimeMs } : { inFlight, serviceTimeMs, capacity };
}

/** The report a node's proxy serves: its view of every other node and of every pod it knows. */
export function loadReportOf(node: string, view: LoadView, snap: ClusterSnapshot, now = Date.now()): LoadReport {
  const peers: Record<string, PeerReport> = {};
  for (const n of snap.nodes) if (n.name !== node) peers[n.name] = readPeer(view, node, n.name);
  const pods: Record<string, PodReport> = {};
  for (const e of snap.state.endpoints) pods[e.pod] = readPod(view, e.pod);
  return { node, at: now, peers, pods };
}

/** What a reporter says changed since its last report: new values for some peers and pods. */
export interface LoadDelta {
  readonly peers: ReadonlyMap<string, PeerReport>;
  readonly pods: ReadonlyMap<string, PodReport>;
}

/** A pod's report that says nothing: no requests, nothing measured. Reporters leave these out. */
export function isIdlePod(p: PodReport): boolean {
  return p.inFlight === 0 && p.serviceTimeMs === undefined && p.capacity === undefined;
}

function near(a: number | undefined, b: number | undefined, absolute: number, relative: number): boolean {
  if (a === undefined || b === undefined) return a === b;
  return Math.abs(a - b) <= Math.max(absolute, relative * Math.abs(b));
}

/**
 * Whether a reporter need not send `now` to a server that has `then`. Measured times move a
 * little all the time; moves within 0.1 ms or 2 % are not worth a report (the xDS server
 * pushes weights only when they move by several points anyway).
 */
export function samePeer(then: PeerReport | undefined, now: PeerReport): boolean {
  if (!then) return now.reachable && now.rttMs === undefined;
  return then.reachable === now.reachable && near(then.rttMs, now.rttMs, 0.1, 0.02);
}

export function samePod(then: PodReport | undefined, now: PodReport): boolean {
  if (!then) return isIdlePod(now);
  return then.inFlight === now.inFlight && then.capacity === now.capacity && near(then.serviceTimeMs, now.serviceTimeMs, 0.05, 0.02);
}

/**
 * One LoadView over what every reporting proxy last said. A reporter's values hold until it
 * sends new ones or is forgotten (its report stream ended or went quiet): then its node's
 * RTTs fall back to `fallback` (the configured latencies), and a node whose proxy stopped
 * reporting is not declared unreachable by that alone — its gateway and pods may still
 * work; the proxies' own probes decide reachability. Listeners hear what moved, once per
 * tick however many reports arrived.
 */
export class ReportedLoad implements LoadView {
  private readonly peersByReporter = new Map<string, Map<string, PeerReport>>();
  /** Per pod, each reporter's latest non-idle report. */
  private readonly podsByName = new Map<string, Map<string, PodReport>>();
  /** Per reporter, the pods it has a non-idle report for. */
  private readonly podsOf = new Map<string, Set<string>>();
  /** Per gateway node, the requests per second it sent for each revision in its last report. */
  private readonly arrivalsByNode = new Map<string, ReadonlyMap<string, number>>();
  /** Per `node|revision`, the rate listeners last heard of (a slow drift adds up to a move). */
  private readonly arrivalsHeard = new Map<string, number>();
  private readonly listeners = new Set<(change: LoadChange) => void>();
  private pending: { pods: Set<string>; fromNodes: Set<string>; revisions: Set<string> } | undefined;

  constructor(private readonly fallback: LoadView) {}

  /** Reporters with something on record. */
  reporters(): string[] {
    return [...new Set([...this.peersByReporter.keys(), ...this.podsOf.keys()])];
  }

  /** Replaces everything `reporter` said about pods with `pods` (a reporter whose every report is complete). */
  replace(reporter: string, pods: ReadonlyMap<string, PodReport>): void {
    const gone = new Map<string, PodReport>();
    for (const pod of this.podsOf.get(reporter) ?? []) if (!pods.has(pod)) gone.set(pod, { inFlight: 0 });
    this.apply(reporter, { peers: new Map(), pods: new Map([...gone, ...pods]) });
  }

  /** Applies what `reporter` says changed. */
  apply(reporter: string, delta: LoadDelta): void {
    if (delta.peers.size > 0) {
      let peers = this.peersByReporter.get(reporter);
      if (!peers) this.peersByReporter.set(reporter, (peers = new Map()));
      for (const [peer, r] of delta.peers) peers.set(peer, r);
      this.moved().fromNodes.add(reporter);
    }
    for (const [pod, r] of delta.pods) {
      let byReporter = this.podsByName.get(pod);
      if (isIdlePod(r)) {
        if (!byReporter?.delete(reporter)) continue;
        if (byReporter.size === 0) this.podsByName.delete(pod);
        this.unindex(reporter, pod);
      } else {
        if (!byReporter) this.podsByName.set(pod, (byReporter = new Map()));
        byReporter.set(reporter, r);
        let mine = this.podsOf.get(reporter);
        if (!mine) this.podsOf.set(reporter, (mine = new Set()));
        mine.add(pod);
      }
      this.moved().pods.add(pod);
    }
  }

  /**
   * What `node`'s gateway sent per revision over its last interval, requests per second (its
   * reports are complete: a revision left out got nothing). Listeners hear of a revision
   * whose rate moved by more than a tenth (and 1/s) from what they last heard: the rate
   * decides whether the gateway goes through its proxy, a threshold a small move does not
   * cross.
   */
  replaceArrivals(node: string, arrivals: ReadonlyMap<string, number>): void {
    const before = this.arrivalsByNode.get(node) ?? new Map<string, number>();
    for (const rev of new Set([...before.keys(), ...arrivals.keys()])) {
      const key = `${node}|${rev}`;
      const now = arrivals.get(rev) ?? 0;
      if (near(this.arrivalsHeard.get(key) ?? 0, now, 1, 0.1)) continue;
      this.moved().revisions.add(rev);
      if (now === 0) this.arrivalsHeard.delete(key);
      else this.arrivalsHeard.set(key, now);
    }
    if (arrivals.size === 0) this.arrivalsByNode.delete(node);
    else this.arrivalsByNode.set(node, arrivals);
  }

  arrivalsPerSecond(revKey: string, node: string): number | undefined {
    return this.arrivalsByNode.get(node)?.get(revKey) ?? this.fallback.arrivalsPerSecond?.(revKey, node);
  }

  /** Drops everything `reporter` said (its stream ended, or a gateway's went quiet). */
  forget(reporter: string): void {
    if (reporter.startsWith(GATEWAY_REPORTER_PREFIX)) this.replaceArrivals(reporter.slice(GATEWAY_REPORTER_PREFIX.length), new Map());
    if (this.peersByReporter.delete(reporter)) this.moved().fromNodes.add(reporter);
    for (const pod of this.podsOf.get(reporter) ?? []) {
      const byReporter = this.podsByName.get(pod);
      byReporter?.delete(reporter);
      if (byReporter?.size === 0) this.podsByName.delete(pod);
      this.moved().pods.add(pod);
    }
    this.podsOf.delete(reporter);
  }

  private unindex(reporter: string, pod: string): void {
    const mine = this.podsOf.get(reporter);
    mine?.delete(pod);
    if (mine?.size === 0) this.podsOf.delete(reporter);
  }

  /** Drops what anyone said about pods that `keep` rejects (they left the cluster model). */
  prune(keep: (pod: string) => boolean): void {
    for (const [pod, byReporter] of [...this.podsByName]) {
      if (keep(pod)) continue;
      this.podsByName.delete(pod);
      for (const reporter of byReporter.keys()) this.unindex(reporter, pod);
      this.moved().pods.add(pod);
    }
  }

  onChange(listener: (change: LoadChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private moved(): { pods: Set<string>; fromNodes: Set<string>; revisions: Set<string> } {
    if (!this.pending) {
      this.pending = { pods: new Set(), fromNodes: new Set(), revisions: new Set() };
      setImmediate(() => {
        const change = this.pending!;
        this.pending = undefined;
        for (const l of this.listeners) l(change);
      });
    }
    return this.pending;
  }

  rttMs(from: string, to: string): number | undefined {
    if (from === to) return 0;
    return this.peersByReporter.get(from)?.get(to)?.rttMs ?? this.fallback.rttMs(from, to);
  }

  reachable(from: string, to: string): boolean {
    if (from === to) return true;
    return this.peersByReporter.get(from)?.get(to)?.reachable ?? this.fallback.reachable(from, to);
  }

  inFlight(pod: string): number {
    let most = this.fallback.inFlight(pod);
    for (const r of this.podsByName.get(pod)?.values() ?? []) most = Math.max(most, r.inFlight);
    return most;
  }

  /**
   * What `node`'s own reporters (its proxy, its gateway) last said of the pod, the larger;
   * the largest of anyone's while they said nothing. Each remote reporter's count is a
   * sample of the pod's from another moment, and the largest of several samples of a count
   * that moves is more than the count: three slots at half load looked full, so the pods'
   * own gateway sent its traffic through the proxy.
   */
  localInFlight(pod: string, node: string): number {
    const byReporter = this.podsByName.get(pod);
    const own = byReporter?.get(node);
    const gateway = byReporter?.get(`${GATEWAY_REPORTER_PREFIX}${node}`);
    if (own === undefined && gateway === undefined) return this.inFlight(pod);
    return Math.max(own?.inFlight ?? 0, gateway?.inFlight ?? 0);
  }

  serviceTimeMs(pod: string): number | undefined {
    let sum = 0;
    let n = 0;
    for (const r of this.podsByName.get(pod)?.values() ?? []) {
      if (r.serviceTimeMs === undefined) continue;
      sum += r.serviceTimeMs;
      n += 1;
    }
    return n > 0 ? sum / n : this.fallback.serviceTimeMs(pod);
  }

  /**
   * The pod's own time per request, as the gateways report it (theirs is the pod's ORCA
   * figure: no network, no queue; a proxy's service time counts the wait at the pod too, and
   * a queue there would make the pod look busier than it is).
   */
  workMs(pod: string): number | undefined {
    let sum = 0;
    let n = 0;
    for (const [reporter, r] of this.podsByName.get(pod) ?? []) {
      if (r.serviceTimeMs === undefined || !reporter.startsWith(GATEWAY_REPORTER_PREFIX)) continue;
      sum += r.serviceTimeMs;
      n += 1;
    }
    return n > 0 ? sum / n : this.fallback.workMs?.(pod);
  }

  capacity(pod: string): number | undefined {
    for (const r of this.podsByName.get(pod)?.values() ?? []) if (r.capacity !== undefined) return r.capacity;
    return this.fallback.capacity(pod);
  }
}
