// xDS fan-out: N simulated gateways (raw ADS streams in this process) subscribed to M
// revisions; one endpoint changes; how long until every gateway has ACKed the new
// assignment, and what the server (its own process) spends in CPU and memory.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { num, table } from '../report/markdown.js';
import { lineChart } from '../report/svg.js';
import type { ScenarioContext, ScenarioOutput } from '../scenario.js';
import { round } from '../stats.js';
import { SimulatedGateway } from './gateway.js';
import type { ServerCommand, ServerReply, ServerStats } from './protocol.js';

const SERVER = fileURLToPath(new URL('./server-process.js', import.meta.url));

export interface XdsRow {
  readonly gateways: number;
  readonly revisions: number;
  /** Median over the changes: endpoint change → last gateway's ACK of the new assignment. */
  readonly converge_ms: number;
  /** Server resident memory with every gateway connected and synced. */
  readonly rss_mb: number;
}

interface XdsDetail extends XdsRow {
  readonly sync_ms: number;
  readonly converge_all_ms: readonly number[];
  readonly cpu_ms_per_change: number;
  readonly idle_rss_mb: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The xDS server in a child process, one command at a time. */
class ServerProcess {
  private readonly child: ChildProcess;
  private waiting: ((r: ServerReply) => void) | undefined;

  constructor() {
    this.child = fork(SERVER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (r: ServerReply) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.(r);
    });
  }

  ask(cmd: ServerCommand): Promise<ServerReply> {
    return new Promise((resolve, reject) => {
      this.waiting = (r) => (r.kind === 'error' ? reject(new Error(`xDS server: ${r.error}`)) : resolve(r));
      this.child.send(cmd);
    });
  }

  async stats(): Promise<ServerStats> {
    const r = await this.ask({ kind: 'stats' });
    if (r.kind !== 'stats') throw new Error(`xDS server: expected stats, got ${r.kind}`);
    return r;
  }

  async close(): Promise<void> {
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
}

async function until(what: string, ok: () => boolean, timeoutMs: number): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!ok()) {
    if (performance.now() > end) throw new Error(`xds bench: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

async function measure(gateways: number, revisions: number, changes: number, log: (l: string) => void): Promise<XdsDetail> {
  const server = new ServerProcess();
  const clients: SimulatedGateway[] = [];
  try {
    const started = await server.ask({ kind: 'start', revisions });
    if (started.kind !== 'started') throw new Error('xDS server did not start');
    const idle = await server.stats();
    const t0 = performance.now();
    for (let i = 0; i < gateways; i++) {
      clients.push(new SimulatedGateway(`127.0.0.1:${started.port}`, `gateway-${i}`, `node${(i % 3) + 1}`, started.clusters, started.routes));
    }
    await until(`${gateways} gateways to sync`, () => clients.every((c) => c.synced) || clients.some((c) => c.failed !== undefined), 300_000);
    const failed = clients.find((c) => c.failed);
    if (failed) throw new Error(`a gateway's stream failed: ${failed.failed!.message}`);
    // Synced means every type arrived once; wait for the pushes to settle.
    await until('the initial pushes to settle', () => performance.now() - Math.max(...clients.map((c) => c.lastResponseAt)) > 500, 300_000);
    const syncMs = Math.max(...clients.map((c) => c.lastResponseAt)) - t0;
    const converge: number[] = [];
    let cpuMs = 0;
    for (let k = 0; k < changes; k++) {
      const before = clients.map((c) => c.edsAcks());
      const cpu0 = (await server.stats()).cpuMs;
      const start = performance.now();
      await server.ask({ kind: 'change', seq: k });
      await until('every gateway to ACK the change', () => clients.every((c, i) => c.edsAcks() > before[i]!), 30_000);
      converge.push(Math.max(...clients.map((c) => c.lastEdsAckAt)) - start);
      cpuMs += (await server.stats()).cpuMs - cpu0;
      await sleep(200);
    }
    const mem = await server.stats();
    const median = [...converge].sort((a, b) => a - b)[Math.floor(converge.length / 2)]!;
    log(`[xds] ${gateways} gateways × ${revisions} revisions: synced in ${syncMs.toFixed(0)} ms, change → all ACKed in ${converge.map((c) => c.toFixed(1)).join(', ')} ms, server RSS ${mem.rssMb.toFixed(0)} MB (idle ${idle.rssMb.toFixed(0)} MB)`);
    return {
      gateways,
      revisions,
      converge_ms: round(median, 2),
      rss_mb: round(mem.rssMb, 1),
      sync_ms: round(syncMs, 0),
      converge_all_ms: converge.map((c) => round(c, 2)),
      cpu_ms_per_change: round(cpuMs / changes, 2),
      idle_rss_mb: round(idle.rssMb, 1),
    };
  } finally {
    for (const c of clients) c.close();
    await server.close();
  }
}

export async function runXds(ctx: ScenarioContext): Promise<ScenarioOutput> {
  const gateways = ctx.args.gateways ?? (ctx.args.quick ? [10, 100] : [10, 100, 1000]);
  const revisions = ctx.args.revisions ?? (ctx.args.quick ? [10, 100] : [10, 100, 1000]);
  const changes = ctx.args.quick ? 3 : 5;
  const details: XdsDetail[] = [];
  for (const m of revisions) for (const n of gateways) details.push(await measure(n, m, changes, ctx.log));
  const rows: XdsRow[] = details.map(({ gateways: g, revisions: r, converge_ms, rss_mb }) => ({ gateways: g, revisions: r, converge_ms, rss_mb }));
  return { rows, markdown: xdsMarkdown(details, changes), charts: { growth: xdsChart(details) } };
}

function xdsMarkdown(d: readonly XdsDetail[], changes: number): string {
  const out: string[] = [];
  out.push('## xDS fan-out\n');
  out.push(
    `Simulated gateways: raw state-of-the-world ADS streams in one process, each its own connection, subscribed like a ` +
    `Kourier gateway (CDS, EDS per revision, LDS, RDS) and ACKing every response; gateways spread over three nodes' views. ` +
    `The xDS server runs alone in its own process. One endpoint's readiness flips ${changes} times; ` +
    `"converge" = the flip → the last gateway's ACK of the new assignment (median, all runs listed); ` +
    `"RSS" = the server's resident memory with every gateway synced.\n`,
  );
  out.push(table(
    ['gateways', 'revisions', 'converge ms (median)', 'every change, ms', 'server CPU ms per change', 'initial sync ms', 'RSS MB', 'RSS idle MB'],
    d.map((x) => [x.gateways, x.revisions, num(x.converge_ms, 1), x.converge_all_ms.map((c) => c.toFixed(0)).join(', '), num(x.cpu_ms_per_change, 1), x.sync_ms, num(x.rss_mb, 0), num(x.idle_rss_mb, 0)]),
  ));
  const ns = [...new Set(d.map((x) => x.gateways))].sort((a, b) => a - b);
  const ms = [...new Set(d.map((x) => x.revisions))].sort((a, b) => a - b);
  if (ns.length > 1 && ms.length > 1) {
    const at = (n: number, m: number) => d.find((x) => x.gateways === n && x.revisions === m);
    const lo = ns[0]!;
    const hi = ns.at(-1)!;
    out.push(`\nGrowth from ${lo} to ${hi} gateways (×${hi / lo}):\n`);
    out.push(table(['revisions', 'converge', 'RSS above idle'], ms.map((m) => {
      const a = at(lo, m);
      const b = at(hi, m);
      const g = (x?: number, y?: number) => (x && y ? `×${(y / x).toFixed(1)}` : '–');
      return [m, g(a?.converge_ms, b?.converge_ms), g(a && Math.max(1, a.rss_mb - a.idle_rss_mb), b && Math.max(1, b.rss_mb - b.idle_rss_mb))];
    })));
  }
  return out.join('\n');
}

function xdsChart(d: readonly XdsDetail[]): string {
  const ms = [...new Set(d.map((x) => x.revisions))].sort((a, b) => a - b);
  const series = (f: (x: XdsDetail) => number) => ms.map((m) => ({
    name: `${m} revisions`,
    points: d.filter((x) => x.revisions === m).sort((a, b) => a.gateways - b.gateways).map((x) => [x.gateways, f(x)] as const),
  }));
  return lineChart({
    title: 'xDS fan-out: one endpoint change to N gateways',
    panels: [
      { title: 'change → every gateway ACKed (ms)', series: series((x) => x.converge_ms) },
      { title: 'server RSS with every gateway synced (MB)', series: series((x) => x.rss_mb) },
    ],
    xLabel: 'gateways (log)',
    yLabel: '',
    logX: true,
    columns: 2,
  });
}
