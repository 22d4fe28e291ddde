// `npm run test:faults [-- --full]`: runs the fault and hostile-input suite with tap, then
// prints the summary table every scenario reported. `--full` (or CHIKAI_FAULTS_FULL=1)
// runs longer and wider, and writes the table to test/faults/results.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SUMMARY_HEADER, formatRow, type ScenarioRow } from './support.js';

const full = process.argv.includes('--full') || process.env.CHIKAI_FAULTS_FULL === '1';
const extra = process.argv.slice(2).filter((a) => a !== '--full');
const results = join(mkdtempSync(join(tmpdir(), 'chikai-faults-results-')), 'rows.jsonl');
// npm runs scripts from the package root, where tap is installed.
const tapBin = join(process.cwd(), 'node_modules', 'tap', 'dist', 'esm', 'run.mjs');
const files = extra.length > 0 ? extra : ['dist/test/faults/**/*.test.js'];
const run = spawnSync(process.execPath, [tapBin, ...(full ? ['--timeout', '900'] : []), ...files], {
  stdio: 'inherit',
  env: { ...process.env, CHIKAI_FAULTS_RESULTS: results, ...(full ? { CHIKAI_FAULTS_FULL: '1' } : {}) },
});

const rows: ScenarioRow[] = existsSync(results)
  ? readFileSync(results, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ScenarioRow)
  : [];
const table = [SUMMARY_HEADER, '| --- | ---: | ---: | ---: | ---: | ---: | --- |', ...rows.map(formatRow)].join('\n');
console.log(`\nchikai faults and hostile input (${full ? 'full' : 'CI'} mode, ${cpus().length} cores, Node.js ${process.version})\n\n${table}\n`);
if (full) {
  const out = fileURLToPath(new URL('../../../test/faults/results.md', import.meta.url));
  writeFileSync(out, [
    '# Faults and hostile input: results',
    '',
    `Run with \`npm run test:faults -- --full\` on ${new Date().toISOString().slice(0, 10)}, ${cpus().length} cores, Node.js ${process.version}.`,
    '"failed": answered with a status the scenario does not expect; "lost": never answered',
    '(reset, cut, timed out). Recovery: what each row\'s note says, else from the fault until',
    'successes flow again at half the earlier rate. Peak RSS of the process named.',
    '',
    table,
    '',
  ].join('\n'));
  console.log(`written to ${out}`);
}
process.exit(run.status ?? 1);
