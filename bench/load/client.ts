// The bench's side of the load generator: forks worker.js once and hands it runs.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ClosedLoopTarget, LoadTarget, TargetResult, WorkerReply } from './protocol.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

export class LoadGenerator {
  private readonly child: ChildProcess;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (r: TargetResult[]) => void; reject: (e: Error) => void }>();
  private exited: Error | undefined;

  constructor() {
    // Structured clone keeps the latency arrays binary on their way back.
    this.child = fork(WORKER, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: WorkerReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.results);
      else p.reject(new Error(`load generator: ${m.error}`));
    });
    this.child.on('exit', (code, signal) => {
      this.exited = new Error(`load generator exited (${signal ?? code})`);
      for (const p of this.pending.values()) p.reject(this.exited);
      this.pending.clear();
    });
  }

  /** Process id of the child (for CPU accounting). */
  get pid(): number | undefined { return this.child.pid; }

  /** Open-loop load on every target at once; resolves when every request is answered or timed out. */
  open(targets: readonly LoadTarget[]): Promise<TargetResult[]> {
    return this.send({ kind: 'open', targets });
  }

  /** Closed-loop load (saturation, or a fixed overall rate) on every target at once. */
  closed(targets: readonly ClosedLoopTarget[]): Promise<TargetResult[]> {
    return this.send({ kind: 'closed', targets });
  }

  private send(body: { kind: 'open'; targets: readonly LoadTarget[] } | { kind: 'closed'; targets: readonly ClosedLoopTarget[] }): Promise<TargetResult[]> {
    if (this.exited) return Promise.reject(this.exited);
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ ...body, id });
    });
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await gone;
    clearTimeout(timer);
  }
}
