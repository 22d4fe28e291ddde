// The paper scenario's settings (full and --quick), its report and its chart.
import { UsageError } from '../cli.js';
import { LoadGenerator } from '../load/client.js';
import { num, pct, ratio, table } from '../report/markdown.js';
import { lineChart } from '../report/svg.js';
import type { ScenarioContext, ScenarioOutput } from '../scenario.js';
import { PAPER_POLICIES, PaperBench, type LinkSetting, type PaperOptions, type PaperResult, type PaperRow } from './scenario.js';

/** The paper's jitter for its three round trips; other round trips get a fifth of theirs. */
const PAPER_JITTER: Record<number, number> = { 50: 10, 70: 10, 100: 20 };

export const EDGE_CAPACITY = 1;
export const CLOUD_CAPACITY = 3;

export function paperOptions(ctx: ScenarioContext): PaperOptions {
  const { args } = ctx;
  const rtts = args.latencies ?? (args.quick ? [50] : [50, 70, 100]);
  const links: LinkSetting[] = rtts.map((r) => ({ rttMs: r, jitterMs: PAPER_JITTER[r] ?? r / 5 }));
  const users = args.users ?? (args.quick ? [10, 50] : [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]);
  const policies = args.policies ?? [...PAPER_POLICIES];
  for (const p of policies) {
    if (!(PAPER_POLICIES as readonly string[]).includes(p)) throw new UsageError(`--policies: unknown policy ${JSON.stringify(p)}: expected some of ${PAPER_POLICIES.join(', ')}`);
  }
  const seconds = args.seconds ?? (args.quick ? 2 : 4);
  return {
    links,
    users,
    seconds,
    probeSeconds: Math.min(2, seconds),
    policies,
    edgeCapacity: EDGE_CAPACITY,
    cloudCapacity: CLOUD_CAPACITY,
    userRate: 10,
    timeoutSeconds: 1.5,
    cdfUsers: [...new Set([users.includes(10) ? 10 : users[0]!, users.at(-1)!])],
    seed: 42,
    log: ctx.log,
  };
}

export async function runPaper(ctx: ScenarioContext): Promise<ScenarioOutput> {
  const o = paperOptions(ctx);
  ctx.log(`[paper] ${o.links.map((l) => `${l.rttMs}±${l.jitterMs} ms`).join(', ')} · users ${o.users.join(',')} per side · ${o.seconds} s per step · policies ${o.policies.join(', ')}`);
  const load = new LoadGenerator();
  let result: PaperResult;
  try {
    result = await new PaperBench(o, load).run();
  } finally {
    await load.close();
  }
  return { rows: result.rows, markdown: paperMarkdown(o, result), charts: { cdf: paperChart(o, result) } };
}

function find(rows: readonly PaperRow[], policy: string, latency: number, users: number, side: string): PaperRow | undefined {
  return rows.find((r) => r.policy === policy && r.latency_ms === latency && r.users === users && r.side === side);
}

const done = (r: PaperRow | undefined) => (r && r.offered > 0 ? pct(r.completed / r.offered, 1) : '–');

export function paperMarkdown(o: PaperOptions, res: PaperResult): string {
  const { rows } = res;
  const hasOracle = o.policies.includes('oracle');
  const headlineUsers = [...new Set([o.users.includes(10) ? 10 : o.users[0]!, o.users.includes(50) ? 50 : o.users.at(-1)!])];
  const out: string[] = [];
  out.push(`## Paper scenario: ${o.links.map((l) => `${l.rttMs} ± ${l.jitterMs} ms`).join(', ')} edge ↔ cloud\n`);
  out.push(
    `Edge pod ${o.edgeCapacity} request in parallel, cloud pods ${o.cloudCapacity} each, 3–5 ms per request; ` +
    `users ${o.users.join(', ')} per side, ${o.userRate} requests/s each (open loop), ${o.seconds} s per step; ` +
    `a request unanswered after ${o.timeoutSeconds} s counts as an error. Latencies of answered requests; ` +
    `"done" = answered with 2xx / offered; "local" = served on the node the request arrived at.\n`,
  );
  out.push(`### Headline: requests from the edge, median and p99${hasOracle ? ' as a ratio to the oracle' : ''}\n`);
  const head: (string | number)[][] = [];
  for (const l of o.links) {
    for (const u of headlineUsers) {
      const orc = find(rows, 'oracle', l.rttMs, u, 'edge');
      for (const p of o.policies) {
        const r = find(rows, p, l.rttMs, u, 'edge');
        head.push([`${l.rttMs} ms`, u, p, num(r?.p50_ms), ratio(r?.p50_ms, orc?.p50_ms), num(r?.p99_ms), ratio(r?.p99_ms, orc?.p99_ms), done(r), pct(r?.local_share)]);
      }
    }
  }
  out.push(table(['RTT', 'users', 'policy', 'p50 ms', 'p50 / oracle', 'p99 ms', 'p99 / oracle', 'done', 'local'], head, ['l', 'r', 'l']));
  if (hasOracle) {
    for (const side of ['edge', 'cloud'] as const) {
      out.push(`\n### ${side === 'edge' ? 'Edge' : 'Cloud'} side at every step: p50 / oracle's p50 (p99 / oracle's p99)\n`);
      for (const l of o.links) {
        const body = o.policies.filter((p) => p !== 'oracle').map((p) => [p, ...o.users.map((u) => {
          const r = find(rows, p, l.rttMs, u, side);
          const orc = find(rows, 'oracle', l.rttMs, u, side);
          return `${ratio(r?.p50_ms, orc?.p50_ms)} (${ratio(r?.p99_ms, orc?.p99_ms)})`;
        })]);
        out.push(`\n${l.rttMs} ms:\n\n` + table(['policy', ...o.users.map((u) => `${u} users`)], body, ['l']));
      }
    }
    out.push('\n### The oracle\'s split: share of the edge\'s requests sent to the cloud\n');
    out.push(table(['RTT', 'users', 'edge → cloud', 'probed (mean ms of all requests)'], res.oracle.map((c) => [
      `${c.latency_ms} ms`, c.users, pct(c.edge_remote_share), c.probes.map((p) => `${pct(p.share)}: ${p.mean_ms}`).join(', '),
    ]), ['l', 'r', 'r', 'l']));
  }
  out.push('\n### Every step\n');
  for (const l of o.links) {
    const body: (string | number)[][] = [];
    for (const u of o.users) {
      for (const side of ['edge', 'cloud'] as const) {
        for (const p of o.policies) {
          const r = find(rows, p, l.rttMs, u, side);
          if (r) body.push([u, side, p, num(r.p50_ms), num(r.p90_ms), num(r.p99_ms), r.offered, r.completed, r.errors, pct(r.local_share)]);
        }
      }
    }
    out.push(`\n${l.rttMs} ± ${l.jitterMs} ms:\n\n` + table(['users', 'side', 'policy', 'p50 ms', 'p90 ms', 'p99 ms', 'offered', 'completed', 'errors', 'local'], body, ['r', 'l', 'l']));
  }
  return out.join('\n');
}

export function paperChart(o: PaperOptions, res: PaperResult): string {
  const panels = o.links.flatMap((l) => o.cdfUsers.map((u) => ({
    title: `from the edge, ${l.rttMs} ms RTT, ${u} users per side`,
    series: o.policies.map((p) => ({ name: p, points: res.cdfs.find((c) => c.latency_ms === l.rttMs && c.users === u && c.policy === p)?.points ?? [] })),
  })));
  return lineChart({
    title: 'Latency CDF of requests from the edge (answered requests)',
    panels,
    xLabel: 'latency, ms (log)',
    yLabel: 'fraction of requests',
    logX: true,
    yRange: [0, 1],
    columns: Math.max(1, o.cdfUsers.length),
  });
}
