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

export function finishMachineInfo(m: MachineInfo): MachineInfo {
  m.load_end = loads();
  m.finished_at = new Date().toISOString();
  return m;
}
