// The paper's experiment on the emulated cluster: users at the edge (node3) and in the
// cloud (node1, node2) send an open-loop 10 requests/s each, 5 to 50 users per side, to
// every system at each edge ↔ cloud latency.
//
// The measurement, without the winner's curse:
// 1. Selection: the oracle's split is chosen per (latency, users) on its own measurement
//    (a sweep of fixed splits, bench/paper/oracle.ts).
// 2. Rounds: every system is then measured `rounds` times, the oracle with the split chosen
//    in 1, so its numbers come from measurements independent of its selection. In each
//    round every latency gets every system in a shuffled order, each on a fresh stack whose
//    user steps run in increasing order (like the paper's single run); rounds repeat that.
//    Rows pool the rounds and carry the spread between them (bench/paper/aggregate.ts).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { POD_HEADER } from '../../cluster/emulated/pod.js';
import type { EmulatedStack } from '../../bin/stack.js';
import type { LoadGenerator } from '../load/client.js';
import type { LoadTarget, TargetResult } from '../load/protocol.js';
import { cdfPoints, mean, percentile, round, sorted } from '../stats.js';
import { aggregate, pooledLatencies, type PaperRow, type Sample, type Side, type SideSample } from './aggregate.js';
import { CLOUD, EDGE, HOST, SERVICE_MS, paperClusterFile } from './cluster.js';
import { startSystem, systemLabel, type RunningSystem, type SystemId } from './systems.js';

export interface LinkSetting {
  readonly rttMs: number;
  readonly jitterMs: number;
}

export interface PaperOptions {
  readonly links: readonly LinkSetting[];
  readonly users: readonly number[];
  /** Seconds of load per step and round. */
  readonly seconds: number;
  /** Seconds of load per probe of the oracle's selection sweep. */
  readonly probeSeconds: number;
  /** Times every system is measured at every step. */
  readonly rounds: number;
  /**
   * Unrecorded start of every stack: `settleMs` for the RTT probes to land, then `seconds`
   * of light load (JIT, connection pools, the policies' first samples).
   */
  readonly warmup: { readonly settleMs: number; readonly seconds: number };
  readonly systems: readonly SystemId[];
  readonly edgeCapacity: number;
  readonly cloudCapacity: number;
  /** Requests per second of one user. */
  readonly userRate: number;
  /** Seconds after which an unanswered request is an error (see load/worker.ts for why 1.5). */
  readonly timeoutSeconds: number;
  /** User counts whose latencies are kept for the CDF chart. */
  readonly cdfUsers: readonly number[];
  readonly seed: number;
  /** The Envoy binary for the gateway systems. */
  readonly envoy: string | undefined;
  readonly log: (line: string) => void;
}

export interface OracleChoice {
  readonly latency_ms: number;
  readonly users: number;
  /** Which oracle the selection ran on (gateway or proxy path). */
  readonly selected_on: string;
  /** Share of the edge's requests sent to the cloud nodes (split evenly between them). */
  readonly edge_remote_share: number;
  /** Every split probed, with its objective (mean latency of all requests, ms; errors count as the timeout). */
  readonly probes: readonly { readonly share: number; readonly mean_ms: number }[];
}

export interface CdfSeries {
  readonly path: string;
  readonly latency_ms: number;
  readonly users: number;
  readonly side: Side;
  readonly policy: string;
  readonly points: [number, number][];
}

export interface PaperResult {
  readonly rows: PaperRow[];
  readonly oracle: OracleChoice[];
  readonly cdfs: CdfSeries[];
  /** Wall-clock minutes of the run. */
  readonly minutes: number;
}

const LAG_RESOLUTION_MS = 5;
/** Time a step takes beyond its seconds of load (answers, timeouts at overload, draining), measured. */
const STEP_OVERHEAD_S = 0.8;
const STACK_START_S = 0.5;
/** Probes per step of the oracle's selection, typically. */
const PROBES_PER_STEP = 3.5;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const fmtMinutes = (s: number) => `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;

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

/** A deterministic shuffle (mulberry32), so a run's order is reproducible from its seed. */
function shuffled<T>(xs: readonly T[], seed: number): T[] {
  let a = seed >>> 0;
  const rnd = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The system the oracle's split is selected on: the gateway oracle when it runs, else the proxy one. */
function selectionSystem(systems: readonly SystemId[]): SystemId | undefined {
  return systems.find((s) => s.path === 'gateway' && s.policy === 'oracle') ?? systems.find((s) => s.policy === 'oracle');
}

/** What the run will take, roughly (printed at the start). */
export function expectedSeconds(o: PaperOptions): number {
  const sweep = STACK_START_S + o.warmup.settleMs / 1000 + o.warmup.seconds + STEP_OVERHEAD_S + o.users.length * (o.seconds + STEP_OVERHEAD_S);
  const selection = selectionSystem(o.systems) ? o.links.length * (sweep - o.users.length * (o.seconds + STEP_OVERHEAD_S) + o.users.length * PROBES_PER_STEP * (o.probeSeconds + STEP_OVERHEAD_S)) : 0;
  return selection + o.rounds * o.links.length * o.systems.length * sweep;
}

interface StepResult {
  readonly edge: SideSample;
  readonly cloud: SideSample;
  readonly errorKinds: Readonly<Record<string, number>>;
}

export class PaperBench {
  private done = 0;
  /** The stack process during the last step: event-loop delay p99 (ms) and CPU (share of one core). */
  private lastLoop = { lagP99Ms: 0, cpu: 0 };
  private readonly total: number;
  private readonly startedAt = performance.now();

  constructor(private readonly o: PaperOptions, private readonly load: LoadGenerator) {
    this.total = o.rounds * o.links.length * o.systems.length * o.users.length;
  }

  /** Load for one step: `users` users at the edge, as many in the cloud split over node1 and node2. */
  private targets(sys: RunningSystem, users: number, seconds: number): LoadTarget[] {
    const perUser = this.o.userRate;
    const base = { host: HOST, requestsPerConnection: seconds, timeoutSeconds: this.o.timeoutSeconds, countHeader: POD_HEADER };
    const cloudUsers = [Math.ceil(users / 2), Math.floor(users / 2)];
    const t: LoadTarget[] = [{ ...base, name: EDGE, url: sys.entryUrl(EDGE), connections: users * perUser, phases: 100 }];
    CLOUD.forEach((node, i) => {
      if (cloudUsers[i]! > 0) t.push({ ...base, name: node, url: sys.entryUrl(node), connections: cloudUsers[i]! * perUser, phases: 50 });
    });
    return t;
  }

  private async step(sys: RunningSystem, users: number, seconds: number): Promise<StepResult> {
    // How late this process's event loop ran: the emulation's timing is only as good as this.
    // (The histogram holds whole timer intervals: the resolution is taken off.)
    const lag = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS });
    lag.enable();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const results = await this.load.open(this.targets(sys, users, seconds));
    const cpu = process.cpuUsage(cpu0);
    lag.disable();
    this.lastLoop = { lagP99Ms: Math.max(0, lag.percentile(99) / 1e6 - LAG_RESOLUTION_MS), cpu: (cpu.user + cpu.system) / 1000 / (performance.now() - t0) };
    // Who served: the pod named in each answer (through proxies and gateways alike).
    const podNode = new Map(sys.stack.model.current.state.endpoints.map((e) => [e.pod, e.node]));
    const side = (rs: readonly TargetResult[]): SideSample => {
      let local = 0;
      for (const r of rs) for (const [pod, n] of Object.entries(r.servedBy)) if (podNode.get(pod) === r.name) local += n;
      return {
        latencies: sorted(rs.flatMap((r) => Array.from(r.latenciesMs))),
        offered: rs.reduce((a, r) => a + r.offered, 0),
        completed: rs.reduce((a, r) => a + r.completed, 0),
        errors: rs.reduce((a, r) => a + r.errors, 0),
        local,
      };
    };
    const errorKinds: Record<string, number> = {};
    for (const r of results) for (const [k, n] of Object.entries(r.errorKinds)) errorKinds[k] = (errorKinds[k] ?? 0) + n;
    return { edge: side(results.filter((r) => r.name === EDGE)), cloud: side(results.filter((r) => r.name !== EDGE)), errorKinds };
  }

  /** Mean latency of every request of a probe, a failed or unanswered one counted as the timeout. */
  private objective(r: StepResult): number {
    const penalty = this.o.timeoutSeconds * 1000;
    let sum = 0;
    let n = 0;
    for (const s of [r.edge, r.cloud]) {
      sum += mean(s.latencies) * s.latencies.length || 0;
      sum += Math.max(0, s.offered - s.completed) * penalty;
      n += s.offered;
    }
    return n === 0 ? Number.POSITIVE_INFINITY : sum / n;
  }

  /**
   * The oracle's split for one step, selected on its own measurement: the edge sends a
   * share f of its requests to the cloud (half to each cloud node), the cloud nodes keep
   * theirs. f is swept in steps of 0.1 from the smallest share the edge pod can keep up
   * with, up and down while the mean latency of all requests improves; when the runner-up
   * is within 25 % both are probed again and the sum decides. Sending cloud requests to the
   * edge never helps here (the edge pod is the smaller one and a WAN round trip away).
   */
  private async searchSplit(sys: RunningSystem, link: LinkSetting, users: number): Promise<OracleChoice> {
    const edgeRps = users * this.o.userRate;
    // A pod's slot falls free at its request's due time (cluster/emulated/pod.ts), so it serves its drawn mean.
    const edgeCapacityRps = (this.o.edgeCapacity * 1000) / ((SERVICE_MS.min + SERVICE_MS.max) / 2);
    const minShare = Math.max(0, 1 - edgeCapacityRps / edgeRps);
    const start = Math.min(1, Math.ceil(minShare * 10 - 1e-9) / 10);
    const probes = new Map<number, number>();
    const measure = async (share: number, again: boolean): Promise<number> => {
      await sys.setEdgeShare(share);
      const v = this.objective(await this.step(sys, users, this.o.probeSeconds));
      await drain(sys.stack);
      this.o.log(`    oracle selection ${link.rttMs} ms · ${users} users · edge→cloud ${(share * 100).toFixed(0)} %${again ? ' again' : ''}: mean ${v.toFixed(1)} ms`);
      return v;
    };
    const probe = async (share: number): Promise<number> => {
      const key = Math.round(share * 10) / 10;
      const known = probes.get(key);
      if (known !== undefined) return known;
      const v = await measure(key, false);
      probes.set(key, v);
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
    const ranked = [...probes.entries()].sort((a, b) => a[1] - b[1]);
    if (ranked.length > 1 && ranked[1]![1] < ranked[0]![1] * 1.25) {
      const [a, b] = [ranked[0]![0], ranked[1]![0]];
      const va = probes.get(a)! + (await measure(a, true));
      const vb = probes.get(b)! + (await measure(b, true));
      best = vb < va ? b : a;
    }
    return {
      latency_ms: link.rttMs,
      users,
      selected_on: systemLabel(sys.id),
      edge_remote_share: best,
      probes: [...probes.entries()].sort((a, b) => a[0] - b[0]).map(([share, v]) => ({ share, mean_ms: round(v, 2) })),
    };
  }

  private async withSystem<T>(id: SystemId, link: LinkSetting, body: (sys: RunningSystem) => Promise<T>): Promise<T> {
    const file = paperClusterFile({ rttMs: link.rttMs, jitterMs: link.jitterMs, edgeCapacity: this.o.edgeCapacity, cloudCapacity: this.o.cloudCapacity });
    const sys = await startSystem(id, { file, seed: this.o.seed, envoy: this.o.envoy ?? '', log: this.o.log });
    try {
      await sleep(this.o.warmup.settleMs);
      await this.load.open(this.targets(sys, Math.min(10, this.o.users[0]!), this.o.warmup.seconds));
      await drain(sys.stack);
      return await body(sys);
    } finally {
      await sys.close();
    }
  }

  private progress(roundNo: number, link: LinkSetting, id: SystemId, users: number, r: StepResult): void {
    this.done++;
    const elapsed = (performance.now() - this.startedAt) / 1000;
    const eta = (elapsed / this.done) * (this.total - this.done);
    const side = (s: SideSample) => {
      const p = (x: number) => (s.latencies.length ? round(percentile(s.latencies, x), 1) : '–');
      return `p50 ${p(50)} p99 ${p(99)} ms, ${s.offered ? ((100 * s.completed) / s.offered).toFixed(1) : '–'} % done, local ${s.completed ? ((100 * s.local) / s.completed).toFixed(0) : '–'} %`;
    };
    this.o.log(`[paper ${this.done}/${this.total} · ${fmtMinutes(elapsed)} · eta ${fmtMinutes(eta)}] round ${roundNo} · ${link.rttMs} ms · ${systemLabel(id)} · ${users} users — edge ${side(r.edge)} | cloud ${side(r.cloud)} | stack CPU ${(this.lastLoop.cpu * 100).toFixed(0)} %, loop lag p99 ${this.lastLoop.lagP99Ms.toFixed(1)} ms${Object.keys(r.errorKinds).length ? ` | errors ${JSON.stringify(r.errorKinds)}` : ''}`);
  }

  async run(): Promise<PaperResult> {
    const o = this.o;
    const oracle: OracleChoice[] = [];
    const selector = selectionSystem(o.systems);
    if (selector) {
      for (const link of o.links) {
        await this.withSystem(selector, link, async (sys) => {
          for (const users of o.users) oracle.push(await this.searchSplit(sys, link, users));
        });
      }
    }
    const shareFor = (link: LinkSetting, users: number) => oracle.find((c) => c.latency_ms === link.rttMs && c.users === users)!.edge_remote_share;

    const samples: Sample[] = [];
    for (let roundNo = 1; roundNo <= o.rounds; roundNo++) {
      for (const [li, link] of o.links.entries()) {
        for (const id of shuffled(o.systems, o.seed * 1000 + roundNo * 10 + li)) {
          await this.withSystem(id, link, async (sys) => {
            for (const users of o.users) {
              if (id.policy === 'oracle') await sys.setEdgeShare(shareFor(link, users));
              const r = await this.step(sys, users, o.seconds);
              for (const side of ['edge', 'cloud'] as const) samples.push({ path: id.path, policy: id.policy, latency_ms: link.rttMs, users, side, round: roundNo, result: r[side] });
              this.progress(roundNo, link, id, users, r);
              await drain(sys.stack);
            }
          });
        }
      }
    }

    const cdfs: CdfSeries[] = [];
    for (const id of o.systems) {
      for (const link of o.links) {
        for (const users of o.cdfUsers) {
          for (const side of ['edge', 'cloud'] as const) {
            const lat = pooledLatencies(samples, { path: id.path, policy: id.policy, latency_ms: link.rttMs, users, side });
            cdfs.push({ path: id.path, latency_ms: link.rttMs, users, side, policy: id.policy, points: cdfPoints(lat) });
          }
        }
      }
    }
    return { rows: aggregate(samples), oracle, cdfs, minutes: round((performance.now() - this.startedAt) / 60_000, 1) };
  }
}
