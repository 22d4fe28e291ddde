// The paper bench's reporting and its stand-ins for the other systems' gateways: rows pool
// the rounds and carry their spread, ratios to the oracle pair each round with the oracle
// of the same round, and the stock Kourier, FaaSt and oracle gateway configurations have the
// shape those systems give Envoy. (Envoy routing with them: test/bench-smoke.test.ts.)
import t from 'tap';
import { aggregate, compareIntervals, roundRatio, type Sample, type SideSample } from '../bench/paper/aggregate.js';
import { chikaiAgainstEveryone } from '../bench/paper/run.js';
import { paperClusterFile } from '../bench/paper/cluster.js';
import { activatorCount, fixedSplitConfigs, kourierConfigs, localProxyConfigs } from '../bench/paper/gateway-config.js';
import { edgeShareSplit } from '../bench/paper/oracle.js';
import type { GatewayConfig } from '../bench/paper/fixed-xds.js';
import { ClusterModel } from '../cluster/model.js';

/** One side of one step whose answers took exactly these milliseconds. */
function side(latencies: number[], offered = latencies.length, local = latencies.length): SideSample {
  return { latencies: Float64Array.from(latencies).sort(), offered, completed: latencies.length, errors: offered - latencies.length, local };
}

function sample(policy: string, round: number, result: SideSample): Sample {
  return { path: 'gateway', policy, latency_ms: 50, users: 10, side: 'edge', round, result };
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

t.test('a row pools its rounds and reports the lowest and highest single round', async (t) => {
  const rows = aggregate([
    sample('chikai', 1, side(range(1, 100))),
    sample('chikai', 2, side(range(11, 110), 100, 50)),
    sample('chikai', 3, side(range(21, 120), 110)),
  ]);
  t.equal(rows.length, 1);
  const r = rows[0]!;
  t.equal(r.rounds, 3);
  t.same([r.p50_lo, r.p50_ms, r.p50_hi], [50, 60, 70], 'pooled median between the rounds\' medians');
  t.same(r.p50_rounds, [50, 60, 70]);
  t.same([r.p99_lo, r.p99_hi], [99, 119]);
  t.same([r.offered, r.completed, r.errors], [310, 300, 10], 'counts summed over the rounds');
  t.same([r.done_lo, r.done_hi], [0.9091, 1]);
  t.same([r.local_share, r.local_lo, r.local_hi], [0.8333, 0.5, 1]);
  t.equal(r.p50_vs_oracle, null, 'no oracle, no ratio');
});

t.test('ratios to the oracle pair every round with the oracle of the same round', async (t) => {
  // The machine was twice as slow in round 2: the oracle too, so the ratio stays put.
  const rows = aggregate([
    sample('chikai', 1, side([10, 10, 10])),
    sample('oracle', 1, side([8, 8, 8])),
    sample('chikai', 2, side([20, 20, 20])),
    sample('oracle', 2, side([16, 16, 16])),
    sample('chikai', 3, side([11, 11, 11])),
    sample('oracle', 3, side([10, 10, 10])),
  ]);
  const chikai = rows.find((r) => r.policy === 'chikai')!;
  t.same([chikai.p50_vs_oracle_lo, chikai.p50_vs_oracle, chikai.p50_vs_oracle_hi], [1.1, 1.25, 1.25]);
  t.same([chikai.p50_lo, chikai.p50_hi], [10, 20], 'the latencies themselves keep the machine\'s drift');
  t.equal(rows.find((r) => r.policy === 'oracle')!.p50_vs_oracle, null);
});

t.test('the headline puts chikai over the oracle and every baseline, round by round, both sides', async (t) => {
  const at = (policy: string, round: number, s: 'edge' | 'cloud', ms: number): Sample => ({ ...sample(policy, round, side([ms, ms, ms])), side: s });
  const samples: Sample[] = [];
  for (const s of ['edge', 'cloud'] as const) {
    // chikai 10 ms every round; the oracle 8, 10, 9; knative 20, 40, 25.
    [10, 10, 10].forEach((ms, i) => samples.push(at('chikai', i + 1, s, ms)));
    [8, 10, 9].forEach((ms, i) => samples.push(at('oracle', i + 1, s, ms)));
    [20, 40, 25].forEach((ms, i) => samples.push(at('knative', i + 1, s, s === 'edge' ? ms : 2 * ms)));
  }
  const rows = aggregate(samples);
  const chikai = rows.find((r) => r.policy === 'chikai' && r.side === 'edge')!;
  const knative = rows.find((r) => r.policy === 'knative' && r.side === 'edge')!;
  t.same(roundRatio(chikai, knative, 50), { value: 0.4, lo: 0.25, hi: 0.5 }, 'median and extremes of the per-round ratios');
  const md = chikaiAgainstEveryone({ links: [{ rttMs: 50, jitterMs: 10 }], users: [10], rounds: 3, systems: ['knative', 'chikai', 'oracle'].map((policy) => ({ path: 'gateway' as const, policy })) }, rows, 'gateway');
  t.match(md, /\| RTT \| users \| side \| chikai p50 ms \| ÷ oracle \| ÷ knative \| chikai done \|/, 'the oracle first, then every baseline');
  t.match(md, /\| 50 ms \| 10 \| edge \| 10\.0 \| 1\.11× \(1\.00–1\.25\) \| 0\.40× \(0\.25–0\.50\) \| 100\.0 % \|/);
  t.match(md, /\| 50 ms \| 10 \| cloud \| 10\.0 \| 1\.11× \(1\.00–1\.25\) \| 0\.20× \(0\.13–0\.25\) \| 100\.0 % \|/, 'the cloud side gets its own rows');
});

t.test('two rows differ beyond the rounds\' spread only when their intervals do not overlap', async (t) => {
  t.equal(compareIntervals({ lo: 5, hi: 6 }, { lo: 7, hi: 9 }), 'lower');
  t.equal(compareIntervals({ lo: 8, hi: 10 }, { lo: 7, hi: 9 }), 'tie');
  t.equal(compareIntervals({ lo: 9.5, hi: 10 }, { lo: 7, hi: 9 }), 'higher');
  t.equal(compareIntervals({ lo: null, hi: null }, { lo: 7, hi: 9 }), 'tie');
});

/** The paper's cluster with one ready pod per node (the emulated pods' endpoints). */
function model(): ClusterModel {
  const { state } = paperClusterFile({ rttMs: 50, jitterMs: 10, edgeCapacity: 1, cloudCapacity: 3 });
  const endpoints = state.nodes.map((n, i) => ({ pod: `hello-00001-${n.name}`, revision: 'default/hello-00001', node: n.name, address: n.address, port: 40001 + i, ready: true }));
  return new ClusterModel({ ...state, endpoints });
}
const setting = { proxyPort: 8012, ports: { external: 8080, internal: 8081, probe: 8090 } };
/** The parts of Envoy's Cluster and Listener JSON these tests read. */
interface Address { readonly socket_address: { readonly address: string; readonly port_value: number } }
interface ClusterJson {
  readonly name: string;
  readonly type: string;
  readonly lb_policy: string;
  readonly common_lb_config?: { readonly locality_weighted_lb_config?: object };
  readonly load_assignment: {
    readonly endpoints: readonly {
      readonly locality?: { readonly sub_zone: string };
      readonly load_balancing_weight?: number;
      readonly lb_endpoints: readonly { readonly endpoint: { readonly address: Address } }[];
    }[];
  };
}
const firstCluster = (c: GatewayConfig | undefined) => c!.clusters[0] as unknown as ClusterJson;
const hostPort = (a: Address) => `${a.socket_address.address}:${a.socket_address.port_value}`;

t.test('stock Kourier: every gateway gets the same STATIC cluster over the activators, one locality, no weights', async (t) => {
  t.equal(activatorCount(3), 3, 'Knative puts max(2, ⌈3 pods × 100 / 100⌉) activators behind the revision');
  t.equal(activatorCount(1), 2, 'never fewer than two');
  const configs = kourierConfigs(model().current, setting);
  t.same([...configs.keys()].sort(), ['node1', 'node2', 'node3']);
  const clusters = [...configs.values()].map((c) => JSON.stringify(c.clusters));
  t.equal(new Set(clusters).size, 1, 'one set of clusters for every gateway');
  const routes = [...configs.values()].map((c) => JSON.stringify(c.routes));
  t.equal(new Set(routes).size, 1, 'one set of routes for every gateway');
  const cluster = firstCluster(configs.get('node3'));
  t.equal(cluster.name, 'default/hello-00001');
  t.equal(cluster.type, 'STATIC');
  t.equal(cluster.lb_policy, 'ROUND_ROBIN');
  t.notOk(cluster.common_lb_config, 'no locality weighting');
  t.equal(cluster.load_assignment.endpoints.length, 1, 'one locality');
  const locality = cluster.load_assignment.endpoints[0];
  t.notOk(locality?.locality);
  t.notOk(locality?.load_balancing_weight);
  t.same(locality!.lb_endpoints.map((e) => hostPort(e.endpoint.address)).sort(),
    ['127.0.1.1:8012', '127.0.1.2:8012', '127.0.1.3:8012'], 'the activators on every node');
  t.same(configs.get('node3')!.endpoints, [], 'no EDS');
  const listener = configs.get('node3')!.listeners.find((l) => l.name === 'listener_8080') as unknown as { address: Address };
  t.equal(listener.address.socket_address.address, '127.0.1.3', 'listeners bind the gateway\'s own node address (one host)');
});

t.test('FaaSt: each gateway to its own node\'s activator', async (t) => {
  const configs = localProxyConfigs(model().current, setting);
  for (const [node, address] of [['node1', '127.0.1.1'], ['node3', '127.0.1.3']]) {
    const cluster = firstCluster(configs.get(node!));
    t.same(cluster.load_assignment.endpoints[0]!.lb_endpoints.map((e) => e.endpoint.address.socket_address.address), [address], node);
  }
});

t.test('the oracle at the gateways: locality weights from the fixed split, pods directly', async (t) => {
  const snap = model().current;
  const configs = fixedSplitConfigs(snap, setting, (n) => edgeShareSplit(n, 'node3', ['node1', 'node2'], 0.3));
  const edge = firstCluster(configs.get('node3'));
  t.ok(edge.common_lb_config?.locality_weighted_lb_config, 'locality weighting on');
  const weights = Object.fromEntries(edge.load_assignment.endpoints.map((l) => [l.locality?.sub_zone, l.load_balancing_weight]));
  t.same(weights, { node1: 15, node2: 15, node3: 70 });
  const pods = new Set(snap.endpoints('default/hello-00001').map((e) => `${e.address}:${e.port}`));
  for (const l of edge.load_assignment.endpoints) {
    for (const e of l.lb_endpoints) t.ok(pods.has(hostPort(e.endpoint.address)), 'a pod');
  }
  const cloud = firstCluster(configs.get('node1'));
  t.same(cloud.load_assignment.endpoints.map((l) => l.locality?.sub_zone), ['node1'], 'a cloud gateway keeps its node\'s requests');
  const allLocal = firstCluster(fixedSplitConfigs(snap, setting, (n) => edgeShareSplit(n, 'node3', ['node1', 'node2'], 0)).get('node3'));
  t.same(allLocal.load_assignment.endpoints.map((l) => l.locality?.sub_zone), ['node3'], 'a node without a share is left out');
});
