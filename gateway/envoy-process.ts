// One Envoy process: started with a rendered bootstrap, ready when its admin says LIVE and
// the listeners it was told about over LDS are bound, always stopped (SIGTERM, then
// SIGKILL). Its log goes to a file; when Envoy exits unexpectedly the log's tail is what
// the error (or the `onExit` report) carries.
//
// Envoy must not outlive this process, even when it dies without cleaning up (a test that
// crashes, a SIGKILL): an exit hook kills every Envoy still running, and each Envoy has a
// watchdog shell that holds a pipe from this process and kills Envoy when the pipe closes.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { stringify } from 'yaml';
import type { JsonObject } from '../xds/protojson.js';

export interface EnvoyProcessOptions {
  readonly binary: string;
  /** A short name for messages and file names (the node's name). */
  readonly name: string;
  readonly bootstrap: JsonObject;
  /** Folder for the bootstrap file and the log. */
  readonly workDir: string;
  /** Where the admin listens (from the bootstrap), to check readiness. */
  readonly admin: { readonly host: string; readonly port: number };
  /** Listener names (from LDS) that must be bound before the gateway counts as ready. */
  readonly listeners: readonly string[];
  readonly logLevel?: string;
  /** Called when Envoy exits without being asked to, with the log's tail. */
  readonly onExit?: (message: string) => void;
}

/** Envoy could not bind a port another process holds; pick other ports and try again. */
export class PortInUseError extends Error {
  override name = 'PortInUseError';
}

export class EnvoyStartError extends Error {
  override name = 'EnvoyStartError';
}

const running = new Set<EnvoyProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Synchronous, so it also runs when the process exits on an uncaught exception.
  process.on('exit', () => {
    for (const e of running) e.killNow();
  });
}

export class EnvoyProcess {
  readonly logFile: string;
  readonly bootstrapFile: string;
  private readonly child: ChildProcess;
  private readonly watchdog: ChildProcess;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exited: Promise<void>;
  private stopping = false;

  private constructor(private readonly opts: EnvoyProcessOptions) {
    this.bootstrapFile = join(opts.workDir, `envoy-${opts.name}.yaml`);
    this.logFile = join(opts.workDir, `envoy-${opts.name}.log`);
    writeFileSync(this.bootstrapFile, stringify(opts.bootstrap));
    const log = openSync(this.logFile, 'a');
    try {
      this.child = spawn(opts.binary, [
        '-c', this.bootstrapFile,
        '--concurrency', '1',
        // Several Envoys on one host: no shared memory for hot restart, so no --base-id clash.
        '--disable-hot-restart',
        '--log-level', opts.logLevel ?? 'info',
      ], { stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    this.exited = new Promise((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.exitInfo) return;
        this.exitInfo = { code, signal };
        running.delete(this);
        this.watchdog.kill('SIGKILL');
        if (!this.stopping) opts.onExit?.(`${this.describe()} exited (${signal ?? `code ${code}`}) unexpectedly; last log lines:\n${this.logTail()}`);
        resolve();
      };
      this.child.once('exit', finish);
      // A binary that cannot be started emits 'error' and maybe no 'exit'.
      this.child.once('error', (err) => {
        writeFileSync(this.logFile, `cannot start ${opts.binary}: ${err.message}\n`, { flag: 'a' });
        finish(null, null);
      });
    });
    // Kills Envoy when this process's end of the pipe closes (however this process ended).
    this.watchdog = spawn('/bin/sh', ['-c', 'read -r _; kill -KILL "$1" 2>/dev/null', 'chikai-envoy-watchdog', String(this.child.pid ?? 0)], { stdio: ['pipe', 'ignore', 'ignore'] });
    this.watchdog.unref();
    (this.watchdog.stdin as Socket | null)?.unref();
    running.add(this);
    installExitHook();
  }

  /** Starts Envoy; `ready()` waits until it serves. */
  static start(opts: EnvoyProcessOptions): EnvoyProcess {
    return new EnvoyProcess(opts);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get adminUrl(): string {
    return `http://${this.opts.admin.host}:${this.opts.admin.port}`;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  private describe(): string {
    return `Envoy for ${this.opts.name} (pid ${this.child.pid}, log ${this.logFile})`;
  }

  /** The last lines of Envoy's log. */
  logTail(lines = 25): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /**
   * Resolves once the admin's /ready says LIVE and every expected listener is bound.
   * Rejects with the log's tail when Envoy exits first or does not get there in time, and
   * with a PortInUseError when a port was taken.
   */
  async ready(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const log = this.running ? '' : this.logTail();
      const inUse = /Address already in use|cannot bind/i.exec(this.running ? this.logTail(200) : log);
      if (inUse) {
        throw new PortInUseError(`${this.describe()} could not bind a port: ${this.logTail(200).split('\n').filter((l) => /Address already in use|cannot bind/i.test(l)).pop() ?? inUse[0]}`);
      }
      if (!this.running) {
        throw new EnvoyStartError(`${this.describe()} exited (${this.exitInfo?.signal ?? `code ${this.exitInfo?.code}`}) before it was ready; last log lines:\n${log}`);
      }
      if (await this.isReady()) return;
      if (Date.now() > deadline) {
        throw new EnvoyStartError(`${this.describe()} not ready after ${Math.round(timeoutMs / 1000)} s (admin /ready LIVE and listeners ${this.opts.listeners.join(', ')} bound); last log lines:\n${this.logTail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async isReady(): Promise<boolean> {
    try {
      const ready = await request(`${this.adminUrl}/ready`, { headersTimeout: 2000, bodyTimeout: 2000 });
      if ((await ready.body.text()).trim() !== 'LIVE') return false;
      const res = await request(`${this.adminUrl}/listeners?format=json`, { headersTimeout: 2000, bodyTimeout: 2000 });
      const body = (await res.body.json()) as { listener_statuses?: { name?: string }[] };
      const bound = new Set((body.listener_statuses ?? []).map((l) => l.name));
      return this.opts.listeners.every((n) => bound.has(n));
    } catch {
      return false;
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when Envoy is gone. */
  async stop(graceMs = 2000): Promise<void> {
    this.stopping = true;
    if (this.running) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    this.watchdog.kill('SIGKILL');
  }

  /** @internal The exit hook's synchronous kill. */
  killNow(): void {
    this.stopping = true;
    this.child.kill('SIGKILL');
    this.watchdog.kill('SIGKILL');
  }
}
