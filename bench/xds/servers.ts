// The xDS servers under test, each in its own process: chikai's (bench/xds/server-process.ts)
// and the go-control-plane peer (bench/xds/go-control-plane, built here with the Go
// toolchain and cached under bench/.cache). Both serve the same resources and take the same
// changes; the bench reads their CPU and memory from /proc the same way.
import { execFile, fork, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ServerCommand, ServerReply } from './protocol.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHIKAI_SERVER = fileURLToPath(new URL('./server-process.js', import.meta.url));
const GO_SOURCE = join(ROOT, 'bench', 'xds', 'go-control-plane');
const GO_CACHE = join(ROOT, 'bench', '.cache', 'go-control-plane');

export type ServerName = 'chikai' | 'chikai-baseline' | 'go-control-plane';

export interface ServerUnderTest {
  readonly name: ServerName;
  readonly pid: number;
  readonly port: number;
  /** Applies change `seq` (the changed pod's readiness flips) and resolves once the server took it. */
  change(seq: number): Promise<void>;
  close(): Promise<void>;
}

async function stop(child: ChildProcess, ask: () => void): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  ask();
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(timer);
}

/**
 * chikai's server process; `baseline` is another build's bench/xds/server-process.js (an
 * older chikai, same IPC), measured as `chikai-baseline`.
 */
export async function startChikai(revisions: number, baseline?: string): Promise<ServerUnderTest> {
  // CHIKAI_BENCH_CPU_PROF=DIR: a CPU profile of chikai's server per run, written to DIR on exit.
  const prof = baseline ? undefined : process.env['CHIKAI_BENCH_CPU_PROF'];
  const child = fork(baseline ?? CHIKAI_SERVER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : [] });
  let waiting: ((r: ServerReply) => void) | undefined;
  child.on('message', (r: ServerReply) => {
    const w = waiting;
    waiting = undefined;
    w?.(r);
  });
  const ask = (cmd: ServerCommand) => new Promise<ServerReply>((resolve, reject) => {
    waiting = (r) => (r.kind === 'error' ? reject(new Error(`chikai xDS server: ${r.error}`)) : resolve(r));
    child.send(cmd);
  });
  const started = await ask({ kind: 'start', revisions });
  if (started.kind !== 'started') throw new Error(`chikai xDS server: expected started, got ${started.kind}`);
  return {
    name: baseline ? 'chikai-baseline' : 'chikai',
    pid: child.pid!,
    port: started.port,
    async change(seq) {
      await ask({ kind: 'change', seq });
    },
    close: () => stop(child, () => child.disconnect()),
  };
}

/**
 * The go-control-plane peer's binary, built once per source version; undefined (with the
 * reason logged) when the Go toolchain is missing or the build fails.
 */
export async function goControlPlaneBinary(log: (line: string) => void): Promise<string | undefined> {
  const hash = createHash('sha256');
  for (const f of ['go.mod', 'go.sum', 'main.go']) hash.update(readFileSync(join(GO_SOURCE, f)));
  const binary = join(GO_CACHE, `xds-peer-${hash.digest('hex').slice(0, 12)}`);
  if (existsSync(binary)) return binary;
  mkdirSync(GO_CACHE, { recursive: true });
  log(`[xds] building the go-control-plane peer (${GO_SOURCE}) with go build…`);
  return new Promise((resolve) => {
    execFile('go', ['build', '-o', binary, '.'], { cwd: GO_SOURCE, timeout: 15 * 60_000, maxBuffer: 16 << 20 }, (err, _stdout, stderr) => {
      if (!err) return resolve(binary);
      const why = (err as NodeJS.ErrnoException).code === 'ENOENT'
        ? 'the Go toolchain (go) is not installed'
        : `go build failed: ${stderr.trim().split('\n').slice(-5).join(' / ') || err.message}`;
      log(`[xds] go-control-plane peer left out: ${why}; chikai runs alone`);
      resolve(undefined);
    });
  });
}

/** The go-control-plane peer serving the resources in `resourcesDir` (see peer-resources.ts). */
export async function startGoControlPlane(binary: string, resourcesDir: string): Promise<ServerUnderTest> {
  const child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const queue: ((line: string) => void)[] = [];
  const early: string[] = [];
  lines.on('line', (line) => {
    const w = queue.shift();
    if (w) w(line);
    else early.push(line);
  });
  const exited = new Promise<never>((_, reject) => child.once('exit', (code, signal) => reject(new Error(`go-control-plane peer exited (${code ?? signal})`))));
  exited.catch(() => undefined);
  const nextLine = () => Promise.race([new Promise<string>((r) => (early.length > 0 ? r(early.shift()!) : queue.push(r))), exited]);
  const reply = async (): Promise<Record<string, unknown>> => {
    const r = JSON.parse(await nextLine()) as Record<string, unknown>;
    if (typeof r.error === 'string') throw new Error(`go-control-plane peer: ${r.error}`);
    return r;
  };
  const ask = async (cmd: object) => {
    child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    return reply();
  };
  const { port } = await reply() as { port: number };
  await ask({ cmd: 'load', dir: resourcesDir });
  return {
    name: 'go-control-plane',
    pid: child.pid!,
    port,
    async change(seq) {
      await ask({ cmd: 'change', seq });
    },
    close: () => stop(child, () => child.stdin!.end()),
  };
}
