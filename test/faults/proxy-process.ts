// A `chikai proxy` in its own process, in front of emulated pods running in the test
// process: the hostile-input and overload scenarios measure the proxy's own memory and
// see a crash as an exit, not as a broken test runner.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import { EmulatedPod } from '../../cluster/emulated/pod.js';

const CLI = fileURLToPath(new URL('../../bin/chikai.js', import.meta.url));

export interface ProxyProcessOptions {
  /** Pods of default/hello-00001 on node1 (127.0.1.1). */
  readonly pods?: number;
  readonly podCapacity?: number;
  readonly serviceTimeMs?: { min: number; max: number };
  readonly containerConcurrency?: number;
  readonly timeoutSeconds?: number;
  /** Extra keys of the `proxy:` map, e.g. `maxBodyBytes: 1024`. */
  readonly proxyExtra?: string;
  /** The `queue:` map, e.g. `{ maxDepth: 50 }`. */
  readonly queue?: string;
  readonly drainSeconds?: number;
  /** Node flags for the proxy process, e.g. --max-old-space-size. */
  readonly nodeFlags?: readonly string[];
}

export interface ProxyProcess {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly adminUrl: string;
  readonly pods: readonly EmulatedPod[];
  readonly child: ChildProcess;
  /** Request lines (`METHOD target`) the witness pod of default/witness-00001 received. */
  readonly witnessSeen: string[];
  /** Everything the process printed so far. */
  output(): string;
  /** Resolves with the exit code once the process is gone. */
  readonly exited: Promise<number | null>;
}

export const HOST = 'hello.default.svc.cluster.local';
/** Host of the witness revision: its only pod records every request that reaches it. */
export const WITNESS_HOST = 'witness.default.svc.cluster.local';

/** A pod that answers 200 and records what reached it, to prove what got through. */
async function startWitness(t: Test, seen: string[]): Promise<number> {
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => res.end('witness\n'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.1.1', r));
  t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return (server.address() as AddressInfo).port;
}

export async function startProxyProcess(t: Test, o: ProxyProcessOptions = {}): Promise<ProxyProcess> {
  const pods: EmulatedPod[] = [];
  for (let i = 0; i < (o.pods ?? 2); i++) {
    const pod = new EmulatedPod({
      name: `hello-00001-node1-p${i}`, node: 'node1', revision: 'default/hello-00001', host: '127.0.1.1',
      capacity: o.podCapacity ?? 50, serviceTimeMs: o.serviceTimeMs ?? { min: 1, max: 2 },
    });
    await pod.start();
    pods.push(pod);
    t.teardown(() => pod.close(0));
  }
  const witnessSeen: string[] = [];
  const witnessPort = await startWitness(t, witnessSeen);
  const dir = mkdtempSync(join(tmpdir(), 'chikai-faults-'));
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, [
    'nodes: [{ name: node1, address: 127.0.1.1 }]',
    'revisions:',
    `  - { namespace: default, service: hello, name: hello-00001, containerConcurrency: ${o.containerConcurrency ?? 0}, timeoutSeconds: ${o.timeoutSeconds ?? 30} }`,
    '  - { namespace: default, service: witness, name: witness-00001, timeoutSeconds: 10 }',
    'endpoints:',
    `  - { pod: witness-00001-node1, revision: default/witness-00001, node: node1, address: 127.0.1.1, port: ${witnessPort} }`,
    ...pods.map((p) => `  - { pod: ${p.name}, revision: default/hello-00001, node: node1, address: 127.0.1.1, port: ${p.port} }`),
    `proxy: { policy: knative${o.proxyExtra ? `, ${o.proxyExtra}` : ''} }`,
    ...(o.queue ? [`queue: ${o.queue}`] : []),
  ].join('\n'));
  const child = spawn(process.execPath, [...(o.nodeFlags ?? []), CLI, 'proxy', '--node', 'node1', '--cluster', file,
    '--listen', '127.0.1.1:0', '--admin', '127.0.1.1:0', '--drain-seconds', String(o.drainSeconds ?? 0)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const at = await new Promise<{ proxy: string; admin: string }>((resolve, reject) => {
    const check = () => {
      const m = /listening on (\S+), admin on (\S+)/.exec(out);
      if (m) resolve({ proxy: m[1], admin: m[2] });
    };
    child.stdout?.on('data', check);
    void exited.then((code) => reject(new Error(`chikai proxy exited with ${code} before listening:\n${out}`)));
  });
  const [host, port] = at.proxy.split(':');
  return {
    host, port: Number(port), url: `http://${at.proxy}`, adminUrl: `http://${at.admin}`, pods, child, exited, witnessSeen,
    output: () => out,
  };
}
