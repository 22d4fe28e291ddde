// The routing brain on the emulated demo cluster: chikai keeps the edge's traffic at the
// edge while its pod is fine, moves it when the pod turns slow, and measures RTTs.
import t from 'tap';
import { request } from 'undici';
import { loadClusterFile, DEMO_CLUSTER_FILE } from '../cluster/config.js';
import { startEmulatedStack, type EmulatedStack } from '../bin/stack.js';
import { HELLO_HOST, sleep } from './support.js';

async function demoStack(policy: string): Promise<EmulatedStack> {
  return startEmulatedStack({ file: loadClusterFile(DEMO_CLUSTER_FILE), policy, proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 7 });
}

/** `users` closed-loop clients against one proxy for `ms`; the node that served each request. */
async function load(url: string, users: number, ms: number): Promise<{ nodes: Record<string, number>; latencies: number[] }> {
  const nodes: Record<string, number> = {};
  const latencies: number[] = [];
  const end = performance.now() + ms;
  await Promise.all(Array.from({ length: users }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const res = await request(url, { headers: { host: HELLO_HOST } });
      const body = await res.body.text();
      latencies.push(performance.now() - t0);
      const node = / in (node\d)\n$/.exec(body)?.[1] ?? `status ${res.statusCode}`;
      nodes[node] = (nodes[node] ?? 0) + 1;
    }
  }));
  return { nodes, latencies };
}

const total = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

t.test('chikai: light load at the edge stays at the edge; a 10× slower edge pod moves it to the cloud', async (t) => {
  const stack = await demoStack('chikai');
  t.teardown(() => stack.close());
  await sleep(1200); // a few RTT probes
  const light = await load(stack.proxyUrl('node3'), 3, 2500);
  const n = total(light.nodes);
  const localShare = (light.nodes.node3 ?? 0) / n;
  t.comment(`light load from node3: ${n} requests, ${(localShare * 100).toFixed(1)} % served on node3, median ${median(light.latencies).toFixed(1)} ms`);
  t.ok(localShare >= 0.99, `≥ 99 % local (${JSON.stringify(light.nodes)})`);

  stack.cluster.pods.find((p) => p.node === 'node3')!.setSlowdown(10);
  const slow = await load(stack.proxyUrl('node3'), 12, 4000);
  const m = total(slow.nodes);
  const remote = ((slow.nodes.node1 ?? 0) + (slow.nodes.node2 ?? 0)) / m;
  t.comment(`node3 pod 10× slower, 12 users: ${(remote * 100).toFixed(1)} % served on node1/node2, median ${median(slow.latencies).toFixed(1)} ms`);
  t.ok(remote > 0.5, `most requests moved to the cloud (${JSON.stringify(slow.nodes)})`);
  t.equal(Object.keys(slow.nodes).filter((k) => k.startsWith('status')).length, 0, 'no request failed');
});

t.test('knative spreads the edge traffic over every node: the baseline chikai improves on', async (t) => {
  const stack = await demoStack('knative');
  t.teardown(() => stack.close());
  const r = await load(stack.proxyUrl('node3'), 3, 2000);
  const share = (r.nodes.node3 ?? 0) / total(r.nodes);
  t.comment(`knative, light load from node3: ${(share * 100).toFixed(1)} % local, median ${median(r.latencies).toFixed(1)} ms`);
  t.ok(share < 0.8, `a large share crosses the WAN (${JSON.stringify(r.nodes)})`);
});

t.test('RTTs are measured, exported in monlat form, and a dark node is marked unreachable within 3 s', async (t) => {
  const stack = await demoStack('chikai');
  t.teardown(() => stack.close());
  await sleep(2500);
  const text = await (await request(`${stack.adminUrl('node3')}/metrics`)).body.text();
  const rtt = (to: string) => Number(new RegExp(`latency_between_nodes\\{from="node3",to="${to}"[^}]*\\} ([\\d.]+)`).exec(text)?.[1]);
  // A median of a few jittered samples on a busy 2-core machine: the band is wide, but a
  // proxy that did not measure (0) or measured the wrong link (0.5 ms) falls outside it.
  t.ok(rtt('node1') > 35 && rtt('node1') < 90, `node3→node1 measured ${rtt('node1').toFixed(1)} ms (configured 50 ± 10)`);
  t.ok(rtt('node2') > 35 && rtt('node2') < 90, `node3→node2 measured ${rtt('node2').toFixed(1)} ms`);
  t.match(text, /chikai_node_rtt_seconds\{from="node3",to="node1"[^}]*\} 0\.0[3-6]/);
  const one = await (await request(`${stack.adminUrl('node1')}/metrics`)).body.text();
  const cloud = Number(/latency_between_nodes\{from="node1",to="node2"[^}]*\} ([\d.]+)/.exec(one)?.[1]);
  t.ok(cloud < 5, `node1→node2 measured ${cloud.toFixed(2)} ms (configured 0.5)`);

  stack.cluster.network.setNodeDark('node1', true);
  const dark = performance.now();
  let marked = Infinity;
  while (performance.now() - dark < 5000) {
    const m = await (await request(`${stack.adminUrl('node3')}/metrics`)).body.text();
    if (/chikai_node_reachable\{from="node3",to="node1"[^}]*\} 0/.test(m)) {
      marked = performance.now() - dark;
      break;
    }
    await sleep(100);
  }
  t.comment(`node1 marked unreachable by node3 after ${marked.toFixed(0)} ms`);
  t.ok(marked <= 3200, 'within 3 s (plus one metrics poll)');
  t.notOk(stack.proxies.get('node3')!.load.reachable('node3', 'node1'), 'the cost model sees it unreachable');
  stack.cluster.network.setNodeDark('node1', false);
});
