// Load reports: how the xDS server learns what the node proxies measure. Each proxy serves
// its LoadView as JSON on its admin port (`GET /load`); the xDS server polls every node's
// proxy and merges the reports into one LoadView for the cost model. The RTT from node A to
// node B is what A's proxy measured; a pod's in-flight count is the largest any proxy saw
// (each proxy's count already adds the pod's ORCA report of everybody else's).
import type { LoadView } from './load.js';
import type { ClusterSnapshot } from './model.js';

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

/** The report a node's proxy serves: its view of every other node and of every pod it knows. */
export function loadReportOf(node: string, view: LoadView, snap: ClusterSnapshot, now = Date.now()): LoadReport {
  const peers: Record<string, PeerReport> = {};
  for (const n of snap.nodes) {
    if (n.name === node) continue;
    const rttMs = view.rttMs(node, n.name);
    peers[n.name] = { ...(rttMs === undefined ? {} : { rttMs }), reachable: view.reachable(node, n.name) };
  }
  const pods: Record<string, PodReport> = {};
  for (const e of snap.state.endpoints) {
    const serviceTimeMs = view.serviceTimeMs(e.pod);
    const capacity = view.capacity(e.pod);
    pods[e.pod] = {
      inFlight: view.inFlight(e.pod),
      ...(serviceTimeMs === undefined ? {} : { serviceTimeMs }),
      ...(capacity === undefined ? {} : { capacity }),
    };
  }
  return { node, at: now, peers, pods };
}

function finiteOrUndefined(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/**
 * Reads a report received over the network; throws an error naming the first field that is
 * not what a proxy writes.
 */
export function parseLoadReport(raw: unknown, from: string): LoadReport {
  const fail = (field: string, expected: string): never => {
    throw new Error(`load report from ${from}: field ${field} should be ${expected}`);
  };
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) fail('(top level)', 'a JSON object');
  const r = raw as Record<string, unknown>;
  if (typeof r['node'] !== 'string' || r['node'] === '') fail('node', 'the node name');
  if (finiteOrUndefined(r['at']) === undefined) fail('at', 'a time in ms since the epoch');
  const peersRaw = r['peers'];
  const podsRaw = r['pods'];
  if (!peersRaw || typeof peersRaw !== 'object') fail('peers', 'an object keyed by node name');
  if (!podsRaw || typeof podsRaw !== 'object') fail('pods', 'an object keyed by pod name');
  const peers: Record<string, PeerReport> = {};
  for (const [name, p] of Object.entries(peersRaw as Record<string, Record<string, unknown>>)) {
    if (!p || typeof p !== 'object' || typeof p['reachable'] !== 'boolean') fail(`peers.${name}.reachable`, 'true or false');
    const rttMs = finiteOrUndefined(p['rttMs']);
    peers[name] = { ...(rttMs === undefined ? {} : { rttMs }), reachable: p['reachable'] as boolean };
  }
  const pods: Record<string, PodReport> = {};
  for (const [name, p] of Object.entries(podsRaw as Record<string, Record<string, unknown>>)) {
    const inFlight = finiteOrUndefined(p?.['inFlight']);
    if (inFlight === undefined) fail(`pods.${name}.inFlight`, 'a number ≥ 0');
    const serviceTimeMs = finiteOrUndefined(p['serviceTimeMs']);
    const capacity = finiteOrUndefined(p['capacity']);
    pods[name] = {
      inFlight: inFlight as number,
      ...(serviceTimeMs === undefined ? {} : { serviceTimeMs }),
      ...(capacity === undefined ? {} : { capacity }),
    };
  }
  return { node: r['node'] as string, at: r['at'] as number, peers, pods };
}

/**
 * One LoadView over the latest report of every node. A report older than `maxAgeMs` no
 * longer counts: its node's RTTs fall back to `fallback` (the configured latencies), and a
 * node whose proxy stopped reporting is not declared unreachable by that alone — its
 * gateway and pods may still work; the proxies' own probes decide reachability.
 */
export class ReportedLoadView implements LoadView {
  private readonly reports = new Map<string, LoadReport>();

  constructor(
    private readonly fallback: LoadView,
    private readonly maxAgeMs = 5000,
    private readonly now: () => number = Date.now,
  ) {}

  update(report: LoadReport): void {
    this.reports.set(report.node, report);
  }

  forget(node: string): void {
    this.reports.delete(node);
  }

  /** Nodes with a report fresh enough to count. */
  freshNodes(): string[] {
    return [...this.reports.values()].filter((r) => this.fresh(r)).map((r) => r.node);
  }

  private fresh(r: LoadReport | undefined): r is LoadReport {
    return r !== undefined && this.now() - r.at <= this.maxAgeMs;
  }

  private *freshReports(): Iterable<LoadReport> {
    for (const r of this.reports.values()) if (this.fresh(r)) yield r;
  }

  rttMs(from: string, to: string): number | undefined {
    if (from === to) return 0;
    const r = this.reports.get(from);
    return (this.fresh(r) ? r.peers[to]?.rttMs : undefined) ?? this.fallback.rttMs(from, to);
  }

  reachable(from: string, to: string): boolean {
    if (from === to) return true;
    const r = this.reports.get(from);
    if (this.fresh(r) && r.peers[to]) return r.peers[to].reachable;
    return this.fallback.reachable(from, to);
  }

  inFlight(pod: string): number {
    let most = 0;
    for (const r of this.freshReports()) most = Math.max(most, r.pods[pod]?.inFlight ?? 0);
    return Math.max(most, this.fallback.inFlight(pod));
  }

  serviceTimeMs(pod: string): number | undefined {
    let sum = 0;
    let n = 0;
    for (const r of this.freshReports()) {
      const s = r.pods[pod]?.serviceTimeMs;
      if (s !== undefined) {
        sum += s;
        n += 1;
      }
    }
    return n > 0 ? sum / n : this.fallback.serviceTimeMs(pod);
  }

  capacity(pod: string): number | undefined {
    for (const r of this.freshReports()) {
      const c = r.pods[pod]?.capacity;
      if (c !== undefined) return c;
    }
    return this.fallback.capacity(pod);
  }
}
