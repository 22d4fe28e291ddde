// The bench runs from a fresh build: the --quick paper scenario, cut down to one step and
// the systems that exist on both paths, sends its load through real Envoy gateways (fed by
// chikai's xDS server or by the bench's fixed configurations) and straight to the proxies,
// and writes its JSON, table and chart with a row for every system, both sides.
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

t.test('the quick paper scenario writes rows for every system through the Envoy gateways and straight to the proxies', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'chikai-bench-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'out.json');
  const r = await bench(['--scenario', 'paper', '--quick', '--users', '10', '--seconds', '1', '--policies', 'knative,faast,chikai,oracle', '--results-dir', dir, '--out', out]);
  t.equal(r.code, 0, r.stderr.slice(-2000));
  t.match(r.stderr, /expected duration: about \d+ min/, 'the expected duration is printed at the start');
  t.match(r.stderr, /oracle selection 50 ms · 10 users/, 'the oracle\'s split is selected on its own measurement');
  t.match(r.stderr, /\[paper 8\/8 /, 'progress shows every step');

  const json = JSON.parse(readFileSync(out, 'utf8')) as { scenario: string; machine: Record<string, unknown>; rows: Record<string, unknown>[]; detail: { oracle: unknown[]; settings: { rounds: number } } };
  t.same(Object.keys(json).sort(), ['detail', 'machine', 'rows', 'scenario']);
  t.equal(json.detail.settings.rounds, 1, 'the run\'s settings are in the JSON');
  t.ok(json.detail.oracle.length > 0, 'so is the oracle\'s selection');
  t.equal(json.scenario, 'paper');
  t.type(json.machine.cores, 'number');
  const fields = [
    'path', 'policy', 'latency_ms', 'side', 'users', 'rounds', 'p50_ms', 'p50_lo', 'p50_hi', 'p90_ms', 'p99_ms', 'p99_lo', 'p99_hi',
    'p50_vs_oracle', 'p50_vs_oracle_lo', 'p50_vs_oracle_hi', 'p99_vs_oracle', 'p99_vs_oracle_lo', 'p99_vs_oracle_hi',
    'offered', 'completed', 'errors', 'done_lo', 'done_hi', 'local_share', 'local_lo', 'local_hi', 'p50_rounds', 'p99_rounds',
  ];
  for (const row of json.rows) t.same(Object.keys(row).sort(), [...fields].sort(), `row fields of ${row.path}/${row.policy}/${row.side}`);
  for (const path of ['gateway', 'proxy']) {
    for (const policy of ['knative', 'faast', 'chikai', 'oracle']) {
      for (const side of ['edge', 'cloud']) {
        const row = json.rows.find((x) => x.path === path && x.policy === policy && x.side === side);
        t.ok(row, `${path}/${policy} from the ${side}`);
        t.equal(row?.latency_ms, 50);
        t.equal(row?.users, 10);
        t.ok((row?.completed as number) > 0, `${path}/${policy} from the ${side}: requests were answered`);
      }
    }
  }
  // Stock Kourier sends the edge's requests round robin to every node's activator: most of
  // them are served away from the edge, however the machine is loaded.
  const kourier = json.rows.find((x) => x.path === 'gateway' && x.policy === 'knative' && x.side === 'edge');
  t.ok((kourier?.local_share as number) < 0.9, `stock Kourier's edge requests are spread over the nodes (local ${kourier?.local_share})`);
  t.same(JSON.parse(readFileSync(join(dir, 'paper-quick.json'), 'utf8')).rows, json.rows, 'the results directory holds the same JSON');
  const md = readFileSync(join(dir, 'paper-quick.md'), 'utf8');
  t.match(md, /Headline, through the Envoy gateways/);
  t.match(md, /p50 \/ oracle/);
  t.match(md, /Requests from the cloud/);
  t.ok(existsSync(join(dir, 'paper-quick-cdf.svg')), 'CDF chart written');
  t.match(readFileSync(join(dir, 'paper-quick-cdf.svg'), 'utf8'), /^<svg /);
});

t.test('the quick overhead scenario measures chikai beside the bare node:http + undici forwarder and chikai\'s transport without its request path, with the CPU each spends per request', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'chikai-bench-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'out.json');
  const r = await bench(['--scenario', 'overhead', '--quick', '--seconds', '1', '--targets', 'direct,chikai,node-undici,chikai-transport', '--results-dir', dir, '--out', out]);
  t.equal(r.code, 0, r.stderr.slice(-2000));
  const rows = (JSON.parse(readFileSync(out, 'utf8')) as { rows: { target: string; rps: number; cpu_us_per_request?: number }[] }).rows;
  t.same(rows.map((x) => x.target), ['direct', 'chikai', 'node-undici', 'chikai-transport']);
  for (const target of ['chikai', 'node-undici', 'chikai-transport']) {
    const row = rows.find((x) => x.target === target)!;
    t.ok(row.rps > 0, `${target} forwarded requests`);
    t.ok(row.cpu_us_per_request !== undefined && row.cpu_us_per_request > 0, `${target}: the forwarder's CPU per request is measured (${row.cpu_us_per_request} µs)`);
  }
  t.equal(rows.find((x) => x.target === 'direct')!.cpu_us_per_request, undefined, 'direct has no forwarder');
  const md = readFileSync(join(dir, 'overhead-quick.md'), 'utf8');
  t.match(md, /\| node-undici \| \d+ \|/);
  t.match(md, /\| chikai-transport \| \d+ \|/);
});
