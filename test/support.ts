// Shared test helpers: a small cluster file, the emulated stack on free ports, and an
// HTTP client that can set any Host header.
import { Readable } from 'node:stream';
import { request } from 'undici';
import { parseClusterFile, type ClusterFile } from '../cluster/config.js';
import { startEmulatedStack, type EmulatedStack, type StackOptions } from '../bin/stack.js';

export interface TestClusterOptions {
  readonly nodes?: number;
  readonly rttMs?: number;
  readonly jitterMs?: number;
  readonly podsPerNode?: number;
  readonly containerConcurrency?: number;
  readonly timeoutSeconds?: number;
  readonly capacity?: number;
  readonly serviceTimeMs?: { min: number; max: number };
  readonly policy?: string;
  /** Extra YAML appended at the top level (queue:, proxy: …). */
  readonly extra?: string;
}

/** A cluster of `nodes` nodes (127.0.1.1…), one revision default/hello-00001, pods on every node. */
export function testClusterFile(o: TestClusterOptions = {}): ClusterFile {
  const n = o.nodes ?? 2;
  const nodes = Array.from({ length: n }, (_, i) => `  - { name: node${i + 1}, region: r${i + 1}, zone: z${i + 1}, address: 127.0.1.${i + 1} }`);
  const links: string[] = [];
  for (let a = 1; a <= n; a++) for (let b = a + 1; b <= n; b++) links.push(`  - { between: [node${a}, node${b}], rttMs: ${o.rttMs ?? 0}, jitterMs: ${o.jitterMs ?? 0} }`);
  const st = o.serviceTimeMs ?? { min: 1, max: 2 };
  const pods: string[] = [];
  for (let i = 1; i <= n; i++) {
    for (let k = 0; k < (o.podsPerNode ?? 1); k++) {
      pods.push(`  - { revision: default/hello-00001, node: node${i}, capacity: ${o.capacity ?? 4}, serviceTimeMs: { min: ${st.min}, max: ${st.max} } }`);
    }
  }
  const yaml = [
    'externalDomains: [example.com]',
    'nodes:', ...nodes,
    ...(links.length ? ['latency:', ...links] : []),
    'revisions:',
    `  - { namespace: default, service: hello, name: hello-00001, containerConcurrency: ${o.containerConcurrency ?? 0}, timeoutSeconds: ${o.timeoutSeconds ?? 300}, hosts: [hello.custom.test] }`,
    ...(pods.length ? ['pods:', ...pods] : []),
    `proxy: { policy: ${o.policy ?? 'knative'} }`,
    o.extra ?? '',
  ].join('\n');
  return parseClusterFile(yaml, 'test-cluster.yaml');
}

export async function testStack(o: TestClusterOptions & Omit<StackOptions, 'file'> = {}): Promise<EmulatedStack> {
  return startEmulatedStack({ file: testClusterFile(o), proxyPort: 0, adminPort: 0, drainSeconds: o.drainSeconds ?? 0, seed: o.seed ?? 1, policy: o.policy });
}

export interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

export const HELLO_HOST = 'hello.default.svc.cluster.local';

/** One HTTP request with any headers (fetch cannot set Host). */
export async function get(url: string, headers: Record<string, string> = { host: HELLO_HOST }, method: 'GET' | 'POST' | 'PUT' | 'HEAD' = 'GET', body?: string): Promise<Reply> {
  const res = await request(url, { method, headers, body });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Resolves once `fn` returns a truthy value, polling every `everyMs`. A liveness guard, not
 * a timing assertion: after `giveUpMs` it fails naming `what`.
 */
export async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, giveUpMs = 60_000, everyMs = 20): Promise<T> {
  const giveUpAt = Date.now() + giveUpMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > giveUpAt) throw new Error(`gave up after ${giveUpMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** A request body of `total` bytes made on the fly, 64 KiB at a time (never held whole). */
export function generatedBody(total: number): Readable {
  const chunk = Buffer.alloc(64 * 1024, 7);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= total) return this.push(null);
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
}

/** Samples `measure` every 50 ms from now on; `stop()` resolves with the highest value seen. */
export function peakOf(measure: () => Promise<number>, start: number): { stop(): Promise<number> } {
  let peak = start;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, await measure());
      await sleep(50);
    }
  })();
  return {
    async stop() {
      sampling = false;
      await sampler;
      return peak;
    },
  };
}
