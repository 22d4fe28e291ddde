// A whole node goes dark under load: its proxy and pods stop answering and connections to
// it hang (no reset). The sending proxy's RTT probes mark it unreachable (after 2.5 s of
// silence: timed on a manual clock in rtt.test.ts), traffic moves to the other node, and
// no request waits for the 300 s revision timeout.
import t from 'tap';
import { request } from 'undici';
import { parseClusterFile } from '../../cluster/config.js';
import { startEmulatedStack } from '../../bin/stack.js';
import { HELLO_HOST } from '../support.js';
import { RssSampler, recoveryMs, report, runLoad, scale, sleep, until } from './support.js';

// Requests enter at node1, which has no pod; node2 and node3 serve. node2 goes dark.
const CLUSTER = `
nodes:
  - { name: node1, region: r, zone: z1, address: 127.0.1.1 }
  - { name: node2, region: r, zone: z2, address: 127.0.1.2 }
  - { name: node3, region: r, zone: z3, address: 127.0.1.3 }
latency:
  - { between: [node1, node2], rttMs: 2, jitterMs: 0 }
  - { between: [node1, node3], rttMs: 2, jitterMs: 0 }
  - { between: [node2, node3], rttMs: 2, jitterMs: 0 }
revisions:
  - { namespace: default, service: hello, name: hello-00001, containerConcurrency: 0, timeoutSeconds: 300 }
pods:
  - { revision: default/hello-00001, node: node2, capacity: 4, serviceTimeMs: { min: 5, max: 10 } }
  - { revision: default/hello-00001, node: node3, capacity: 4, serviceTimeMs: { min: 5, max: 10 } }
proxy: { policy: chikai }
`;

t.test('a node goes dark under load: marked unreachable, traffic moves to the other node, nothing waits forever', async (t) => {
  const stack = await startEmulatedStack({ file: parseClusterFile(CLUSTER, 'node-dark.yaml'), proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 3 });
  t.teardown(() => stack.close());
  const url = stack.proxyUrl('node1');
  const proxy = stack.proxies.get('node1')!;
  const served = (node: string) => stack.cluster.pods.filter((p) => p.node === node).reduce((n, p) => n + p.served, 0);
  await until('RTT probes to measure both nodes', () => proxy.load.rttMs('node1', 'node2') !== undefined && proxy.load.rttMs('node1', 'node3') !== undefined, 5000);
  // Warm: both nodes serve.
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let i = 0; i < 10; i++) await (await request(url, { headers: { host: HELLO_HOST } })).body.dump();
  }));
  t.ok(served('node2') > 0 && served('node3') > 0, `both nodes serve before (node2 ${served('node2')}, node3 ${served('node3')})`);

  const rss = new RssSampler();
  const seconds = scale(10, 30);
  const darkAfterMs = 3000;
  const load = runLoad({ url, connections: 16, durationSeconds: seconds, host: HELLO_HOST, timeoutSeconds: 60 });
  // Watchers: requests whose every latency is kept, so one held at the dark node shows.
  let watching = true;
  const watched: { status: number; ms: number }[] = [];
  const watchers = Array.from({ length: 6 }, async () => {
    while (watching) {
      const t0 = performance.now();
      try {
        const res = await request(url, { headers: { host: HELLO_HOST }, headersTimeout: 0, bodyTimeout: 0 });
        await res.body.dump();
        watched.push({ status: res.statusCode, ms: performance.now() - t0 });
      } catch {
        watched.push({ status: 0, ms: performance.now() - t0 });
      }
    }
  });
  await sleep(darkAfterMs);
  const faultAt = performance.now() - load.startedAt;
  stack.cluster.network.setNodeDark('node2', true);
  const darkAt = performance.now();
  const marked = await until('node2 marked unreachable', () => !proxy.load.reachable('node1', 'node2') && performance.now() - darkAt, 60_000, 50);
  const r = await load.result;
  watching = false;
  // A request held at the dark node would wait for the 300 s revision timeout; give up on it well before.
  const allBack = await Promise.race([Promise.all(watchers).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 60_000).unref())]);
  const peak = await rss.stop();
  const slowest = Math.max(...watched.map((w) => w.ms));
  t.ok(allBack, 'every watched request came back (none held at the dark node)');
  t.ok(watched.every((w) => w.status === 200), `every watched request got 200 (${watched.length}, slowest ${(slowest / 1000).toFixed(2)} s)`);
  const recovery = recoveryMs(r.okAt, faultAt);
  t.comment(`node2 marked unreachable after ${(marked / 1000).toFixed(2)} s; load: ${r.ok} ok of ${r.sent}, statuses ${JSON.stringify(r.statuses)}, errors ${r.errors}, timeouts ${r.timeouts}; recovered after ${recovery === undefined ? 'never' : `${(recovery / 1000).toFixed(2)} s`}`);
  t.ok(marked > 0, 'node2 was marked unreachable');
  t.ok(recovery !== undefined, 'traffic flows again at half the earlier rate');
  t.equal(r.timeouts, 0, 'no request waited until the client gave up');
  t.equal(r.errors, 0, 'no request was lost');
  stack.cluster.network.setNodeDark('node2', false);
  await until('node2 reachable again after healing', () => proxy.load.reachable('node1', 'node2'), 60_000, 50);
  t.pass('node2 is reachable again once it answers probes');
  report(t, { scenario: 'node goes dark under load', sent: r.sent, failed: r.non2xx, lost: r.errors, recoveryMs: marked, peakRss: peak, rssOf: 'test process',
    note: `recovery = node marked unreachable, held requests retried elsewhere; slowest request ${(slowest / 1000).toFixed(2)} s` });
});
