// Load reports at fleet scale: N simulated node proxies report their measurements to one
// xDS server process, first the way chikai did before (the server polls every proxy's
// `/load` JSON every 500 ms), then the way it does now (every proxy pushes what changed
// over LRS every 500 ms). Both sides run in their own processes; the bench reads their CPU
// from /proc and counts report messages and bytes at the receiving end.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { num, ratio, table } from '../../report/markdown.js';
import { round } from '../../stats.js';
import { procStats } from '../../proc.js';
import type { ProxiesCommand, ProxiesReply, ReceiverCommand, ReceiverReply, ReportMode } from './protocol.js';
import { INTERVAL_MS } from './protocol.js';
import { REVISIONS } from './simulated.js';

const PROXIES = fileURLToPath(new URL('./proxies-process.js', import.meta.url));
const RECEIVER = fileURLToPath(new URL('./receiver-process.js', import.meta.url));
/** gRPC's 5-byte message prefix and HTTP/2's 9-byte DATA frame header, per LRS message. */
const LRS_FRAMING_BYTES = 14;

export interface LoadReportRow {
  readonly mode: ReportMode;
  readonly proxies: number;
  /** Reports that reached the xDS side per second. */
  readonly reports_per_s: number;
  readonly bytes_per_s: number;
  /** CPU of the xDS side (cores: CPU seconds per second). */
  readonly receiver_cpu: number;
  /** CPU of the N proxies together (in one process here; each its own in a cluster). */
  readonly proxies_cpu: number;
  /** Proxies the xDS side had a report from at the end. */
  readonly reporting: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class Child<Cmd, Reply extends { kind: string; error?: string }> {
  readonly process: ChildProcess;
  private waiting: ((r: Reply) => void) | undefined;

  constructor(file: string) {
    // CHIKAI_BENCH_CPU_PROF=DIR profiles these processes too.
    const prof = process.env['CHIKAI_BENCH_CPU_PROF'];
    this.process = fork(file, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : [] });
    this.process.on('message', (r: Reply) => {
      const w = this.waiting;
      this.waiting = undefined;
      w?.(r);
    });
  }

  ask(cmd: Cmd): Promise<Reply> {
    return new Promise((resolve, reject) => {
      this.waiting = (r) => (r.kind === 'error' ? reject(new Error(r.error)) : resolve(r));
      this.process.send(cmd as object);
    });
  }

  async close(): Promise<void> {
    if (this.process.exitCode !== null) return;
    const gone = new Promise<void>((r) => this.process.once('exit', () => r()));
    this.process.disconnect();
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
}

async function measure(mode: ReportMode, nodes: number, seconds: number, log: (l: string) => void): Promise<LoadReportRow> {
  const receiver = new Child<ReceiverCommand, ReceiverReply>(RECEIVER);
  const proxies = new Child<ProxiesCommand, ProxiesReply>(PROXIES);
  try {
    if (mode === 'poll') {
      const started = await proxies.ask({ kind: 'start', mode, nodes });
      await receiver.ask({ kind: 'start', mode, nodes, ports: started.kind === 'started' ? started.ports : [] });
    } else {
      const started = await receiver.ask({ kind: 'start', mode, nodes });
      await proxies.ask({ kind: 'start', mode, nodes, port: started.kind === 'started' ? started.port : 0 });
    }
    const counters = async () => {
      const c = await receiver.ask({ kind: 'counters' });
      if (c.kind !== 'counters') throw new Error('load-report receiver: expected counters');
      return c;
    };
    // Steady state: every proxy has reported (over LRS each first names itself, then sends its
    // whole state once, which with a thousand proxies in one process takes a few seconds),
    // then a few intervals.
    const deadline = performance.now() + 120_000;
    const warm = (c: { reports: number; reporters: number }) => c.reporters >= nodes && (mode === 'poll' || c.reports >= 2 * nodes);
    while (!warm(await counters())) {
      if (performance.now() > deadline) throw new Error(`load reports (${mode}): not every proxy reported within 120 s`);
      await sleep(200);
    }
    await sleep(3000);
    const c0 = await counters();
    const r0 = procStats(receiver.process.pid!).cpuMs;
    const p0 = procStats(proxies.process.pid!).cpuMs;
    const t0 = performance.now();
    await sleep(seconds * 1000);
    const c1 = await counters();
    const s = (performance.now() - t0) / 1000;
    const reports = c1.reports - c0.reports;
    const bytes = c1.bytes - c0.bytes + (mode === 'lrs' ? reports * LRS_FRAMING_BYTES : 0);
    const row: LoadReportRow = {
      mode,
      proxies: nodes,
      reports_per_s: round(reports / s, 0),
      bytes_per_s: round(bytes / s, 0),
      receiver_cpu: round((procStats(receiver.process.pid!).cpuMs - r0) / 1000 / s, 3),
      proxies_cpu: round((procStats(proxies.process.pid!).cpuMs - p0) / 1000 / s, 3),
      reporting: c1.reporters,
    };
    log(`[xds loadreports] ${mode}: ${nodes} proxies, ${row.reports_per_s} reports/s, ${(row.bytes_per_s / 1e6).toFixed(2)} MB/s, xDS side ${(row.receiver_cpu * 100).toFixed(0)} % of a core, proxies ${(row.proxies_cpu * 100).toFixed(0)} %, ${row.reporting} reporting`);
    return row;
  } finally {
    await proxies.close();
    await receiver.close();
  }
}

export async function runLoadReports(proxies: number, seconds: number, log: (l: string) => void): Promise<{ rows: LoadReportRow[]; markdown: string }> {
  const rows = [await measure('poll', proxies, seconds, log), await measure('lrs', proxies, seconds, log)];
  return { rows, markdown: loadReportsMarkdown(rows, seconds) };
}

function loadReportsMarkdown(rows: readonly LoadReportRow[], seconds: number): string {
  const before = rows.find((r) => r.mode === 'poll');
  const out: string[] = [];
  out.push('## Load reports\n');
  out.push(
    `${rows[0]?.proxies ?? 0} simulated node proxies (one process) report to one xDS side (its own process), every ${INTERVAL_MS} ms, ` +
    `in a cluster of ${rows[0]?.proxies ?? 0} nodes and ${REVISIONS} revisions (one pod each). Each interval every proxy's measurements move: ` +
    `2 % of its round trips by 1–3 ms, the load of its 5 busy pods. "poll" is how chikai worked before: the xDS server fetched every ` +
    `proxy's whole report (\`GET /load\`, JSON) every interval; "lrs" is now: every proxy pushes what changed over Envoy's Load ` +
    `Reporting Service. Bytes are counted at the xDS side (HTTP: body + about 250 bytes of request and headers; LRS: protobuf + ` +
    `${LRS_FRAMING_BYTES} bytes of gRPC and HTTP/2 framing). CPU from /proc over ${seconds} s, in cores.\n`,
  );
  out.push(table(
    ['mode', 'proxies', 'reports/s', 'MB/s', '× poll', 'xDS side CPU (cores)', '× poll', 'proxies CPU (cores)', 'reporting at the end'],
    rows.map((r) => [
      r.mode, r.proxies, r.reports_per_s, num(r.bytes_per_s / 1e6, 2), before && r !== before ? ratio(r.bytes_per_s, before.bytes_per_s) : '',
      num(r.receiver_cpu, 3), before && r !== before ? ratio(r.receiver_cpu, before.receiver_cpu) : '', num(r.proxies_cpu, 3), r.reporting,
    ]),
    ['l'],
  ));
  return out.join('\n');
}
