// The bench runs from a fresh build: the --quick paper scenario, cut down to one step,
// writes its JSON, table and chart with a row for every policy and the oracle, both sides.
// Speed is not asserted here; bench/ measures it.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const RUN = fileURLToPath(new URL('../bench/run.js', import.meta.url));

function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [RUN, ...args], { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

t.test('an unknown scenario exits 2 and names the valid ones', async (t) => {
  const r = await bench(['--scenario', 'nope']);
  t.equal(r.code, 2);
  t.match(r.stderr, /unknown scenario "nope": expected one of paper, overhead, xds, emulation/);
});

t.test('the quick paper scenario writes rows for every policy and the oracle', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'chikai-bench-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'out.json');
  const r = await bench(['--scenario', 'paper', '--quick', '--users', '10', '--seconds', '1', '--results-dir', dir, '--out', out]);
  t.equal(r.code, 0, r.stderr.slice(-2000));
  t.match(r.stderr, /\[paper 7\/7 /, 'progress shows every step');

  const json = JSON.parse(readFileSync(out, 'utf8')) as { scenario: string; machine: Record<string, unknown>; rows: Record<string, unknown>[] };
  t.same(Object.keys(json).sort(), ['machine', 'rows', 'scenario']);
  t.equal(json.scenario, 'paper');
  t.type(json.machine.cores, 'number');
  const fields = ['policy', 'latency_ms', 'side', 'users', 'p50_ms', 'p90_ms', 'p99_ms', 'offered', 'completed', 'errors', 'local_share'];
  for (const row of json.rows) t.same(Object.keys(row).sort(), [...fields].sort(), `row fields of ${row.policy}/${row.side}`);
  for (const policy of ['knative', 'round-robin', 'local-only', 'faast', 'peak-ewma', 'chikai', 'oracle']) {
    for (const side of ['edge', 'cloud']) {
      const row = json.rows.find((x) => x.policy === policy && x.side === side);
      t.ok(row, `${policy} from the ${side}`);
      t.equal(row?.latency_ms, 50);
      t.equal(row?.users, 10);
      t.ok((row?.offered as number) > 0, `${policy} from the ${side}: requests were offered`);
    }
  }
  t.same(JSON.parse(readFileSync(join(dir, 'paper-quick.json'), 'utf8')).rows, json.rows, 'the results directory holds the same JSON');
  t.match(readFileSync(join(dir, 'paper-quick.md'), 'utf8'), /p50 \/ oracle/);
  t.ok(existsSync(join(dir, 'paper-quick-cdf.svg')), 'CDF chart written');
  t.match(readFileSync(join(dir, 'paper-quick-cdf.svg'), 'utf8'), /^<svg /);
});
