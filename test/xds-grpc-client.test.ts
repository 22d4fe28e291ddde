// The xDS server drives a real xDS client: @grpc/grpc-js-xds (proxyless gRPC, the same
// resources Envoy reads: LDS api_listener → RDS → CDS → EDS with locality weights and
// priorities) calling small gRPC backends on the emulated nodes' addresses. The split it
// makes over thousands of calls must match the weights the server says it serves.
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { register as registerXdsResolver } from '@grpc/grpc-js-xds';
import { ClusterModel, type EndpointInfo, type RevisionInfo } from '../cluster/model.js';
import { hostRows } from '../xds/admin.js';
import { FixedLoadView, revision, testNodes } from './fixtures/xds/model.js';
import { startTestServer } from './fixtures/xds/server.js';

registerXdsResolver();

const HOST = 'hello.default.svc.cluster.local';
const CLUSTER = 'default/hello-00001';

/** A gRPC method with raw bytes in and out: the backends answer with their pod name. */
const WHO: grpc.MethodDefinition<Buffer, Buffer> = {
  path: '/chikai.test.Who/Name',
  requestStream: false,
  responseStream: false,
  requestSerialize: (b: Buffer) => b,
  requestDeserialize: (b: Buffer) => b,
  responseSerialize: (b: Buffer) => b,
  responseDeserialize: (b: Buffer) => b,
};
const WhoClient = grpc.makeGenericClientConstructor({ Name: WHO }, 'Who');

interface Backend {
  readonly pod: string;
  readonly node: string;
  readonly address: string;
  readonly port: number;
}

async function startBackend(t: Test, pod: string, node: string, address: string): Promise<Backend> {
  const server = new grpc.Server();
  server.addService({ Name: WHO }, {
    Name: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(pod)),
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${address}:0`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  t.teardown(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  return { pod, node, address, port };
}

/** A proxyless gRPC client that is node `gatewayNode`'s gateway, with an inline bootstrap. */
function xdsClient(t: Test, target: string, gatewayNode: string): grpc.Client {
  const bootstrap = {
    xds_servers: [{ server_uri: target, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: `grpc-gateway-${gatewayNode}`, cluster: 'chikai-test', locality: { region: 'edge', zone: 'edge-a', sub_zone: gatewayNode } },
  };
  const client = new WhoClient(`xds:///${HOST}`, grpc.credentials.createInsecure(), {
    'grpc.TEST_ONLY_DO_NOT_USE_IN_PROD.xds_bootstrap_config': JSON.stringify(bootstrap),
  });
  t.teardown(() => client.close());
  return client;
}

function call(client: grpc.Client): Promise<string> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest('/chikai.test.Who/Name', WHO.requestSerialize, WHO.responseDeserialize, Buffer.alloc(0), { deadline: Date.now() + 10_000 }, (err, res) => {
      if (err) reject(err);
      else resolve(res?.toString() ?? '');
    });
  });
}

/** Calls in waves of `parallel`, counting answers per node. */
async function split(client: grpc.Client, backends: readonly Backend[], calls: number, parallel = 20): Promise<Map<string, number>> {
  const nodeOf = new Map(backends.map((b) => [b.pod, b.node]));
  const counts = new Map<string, number>();
  for (let done = 0; done < calls; done += parallel) {
    const answers = await Promise.all(Array.from({ length: Math.min(parallel, calls - done) }, () => call(client)));
    for (const pod of answers) {
      const node = nodeOf.get(pod) ?? `unknown pod ${pod}`;
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
  }
  return counts;
}

async function setup(t: Test, load: FixedLoadView) {
  const nodes = testNodes(3);
  const rev: RevisionInfo = revision('hello', 'hello-00001', { protocol: 'h2c' });
  // node1 runs two pods, node2 and node3 one each: locality weights, not pod counts, must decide.
  const backends = [
    await startBackend(t, 'hello-node1-a', 'node1', '127.0.1.1'),
    await startBackend(t, 'hello-node1-b', 'node1', '127.0.1.1'),
    await startBackend(t, 'hello-node2-a', 'node2', '127.0.1.2'),
    await startBackend(t, 'hello-node3-a', 'node3', '127.0.1.3'),
  ];
  const endpoints: EndpointInfo[] = backends.map((b) => ({ pod: b.pod, revision: CLUSTER, node: b.node, address: b.address, port: b.port, ready: true }));
  const model = new ClusterModel({ domain: 'cluster.local', externalDomains: [], nodes, revisions: [rev], endpoints, latency: {} });
  const srv = await startTestServer(t, model, { load, recomputeMs: 100 });
  return { model, backends, ...srv };
}

/** Share of the cluster's traffic per node, as the server computes Envoy would split it. */
function servedShares(server: Awaited<ReturnType<typeof setup>>['server'], gatewayNode: string): Map<string, number> {
  const shares = new Map<string, number>();
  for (const r of hostRows(server.cache.view(gatewayNode)).filter((r) => r.cluster === CLUSTER)) {
    shares.set(r.sub_zone, (shares.get(r.sub_zone) ?? 0) + r.expected_share);
  }
  return shares;
}

t.test('grpc-js-xds splits calls over localities as the served weights say, within 5 points', async (t) => {
  // The edge gateway's own pod is busy, so the cost model blends traffic out to the cloud.
  const load = new FixedLoadView()
    .setRtt('node3', 'node1', 2).setRtt('node3', 'node2', 3).setRtt('node1', 'node2', 0.5)
    .setServiceTime('hello-node3-a', 4).setCapacity('hello-node3-a', 4).setInFlight('hello-node3-a', 8)
    .setServiceTime('hello-node1-a', 6).setServiceTime('hello-node1-b', 6).setServiceTime('hello-node2-a', 4);
  const { server, target, backends } = await setup(t, load);
  const served = servedShares(server, 'node3');
  const weights = [...served.values()].filter((s) => s > 0);
  t.ok(weights.length >= 2, `traffic is split over several localities: ${JSON.stringify(Object.fromEntries(served))}`);
  t.ok(Math.max(...weights) < 0.9, 'no locality takes (nearly) everything');

  const client = xdsClient(t, target, 'node3');
  await call(client); // first call waits for LDS → RDS → CDS → EDS
  const calls = 2400;
  const counts = await split(client, backends, calls);
  t.equal([...counts.values()].reduce((a, b) => a + b, 0), calls, 'every call answered');
  const lines: string[] = [];
  for (const node of ['node1', 'node2', 'node3']) {
    const observed = (counts.get(node) ?? 0) / calls;
    const expected = served.get(node) ?? 0;
    lines.push(`${node}: served ${(expected * 100).toFixed(1)} %, observed ${(observed * 100).toFixed(1)} %`);
    t.ok(Math.abs(observed - expected) <= 0.05, `${node}: observed ${(observed * 100).toFixed(1)} % vs served ${(expected * 100).toFixed(1)} %`);
  }
  t.comment(`split over ${calls} calls from node3's gateway — ${lines.join('; ')}`);
  t.notOk([...counts.keys()].some((k) => k.startsWith('unknown')), 'only known pods answered');
});

t.test('when a locality\'s pods all turn unready, grpc-js-xds moves to the next priority', async (t) => {
  // Idle pods, 50 ms to the cloud: the edge gateway keeps everything on node3 (priority 0);
  // node1 (nearer than node2) is priority 1.
  const load = new FixedLoadView().setRtt('node3', 'node1', 40).setRtt('node3', 'node2', 60).setRtt('node1', 'node2', 0.5);
  const { server, target, backends, model } = await setup(t, load);
  const before = servedShares(server, 'node3');
  t.equal(before.get('node3'), 1, 'the idle local pod gets all of node3\'s traffic');
  const client = xdsClient(t, target, 'node3');
  await call(client);
  const first = await split(client, backends, 300);
  t.same(Object.fromEntries(first), { node3: 300 }, 'every call stays on node3');

  model.setReady('hello-node3-a', false);
  server.recompute();
  const after = servedShares(server, 'node3');
  t.equal(after.get('node3') ?? 0, 0, 'node3 has no ready pod left');
  t.ok((after.get('node1') ?? 0) > 0.99, `node1 is now first: ${JSON.stringify(Object.fromEntries(after))}`);
  // The client follows once it has the new assignment; no call fails meanwhile.
  const deadline = Date.now() + 10_000;
  let last = new Map<string, number>();
  while (Date.now() < deadline) {
    last = await split(client, backends, 100);
    if ((last.get('node1') ?? 0) === 100) break;
  }
  t.same(Object.fromEntries(last), { node1: 100 }, 'calls move to node1, both of its pods');
  const both = await split(client, backends.filter((b) => b.node === 'node1'), 200);
  t.equal(both.get('node1'), 200);
});

// grpc-js-xds keeps its own XdsClient (DNS re-resolution, resource timers) alive for about
// 40 s after its channels close; once every test here is done, nothing is left to wait for.
t.teardown(() => {
  setTimeout(() => process.exit(), 500).unref();
});
