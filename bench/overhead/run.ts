// Proxy overhead: one backend, one load generator, and in turn nothing (direct), chikai's
// node proxy, nginx, Envoy, a plain http-proxy forwarder, a bare node:http + undici
// forwarder (chikai's platform without chikai) and chikai's own transport without its
// request path in front of it. Throughput at
// saturation (closed loop) and latency at a fixed moderate open-loop rate; every target
// is measured in interleaved rounds so a noisy neighbour hurts all of them alike.
//
// Processes: the load generator (autocannon), the backend and the forwarder under test
// each run in their own process (three processes on this machine's two cores for every
// forwarder, two for direct).
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../cli.js';
import { LoadGenerator } from '../load/client.js';
import { num, ratio, table } from '../report/markdown.js';
import { barChart } from '../report/svg.js';
import type { ScenarioContext, ScenarioOutput } from '../scenario.js';
import { percentile, round, sorted } from '../stats.js';
import { ensureNginx, startNginx } from './nginx.js';
import { startEnvoyForwarder } from './envoy.js';
import { ensureEnvoy } from '../../gateway/envoy-binary.js';
import { procStats } from '../proc.js';

const HERE = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const CHIKAI = fileURLToPath(new URL('../../bin/chikai.js', import.meta.url));
const HOST = 'hello.default.svc.cluster.local';

export const TARGETS = ['direct', 'chikai', 'nginx', 'envoy', 'http-proxy', 'node-undici', 'chikai-transport'] as const;
/** Another build of chikai measured in the same run (before/after a change): CHIKAI_BENCH_BASELINE=<its dist/bin/chikai.js>. */
const BASELINE = 'chikai-baseline';
type Target = (typeof TARGETS)[number] | typeof BASELINE;

export interface OverheadRow {
  readonly target: Target;
  /** Requests per second at saturation (median of the rounds). */
  readonly rps: number;
  /** Latency at the fixed moderate rate, ms (median of the rounds). */
  readonly p50_ms: number;
  readonly p99_ms: number;
  /** CPU the forwarder's process spent per request at saturation, µs (median of the rounds; none for direct). */
  readonly cpu_us_per_request: number | undefined;
}

interface Running {
  readonly url: string;
  /** The process that forwards (nginx: its one worker); none for direct. */
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

/** nginx's worker: the master's one child. */
function nginxWorker(master: number | undefined): number | undefined {
  if (master === undefined) return undefined;
  try {
    const children = readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    return children.length === 1 ? Number(children[0]) : undefined;
  } catch {
    return undefined;
  }
}

function cpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    return procStats(pid).cpuMs;
  } catch {
    return undefined;
  }
}

/** A child that reports its port over IPC as `{port}`. */
async function forkWithPort(file: string, args: string[] = []): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(file, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { port: number }) => resolve(m.port));
    child.once('exit', (code) => reject(new Error(`${file} exited (${code}) before listening`)));
  });
  return { child, port };
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  if (child.connected) child.disconnect();
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(timer);
}

/** chikai's proxy as a user runs it (`chikai proxy`), with a one-node cluster file whose only endpoint is the backend. */
async function startChikai(backendPort: number, cpuProfDir: string | undefined, bin = CHIKAI): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'chikai-bench-proxy-'));
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, `
nodes:
  - { name: node1, region: cloud, zone: cloud-a, address: 127.0.0.1 }
revisions:
  - { namespace: default, service: hello, name: hello-00001, containerConcurrency: 0, timeoutSeconds: 300 }
endpoints:
  - { pod: backend, revision: default/hello-00001, node: node1, address: 127.0.0.1, port: ${backendPort} }
proxy: { policy: chikai, drainSeconds: 0 }
`);
  const execArgv = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : [];
  const child = spawn(process.execPath, [...execArgv, bin, 'proxy', '--node', 'node1', '--cluster', file, '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (b: Buffer) => {
      text += b.toString();
      const m = / listening on [\d.]+:(\d+)/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`chikai proxy exited (${code}) before listening: ${text}`)));
  });
  child.stdout!.resume();
  return {
    url: `http://127.0.0.1:${port}/`,
    pid: child.pid,
    async stop() {
      // SIGINT drains (0 s here) and exits 0, which also writes the CPU profile.
      await stopChild(child, 'SIGINT');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

interface Settings {
  readonly rounds: number;
  readonly seconds: number;
  readonly saturationConnections: number;
  readonly moderateRps: number;
}

export async function runOverhead(ctx: ScenarioContext): Promise<ScenarioOutput> {
  const s: Settings = {
    rounds: ctx.args.quick ? 1 : 5,
    seconds: ctx.args.seconds ?? (ctx.args.quick ? 3 : 6),
    saturationConnections: 32,
    moderateRps: 500,
  };
  const baselineBin = process.env.CHIKAI_BENCH_BASELINE;
  const targets = (ctx.args.targets ?? [...TARGETS, ...(baselineBin ? [BASELINE] : [])]) as Target[];
  for (const t of targets) {
    if (t === BASELINE && baselineBin) continue;
    if (!(TARGETS as readonly string[]).includes(t)) throw new UsageError(`--targets: unknown target ${JSON.stringify(t)}: expected some of ${TARGETS.join(', ')}`);
  }
  const cpuProfDir = process.env.CHIKAI_BENCH_CPU_PROF;
  const nginxBinary = targets.includes('nginx') ? ensureNginx(ctx.log) : '';
  const envoyBinary = targets.includes('envoy') ? (await ensureEnvoy({ log: ctx.log })).path : '';
  const load = new LoadGenerator();
  const backend = await forkWithPort(HERE('./backend.js'));
  const direct = `http://127.0.0.1:${backend.port}/`;
  const start: Record<Target, () => Promise<Running>> = {
    direct: async () => ({ url: direct, pid: undefined, stop: async () => undefined }),
    chikai: () => startChikai(backend.port, cpuProfDir),
    [BASELINE]: () => startChikai(backend.port, undefined, baselineBin),
    nginx: async () => {
      const n = await startNginx(nginxBinary, backend.port);
      return { url: `http://127.0.0.1:${n.port}/`, pid: nginxWorker(n.pid), stop: () => n.stop() };
    },
    envoy: async () => {
      const e = await startEnvoyForwarder(envoyBinary, backend.port);
      return { url: `http://127.0.0.1:${e.port}/`, pid: e.pid, stop: () => e.stop() };
    },
    'http-proxy': async () => {
      const f = await forkWithPort(HERE('./http-proxy-forwarder.js'), [direct]);
      return { url: `http://127.0.0.1:${f.port}/`, pid: f.child.pid, stop: () => stopChild(f.child) };
    },
    'node-undici': async () => {
      const f = await forkWithPort(HERE('./node-undici-forwarder.js'), [direct]);
      return { url: `http://127.0.0.1:${f.port}/`, pid: f.child.pid, stop: () => stopChild(f.child) };
    },
    'chikai-transport': async () => {
      const f = await forkWithPort(HERE('./chikai-transport-forwarder.js'), [direct]);
      return { url: `http://127.0.0.1:${f.port}/`, pid: f.child.pid, stop: () => stopChild(f.child) };
    },
  };
  const rps = new Map<Target, number[]>(targets.map((t) => [t, []]));
  const p50 = new Map<Target, number[]>(targets.map((t) => [t, []]));
  const p99 = new Map<Target, number[]>(targets.map((t) => [t, []]));
  const cpu = new Map<Target, number[]>(targets.map((t) => [t, []]));
  const errors = new Map<Target, number>(targets.map((t) => [t, 0]));
  try {
    for (let round = 1; round <= s.rounds; round++) {
      for (const target of targets) {
        const running = await start[target]();
        try {
          await load.closed([{ name: 'warm-up', url: running.url, host: HOST, connections: s.saturationConnections, seconds: 2 }]);
          const cpuBefore = cpuMs(running.pid);
          const [sat] = await load.closed([{ name: target, url: running.url, host: HOST, connections: s.saturationConnections, seconds: s.seconds }]);
          const cpuAfter = cpuMs(running.pid);
          if (cpuBefore !== undefined && cpuAfter !== undefined && sat!.completed > 0) cpu.get(target)!.push((1000 * (cpuAfter - cpuBefore)) / sat!.completed);
          // Latency without queueing in front of the forwarder: one connection, one request
          // at a time, capped at the moderate rate (a burst of many connections would
          // measure queueing, which the saturation run already covers).
          const [mod] = await load.closed([{ name: target, url: running.url, host: HOST, connections: 1, seconds: s.seconds, overallRate: s.moderateRps }]);
          const lat = sorted(mod!.latenciesMs);
          const satRps = sat!.completed / s.seconds;
          rps.get(target)!.push(satRps);
          p50.get(target)!.push(percentile(lat, 50));
          p99.get(target)!.push(percentile(lat, 99));
          errors.set(target, errors.get(target)! + sat!.errors + mod!.errors);
          ctx.log(`[overhead round ${round}/${s.rounds}] ${target}: ${satRps.toFixed(0)} req/s at saturation (${s.saturationConnections} connections${cpu.get(target)!.length === round ? `, forwarder CPU ${cpu.get(target)!.at(-1)!.toFixed(1)} µs/request` : ''}); at ${s.moderateRps} req/s p50 ${percentile(lat, 50).toFixed(3)} ms p99 ${percentile(lat, 99).toFixed(3)} ms; errors ${sat!.errors + mod!.errors}${sat!.errors + mod!.errors > 0 ? ` ${JSON.stringify({ ...sat!.errorKinds, ...mod!.errorKinds })}` : ''}`);
        } finally {
          await running.stop();
        }
      }
    }
  } finally {
    await load.close();
    await stopChild(backend.child);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rows: OverheadRow[] = targets.map((target) => ({
    target,
    rps: round(median(rps.get(target)!), 0),
    p50_ms: round(median(p50.get(target)!), 3),
    p99_ms: round(median(p99.get(target)!), 3),
    cpu_us_per_request: cpu.get(target)!.length > 0 ? round(median(cpu.get(target)!), 1) : undefined,
  }));
  return { rows, markdown: overheadMarkdown(rows, s, errors, rps), charts: { rps: overheadChart(rows) } };
}

function overheadMarkdown(rows: readonly OverheadRow[], s: Settings, errors: Map<Target, number>, all: Map<Target, number[]>): string {
  const by = (t: Target) => rows.find((r) => r.target === t);
  const direct = by('direct');
  const nginx = by('nginx');
  const out: string[] = [];
  out.push('## Proxy overhead\n');
  out.push(
    `One backend (Node.js http, answers at once), one load generator (autocannon in its own process); in front of the ` +
    `backend in turn: nothing (direct), chikai's proxy (\`chikai proxy\`, policy chikai, one endpoint), nginx-light ` +
    `(one worker, upstream keep-alive), Envoy 1.37 (the gateways' binary, \`--concurrency 1\`, a static bootstrap: one ` +
    `listener, one route, one STATIC cluster), http-proxy (keep-alive agent), node-undici (Node's HTTP server and an ` +
    `undici Pool's \`dispatch\`, chikai's platform with no logic: \`bench/overhead/node-undici-forwarder.ts\`) and chikai-transport ` +
    `(chikai's own HTTP/1 exchange and forwarder, proxy/http1.ts and proxy/forward.ts, with none of the request path's steps: ` +
    `\`bench/overhead/chikai-transport-forwarder.ts\`), each in its own process` +
    `${rows.some((r) => r.target === BASELINE) ? ` (\`${BASELINE}\`: chikai built from an earlier commit, for a before/after in one run)` : ''}. Throughput: ` +
    `${s.saturationConnections} connections, closed loop, ${s.seconds} s. Latency: ${s.moderateRps} requests/s on one ` +
    `connection, one request at a time (autocannon \`overallRate\`), ${s.seconds} s: the time a forwarder adds to a request, without queueing. ` +
    `Forwarder CPU: user + system time of the forwarder's process (nginx: its worker) from /proc over the throughput run, per request. ` +
    `Median of ${s.rounds} interleaved round${s.rounds > 1 ? 's' : ''}.\n`,
  );
  out.push(table(
    ['target', 'req/s', '× direct', '× nginx', 'forwarder CPU µs/request', 'p50 ms', 'p50 added over direct, ms', 'p99 ms', 'errors', 'req/s every round'],
    rows.map((r) => [
      r.target, r.rps, ratio(r.rps, direct?.rps), ratio(r.rps, nginx?.rps), num(r.cpu_us_per_request, 1), num(r.p50_ms, 3), num(direct ? r.p50_ms - direct.p50_ms : undefined, 3), num(r.p99_ms, 3), errors.get(r.target) ?? 0,
      all.get(r.target)!.map((x) => x.toFixed(0)).join(', '),
    ]),
    ['l'],
  ));
  return out.join('\n');
}

function overheadChart(rows: readonly OverheadRow[]): string {
  const nginx = rows.find((r) => r.target === 'nginx')?.rps;
  return barChart('Requests/s at saturation (one backend, same load generator)', 'requests/s', [{
    title: nginx ? 'throughput (label: × nginx)' : 'throughput',
    bars: rows.map((r) => ({ label: r.target, value: r.rps, note: nginx ? `${r.rps} (${(r.rps / nginx).toFixed(2)}×)` : String(r.rps) })),
  }]);
}
