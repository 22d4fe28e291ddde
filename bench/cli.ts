// Command line of `npm run bench`: which scenario, how big, where results go. Mistakes
// exit 2 with a message naming the fix.

export const SCENARIOS = ['paper', 'overhead', 'xds', 'emulation', 'coldstart'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface BenchArgs {
  readonly scenario: Scenario;
  readonly quick: boolean;
  /** JSON result file (in addition to the results directory). */
  readonly out?: string;
  /** Where the JSON, Markdown and SVG go (default bench/results). */
  readonly resultsDir?: string;
  /** paper: edge ↔ cloud round trips, ms (jitter follows the paper: 10, 10, 20); coldstart: delay per node (RTT twice that). */
  readonly latencies?: number[];
  /** paper: users per side at each step. */
  readonly users?: number[];
  /** paper and overhead: seconds of load per step. */
  readonly seconds?: number;
  /** paper: policies to run (oracle included unless left out). */
  readonly policies?: string[];
  /** paper: request paths to measure (gateway: through the Envoy gateways; proxy: straight to the node proxies). */
  readonly paths?: string[];
  /** paper: times every system is measured at every step. */
  readonly rounds?: number;
  /** overhead: which targets to measure (default all). */
  readonly targets?: string[];
  /** xds: gateway counts and revision counts to sweep. */
  readonly gateways?: number[];
  readonly revisions?: number[];
  /** xds: which servers to measure (default chikai and go-control-plane). */
  readonly servers?: ('chikai' | 'go-control-plane')[];
  /** xds: which parts to run (default both): the fan-out to gateways, the load reports from proxies. */
  readonly parts?: ('fanout' | 'loadreports')[];
}

export class UsageError extends Error {}

export const USAGE = `usage: npm run bench -- --scenario paper|overhead|xds|emulation|coldstart [--quick] [--out FILE] [--results-dir DIR]
  paper:    [--latencies 50,70,100] [--users 5,10,...,50] [--seconds N] [--rounds N] [--paths gateway,proxy] [--policies knative,chikai,oracle,...]
  overhead: [--seconds N] [--targets direct,chikai,nginx,envoy,http-proxy,node-undici,chikai-transport]  (CHIKAI_BENCH_CPU_PROF=DIR profiles the chikai proxy)
  xds:      [--gateways 10,100,1000] [--revisions 10,100,1000] [--servers chikai,go-control-plane] [--parts fanout,loadreports]
            (CHIKAI_BENCH_CPU_PROF=DIR profiles chikai's xDS server; CHIKAI_BENCH_BASELINE=<another build's
            dist/bench/xds/server-process.js> adds that build as chikai-baseline)
  emulation: injected RTT against the configured one, emulated pod CPU (real time, printed)
  coldstart: [--latencies 50,70,100]  (netem-style delay per node; RTT twice that) chikai against an activator-like proxy`;

const FLAGS = ['--scenario', '--quick', '--out', '--results-dir', '--latencies', '--users', '--seconds', '--policies', '--paths', '--rounds', '--targets', '--gateways', '--revisions', '--servers', '--parts'];

function numbers(flag: string, v: string, min: number): number[] {
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (xs.length === 0 || xs.some((x) => !Number.isFinite(x) || x < min)) {
    throw new UsageError(`${flag}: expected comma-separated numbers ≥ ${min}, e.g. ${flag} ${min === 0 ? '50,100' : '10,50'}; got ${JSON.stringify(v)}`);
  }
  return xs;
}

export function parseBenchArgs(argv: readonly string[]): BenchArgs {
  const a: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    if (!FLAGS.includes(flag)) throw new UsageError(`unknown option ${JSON.stringify(arg)}: expected one of ${FLAGS.join(', ')}\n${USAGE}`);
    if (flag === '--quick') {
      a.quick = true;
      continue;
    }
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value.startsWith('--')) throw new UsageError(`${flag} needs a value\n${USAGE}`);
    a[flag.slice(2)] = value;
  }
  const scenario = a.scenario;
  if (scenario === undefined) throw new UsageError(`--scenario is required: one of ${SCENARIOS.join(', ')}\n${USAGE}`);
  if (!SCENARIOS.includes(scenario as Scenario)) throw new UsageError(`unknown scenario ${JSON.stringify(scenario)}: expected one of ${SCENARIOS.join(', ')}`);
  const str = (k: string) => (typeof a[k] === 'string' ? (a[k] as string) : undefined);
  const seconds = str('seconds') === undefined ? undefined : numbers('--seconds', str('seconds')!, 1)[0];
  if (seconds !== undefined && !Number.isInteger(seconds)) throw new UsageError(`--seconds: expected a whole number of seconds, got ${seconds}`);
  const servers = str('servers')?.split(',').map((s) => s.trim()).filter(Boolean);
  const badServer = servers?.find((s) => s !== 'chikai' && s !== 'go-control-plane');
  if (badServer !== undefined) throw new UsageError(`--servers: expected chikai and/or go-control-plane, got ${JSON.stringify(badServer)}`);
  const parts = str('parts')?.split(',').map((s) => s.trim()).filter(Boolean);
  const badPart = parts?.find((s) => s !== 'fanout' && s !== 'loadreports');
  if (badPart !== undefined) throw new UsageError(`--parts: expected fanout and/or loadreports, got ${JSON.stringify(badPart)}`);
  const rounds = str('rounds') === undefined ? undefined : numbers('--rounds', str('rounds')!, 1)[0];
  if (rounds !== undefined && !Number.isInteger(rounds)) throw new UsageError(`--rounds: expected a whole number of rounds, got ${rounds}`);
  return {
    scenario: scenario as Scenario,
    quick: a.quick === true,
    out: str('out'),
    resultsDir: str('results-dir'),
    latencies: str('latencies') === undefined ? undefined : numbers('--latencies', str('latencies')!, 0),
    users: str('users') === undefined ? undefined : numbers('--users', str('users')!, 1),
    seconds,
    policies: str('policies')?.split(',').map((s) => s.trim()).filter(Boolean),
    paths: str('paths')?.split(',').map((s) => s.trim()).filter(Boolean),
    rounds,
    targets: str('targets')?.split(',').map((s) => s.trim()).filter(Boolean),
    gateways: str('gateways') === undefined ? undefined : numbers('--gateways', str('gateways')!, 1),
    revisions: str('revisions') === undefined ? undefined : numbers('--revisions', str('revisions')!, 1),
    servers: servers as BenchArgs['servers'],
    parts: parts as BenchArgs['parts'],
  };
}
