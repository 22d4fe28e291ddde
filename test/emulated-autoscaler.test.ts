// The emulated Knative autoscaler with the proxies' real reporter on the other end of its
// websocket (binary WireStatMessages), starting real emulated pods. Its timing (cold start,
// readiness probes, stable window, grace period) runs on a manual clock; the sockets are real.
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { DEMO_CLUSTER_FILE, loadClusterFile, parseClusterFile, type ClusterFile } from '../cluster/config.js';
import { ClusterModel } from '../cluster/model.js';
import { startEmulatedCluster, type EmulatedCluster } from '../cluster/emulated/cluster.js';
import { EmulatedAutoscaler, type ScaleEvent } from '../cluster/emulated/autoscaler.js';
import { AutoscalerReporter, encodeWireStatMessages } from '../proxy/autoscaler.js';
import { ManualClock, settle } from './fixtures/clock.js';
import { until } from './support.js';

const REV = 'default/sleepy-00001';

function file(maxPods3: number): ClusterFile {
  return parseClusterFile([
    'nodes:',
    '  - { name: node1, address: 127.0.1.1 }',
    '  - { name: node2, address: 127.0.1.2 }',
    `  - { name: node3, address: 127.0.1.3, maxPods: ${maxPods3} }`,
    'latency:',
    '  - { between: [node3, node1], rttMs: 100 }',
    '  - { between: [node3, node2], rttMs: 50 }',
    '  - { between: [node1, node2], rttMs: 1 }',
    'revisions:',
    '  - { namespace: default, service: sleepy, name: sleepy-00001 }',
    'autoscaler:',
    '  stableWindowSeconds: 6',
    '  scaleToZeroGracePeriodSeconds: 2',
    '  coldStartSeconds: 1',
    '  revisions: [{ revision: default/sleepy-00001, capacity: 2 }]',
  ].join('\n'), 'autoscaler-test.yaml');
}

interface Setup {
  readonly clock: ManualClock;
  readonly cluster: EmulatedCluster;
  readonly autoscaler: EmulatedAutoscaler;
  readonly url: string;
  readonly events: { kind: string; e: ScaleEvent; at: number }[];
  readonly logs: string[];
  reporter(node: string): Promise<AutoscalerReporter>;
}

async function setup(t: Test, maxPods3 = 4): Promise<Setup> {
  const f = file(maxPods3);
  const clock = new ManualClock();
  const model = new ClusterModel(f.state);
  const cluster = await startEmulatedCluster({ model, pods: [], seed: 5 });
  const logs: string[] = [];
  const autoscaler = new EmulatedAutoscaler({ cluster, settings: f.autoscaler, maxPods: f.maxPods, listen: { host: '127.0.0.1', port: 0 }, clock, log: (l) => logs.push(l) });
  const a = await autoscaler.start();
  const events: { kind: string; e: ScaleEvent; at: number }[] = [];
  for (const kind of ['scaled-up', 'ready', 'scaled-down'] as const) autoscaler.on(kind, (e) => events.push({ kind, e, at: clock.now() }));
  const reporters: AutoscalerReporter[] = [];
  t.teardown(async () => {
    await Promise.all(reporters.map((r) => r.close()));
    await autoscaler.close();
    await cluster.close();
  });
  const url = `ws://127.0.0.1:${a.port}`;
  return {
    clock, cluster, autoscaler, url, events, logs,
    async reporter(node) {
      const address = model.current.node(node)!.address;
      // The reporter's own periods stay on the real clock: only its immediate stats matter here.
      const r = new AutoscalerReporter({ url, podName: `chikai-proxy-${node}`, localAddress: address, onWarning: () => undefined });
      reporters.push(r);
      r.start();
      await until('the reporter to connect', () => r.connected);
      return r;
    },
  };
}

/** Move the manual clock in steps, letting the real sockets answer in between. */
async function advance(s: Setup, ms: number, step = 25): Promise<void> {
  for (let done = 0; done < ms; done += step) {
    await s.clock.tick(Math.min(step, ms - done));
    await settle(20);
  }
}

t.test('a cold-start stat from node3\'s proxy starts a pod on node3, ready after the cold start and its first probe', async (t) => {
  const s = await setup(t);
  const reporter = await s.reporter('node3');
  reporter.coldStart(REV);
  const up = await until('the scale-up', () => s.events.find((x) => x.kind === 'scaled-up'));
  t.equal(up.e.node, 'node3', 'the pod runs where the demand came from');
  const endpoint = () => s.cluster.model.current.endpoints(REV)[0];
  t.equal(endpoint()?.node, 'node3');
  t.equal(endpoint()?.ready, false, 'its endpoint exists but is not ready while the container starts');
  t.same(s.autoscaler.status(REV), { revision: REV, phase: 'active', pod: up.e.pod, node: 'node3', ready: false });
  // Probes run every 50 ms and fail until the container is up, 1 s in.
  await advance(s, 975);
  t.equal(endpoint()?.ready, false, 'not ready before the cold start has passed');
  await advance(s, 100);
  await until('the probe after the cold start to mark it ready', () => endpoint()?.ready);
  t.same(s.events.map((x) => x.kind), ['scaled-up', 'ready']);
  t.equal(s.autoscaler.counts.badFrames, 0);
});

t.test('no demand for the stable window plus the grace period: back to zero; the next demand wakes it again', async (t) => {
  const s = await setup(t);
  const reporter = await s.reporter('node3');
  reporter.coldStart(REV);
  await until('the scale-up', () => s.events.some((x) => x.kind === 'scaled-up'));
  await advance(s, 1100, 50);
  const readyAt = (await until('ready', () => s.events.find((x) => x.kind === 'ready'))).at;
  // The window counts from readiness: a pod is not idle before it could serve.
  await advance(s, readyAt + 5900 - s.clock.now(), 250);
  t.equal(s.autoscaler.status(REV).phase, 'active', 'within the stable window');
  await advance(s, 100, 50);
  t.equal(s.autoscaler.status(REV).phase, 'inactive', 'a stable window without demand');
  t.equal(s.cluster.pods.length, 1, 'the grace period keeps the pod');
  await advance(s, readyAt + 7900 - s.clock.now(), 100);
  t.equal(s.cluster.pods.length, 1, 'still there just before the grace period ends');
  await advance(s, 200, 50);
  await until('the scale-down', () => s.events.some((x) => x.kind === 'scaled-down'));
  t.same(s.cluster.model.current.endpoints(REV), [], 'the endpoint left the model');
  t.equal(s.cluster.pods.length, 0);
  t.equal(s.autoscaler.status(REV).phase, 'zero');

  // A reporter sends one cold-start stat per period: wait out its (real) second.
  const other = await s.reporter('node2');
  other.coldStart(REV);
  const again = await until('a second scale-up', () => s.events.filter((x) => x.kind === 'scaled-up')[1]);
  t.equal(again.e.node, 'node2', 'this time the demand came from node2');
});

t.test('a full node: the pod starts on the nearest node with room', async (t) => {
  const s = await setup(t, 0);
  const reporter = await s.reporter('node3');
  reporter.coldStart(REV);
  const up = await until('the scale-up', () => s.events.find((x) => x.kind === 'scaled-up'));
  t.equal(up.e.node, 'node2', 'node3 has maxPods 0; node2 is 50 ms away, node1 100 ms');
});

t.test('a frame that is no WireStatMessages is dropped and the connection keeps working', async (t) => {
  const s = await setup(t);
  const ws = new WebSocket(s.url, { localAddress: '127.0.1.1' });
  t.teardown(() => ws.terminate());
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), { binary: true });
  ws.send('hello', { binary: false });
  await until('both frames to be seen', () => s.autoscaler.counts.badFrames === 2);
  t.match(s.logs.join('\n'), /dropped a frame from 127\.0\.1\.1 that is no WireStatMessages/);
  t.equal(s.logs.filter((l) => l.includes('dropped a frame')).length, 1, 'said once per connection');
  ws.send(encodeWireStatMessages([{ namespace: 'default', name: 'other-00001', podName: 'x', averageConcurrentRequests: 3, requestCount: 3 }]), { binary: true });
  ws.send(encodeWireStatMessages([{ namespace: 'default', name: 'sleepy-00001', podName: 'x', averageConcurrentRequests: 0, requestCount: 0 }]), { binary: true });
  await until('the stats', () => s.autoscaler.counts.stats === 2);
  t.equal(s.cluster.pods.length, 0, 'a revision it does not scale, and a stat without demand, start nothing');
  ws.send(encodeWireStatMessages([{ namespace: 'default', name: 'sleepy-00001', podName: 'x', averageConcurrentRequests: 1, requestCount: 1 }]), { binary: true });
  const up = await until('the scale-up', () => s.events.find((x) => x.kind === 'scaled-up'));
  t.equal(up.e.node, 'node1', 'the same connection still counts, from node1');
});

t.test('the cluster file: the autoscaler section and nodes[].maxPods, mistakes named by file, line and field', async (t) => {
  const demo = loadClusterFile(DEMO_CLUSTER_FILE);
  t.same(demo.autoscaler.revisions.map((r) => r.revision), ['default/sleepy-00001'], 'the demo scales sleepy');
  t.same(demo.pods.filter((p) => p.revision === 'default/sleepy-00001'), [], 'from zero');
  t.equal(demo.maxPods['node3'], 2);
  const base = [
    'nodes:',
    '  - { name: node1, address: 127.0.1.1, maxPods: 1 }',
    'revisions:',
    '  - { namespace: default, service: sleepy, name: sleepy-00001 }',
  ];
  const bad = (lines: string[], message: RegExp) => t.throws(() => parseClusterFile([...base, ...lines].join('\n'), 'my.yaml'), { name: 'ConfigError', message }, lines.join(' '));
  bad(['pods:', '  - { revision: default/sleepy-00001, node: node1 }', '  - { revision: default/sleepy-00001, node: node1 }'], /^my\.yaml:7: pods\[1\]\.node: expected a node with room for the pod \(node1 has maxPods 1\)/);
  bad(['pods:', '  - { revision: default/sleepy-00001, node: node1 }', 'autoscaler:', '  revisions: [{ revision: default/sleepy-00001 }]'], /autoscaler\.revisions\[0\]\.revision: expected a revision at zero/);
  bad(['autoscaler:', '  revisions: [{ revision: default/nope-00001 }]'], /autoscaler\.revisions\[0\]\.revision/);
  bad(['autoscaler:', '  stableWindowSeconds: 0.5'], /autoscaler\.stableWindowSeconds: expected a number from 1 to 3600/);
  bad(['autoscaler:', '  coldStart: 1'], /autoscaler/);
  bad(['autoscaler:', '  revisions: [{ revision: default/sleepy-00001 }, { revision: default/sleepy-00001 }]'], /autoscaler\.revisions\[1\]\.revision: expected a revision listed once/);
});
