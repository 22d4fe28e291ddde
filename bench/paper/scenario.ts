// The paper's experiment on the emulated cluster: users at the edge (node3) and in the
// cloud (node1, node2) send an open-loop 10 requests/s each, 5 to 50 users per side, for
// every policy and for the oracle (the best fixed split, found by sweeping it), at each
// edge ↔ cloud latency. One fresh stack per (latency, policy); the user steps run in
// increasing order on it, like the paper's single run.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startEmulatedStack, type EmulatedStack } from '../../bin/stack.js';
import type { NodeProxy } from '../../proxy/server.js';
import type { LoadGenerator } from '../load/client.js';
import type { LoadTarget, TargetResult } from '../load/protocol.js';
import { cdfPoints, mean, percentile, round, sorted } from '../stats.js';
import { CLOUD, EDGE, HOST, SERVICE_MS, paperClusterFile } from './cluster.js';
import { StaticSplitPolicy, type Split } from './oracle.js';

export const PAPER_POLICIES = ['knative', 'round-robin', 'local-only', 'faast', 'peak-ewma', 'chikai', 'oracle'] as const;

export interface LinkSetting {
  readonly rttMs: number;
  readonly jitterMs: number;
}

export interface PaperOptions {
  readonly links: readonly LinkSetting[];
  readonly users: readonly number[];
  /** Seconds of load per step. */
  readonly seconds: number;
  /** Seconds of load per probe of the oracle's sweep. */
  readonly probeSeconds: number;
  readonly policies: readonly string[];
  readonly edgeCapacity: number;
  readonly cloudCapacity: number;
  /** Requests per second of one user. */
  readonly userRate: number;
  /** Seconds after which an unanswered request is an error (see load/worker.ts for why 1.5). */
  readonly timeoutSeconds: number;
  /** User counts whose edge-side latencies are kept for the CDF chart. */
  readonly cdfUsers: readonly number[];
  readonly seed: number;
  readonly log: (line: string) => void;
}

export type Side = 'edge' | 'cloud';

export interface PaperRow {
  readonly policy: string;
  readonly latency_ms: number;
  readonly side: Side;
  readonly users: number;
  readonly p50_ms: number | null;
  readonly p90_ms: number | null;
  readonly p99_ms: number | null;
  readonly offered: number;
  readonly completed: number;
  readonly errors: number;
  readonly local_share: number | null;
}

export interface OracleChoice {
  readonly latency_ms: number;
  readonly users: number;
  /** Share of the edge's requests sent to the cloud nodes (split evenly between them). */
  readonly edge_remote_share: number;
  /** Every split probed, with its objective (mean latency of all requests, ms; errors count as the timeout). */
  readonly probes: readonly { readonly share: number; readonly mean_ms: number }[];
}

export interface CdfSeries {
  readonly latency_ms: number;
  readonly users: number;
  readonly policy: string;
  readonly points: [number, number][];
}

export interface PaperResult {
  readonly rows: PaperRow[];
  readonly oracle: OracleChoice[];
  readonly cdfs: CdfSeries[];
}

const LAG_RESOLUTION_MS = 5;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Requests each proxy's pods served for it, by target node, 2xx only (from its metrics). */
async function servedByNode(proxy: NodeProxy): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for (const v of (await proxy.metrics.requests.get()).values) {
    if (!String(v.labels.code ?? '').startsWith('2')) continue;
    const n = String(v.labels.target_node);
    m.set(n, (m.get(n) ?? 0) + v.value);
  }
  return m;
}

/** Share of the 2xx requests between two counter readings that a proxy's own node served. */
function localShare(proxies: readonly NodeProxy[], before: Map<NodeProxy, Map<string, number>>, after: Map<NodeProxy, Map<string, number>>): number | null {
  let local = 0;
  let all = 0;
  for (const p of proxies) {
    const b = before.get(p)!;
    for (const [node, v] of after.get(p)!) {
      const d = v - (b.get(node) ?? 0);
      all += d;
      if (node === p.node) local += d;
    }
  }
  return all === 0 ? null : local / all;
}

/** Wait until no request is left in any proxy or pod (a step's backlog must not leak into the next). */
async function drain(stack: EmulatedStack, maxMs = 15_000): Promise<void> {
  const end = Date.now() + maxMs;
  while (Date.now() < end) {
    const busy = [...stack.proxies.values()].some((p) => p.activeRequests > 0) || stack.cluster.pods.some((p) => p.inFlight > 0);
    if (!busy) break;
    await sleep(50);
  }
  await sleep(200);
}

interface SideResult {
  readonly latencies: Float64Array;
  readonly offered: number;
  readonly completed: number;
  readonly errors: number;
  readonly errorKinds: Readonly<Record<string, number>>;
}

function merge(results: readonly TargetResult[]): SideResult {
  const all = results.flatMap((r) => Array.from(r.latenciesMs));
  const errorKinds: Record<string, number> = {};
  for (const r of results) for (const [k, n] of Object.entries(r.errorKinds)) errorKinds[k] = (errorKinds[k] ?? 0) + n;
  return {
    latencies: sorted(all),
    offered: results.reduce((a, r) => a + r.offered, 0),
    completed: results.reduce((a, r) => a + r.completed, 0),
    errors: results.reduce((a, r) => a + r.errors, 0),
    errorKinds,
  };
}

export class PaperBench {
  private done = 0;
  /** The stack process during the last step: event-loop delay p99 (ms) and CPU (share of one core). */
  private lastLoop = { lagP99Ms: 0, cpu: 0 };
  private readonly total: number;
  private readonly startedAt = performance.now();

  constructor(private readonly o: PaperOptions, private readonly load: LoadGenerator) {
    this.total = o.links.length * o.policies.length * o.users.length;
  }

  /** Load for one step: `users` users at the edge, as many in the cloud split over node1 and node2. */
  private targets(stack: EmulatedStack, users: number, seconds: number): LoadTarget[] {
    const perUser = this.o.userRate;
    const base = { host: HOST, requestsPerConnection: seconds, timeoutSeconds: this.o.timeoutSeconds };
    const cloudUsers = [Math.ceil(users / 2), Math.floor(users / 2)];
    const t: LoadTarget[] = [{ ...base, name: 'edge', url: stack.proxyUrl(EDGE), connections: users * perUser, phases: 100 }];
    CLOUD.forEach((node, i) => {
      if (cloudUsers[i]! > 0) t.push({ ...base, name: `cloud:${node}`, url: stack.proxyUrl(node), connections: cloudUsers[i]! * perUser, phases: 50 });
    });
    return t;
  }

  private async step(stack: EmulatedStack, users: number, seconds: number): Promise<{ edge: SideResult; cloud: SideResult; edgeLocal: number | null; cloudLocal: number | null }> {
    const edgeProxy = stack.proxies.get(EDGE)!;
    const cloudProxies = CLOUD.map((n) => stack.proxies.get(n)!);
    const all = [edgeProxy, ...cloudProxies];
    const before = new Map(await Promise.all(all.map(async (p) => [p, await servedByNode(p)] as const)));
    // How late this process's event loop ran: the emulation's timing is only as good as this.
    // (The histogram holds whole timer intervals: the resolution is taken off.)
    const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    lag.enable();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const results = await this.load.open(this.targets(stack, users, seconds));
    const cpu = process.cpuUsage(cpu0);
    lag.disable();
    this.lastLoop = { lagP99Ms: Math.max(0, lag.percentile(99) / 1e6 - LAG_RESOLUTION_MS), cpu: (cpu.user + cpu.system) / 1000 / (performance.now() - t0) };
    const after = new Map(await Promise.all(all.map(async (p) => [p, await servedByNode(p)] as const)));
    return {
      edge: merge(results.filter((r) => r.name === 'edge')),
      cloud: merge(results.filter((r) => r.name.startsWith('cloud'))),
      edgeLocal: localShare([edgeProxy], before, after),
      cloudLocal: localShare(cloudProxies, before, after),
    };
  }

  private row(policy: string, link: LinkSetting, side: Side, users: number, r: SideResult, local: number | null): PaperRow {
    const p = (q: number) => (r.latencies.length === 0 ? null : round(percentile(r.latencies, q), 2));
    return {
      policy,
      latency_ms: link.rttMs,
      side,
      users,
      p50_ms: p(50),
      p90_ms: p(90),
      p99_ms: p(99),
      offered: r.offered,
      completed: r.completed,
      errors: r.errors,
      local_share: local === null ? null : round(local, 4),
    };
  }

  /** Mean latency of every request of a probe, a failed or unanswered one counted as the timeout. */
  private objective(edge: SideResult, cloud: SideResult): number {
    const penalty = this.o.timeoutSeconds * 1000;
    let sum = 0;
    let n = 0;
    for (const s of [edge, cloud]) {
      sum += mean(s.latencies) * s.latencies.length || 0;
      const missing = Math.max(0, s.offered - s.completed);
      sum += missing * penalty;
      n += s.offered;
    }
    return n === 0 ? Number.POSITIVE_INFINITY : sum / n;
  }

  /**
   * The oracle's split for one step: the edge sends a share f of its requests to the cloud
   * (half to each cloud node), the cloud nodes keep theirs. f is swept in steps of 0.1 from
   * the smallest share the edge pod can keep up with, up and down while the mean latency
   * of all requests improves. Sending cloud requests to the edge never helps here (the
   * edge pod is the smaller one and a WAN round trip away), so it is not swept.
   */
  private async searchSplit(stack: EmulatedStack, policies: Map<string, StaticSplitPolicy>, link: LinkSetting, users: number): Promise<OracleChoice> {
    const edgeRps = users * this.o.userRate;
    // Timers make the emulated service time about 0.5 ms longer than sampled.
    const edgeCapacityRps = (this.o.edgeCapacity * 1000) / ((SERVICE_MS.min + SERVICE_MS.max) / 2 + 0.5);
    const minShare = Math.max(0, 1 - edgeCapacityRps / edgeRps);
    const start = Math.min(1, Math.ceil(minShare * 10 - 1e-9) / 10);
    const probes = new Map<number, number>();
    const probe = async (share: number): Promise<number> => {
      const key = Math.round(share * 10) / 10;
      const known = probes.get(key);
      if (known !== undefined) return known;
      this.setEdgeShare(policies, key);
      const r = await this.step(stack, users, this.o.probeSeconds);
      await drain(stack);
      const v = this.objective(r.edge, r.cloud);
      probes.set(key, v);
      this.o.log(`    oracle probe ${link.rttMs} ms · ${users} users · edge→cloud ${(key * 100).toFixed(0)} %: mean ${v.toFixed(1)} ms`);
      return v;
    };
    let best = start;
    let bestV = await probe(start);
    for (const dir of [0.1, -0.1]) {
      for (let f = best + dir; f >= -1e-9 && f <= 1 + 1e-9; f += dir) {
        const v = await probe(f);
        if (v < bestV) {
          bestV = v;
          best = Math.round(f * 10) / 10;
        } else break;
      }
    }
    // One noisy probe (a stall of this shared machine) can crown the wrong split: when the
    // runner-up is within 25 %, probe both again and go by the sum.
    const ranked = [...probes.entries()].sort((a, b) => a[1] - b[1]);
    if (ranked.length > 1 && ranked[1]![1] < ranked[0]![1] * 1.25) {
      const [a, b] = [ranked[0]![0], ranked[1]![0]];
      const again = async (share: number) => {
        this.setEdgeShare(policies, share);
        const r = await this.step(stack, users, this.o.probeSeconds);
        await drain(stack);
        const v = this.objective(r.edge, r.cloud);
        this.o.log(`    oracle probe ${link.rttMs} ms · ${users} users · edge→cloud ${(share * 100).toFixed(0)} % again: mean ${v.toFixed(1)} ms`);
        return v;
      };
      const va = probes.get(a)! + (await again(a));
      const vb = probes.get(b)! + (await again(b));
      best = vb < va ? b : a;
    }
    return {
      latency_ms: link.rttMs,
      users,
      edge_remote_share: best,
      probes: [...probes.entries()].sort((a, b) => a[0] - b[0]).map(([share, v]) => ({ share, mean_ms: round(v, 2) })),
    };
  }

  private setEdgeShare(policies: Map<string, StaticSplitPolicy>, share: number): void {
    const edgeSplit: Record<string, number> = { [EDGE]: 1 - share };
    for (const n of CLOUD) edgeSplit[n] = share / CLOUD.length;
    policies.get(EDGE)!.setSplit(edgeSplit);
    for (const n of CLOUD) policies.get(n)!.setSplit({ [n]: 1 } satisfies Split);
  }

  private progress(link: LinkSetting, policy: string, users: number, edge: PaperRow, cloud: PaperRow, errorKinds: Readonly<Record<string, number>>): void {
    this.done++;
    const elapsed = (performance.now() - this.startedAt) / 1000;
    const eta = (elapsed / this.done) * (this.total - this.done);
    const fmt = (s: number) => `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
    const side = (r: PaperRow) =>
      `p50 ${r.p50_ms ?? '–'} p99 ${r.p99_ms ?? '–'} ms, ${r.offered ? ((100 * r.completed) / r.offered).toFixed(1) : '–'} % done, local ${r.local_share === null ? '–' : (r.local_share * 100).toFixed(0)} %`;
    this.o.log(`[paper ${this.done}/${this.total} · ${fmt(elapsed)} · eta ${fmt(eta)}] ${link.rttMs} ms · ${policy} · ${users} users — edge ${side(edge)} | cloud ${side(cloud)} | stack CPU ${(this.lastLoop.cpu * 100).toFixed(0)} %, loop lag p99 ${this.lastLoop.lagP99Ms.toFixed(1)} ms${Object.keys(errorKinds).length ? ` | errors ${JSON.stringify(errorKinds)}` : ''}`);
  }

  async run(): Promise<PaperResult> {
    const rows: PaperRow[] = [];
    const oracle: OracleChoice[] = [];
    const cdfs: CdfSeries[] = [];
    for (const link of this.o.links) {
      const file = paperClusterFile({ rttMs: link.rttMs, jitterMs: link.jitterMs, edgeCapacity: this.o.edgeCapacity, cloudCapacity: this.o.cloudCapacity });
      for (const policy of this.o.policies) {
        const splits = new Map<string, StaticSplitPolicy>();
        const stack = await startEmulatedStack({
          file,
          proxyPort: 0,
          adminPort: 0,
          drainSeconds: 0,
          seed: this.o.seed,
          ...(policy === 'oracle'
            ? { policyFor: (node: string) => { const p = new StaticSplitPolicy({ [node]: 1 }); splits.set(node, p); return p; } }
            : { policy }),
        });
        try {
          // RTT probes run twice a second: let a few land before the first step. Then a
          // short unrecorded load (JIT, connection pools, the policies' first samples).
          await sleep(2500);
          await this.load.open(this.targets(stack, Math.min(10, this.o.users[0]!), Math.min(2, this.o.seconds)));
          await drain(stack);
          for (const users of this.o.users) {
            if (policy === 'oracle') {
              const choice = await this.searchSplit(stack, splits, link, users);
              oracle.push(choice);
              this.setEdgeShare(splits, choice.edge_remote_share);
            }
            const r = await this.step(stack, users, this.o.seconds);
            const edge = this.row(policy, link, 'edge', users, r.edge, r.edgeLocal);
            const cloud = this.row(policy, link, 'cloud', users, r.cloud, r.cloudLocal);
            rows.push(edge, cloud);
            if (this.o.cdfUsers.includes(users)) cdfs.push({ latency_ms: link.rttMs, users, policy, points: cdfPoints(r.edge.latencies) });
            const kinds: Record<string, number> = {};
            for (const [k, n] of [...Object.entries(r.edge.errorKinds), ...Object.entries(r.cloud.errorKinds)]) kinds[k] = (kinds[k] ?? 0) + n;
            this.progress(link, policy, users, edge, cloud, kinds);
            await drain(stack);
          }
        } finally {
          await stack.close();
        }
      }
    }
    return { rows, oracle, cdfs };
  }
}
