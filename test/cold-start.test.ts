// Scale from zero through the whole emulated stack: a request for a revision at zero is
// held by the node proxy, the proxy's stat reaches the emulated autoscaler over its
// websocket, a pod starts (on the requesting node when it has room), turns ready after
// the cold start, and the held request is answered by it. New connections pay TCP's
// handshake here. "X ms between nodes" is knative/serving#14202's `netem delay X` on every
// node: a round trip of 2X. Time-to-first-byte is reported, never asserted: outcomes are.
import t, { type Test } from 'tap';
import { request } from 'undici';
import { parseClusterFile, type ClusterFile } from '../cluster/config.js';
import { startEmulatedStack, type EmulatedStack } from '../bin/stack.js';
import type { ScaleEvent } from '../cluster/emulated/autoscaler.js';
import { sleep, until } from './support.js';

const SLEEPY_HOST = 'sleepy.default.svc.cluster.local';
const REV = 'default/sleepy-00001';
const COLD_START_S = 0.3;

function clusterFile(delayMs: number, edgeMaxPods: number, coldStartS = COLD_START_S): ClusterFile {
  return parseClusterFile([
    'nodes:',
    '  - { name: node1, region: cloud, zone: cloud-a, address: 127.0.1.1 }',
    `  - { name: node3, region: edge, zone: edge-a, address: 127.0.1.3, maxPods: ${edgeMaxPods} }`,
    'latency:',
    `  - { between: [node3, node1], rttMs: ${2 * delayMs}, jitterMs: 1 }`,
    'revisions:',
    '  - { namespace: default, service: sleepy, name: sleepy-00001, containerConcurrency: 0, timeoutSeconds: 60 }',
    'autoscaler:',
    '  stableWindowSeconds: 1',
    '  scaleToZeroGracePeriodSeconds: 0',
    `  coldStartSeconds: ${coldStartS}`,
    '  revisions: [{ revision: default/sleepy-00001, serviceTimeMs: { min: 1, max: 2 }, capacity: 50 }]',
    'proxy: { policy: chikai }',
  ].join('\n'), 'cold-start-test.yaml');
}

async function stackWith(t: Test, delayMs: number, edgeMaxPods: number, coldStartS?: number): Promise<{ stack: EmulatedStack; events: { kind: string; e: ScaleEvent }[] }> {
  const stack = await startEmulatedStack({ file: clusterFile(delayMs, edgeMaxPods, coldStartS), proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 23, tcpHandshake: true });
  t.teardown(() => stack.close());
  const events: { kind: string; e: ScaleEvent }[] = [];
  for (const kind of ['scaled-up', 'ready', 'scaled-down'] as const) stack.autoscaler!.on(kind, (e) => events.push({ kind, e }));
  await until('every proxy to reach the autoscaler', () => stack.autoscaler!.connections === 2);
  return { stack, events };
}

async function get(url: string): Promise<{ status: number; body: string; ttfbMs: number }> {
  const t0 = performance.now();
  const res = await request(url, { headers: { host: SLEEPY_HOST } });
  const ttfbMs = performance.now() - t0;
  return { status: res.statusCode, body: await res.body.text(), ttfbMs };
}

const metric = async (stack: EmulatedStack, node: string, name: string): Promise<number> => {
  const text = await (await request(`${stack.adminUrl(node)}/metrics`)).body.text();
  return Number(new RegExp(`^${name}\\{[^}]*revision="${REV}"[^}]*\\} ([\\d.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
};

t.test('a request at zero is held, the autoscaler hears it, a pod starts on the requesting node and answers it', async (t) => {
  const { stack, events } = await stackWith(t, 100, 4);
  t.same(stack.model.current.endpoints(REV), [], 'sleepy starts at zero');
  // Read the gauge the moment the pod is started: the request is held then, whatever the machine's speed.
  const heldAtScaleUp = new Promise<number | undefined>((resolve) => stack.autoscaler!.once('scaled-up', () => {
    void stack.proxies.get('node3')!.metrics.heldAtZero.get().then((g) => resolve(g.values.find((v) => v.labels['revision'] === REV)?.value));
  }));
  const r = await get(stack.proxyUrl('node3'));
  t.equal(await heldAtScaleUp, 1, 'the request was held while the pod started');
  t.equal(r.status, 200);
  t.match(r.body, /^Konnichiwa from sleepy-00001-node3-\w+ in node3\n$/, 'answered by a pod that started on node3');
  t.same(events.map((x) => [x.kind, x.e.node]), [['scaled-up', 'node3'], ['ready', 'node3']]);
  t.ok(stack.autoscaler!.counts.stats > 0, 'the autoscaler decoded the stat');
  t.equal(await metric(stack, 'node3', 'chikai_requests_held_at_zero'), 0, 'nothing is held any more');
  t.equal(await metric(stack, 'node3', 'chikai_cold_start_seconds_count'), 1, 'one cold start observed');
  t.comment(`local cold start: ${r.ttfbMs.toFixed(0)} ms to the first byte (cold start ${COLD_START_S * 1000} ms)`);

  const warm = await get(stack.proxyUrl('node3'));
  t.equal(warm.status, 200);
  t.equal(await metric(stack, 'node3', 'chikai_cold_start_seconds_count'), 1, 'a request to a ready pod is no cold start');
  t.comment(`then at once: ${warm.ttfbMs.toFixed(1)} ms`);
});

for (const delayMs of [50, 70, 100]) {
  t.test(`${delayMs} ms between nodes (RTT ${2 * delayMs} ms), the edge node full: every cold start succeeds across the link`, async (t) => {
    const { stack, events } = await stackWith(t, delayMs, 0);
    const trials = 3;
    const ttfb: number[] = [];
    for (let i = 0; i < trials; i++) {
      const r = await get(stack.proxyUrl('node3'));
      t.equal(r.status, 200, `cold start ${i + 1} answered`);
      t.match(r.body, / in node1\n$/, 'by the pod on node1, the node with room');
      ttfb.push(r.ttfbMs);
      // Back to zero before the next one.
      await until('the scale-down', () => events.filter((x) => x.kind === 'scaled-down').length === i + 1);
    }
    t.equal(events.filter((x) => x.kind === 'scaled-up').length, trials, 'one pod per cold start');
    const bound = COLD_START_S * 1000 + 2 * delayMs;
    t.comment(`${delayMs} ms (RTT ${2 * delayMs}): ${trials}/${trials} cold starts, first byte after ${ttfb.map((x) => x.toFixed(0)).join(', ')} ms (cold start + one RTT = ${bound} ms, + probe period and new connections)`);
  });
}

t.test('a burst of 200 requests at zero is held and every one answered by the one pod that starts', async (t) => {
  // A 2 s cold start: all 200 are sent long before the pod is ready, even on a busy machine.
  const { stack, events } = await stackWith(t, 50, 4, 2);
  const replies = await Promise.all(Array.from({ length: 200 }, () => get(stack.proxyUrl('node3'))));
  t.same([...new Set(replies.map((r) => r.status))], [200], 'all 200 answered 200');
  t.equal(events.filter((x) => x.kind === 'scaled-up').length, 1, 'one pod');
  const colds = await metric(stack, 'node3', 'chikai_cold_start_seconds_count');
  t.equal(colds, 200, `each of them was a cold start (${colds})`);
  t.equal(await metric(stack, 'node3', 'chikai_requests_held_at_zero'), 0);
});

t.test('after the stable window without requests the revision is back at zero, and the next request wakes it', async (t) => {
  const { stack, events } = await stackWith(t, 50, 4);
  t.equal((await get(stack.proxyUrl('node3'))).status, 200);
  const down = await until('the scale-down', () => events.find((x) => x.kind === 'scaled-down'));
  t.equal(down.e.node, 'node3');
  t.same(stack.model.current.endpoints(REV), [], 'no endpoint left');
  t.equal(stack.cluster.pods.length, 0, 'no pod left');
  await sleep(50);
  const again = await get(stack.proxyUrl('node3'));
  t.equal(again.status, 200, 'woken again');
  t.equal(events.filter((x) => x.kind === 'scaled-up').length, 2);
});
