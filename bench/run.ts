// `npm run bench -- --scenario paper|overhead|xds|emulation|coldstart [--quick] [--out FILE]`: runs one
// scenario, prints progress on stderr, and writes JSON, a Markdown table and an SVG chart
// to bench/results/ (and the JSON to --out).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBenchArgs, UsageError, type BenchArgs } from './cli.js';
import { finishMachineInfo, machineInfo, sampleLoad } from './machine.js';
import type { ScenarioContext, ScenarioOutput } from './scenario.js';
import { runPaper } from './paper/run.js';
import { runOverhead } from './overhead/run.js';
import { runXds } from './xds/run.js';
import { runEmulation } from './emulation/run.js';
import { runColdstart } from './coldstart/run.js';

const DEFAULT_RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));

async function main(argv: readonly string[]): Promise<number> {
  let args: BenchArgs;
  try {
    args = parseBenchArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const machine = machineInfo(argv);
  sampleLoad(machine);
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const ctx: ScenarioContext = { args, machine, log };
  let out: ScenarioOutput;
  try {
    const scenarios = { paper: runPaper, overhead: runOverhead, xds: runXds, emulation: runEmulation, coldstart: runColdstart };
    out = await scenarios[args.scenario](ctx);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`bench: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  finishMachineInfo(machine);
  const json = JSON.stringify({ scenario: args.scenario, machine, rows: out.rows, ...(out.detail ? { detail: out.detail } : {}) }, null, 2) + '\n';
  const dir = resolve(args.resultsDir ?? DEFAULT_RESULTS);
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `${args.scenario}${args.quick ? '-quick' : ''}`);
  const written = [`${base}.json`, `${base}.md`];
  writeFileSync(`${base}.json`, json);
  writeFileSync(`${base}.md`, out.markdown);
  for (const [suffix, svg] of Object.entries(out.charts)) {
    writeFileSync(`${base}-${suffix}.svg`, svg);
    written.push(`${base}-${suffix}.svg`);
  }
  if (args.out) {
    mkdirSync(dirname(resolve(args.out)), { recursive: true });
    writeFileSync(args.out, json);
    written.push(resolve(args.out));
  }
  log(`bench: wrote ${written.join(', ')}`);
  process.stdout.write(out.markdown);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
