// CPU time and resident memory of a process, read from /proc the same way for every
// server or forwarder under test (Node.js, Go, nginx or Envoy).
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

export interface ProcStats {
  /** User + system CPU since the process started, ms. */
  readonly cpuMs: number;
  readonly rssMb: number;
}

export function procStats(pid: number): ProcStats {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) in parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return { cpuMs: ((utime + stime) * 1000) / TICKS_PER_SECOND, rssMb: rssKb / 1024 };
}
