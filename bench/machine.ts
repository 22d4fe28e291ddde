// What the bench ran on: goes into every result file, because absolute numbers only mean
// something next to the machine and its load at the time.
import os from 'node:os';

export interface MachineInfo {
  readonly cpu: string;
  readonly cores: number;
  readonly memory_gib: number;
  readonly node: string;
  readonly os: string;
  /** 1, 5 and 15 minute load averages when the run started and ended. */
  readonly load_start: readonly number[];
  load_end?: readonly number[];
  /** The 1-minute load average sampled every 30 s during the run: lowest, median, highest. */
  load_during?: { readonly min: number; readonly median: number; readonly max: number; readonly samples: number };
  readonly started_at: string;
  finished_at?: string;
  /** The command line options of the run. */
  readonly options: readonly string[];
}

const loads = (): number[] => os.loadavg().map((x) => Math.round(x * 100) / 100);

export function machineInfo(args: readonly string[]): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    load_start: loads(),
    started_at: new Date().toISOString(),
    options: [...args],
  };
}

const LOAD_SAMPLE_MS = 30_000;
const samplers = new WeakMap<MachineInfo, { timer: NodeJS.Timeout; samples: number[] }>();

/** Samples the load average during the run (other work on a shared machine shows up here). */
export function sampleLoad(m: MachineInfo): void {
  const samples = [os.loadavg()[0]!];
  const timer = setInterval(() => samples.push(os.loadavg()[0]!), LOAD_SAMPLE_MS);
  timer.unref();
  samplers.set(m, { timer, samples });
}

export function finishMachineInfo(m: MachineInfo): MachineInfo {
  const sampler = samplers.get(m);
  if (sampler) {
    clearInterval(sampler.timer);
    const xs = [...sampler.samples].sort((a, b) => a - b);
    const r = (x: number) => Math.round(x * 100) / 100;
    m.load_during = { min: r(xs[0]!), median: r(xs[Math.floor(xs.length / 2)]!), max: r(xs[xs.length - 1]!), samples: xs.length };
  }
  m.load_end = loads();
  m.finished_at = new Date().toISOString();
  return m;
}
