// ORCA load reports in the `endpoint-load-metrics` response header, TEXT form:
//   endpoint-load-metrics: TEXT cpu_utilization=0.3, rps_fractional=12, named_metrics.in_flight=3
// Pods (the emulated ones, or a real one with an ORCA-aware sidecar) write it; the proxy
// reads it to learn the load other proxies put on a pod.

export const ORCA_HEADER = 'endpoint-load-metrics';

export interface OrcaLoad {
  readonly cpuUtilization?: number;
  readonly rpsFractional?: number;
  readonly named: Readonly<Record<string, number>>;
}

export function formatOrcaHeader(load: OrcaLoad): string {
  const parts: string[] = [];
  if (load.cpuUtilization !== undefined) parts.push(`cpu_utilization=${load.cpuUtilization}`);
  if (load.rpsFractional !== undefined) parts.push(`rps_fractional=${load.rpsFractional}`);
  for (const [k, v] of Object.entries(load.named)) parts.push(`named_metrics.${k}=${v}`);
  return `TEXT ${parts.join(', ')}`;
}

/** Parse the TEXT form; undefined when absent or not TEXT (binary/JSON forms are ignored). */
export function parseOrcaHeader(value: string | string[] | undefined): OrcaLoad | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  const m = /^\s*TEXT\s+(.*)$/i.exec(v);
  if (!m) return undefined;
  const named: Record<string, number> = {};
  let cpuUtilization: number | undefined;
  let rpsFractional: number | undefined;
  for (const part of m[1].split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const num = Number(part.slice(eq + 1).trim());
    if (!Number.isFinite(num)) continue;
    if (key === 'cpu_utilization') cpuUtilization = num;
    else if (key === 'rps_fractional') rpsFractional = num;
    else if (key.startsWith('named_metrics.')) named[key.slice('named_metrics.'.length)] = num;
  }
  return { cpuUtilization, rpsFractional, named };
}
