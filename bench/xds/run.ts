// xDS fan-out: N simulated gateways (ADS streams in this process, gateway.ts) subscribed to M
// revisions; one endpoint changes; how long until every gateway has ACKed the new
// assignment, and what the server (its own process) spends in CPU and memory. chikai's
// server and go-control-plane's (the peer, serving the very resources chikai builds) take
// the same gateways and the same changes in the same run.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { num, ratio, table } from '../report/markdown.js';
import { lineChart } from '../report/svg.js';
import type { ScenarioContext, ScenarioOutput } from '../scenario.js';
import { round } from '../stats.js';
import { SimulatedGateway } from './gateway.js';
import { gatewayNode, benchModel } from './model.js';
import { writePeerResources } from './peer-resources.js';
import { procStats } from '../proc.js';
import { runLoadReports, type LoadReportRow } from './loadreports/run.js';
import { goControlPlaneBinary, startChikai, startGoControlPlane, type ServerName, type ServerUnderTest } from './servers.js';

export interface XdsRow {
  readonly server: ServerName;
  readonly gateways: number;
  readonly revisions: number;
  /** Median over the changes: endpoint change → last gateway's ACK of the new assignment. */
  readonly converge_ms: number;
  readonly converge_all_ms: readonly number[];
  /** Server CPU (user + system) per change, ms. */
  readonly cpu_ms_per_change: number;
  /** Assignments each gateway received per change (1: only the changed one). */
  readonly eds_resources_per_change: number;
  /** First request → every gateway has every type and the pushes settled. */
  readonly sync_ms: number;
  readonly sync_cpu_ms: number;
  /** CPU of the simulated gateways' process (this one, every thread) over the same sync. */
  readonly gateways_sync_cpu_ms: number;
  /** Server resident memory with every gateway connected and synced. */
  readonly rss_mb: number;
  /** Largest resident memory seen while the gateways synced. */
  readonly peak_rss_mb: number;
  readonly idle_rss_mb: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, timeoutMs: number, onTick?: () => void): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!ok()) {
    if (performance.now() > end) throw new Error(`xds bench: timed out after ${timeoutMs} ms waiting for ${what}`);
    onTick?.();
    await sleep(2);
  }
}

async function measure(server: ServerUnderTest, gateways: number, revisions: number, changes: number, log: (l: string) => void): Promise<XdsRow> {
  const { clusters, routes } = benchModel(revisions);
  const clients: SimulatedGateway[] = [];
  try {
    await sleep(500);
    const idle = procStats(server.pid);
    let peak = idle.rssMb;
    let lastSample = 0;
    const sample = () => {
      const now = performance.now();
      if (now - lastSample < 50) return;
      lastSample = now;
      peak = Math.max(peak, procStats(server.pid).rssMb);
    };
    const t0 = performance.now();
    const gatewaysCpu0 = process.cpuUsage();
    for (let i = 0; i < gateways; i++) {
      clients.push(new SimulatedGateway(`127.0.0.1:${server.port}`, `gateway-${i}`, gatewayNode(i), clusters, routes));
    }
    await until(`${gateways} gateways to sync`, () => clients.every((c) => c.synced) || clients.some((c) => c.failed !== undefined), 600_000, sample);
    const failed = clients.find((c) => c.failed);
    if (failed) throw new Error(`a gateway's stream to ${server.name} failed: ${failed.failed!.message}`);
    // Synced means every type arrived once; wait for the pushes to settle.
    await until('the initial pushes to settle', () => performance.now() - Math.max(...clients.map((c) => c.lastResponseAt)) > 500, 600_000, sample);
    const syncMs = Math.max(...clients.map((c) => c.lastResponseAt)) - t0;
    const syncCpu = procStats(server.pid).cpuMs - idle.cpuMs;
    const gatewaysCpu = process.cpuUsage(gatewaysCpu0);
    const gatewaysSyncCpu = (gatewaysCpu.user + gatewaysCpu.system) / 1000;
    const syncBytes = clients.reduce((sum, c) => sum + c.bytes, 0);
    const synced = procStats(server.pid);
    const converge: number[] = [];
    let cpuMs = 0;
    let edsResources = 0;
    for (let k = 0; k < changes; k++) {
      const before = clients.map((c) => c.edsAcks());
      const resourcesBefore = clients.reduce((s, c) => s + c.edsResources, 0);
      const cpu0 = procStats(server.pid).cpuMs;
      const start = performance.now();
      await server.change(k);
      await until('every gateway to ACK the change', () => clients.every((c, i) => c.edsAcks() > before[i]!), 120_000);
      converge.push(Math.max(...clients.map((c) => c.lastEdsAckAt)) - start);
      // Let the server finish what the last ACKs cost it before reading its CPU time.
      await sleep(200);
      cpuMs += procStats(server.pid).cpuMs - cpu0;
      edsResources += clients.reduce((s, c) => s + c.edsResources, 0) - resourcesBefore;
    }
    const median = [...converge].sort((a, b) => a - b)[Math.floor(converge.length / 2)]!;
    log(`[xds] ${server.name}: ${gateways} gateways × ${revisions} revisions: synced in ${syncMs.toFixed(0)} ms (${(syncBytes / 1e6).toFixed(0)} MB received; CPU: server ${syncCpu.toFixed(0)} ms, gateways ${gatewaysSyncCpu.toFixed(0)} ms; peak RSS ${peak.toFixed(0)} MB), change → all ACKed in ${converge.map((c) => c.toFixed(1)).join(', ')} ms, CPU ${(cpuMs / changes).toFixed(0)} ms per change, RSS ${synced.rssMb.toFixed(0)} MB (idle ${idle.rssMb.toFixed(0)} MB)`);
    return {
      server: server.name,
      gateways,
      revisions,
      converge_ms: round(median, 2),
      converge_all_ms: converge.map((c) => round(c, 2)),
      cpu_ms_per_change: round(cpuMs / changes, 1),
      eds_resources_per_change: round(edsResources / changes / gateways, 1),
      sync_ms: round(syncMs, 0),
      sync_cpu_ms: round(syncCpu, 0),
      gateways_sync_cpu_ms: round(gatewaysSyncCpu, 0),
      rss_mb: round(synced.rssMb, 1),
      peak_rss_mb: round(peak, 1),
      idle_rss_mb: round(idle.rssMb, 1),
    };
  } finally {
    for (const c of clients) c.close();
    await server.close();
  }
}

export async function runXds(ctx: ScenarioContext): Promise<ScenarioOutput> {
  const parts = ctx.args.parts ?? ['fanout', 'loadreports'];
  const rows: (XdsRow | (LoadReportRow & { readonly part: 'loadreports' }))[] = [];
  const markdown: string[] = [];
  const charts: Record<string, string> = {};
  if (parts.includes('fanout')) {
    const fanout = await runFanout(ctx);
    rows.push(...fanout.rows);
    markdown.push(fanout.markdown);
    charts.growth = xdsChart(fanout.rows);
  }
  if (parts.includes('loadreports')) {
    const lr = await runLoadReports(ctx.args.quick ? 200 : 1000, ctx.args.quick ? 5 : 10, ctx.log);
    rows.push(...lr.rows.map((r) => ({ part: 'loadreports' as const, ...r })));
    markdown.push(lr.markdown);
  }
  return { rows, markdown: markdown.join('\n'), charts };
}

async function runFanout(ctx: ScenarioContext): Promise<{ rows: XdsRow[]; markdown: string }> {
  const gateways = ctx.args.gateways ?? (ctx.args.quick ? [10, 100] : [10, 100, 1000]);
  const revisions = ctx.args.revisions ?? (ctx.args.quick ? [10, 100] : [10, 100, 1000]);
  const changes = ctx.args.quick ? 3 : 5;
  const wanted = ctx.args.servers ?? ['chikai', 'go-control-plane'];
  const binary = wanted.includes('go-control-plane') ? await goControlPlaneBinary(ctx.log) : undefined;
  // CHIKAI_BENCH_BASELINE=<another build's dist/bench/xds/server-process.js>: chikai before a change, in the same run.
  const baseline = process.env['CHIKAI_BENCH_BASELINE'];
  const rows: XdsRow[] = [];
  for (const m of revisions) {
    let dir: string | undefined;
    try {
      if (binary) {
        dir = mkdtempSync(join(tmpdir(), 'chikai-xds-peer-'));
        writePeerResources(m, dir);
      }
      for (const n of gateways) {
        if (wanted.includes('chikai')) rows.push(await measure(await startChikai(m), n, m, changes, ctx.log));
        if (baseline) rows.push(await measure(await startChikai(m, baseline), n, m, changes, ctx.log));
        if (binary && dir) rows.push(await measure(await startGoControlPlane(binary, dir), n, m, changes, ctx.log));
      }
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }
  return { rows, markdown: xdsMarkdown(rows, changes, binary !== undefined) };
}

function xdsMarkdown(rows: readonly XdsRow[], changes: number, withPeer: boolean): string {
  const out: string[] = [];
  out.push('## xDS fan-out\n');
  out.push(
    `Simulated gateways: state-of-the-world ADS streams in one process, each a gRPC call over its own HTTP/2 connection (node:http2, Envoy's 256 MiB windows), ` +
    `subscribed like a Kourier gateway (CDS, EDS per revision, LDS, RDS) and ACKing every response with its version and nonce; ` +
    `each receives every byte but reads only a response's head as it streams in, skipping the resources undecoded; gateways spread over three nodes' views. ` +
    `Each xDS server runs alone in its own process${withPeer ? ': chikai\'s, then go-control-plane\'s (its snapshot cache in ADS mode, one snapshot per view, serving the resources chikai builds, only the EDS version moving on a change)' : ''}` +
    `${rows.some((r) => r.server === 'chikai-baseline') ? '; chikai-baseline is an earlier build of chikai (CHIKAI_BENCH_BASELINE)' : ''}. ` +
    `One endpoint's readiness flips ${changes} times; "converge" = the flip → the last gateway's ACK of the new assignment (median, all runs listed); ` +
    `CPU and RSS of the server process from /proc; "RSS" with every gateway synced, "peak" while they synced; ` +
    `"EDS per change" = assignments each gateway received per change; "sync CPU" = CPU of the server process and of the simulated gateways' process (every thread) over the initial sync.\n`,
  );
  const peer = (r: XdsRow) => rows.find((x) => x.server === 'go-control-plane' && x.gateways === r.gateways && x.revisions === r.revisions);
  out.push(table(
    ['gateways', 'revisions', 'server', 'converge ms (median)', '× go-control-plane', 'every change, ms', 'CPU ms per change', '× go-control-plane', 'EDS per change', 'initial sync ms', '× go-control-plane', 'sync CPU ms: server', 'gateways', 'RSS MB', '× go-control-plane', 'peak RSS MB', 'RSS idle MB'],
    rows.map((r) => {
      const p = r.server !== 'go-control-plane' ? peer(r) : undefined;
      return [
        r.gateways, r.revisions, r.server, num(r.converge_ms, 1), p ? ratio(r.converge_ms, p.converge_ms) : '', r.converge_all_ms.map((c) => c.toFixed(0)).join(', '),
        num(r.cpu_ms_per_change, 0), p ? ratio(r.cpu_ms_per_change, p.cpu_ms_per_change) : '', num(r.eds_resources_per_change, 0),
        r.sync_ms, p ? ratio(r.sync_ms, p.sync_ms) : '', r.sync_cpu_ms, r.gateways_sync_cpu_ms, num(r.rss_mb, 0), p ? ratio(r.rss_mb, p.rss_mb) : '', num(r.peak_rss_mb, 0), num(r.idle_rss_mb, 0),
      ];
    }),
    ['r', 'r', 'l'],
  ));
  return out.join('\n');
}

function xdsChart(rows: readonly XdsRow[]): string {
  const servers = [...new Set(rows.map((x) => x.server))];
  const ms = [...new Set(rows.map((x) => x.revisions))].sort((a, b) => a - b);
  const series = (f: (x: XdsRow) => number) => servers.flatMap((s) => ms.map((m) => ({
    name: `${s}, ${m} revisions`,
    points: rows.filter((x) => x.server === s && x.revisions === m).sort((a, b) => a.gateways - b.gateways).map((x) => [x.gateways, f(x)] as const),
  })));
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
