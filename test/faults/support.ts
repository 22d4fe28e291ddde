// Shared parts of the fault and hostile-input suite: the run mode, the summary rows every
// scenario reports, load from autocannon, raw-socket requests and peak-RSS sampling.
import { appendFileSync } from 'node:fs';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import autocannon from 'autocannon';
import type { Test } from 'tap';
import { request } from 'undici';

/** `npm run test:faults -- --full` (or CHIKAI_FAULTS_FULL=1): longer runs, more connections. */
export const FULL = process.env.CHIKAI_FAULTS_FULL === '1';

/** Pick the CI or the full figure. */
export function scale<T>(ci: T, full: T): T {
  return FULL ? full : ci;
}

/** One line of the summary table. */
export interface ScenarioRow {
  readonly scenario: string;
  /** Requests (or messages, connections) sent. */
  readonly sent: number;
  /** Answered with a status the scenario did not expect. */
  readonly failed: number;
  /** Never answered: reset, cut or timed out. */
  readonly lost: number;
  /** Time from the fault to normal service again, when the scenario has one. */
  readonly recoveryMs?: number;
  /** Peak resident memory of the process under test, in bytes. */
  readonly peakRss: number;
  /** Which process the RSS was measured in. */
  readonly rssOf: 'proxy process' | 'test process' | 'xDS process';
  readonly note?: string;
}

export const SUMMARY_HEADER = '| scenario | sent | failed | lost | recovery | peak RSS | notes |';

export function formatRow(r: ScenarioRow): string {
  const recovery = r.recoveryMs === undefined ? '—' : `${(r.recoveryMs / 1000).toFixed(2)} s`;
  const rss = `${(r.peakRss / 1048576).toFixed(0)} MB (${r.rssOf})`;
  return `| ${r.scenario} | ${r.sent} | ${r.failed} | ${r.lost} | ${recovery} | ${rss} | ${r.note ?? ''} |`;
}

/** Report a row: as a TAP comment, and into the run's results file when the runner set one. */
export function report(t: Test, row: ScenarioRow): void {
  t.comment(`summary ${formatRow(row)}`);
  const file = process.env.CHIKAI_FAULTS_RESULTS;
  if (file) appendFileSync(file, `${JSON.stringify(row)}\n`);
}

/** Samples an RSS source every `everyMs` until stopped; `peak` is the largest value seen. */
export class RssSampler {
  peak = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(private readonly read: () => number | Promise<number> = () => process.memoryUsage().rss, everyMs = 100) {
    this.timer = setInterval(() => void this.sample(), everyMs);
    this.timer.unref();
    void this.sample();
  }

  async sample(): Promise<number> {
    if (this.busy) return this.peak;
    this.busy = true;
    try {
      const v = await this.read();
      if (v > this.peak) this.peak = v;
      return v;
    } catch {
      return this.peak; // the process is gone or busy: keep what we saw
    } finally {
      this.busy = false;
    }
  }

  async stop(): Promise<number> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.sample();
    return this.peak;
  }
}

/** Resident memory of a chikai proxy process, from its own /metrics. */
export async function remoteRss(adminUrl: string): Promise<number> {
  const text = await (await request(`${adminUrl}/metrics`, { headersTimeout: 5000, bodyTimeout: 5000 })).body.text();
  const m = /^process_resident_memory_bytes(?:\{[^}]*\})? (\d+)/m.exec(text);
  if (!m) throw new Error('no process_resident_memory_bytes in /metrics (start the proxy with processMetrics)');
  return Number(m[1]);
}

/** What a load run saw, in the terms of the summary table. */
export interface LoadResult {
  readonly sent: number;
  readonly ok: number;
  /** Responses by status code. */
  readonly statuses: Readonly<Record<string, number>>;
  /** Requests answered with a non-2xx status. */
  readonly non2xx: number;
  /** Connection errors and timeouts: requests that got no answer. */
  readonly errors: number;
  readonly timeouts: number;
  /** Completion time (ms since the run started) of every 2xx response, for recovery times. */
  readonly okAt: readonly number[];
}

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly durationSeconds: number;
  readonly host: string;
  readonly method?: 'GET' | 'POST';
  readonly path?: string;
  readonly body?: string;
  /** Per-request timeout in seconds (autocannon's default 10 s would hide a hang). */
  readonly timeoutSeconds?: number;
}

/** Closed-loop load from autocannon, in this process. */
export function runLoad(o: LoadOptions): { result: Promise<LoadResult>; stop: () => void; startedAt: number } {
  const okAt: number[] = [];
  const startedAt = performance.now();
  let settle: { resolve: (r: LoadResult) => void; reject: (e: unknown) => void } | undefined;
  const result = new Promise<LoadResult>((resolve, reject) => (settle = { resolve, reject }));
  const instance = autocannon({
    url: `${o.url}${o.path ?? '/'}`,
    connections: o.connections,
    duration: o.durationSeconds,
    method: o.method ?? 'GET',
    body: o.body,
    headers: { host: o.host, ...(o.body !== undefined ? { 'content-type': 'text/plain' } : {}) },
    timeout: o.timeoutSeconds ?? 60,
  }, (err, r) => {
    if (err) return settle!.reject(err);
    const statuses: Record<string, number> = {};
    for (const [code, s] of Object.entries(r.statusCodeStats ?? {})) statuses[code] = (s as { count?: number }).count ?? 0;
    settle!.resolve({ sent: r.requests.sent, ok: r['2xx'], statuses, non2xx: r.non2xx, errors: r.errors, timeouts: r.timeouts, okAt });
  });
  instance.on('response', (_client, status) => {
    if (status >= 200 && status < 300) okAt.push(performance.now() - startedAt);
  });
  return { result, stop: () => instance.stop(), startedAt };
}

/** Share of answered-or-lost requests that got a 2xx, in percent (requests still in flight when the run stopped are not counted). */
export function successPercent(r: LoadResult): string {
  const settled = r.ok + r.non2xx + r.errors;
  return `${((r.ok / Math.max(1, settled)) * 100).toFixed(2)} %`;
}

/**
 * Time from `faultAt` (ms since the run started) until successes flow again at no less
 * than `fraction` of the rate before the fault, over a `windowMs` window.
 */
export function recoveryMs(okAt: readonly number[], faultAt: number, windowMs = 500, fraction = 0.5): number | undefined {
  const before = okAt.filter((x) => x > Math.max(0, faultAt - 2000) && x <= faultAt).length / Math.min(2000, faultAt);
  if (before === 0) return undefined;
  const after = okAt.filter((x) => x > faultAt).sort((a, b) => a - b);
  let j = 0;
  for (let i = 0; i < after.length; i++) {
    while (after[i] - after[j] > windowMs) j++;
    const rate = (i - j + 1) / windowMs;
    if (after[i] - faultAt >= windowMs && rate >= before * fraction) return after[j] - faultAt;
  }
  return undefined;
}

/** The answer to one raw request: the status (0 when none) and whether the server closed. */
export interface RawAnswer {
  readonly status: number;
  readonly text: string;
  /** The server closed the connection (FIN or reset) before `timeoutMs`. */
  readonly closed: boolean;
  /** Time until the connection closed, or until the timeout (reported, never asserted). */
  readonly ms: number;
  /** Parts of the request written before the connection closed (slowloris: fewer than all). */
  readonly written: number;
}

/**
 * Write `bytes` on a fresh connection and read until the server closes or `timeoutMs`
 * passes. `writes` > 1 splits the bytes into that many parts, `gapMs` apart (slowloris).
 */
export function rawExchange(host: string, port: number, bytes: string | Buffer, opts: { timeoutMs?: number; writes?: number; gapMs?: number; closeAfterFirstAnswer?: boolean } = {}): Promise<RawAnswer> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const t0 = performance.now();
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      socket.destroy();
      resolve({ status: m ? Number(m[1]) : 0, text, closed, ms: performance.now() - t0, written: i });
    };
    let i = 0;
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (opts.closeAfterFirstAnswer && /\r\n\r\n/.test(Buffer.concat(chunks).toString('latin1'))) finish(true);
    });
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
    const parts = Math.max(1, opts.writes ?? 1);
    const size = Math.ceil(buf.length / parts);
    const writeNext = () => {
      if (done || socket.destroyed) return;
      socket.write(buf.subarray(i * size, (i + 1) * size));
      i++;
      if (i < parts) setTimeout(writeNext, opts.gapMs ?? 0).unref();
    };
    socket.once('connect', writeNext);
  });
}

export { sleep, until } from '../support.js';

/** This process's heap after two full collections: what is really still referenced. */
export function heapAfterGc(): number {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}
