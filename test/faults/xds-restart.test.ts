// The xDS server is killed and restarted while clients use it: a real proxyless gRPC
// client (@grpc/grpc-js-xds) and a raw ADS client keep their last config, reconnect, and
// the restarted server sends them nothing they already have (no version storm). The gRPC
// client's calls, routed by that config, never fail meanwhile.
import t, { type Test } from 'tap';
import { Server, ServerCredentials, credentials, makeGenericClientConstructor, type Client, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { configuredLoadView } from '../../cluster/load.js';
import { ClusterModel } from '../../cluster/model.js';
import { startXdsServer, type XdsServer } from '../../xds/server.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE } from '../../xds/protos.js';
import { SotwClient, testNode } from '../fixtures/xds/ads-client.js';
import { revision, testNodes } from '../fixtures/xds/model.js';
import { RssSampler, report, scale, sleep, until } from './support.js';

const identity = (b: Buffer) => b;
const ECHO: ServiceDefinition = {
  Say: { path: '/chikai.test.Echo/Say', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
};

/** A gRPC backend on a node address that answers with its name. */
async function startBackend(t: Test, host: string, name: string): Promise<number> {
  const server = new Server();
  server.addService(ECHO, { Say: (_call: unknown, cb: (e: null, r: Buffer) => void) => cb(null, Buffer.from(name)) } as UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(`${host}:0`, ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  t.teardown(() => server.forceShutdown());
  return port;
}

async function startOn(model: ClusterModel, port: number): Promise<XdsServer> {
  return startXdsServer({ model, load: configuredLoadView(() => model.current), listen: { host: '127.0.0.1', port }, proxyPort: 8080, recomputeMs: 200, log: () => undefined });
}

t.test('xDS server killed and restarted: clients keep their config, reconnect, no version storm, no call fails', async (t) => {
  const nodes = testNodes(2);
  const rev = revision('hello', 'hello-00001');
  const endpoints = await Promise.all(nodes.map(async (n) => ({
    pod: `hello-00001-${n.name}`, revision: 'default/hello-00001', node: n.name, address: n.address, port: await startBackend(t, n.address, `pod on ${n.name}`), ready: true,
  })));
  const model = new ClusterModel({ domain: 'cluster.local', externalDomains: [], nodes, revisions: [rev], endpoints, latency: {} });
  let server = await startOn(model, 0);
  const port = server.address.port;
  t.teardown(() => server.close());

  // The real client reads its bootstrap from the environment when it first resolves.
  process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
    xds_servers: [{ server_uri: `127.0.0.1:${port}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: 'grpc-faults-client', cluster: 'faults', locality: { region: 'test', zone: 'test', sub_zone: 'node1' } },
  });
  const xds = await import('@grpc/grpc-js-xds');
  xds.register();
  const Echo = makeGenericClientConstructor(ECHO, 'Echo');
  const grpcClient = new Echo('xds:///hello.default', credentials.createInsecure()) as unknown as Client & { Say: (req: Buffer, opts: { deadline: number }, cb: (e: Error | null, r?: Buffer) => void) => void };
  t.teardown(() => grpcClient.close());
  const say = () => new Promise<string>((resolve, reject) => grpcClient.Say(Buffer.from('hi'), { deadline: Date.now() + 5000 }, (e, r) => (e ? reject(e) : resolve(r!.toString()))));
  t.match(await say(), /^pod on node\d$/, 'the gRPC client routes by the xDS config');

  // The raw client: subscribes to CDS and EDS and ACKs what it gets.
  const raw = new SotwClient(`127.0.0.1:${port}`, testNode('node2', 'raw-faults-client'));
  raw.subscribe(CLUSTER_TYPE);
  const cds = await raw.next(CLUSTER_TYPE);
  raw.ack(cds);
  raw.setNames(ENDPOINT_TYPE, ['default/hello-00001']);
  raw.subscribe(ENDPOINT_TYPE, ['default/hello-00001']);
  const eds = await raw.next(ENDPOINT_TYPE);
  raw.ack(eds);

  const rss = new RssSampler();
  let calls = 0;
  const failures: string[] = [];
  let calling = true;
  const caller = (async () => {
    while (calling) {
      calls++;
      try { await say(); } catch (err) { failures.push((err as Error).message); }
      await sleep(10);
    }
  })();
  await sleep(1000);
  const killedAt = performance.now();
  await server.close();
  await until('the raw client to see its stream end', () => raw.ended, 5000);
  await sleep(scale(2000, 8000)); // the control plane is away; calls go on with the last config
  server = await startOn(model, port);
  const back = await until('the gRPC client to reconnect', () => server.clients().some((c) => c.node_id === 'grpc-faults-client' && c.types.CDS?.acked_version), 30_000, 50);
  const reconnectMs = performance.now() - killedAt;
  // The raw client reconnects saying which versions it has.
  const raw2 = new SotwClient(`127.0.0.1:${port}`, testNode('node2', 'raw-faults-client'));
  t.teardown(() => raw2.close());
  raw2.subscribe(CLUSTER_TYPE, [], cds.version);
  raw2.setNames(ENDPOINT_TYPE, ['default/hello-00001']);
  raw2.subscribe(ENDPOINT_TYPE, ['default/hello-00001'], eds.version);
  t.ok(await raw2.quiet(CLUSTER_TYPE, 1000), 'the raw client holding the current CDS gets no re-push');
  t.ok(await raw2.quiet(ENDPOINT_TYPE, 200), 'nor EDS');
  await sleep(1000);
  const status = server.clients().find((c) => c.node_id === 'grpc-faults-client')!;
  const pushes = Object.values(status.types).reduce((n, s) => n + s.responses, 0);
  t.ok(pushes <= 4, `the gRPC client got at most one response per type after the restart (${pushes})`);
  calling = false;
  await caller;
  const peak = await rss.stop();
  t.comment(`${calls} calls, ${failures.length} failed; reconnected ${(reconnectMs / 1000).toFixed(1)} s after the kill (${back ? 'ok' : ''}); ${pushes} responses to the gRPC client after the restart`);
  t.same(failures, [], 'no gRPC call failed while the control plane was away');
  report(t, { scenario: 'xDS server killed and restarted', sent: calls, failed: failures.length, lost: 0, recoveryMs: reconnectMs, peakRss: peak, rssOf: 'test process',
    note: `gRPC calls via @grpc/grpc-js-xds; recovery = kill → gRPC client reconnected and ACKed; ${pushes} responses after the restart` });
});
