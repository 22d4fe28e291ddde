// `chikai proxy` as its own process: a bad cluster file stops it before it listens, and
// SIGTERM drains without losing an in-flight request.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { EmulatedPod } from '../cluster/emulated/pod.js';
import { generatedBody, peakOf, sleep } from './support.js';

const CLI = fileURLToPath(new URL('../bin/chikai.js', import.meta.url));

function run(args: string[]): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

function exited(p: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  p.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => p.on('exit', (code) => resolve({ code, stdout, stderr })));
}

/** Resolves with the `host:port` the proxy printed once it listens. */
function listening(p: ChildProcess): Promise<{ proxy: string; admin: string }> {
  return new Promise((resolve, reject) => {
    let out = '';
    p.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+), admin on (\S+)/.exec(out);
      if (m) resolve({ proxy: m[1], admin: m[2] });
    });
    p.on('exit', (code) => reject(new Error(`proxy exited with ${code} before listening`)));
  });
}

const dir = mkdtempSync(join(tmpdir(), 'chikai-proxy-'));

t.test('a broken cluster file: exit 2 before listening, naming file, line, field and expectation', async (t) => {
  const file = join(dir, 'broken.yaml');
  writeFileSync(file, [
    'nodes:',
    '  - { name: node1, address: 127.0.1.1 }',
    'revisions:',
    '  - { namespace: default, service: hello, name: hello-00001, containerConcurrency: many }',
  ].join('\n'));
  const r = await exited(run(['proxy', '--node', 'node1', '--cluster', file, '--listen', '127.0.1.1:0', '--admin', '127.0.1.1:0']));
  t.equal(r.code, 2);
  t.match(r.stderr, `${file}:4: revisions[0].containerConcurrency: expected an integer from 0 to 1000, got "many"`);
  t.notMatch(r.stdout, /listening/);

  const missing = await exited(run(['proxy', '--node', 'node1', '--cluster', join(dir, 'nope.yaml')]));
  t.equal(missing.code, 2);
  t.match(missing.stderr, /nope\.yaml: \(file\): expected a readable cluster file/);

  const unknownNode = join(dir, 'ok.yaml');
  writeFileSync(unknownNode, 'nodes: [{ name: node1, address: 127.0.1.1 }]\nrevisions: []\n');
  const r2 = await exited(run(['proxy', '--node', 'node9', '--cluster', unknownNode]));
  t.equal(r2.code, 2);
  t.match(r2.stderr, /--node node9: no such node/);
});

t.test('SIGTERM: readiness fails at once, in-flight requests finish, then new connections are refused and it exits 0', async (t) => {
  const pod = new EmulatedPod({ name: 'hello-00001-node1-drain', node: 'node1', revision: 'default/hello-00001', host: '127.0.1.1', capacity: 50 });
  const port = await pod.start();
  t.teardown(() => pod.close(0));
  const file = join(dir, 'drain.yaml');
  writeFileSync(file, [
    'nodes: [{ name: node1, address: 127.0.1.1 }]',
    'revisions: [{ namespace: default, service: hello, name: hello-00001 }]',
    `endpoints: [{ pod: hello-00001-node1-drain, revision: default/hello-00001, node: node1, address: 127.0.1.1, port: ${port} }]`,
  ].join('\n'));
  const p = run(['proxy', '--node', 'node1', '--cluster', file, '--listen', '127.0.1.1:0', '--admin', '127.0.1.1:0', '--drain-seconds', '1']);
  const done = exited(p);
  const at = await listening(p);
  t.teardown(() => { if (p.exitCode === null) p.kill('SIGKILL'); });
  const base = `http://${at.proxy}`;
  t.equal((await request(`http://${at.admin}/readyz`)).statusCode, 200);

  // 20 requests that take 1.5 s each, in flight when SIGTERM arrives.
  const inflight = Array.from({ length: 20 }, () =>
    request(`${base}/sleep?ms=1500`, { headers: { host: 'hello.default' } }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() })),
  );
  await sleep(200);
  p.kill('SIGTERM');
  await sleep(100);
  const ready = await request(`http://${at.admin}/readyz`);
  t.equal(ready.statusCode, 503, 'readiness fails at once');
  await ready.body.dump();
  const during = await request(`${base}/`, { headers: { host: 'hello.default' } });
  t.equal(during.statusCode, 200, 'still serving while the load balancers catch up');
  await during.body.dump();

  const results = await Promise.all(inflight);
  t.same(results.map((r) => r.status), Array(20).fill(200), 'no in-flight request lost');
  const { code } = await done;
  t.equal(code, 0, 'exits 0 after the drain');
  await t.rejects(request(`${base}/`, { headers: { host: 'hello.default' } }), 'new connections are refused after the drain');
});

/** The proxy process's resident memory, as its own /metrics reports it. */
async function proxyRss(admin: string): Promise<number> {
  const text = await (await request(`http://${admin}/metrics`)).body.text();
  const m = /^process_resident_memory_bytes(?:\{[^}]*\})? (\d+)/m.exec(text);
  if (!m) throw new Error('no process_resident_memory_bytes in /metrics');
  return Number(m[1]);
}

t.test('a 200 MB upload streams through the proxy process: its RSS grows by less than half the body', async (t) => {
  const pod = new EmulatedPod({ name: 'hello-00001-node1-upload', node: 'node1', revision: 'default/hello-00001', host: '127.0.1.1' });
  const port = await pod.start();
  t.teardown(() => pod.close(0));
  const file = join(dir, 'upload.yaml');
  writeFileSync(file, [
    'nodes: [{ name: node1, address: 127.0.1.1 }]',
    'revisions: [{ namespace: default, service: hello, name: hello-00001 }]',
    `endpoints: [{ pod: hello-00001-node1-upload, revision: default/hello-00001, node: node1, address: 127.0.1.1, port: ${port} }]`,
  ].join('\n'));
  const p = run(['proxy', '--node', 'node1', '--cluster', file, '--listen', '127.0.1.1:0', '--admin', '127.0.1.1:0', '--drain-seconds', '0']);
  const at = await listening(p);
  t.teardown(() => { if (p.exitCode === null) p.kill('SIGKILL'); });
  // Warm up, then take the baseline.
  await (await request(`http://${at.proxy}/`, { headers: { host: 'hello.default' } })).body.dump();
  const base = await proxyRss(at.admin);
  const sampler = peakOf(() => proxyRss(at.admin), base);
  const totalMb = Number(process.env.UPLOAD_MB ?? 200);
  const total = totalMb * 1024 * 1024;
  const res = await request(`http://${at.proxy}/count`, { method: 'POST', headers: { host: 'hello.default', 'content-length': String(total) }, body: generatedBody(total) });
  const answer = JSON.parse(await res.body.text()) as { bytes: number };
  const peak = await sampler.stop();
  const growthMb = (peak - base) / 1024 / 1024;
  t.equal(res.statusCode, 200);
  t.equal(answer.bytes, total, 'every byte arrived at the pod');
  t.comment(`proxy RSS ${(base / 1048576).toFixed(1)} MB before, peak ${(peak / 1048576).toFixed(1)} MB during the ${totalMb} MB upload (+${growthMb.toFixed(1)} MB)`);
  // A proxy that buffered the body would grow by all of it. Streaming, it grows by what the
  // allocator and the collector keep around, 10–50 MB here whatever the body's size (20 MB:
  // +11, 100 MB: +39–46, 300 MB: +30), so the bound is relative to the body, not a fixed
  // figure that a busy machine's collector can cross.
  t.ok(growthMb < totalMb / 2, `proxy RSS grew by ${growthMb.toFixed(1)} MB (< half of the ${totalMb} MB body)`);
});
