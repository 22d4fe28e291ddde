// Scale from zero through a real Envoy gateway (Kourier-shaped, fed by chikai's xDS
// server), on the demo's cluster: a request for a revision at zero goes from node3's gateway to node3's proxy,
// which holds it and tells the emulated autoscaler; a pod starts on node3 and answers it.
// Once the pod is ready the gateway sends straight to it; after the stable window and
// grace period the pod is gone and the gateway points at the proxy again.
import t from 'tap';
import { request } from 'undici';
import { readFileSync } from 'node:fs';
import { DEMO_CLUSTER_FILE, parseClusterFile } from '../cluster/config.js';
import { startEmulatedStack, type EmulatedStack } from '../bin/stack.js';
import type { ScaleEvent } from '../cluster/emulated/autoscaler.js';
import { poll } from './fixtures/load.js';
import { until } from './support.js';

const SLEEPY = 'sleepy.default.example.com';
// The demo's own cluster file (sleepy at zero, node3 with room for it), with a shorter
// stable window and grace period so the test sees the way back to zero.
const demo = readFileSync(DEMO_CLUSTER_FILE, 'utf8');
const shortened = demo.replace(/stableWindowSeconds: \d+/, 'stableWindowSeconds: 2').replace(/scaleToZeroGracePeriodSeconds: \d+/, 'scaleToZeroGracePeriodSeconds: 1');
const file = parseClusterFile(shortened, 'demo-cluster.yaml (shorter windows)');

let stack: EmulatedStack;
const events: { kind: string; e: ScaleEvent }[] = [];
const logs: string[] = [];

t.before(async () => {
  stack = await startEmulatedStack({
    file, proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 29, tcpHandshake: true,
    xds: { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, log: (l) => logs.push(l) },
    gateways: { ports: 'free', log: (l) => logs.push(l) },
  });
  for (const kind of ['scaled-up', 'ready', 'scaled-down'] as const) stack.autoscaler!.on(kind, (e) => events.push({ kind, e }));
});
t.teardown(async () => {
  await stack?.close();
});

const clusters = async () => (await request(`${stack.gatewayAdminUrl('node3')}/clusters`)).body.text();
const hostsOf = (text: string) => [...text.matchAll(/^default\/sleepy-00001::([\d.]+:\d+)::health_flags::(.+)$/gm)].map((m) => `${m[1]} ${m[2]}`);

t.test('curl through node3\'s gateway wakes sleepy on node3; then the gateway goes straight to the pod; then it is gone again', async (t) => {
  const proxyHost = `127.0.1.3:${stack.proxyPort}`;
  await poll('node3\'s gateway to route sleepy to node3\'s proxy', async () => (hostsOf(await clusters()).some((h) => h.startsWith(proxyHost)) ? true : undefined), 100, 100);

  const t0 = performance.now();
  const res = await request(`${stack.gatewayUrl('node3')}/`, { headers: { host: SLEEPY } });
  const first = { status: res.statusCode, server: res.headers['server'], body: await res.body.text(), ms: performance.now() - t0 };
  t.equal(first.status, 200);
  t.equal(first.server, 'envoy', 'through the gateway');
  t.match(first.body, /^Konnichiwa from sleepy-00001-node3-\w+ in node3\n$/, 'from a pod that started on node3');
  t.same(events.map((x) => [x.kind, x.e.node]), [['scaled-up', 'node3'], ['ready', 'node3']]);
  t.comment(`through Envoy: first byte after ${first.ms.toFixed(0)} ms (cold start ${file.autoscaler.coldStartSeconds * 1000} ms)`);

  const pod = events[0]!.e.pod;
  const podAddress = stack.model.current.endpoints('default/sleepy-00001').find((e) => e.pod === pod)!;
  await poll('the gateway to hold the pod', async () => (hostsOf(await clusters()).some((h) => h.startsWith(`${podAddress.address}:${podAddress.port}`)) ? true : undefined), 100, 100);
  const t1 = performance.now();
  const warm = await request(`${stack.gatewayUrl('node3')}/`, { headers: { host: SLEEPY } });
  t.equal(warm.statusCode, 200);
  t.match(await warm.body.text(), new RegExp(`^Konnichiwa from ${pod} in node3\\n$`), 'the same pod answers at once');
  t.comment(`warm: ${(performance.now() - t1).toFixed(1)} ms`);

  await until('sleepy back at zero', () => events.some((x) => x.kind === 'scaled-down'), 30_000);
  t.notOk(stack.cluster.pod(pod), 'the pod is gone');
  await poll('node3\'s gateway to route sleepy to the proxy again', async () => {
    const hosts = hostsOf(await clusters());
    return hosts.length > 0 && hosts.every((h) => !h.startsWith(`${podAddress.address}:${podAddress.port}`)) && hosts.some((h) => h.startsWith(proxyHost)) ? true : undefined;
  }, 100, 100);
  t.pass('Envoy sends sleepy to node3\'s proxy again');
  t.same(logs.filter((l) => /exited|error/i.test(l)), [], 'no Envoy trouble');
});
