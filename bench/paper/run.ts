// The paper scenario's settings (full and --quick), its report and its chart.
import { UsageError } from '../cli.js';
import { ensureEnvoy } from '../../gateway/envoy-binary.js';
import { LoadGenerator } from '../load/client.js';
import { pct, table } from '../report/markdown.js';
import { lineChart } from '../report/svg.js';
import type { ScenarioContext, ScenarioOutput } from '../scenario.js';
import { compareIntervals, roundRatio, type PaperRow, type Side } from './aggregate.js';
import { PaperBench, expectedSeconds, type LinkSetting, type PaperOptions, type PaperResult } from './scenario.js';
import { GATEWAY_POLICIES, PATHS, PROXY_POLICIES, type Path, type SystemId } from './systems.js';

/** The paper's jitter for its three round trips; other round trips get a fifth of theirs. */
const PAPER_JITTER: Record<number, number> = { 50: 10, 70: 10, 100: 20 };

export const EDGE_CAPACITY = 1;
export const CLOUD_CAPACITY = 3;
/** User counts in the headline tables (those the run has). */
const HEADLINE_USERS = [10, 20, 30, 50];
const SIDES: readonly Side[] = ['edge', 'cloud'];
const PATH_TITLE: Record<Path, string> = { gateway: 'through the Envoy gateways', proxy: 'proxy only (requests straight to the node proxies)' };

function systemsOf(paths: readonly string[], policies: readonly string[] | undefined): SystemId[] {
  const known = new Set<string>([...PROXY_POLICIES, ...GATEWAY_POLICIES]);
  for (const p of policies ?? []) {
    if (!known.has(p)) throw new UsageError(`--policies: unknown policy ${JSON.stringify(p)}: expected some of ${[...known].join(', ')}`);
  }
  const out: SystemId[] = [];
  for (const path of paths) {
    if (!(PATHS as readonly string[]).includes(path)) throw new UsageError(`--paths: unknown path ${JSON.stringify(path)}: expected some of ${PATHS.join(', ')}`);
    const all: readonly string[] = path === 'gateway' ? GATEWAY_POLICIES : PROXY_POLICIES;
    for (const policy of all) if (!policies || policies.includes(policy)) out.push({ path: path as Path, policy });
  }
  if (out.length === 0) throw new UsageError(`--policies ${policies?.join(',')} with --paths ${paths.join(',')} leaves nothing to run (gateway systems: ${GATEWAY_POLICIES.join(', ')})`);
  return out;
}

export function paperOptions(ctx: ScenarioContext, envoy: string | undefined): PaperOptions {
  const { args } = ctx;
  const rtts = args.latencies ?? (args.quick ? [50] : [50, 70, 100]);
  const links: LinkSetting[] = rtts.map((r) => ({ rttMs: r, jitterMs: PAPER_JITTER[r] ?? r / 5 }));
  const users = args.users ?? (args.quick ? [10, 50] : [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]);
  const seconds = args.seconds ?? (args.quick ? 1 : 3);
  return {
    links,
    users,
    seconds,
    probeSeconds: Math.min(2, seconds),
    rounds: args.rounds ?? (args.quick ? 1 : 3),
    warmup: args.quick ? { settleMs: 1000, seconds: 1 } : { settleMs: 2000, seconds: 2 },
    systems: systemsOf(args.paths ?? PATHS, args.policies),
    edgeCapacity: EDGE_CAPACITY,
    cloudCapacity: CLOUD_CAPACITY,
    userRate: 10,
    timeoutSeconds: 1.5,
    cdfUsers: [...new Set([users.includes(10) ? 10 : users[0]!, users.at(-1)!])],
    seed: 42,
    envoy,
    log: ctx.log,
  };
}

export async function runPaper(ctx: ScenarioContext): Promise<ScenarioOutput> {
  const wantsGateways = systemsOf(ctx.args.paths ?? PATHS, ctx.args.policies).some((s) => s.path === 'gateway');
  const envoy = wantsGateways ? (await ensureEnvoy({ log: ctx.log })).path : undefined;
  const o = paperOptions(ctx, envoy);
  const expected = expectedSeconds(o);
  ctx.log(`[paper] ${o.links.map((l) => `${l.rttMs}±${l.jitterMs} ms`).join(', ')} · users ${o.users.join(',')} per side · ${o.seconds} s per step · ${o.rounds} round${o.rounds > 1 ? 's' : ''} · systems ${o.systems.map((s) => `${s.path}/${s.policy}`).join(', ')}`);
  ctx.log(`[paper] expected duration: about ${Math.round(expected / 60)} min${envoy ? ` (Envoy: ${envoy})` : ''}`);
  const load = new LoadGenerator();
  let result: PaperResult;
  try {
    result = await new PaperBench(o, load).run();
  } finally {
    await load.close();
  }
  ctx.log(`[paper] took ${result.minutes} min`);
  const { log: _log, envoy: _envoy, ...settings } = o;
  return { rows: result.rows, detail: { settings, oracle: result.oracle, minutes: result.minutes }, markdown: paperMarkdown(o, result), charts: { cdf: paperChart(o, result) } };
}

type Lookup = (path: Path, policy: string, latency: number, users: number, side: Side) => PaperRow | undefined;

function lookup(rows: readonly PaperRow[]): Lookup {
  const m = new Map(rows.map((r) => [`${r.path}|${r.policy}|${r.latency_ms}|${r.users}|${r.side}`, r]));
  return (path, policy, latency, users, side) => m.get(`${path}|${policy}|${latency}|${users}|${side}`);
}

const f = (x: number | null | undefined, d = 1) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(d));
/** A value with the rounds' range: `6.3 (6.1–6.6)`; just the value with one round. */
const withRange = (v: number | null | undefined, lo: number | null | undefined, hi: number | null | undefined, d = 1, unit = '') =>
  v === null || v === undefined ? '–' : lo === hi || lo === null || hi === null || lo === undefined || hi === undefined ? `${f(v, d)}${unit}` : `${f(v, d)}${unit} (${f(lo, d)}–${f(hi, d)})`;
const ms = (r: PaperRow | undefined, p: 50 | 99) => (r ? withRange(p === 50 ? r.p50_ms : r.p99_ms, p === 50 ? r.p50_lo : r.p99_lo, p === 50 ? r.p50_hi : r.p99_hi) : '–');
const vsOracle = (r: PaperRow | undefined, p: 50 | 99) =>
  r ? withRange(p === 50 ? r.p50_vs_oracle : r.p99_vs_oracle, p === 50 ? r.p50_vs_oracle_lo : r.p99_vs_oracle_lo, p === 50 ? r.p50_vs_oracle_hi : r.p99_vs_oracle_hi, 2, '×') : '–';
const doneOf = (r: PaperRow | undefined) => (r && r.offered > 0 ? `${pct(r.completed / r.offered, 1)}${r.done_lo !== r.done_hi ? ` (${pct(r.done_lo, 1)}–${pct(r.done_hi, 1)})` : ''}` : '–');
const localOf = (r: PaperRow | undefined) => (r ? pct(r.local_share) : '–');

const interval = (r: PaperRow, p: 50 | 99) => (p === 50 ? { lo: r.p50_lo, hi: r.p50_hi } : { lo: r.p99_lo, hi: r.p99_hi });

/** chikai against every other system of its path at one step and side: whom it beats and whom it loses to beyond the rounds' spread. */
export function verdict(rows: readonly PaperRow[], path: Path, latency: number, users: number, side: Side, p: 50 | 99): { wins: string[]; loses: string[] } {
  const get = lookup(rows);
  const me = get(path, 'chikai', latency, users, side);
  const out = { wins: [] as string[], loses: [] as string[] };
  if (!me) return out;
  for (const r of rows) {
    if (r.path !== path || r.latency_ms !== latency || r.users !== users || r.side !== side || r.policy === 'chikai') continue;
    const c = compareIntervals(interval(me, p), interval(r, p));
    if (c === 'lower') out.wins.push(r.policy);
    if (c === 'higher') out.loses.push(r.policy);
  }
  return out;
}

/** chikai's row at every step and side of a path, edge before cloud. */
function* chikaiSteps(o: Pick<PaperOptions, 'links' | 'users'>, get: Lookup, path: Path): Generator<{ l: LinkSetting; u: number; side: Side; me: PaperRow }> {
  for (const l of o.links) {
    for (const u of o.users) {
      for (const side of SIDES) {
        const me = get(path, 'chikai', l.rttMs, u, side);
        if (me) yield { l, u, side, me };
      }
    }
  }
}

const ratioCell = (x: { value: number | null; lo: number | null; hi: number | null }) => withRange(x.value, x.lo, x.hi, 2, '×');

/**
 * The headline: chikai's p50 and p99 at every step and side, and chikai's over every other
 * system's of the same path, per round (median, in brackets the rounds' extremes). Below
 * 1× chikai is faster; edge and cloud rows alternate so both sides weigh the same.
 */
export function chikaiAgainstEveryone(o: Pick<PaperOptions, 'links' | 'users' | 'systems' | 'rounds'>, rows: readonly PaperRow[], path: Path): string {
  const get = lookup(rows);
  const others = o.systems.filter((s) => s.path === path && s.policy !== 'chikai').map((s) => s.policy).sort((a, b) => (a === 'oracle' ? -1 : b === 'oracle' ? 1 : 0));
  const out: string[] = [`### Headline, ${PATH_TITLE[path]}: chikai over the oracle and every baseline, per step\n`];
  out.push(`chikai's latency, then chikai's ÷ each system's, per round against the same round (median of the ${o.rounds} rounds, in brackets the lowest and highest). Below 1.00× chikai is faster.\n`);
  for (const p of [50, 99] as const) {
    const body: string[][] = [];
    for (const { l, u, side, me } of chikaiSteps(o, get, path)) {
      const cells = others.map((x) => {
        const r = get(path, x, l.rttMs, u, side);
        return r ? ratioCell(roundRatio(me, r, p)) : '–';
      });
      body.push([`${l.rttMs} ms`, String(u), side, ms(me, p), ...cells, doneOf(me)]);
    }
    out.push(`\np${p}:\n\n` + table(['RTT', 'users', 'side', `chikai p${p} ms`, ...others.map((x) => `÷ ${x}`), 'chikai done'], body, ['l', 'r', 'l']));
  }
  return out.join('\n');
}

export function paperMarkdown(o: PaperOptions, res: PaperResult): string {
  const { rows } = res;
  const get = lookup(rows);
  const paths = PATHS.filter((p) => o.systems.some((s) => s.path === p));
  const policiesOf = (path: Path) => o.systems.filter((s) => s.path === path).map((s) => s.policy);
  const headlineUsers = HEADLINE_USERS.filter((u) => o.users.includes(u));
  const hlUsers = headlineUsers.length > 0 ? headlineUsers : [o.users[0]!, o.users.at(-1)!];
  const out: string[] = [];
  out.push(`## Paper scenario: ${o.links.map((l) => `${l.rttMs} ± ${l.jitterMs} ms`).join(', ')} edge ↔ cloud\n`);
  out.push(
    `Edge pod ${o.edgeCapacity} request in parallel, cloud pods ${o.cloudCapacity} each, 3–5 ms per request; ` +
    `users ${o.users.join(', ')} per side, ${o.userRate} requests/s each (open loop), ${o.seconds} s per step, ` +
    `${o.rounds} round${o.rounds > 1 ? 's' : ''} (every system at every step once per round, systems in a shuffled order, a fresh stack each); ` +
    `a request unanswered after ${o.timeoutSeconds} s counts as an error. Latencies of answered requests, all rounds pooled; ` +
    `in brackets the lowest and highest single round. Ratios are taken per round against the oracle of the same round: their median, in brackets the lowest and highest. ` +
    `"done" = answered with 2xx / offered; "local" = served by a pod on the node where the request arrived (from the pod named in each answer). ` +
    `The oracle's split was selected on a separate measurement before the rounds (below), so its rows are not the best of many noisy probes. ` +
    `Run took ${res.minutes} min.\n`,
  );
  for (const path of paths.filter((p) => policiesOf(p).includes('chikai'))) out.push(chikaiAgainstEveryone(o, rows, path));
  for (const path of paths) {
    out.push(`### Every system, ${PATH_TITLE[path]}: p50 and p99 with the oracle's ratio\n`);
    for (const side of SIDES) {
      const body: string[][] = [];
      for (const l of o.links) {
        for (const u of hlUsers) {
          for (const p of policiesOf(path)) {
            const r = get(path, p, l.rttMs, u, side);
            body.push([`${l.rttMs} ms`, String(u), p === 'chikai' ? '**chikai**' : p, ms(r, 50), vsOracle(r, 50), ms(r, 99), vsOracle(r, 99), doneOf(r), localOf(r)]);
          }
        }
      }
      out.push(`\nRequests from the ${side}:\n\n` + table(['RTT', 'users', 'system', 'p50 ms', 'p50 / oracle', 'p99 ms', 'p99 / oracle', 'done', 'local'], body, ['l', 'r', 'l']));
    }
  }
  for (const path of paths.filter((p) => policiesOf(p).includes('chikai'))) {
    out.push(`\n### Where chikai stands, ${PATH_TITLE[path]}\n`);
    out.push('At every step and side: chikai\'s p50 and p99 against the oracle, and the systems whose every round was better (chikai loses) or worse (chikai wins) than every round of chikai\'s.\n');
    const body: string[][] = [];
    for (const { l, u, side, me: r } of chikaiSteps(o, get, path)) {
      const v50 = verdict(rows, path, l.rttMs, u, side, 50);
      const v99 = verdict(rows, path, l.rttMs, u, side, 99);
      body.push([`${l.rttMs} ms`, String(u), side, ms(r, 50), vsOracle(r, 50), v50.loses.join(', ') || '–', ms(r, 99), vsOracle(r, 99), v99.loses.join(', ') || '–', [...new Set([...v50.wins, ...v99.wins])].join(', ') || '–']);
    }
    out.push(table(['RTT', 'users', 'side', 'p50 ms', 'p50 / oracle', 'p50 worse than', 'p99 ms', 'p99 / oracle', 'p99 worse than', 'better than (p50 or p99)'], body, ['l', 'r', 'l']));
  }
  if (o.systems.some((s) => s.policy === 'oracle')) {
    for (const path of paths) {
      for (const side of SIDES) {
        for (const [p, what] of [[50, 'p50'], [99, 'p99']] as const) {
          out.push(`\n### ${PATH_TITLE[path][0]!.toUpperCase()}${PATH_TITLE[path].slice(1)}, ${side} side, every step: ${what} / oracle's ${what}\n`);
          for (const l of o.links) {
            const body = policiesOf(path).filter((x) => x !== 'oracle').map((x) => [x, ...o.users.map((u) => vsOracle(get(path, x, l.rttMs, u, side), p))]);
            out.push(`\n${l.rttMs} ms:\n\n` + table(['system', ...o.users.map((u) => `${u} users`)], body, ['l']));
          }
        }
      }
    }
    out.push('\n### The oracle\'s split, selected on its own measurement: share of the edge\'s requests sent to the cloud\n');
    out.push(table(['RTT', 'users', 'selected on', 'edge → cloud', 'probed (mean ms of all requests)'], res.oracle.map((c) => [
      `${c.latency_ms} ms`, c.users, c.selected_on, pct(c.edge_remote_share), c.probes.map((p) => `${pct(p.share)}: ${p.mean_ms}`).join(', '),
    ]), ['l', 'r', 'l', 'r', 'l']));
  }
  out.push('\n### Every step\n');
  for (const l of o.links) {
    const body: string[][] = [];
    for (const u of o.users) {
      for (const side of SIDES) {
        for (const s of o.systems) {
          const r = get(s.path, s.policy, l.rttMs, u, side);
          if (r) body.push([String(u), side, s.path, s.policy, ms(r, 50), f(r.p90_ms), ms(r, 99), String(r.offered), String(r.completed), String(r.errors), doneOf(r), `${pct(r.local_share)}${r.local_lo !== r.local_hi ? ` (${pct(r.local_lo)}–${pct(r.local_hi)})` : ''}`]);
        }
      }
    }
    out.push(`\n${l.rttMs} ± ${l.jitterMs} ms:\n\n` + table(['users', 'side', 'path', 'system', 'p50 ms', 'p90 ms', 'p99 ms', 'offered', 'completed', 'errors', 'done', 'local'], body, ['r', 'l', 'l', 'l']));
  }
  return out.join('\n');
}

export function paperChart(o: PaperOptions, res: PaperResult): string {
  const path: Path = o.systems.some((s) => s.path === 'gateway') ? 'gateway' : 'proxy';
  const policies = o.systems.filter((s) => s.path === path).map((s) => s.policy);
  const panels = o.links.flatMap((l) => o.cdfUsers.flatMap((u) => SIDES.map((side) => ({
    title: `from the ${side}, ${l.rttMs} ms RTT, ${u} users per side`,
    series: policies.map((p) => ({ name: p, points: res.cdfs.find((c) => c.path === path && c.latency_ms === l.rttMs && c.users === u && c.side === side && c.policy === p)?.points ?? [] })),
  }))));
  return lineChart({
    title: `Latency CDF, ${PATH_TITLE[path]} (answered requests, all rounds)`,
    panels,
    xLabel: 'latency, ms (log)',
    yLabel: 'fraction of requests',
    logX: true,
    yRange: [0, 1],
    columns: Math.max(1, o.cdfUsers.length * SIDES.length),
  });
}
