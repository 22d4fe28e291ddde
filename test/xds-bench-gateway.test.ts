// The xds bench's simulated gateway speaks gRPC over node:http2 itself: against chikai's
// real xDS server it must subscribe, receive every response and ACK each with its version
// and nonce (the server records the ACKs and ignores none as stale), count the assignments
// it was sent, and fail loudly when the other end is not an ADS server.
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { SimulatedGateway } from '../bench/xds/gateway.js';
import { benchModel, gatewayNode, readyAfter } from '../bench/xds/model.js';
import { ENDPOINT_TYPE, TYPE_SHORT_NAME, PUSH_ORDER } from '../xds/protos.js';
import { startTestServer, until } from './fixtures/xds/server.js';

const REVISIONS = 12;

t.test('simulated gateways sync with chikai, ACK every response with its version and nonce, and follow a change', async (t) => {
  const bench = benchModel(REVISIONS);
  const { server, target } = await startTestServer(t, bench.model);
  const gateways = [0, 1, 2].map((i) => new SimulatedGateway(target, `gateway-${i}`, gatewayNode(i), bench.clusters, bench.routes));
  t.teardown(() => gateways.forEach((g) => g.close()));
  await until('every gateway synced', () => gateways.every((g) => g.synced) || gateways.some((g) => g.failed));
  t.same(gateways.map((g) => g.failed), [undefined, undefined, undefined], 'no stream failed');
  const acked = () => server.clients().every((c) => PUSH_ORDER.every((type) => {
    const st = c.types[TYPE_SHORT_NAME[type]];
    return st !== undefined && !st.awaiting_ack && st.acked_version === st.sent_version;
  }));
  await until('the server to record every ACK', acked);
  const clients = server.clients();
  t.same(clients.map((c) => c.node_id).sort(), ['gateway-0', 'gateway-1', 'gateway-2']);
  for (const c of clients) {
    const g = gateways[Number(c.node_id.split('-')[1])]!;
    t.equal(c.locality.sub_zone, gatewayNode(Number(c.node_id.split('-')[1])), 'its node identity arrived');
    for (const type of PUSH_ORDER) {
      const st = c.types[TYPE_SHORT_NAME[type]]!;
      t.equal(st.stale_nonces_ignored, 0, `${c.node_id} ${TYPE_SHORT_NAME[type]}: no ACK with a wrong nonce`);
      t.equal(g.acks.get(type), st.responses, `${c.node_id} ${TYPE_SHORT_NAME[type]}: one ACK per response`);
      t.equal(st.nacked, undefined);
    }
    t.equal(c.types.EDS!.subscribed.length, REVISIONS, 'subscribed to every revision\'s assignment');
    t.equal(g.edsResources, REVISIONS, `${c.node_id}: every assignment counted`);
    t.ok(g.bytes > 0);
  }

  const edsBefore = gateways.map((g) => g.edsAcks());
  const versionsBefore = clients.map((c) => c.types.EDS!.acked_version);
  bench.model.setReady(bench.changedPod, readyAfter(0));
  await until('every gateway to ACK the change', () => gateways.every((g, i) => g.edsAcks() > edsBefore[i]!));
  await until('the server to record the new ACKs', acked);
  const after = server.clients();
  t.ok(after.every((c, i) => c.types.EDS!.acked_version !== versionsBefore[i]), 'each gateway ACKed the new EDS version');
  t.ok(after.every((c) => c.types.EDS!.stale_nonces_ignored === 0), 'with the nonce of the response');
  t.same(gateways.map((g) => g.edsResources), [REVISIONS + 1, REVISIONS + 1, REVISIONS + 1], 'the change sent one assignment to each gateway');
  for (const c of after) t.equal(gateways[Number(c.node_id.split('-')[1])]!.acks.get(ENDPOINT_TYPE), c.types.EDS!.responses, `${c.node_id}: one EDS ACK per response`);
});

t.test('a simulated gateway fails, naming why, when the server answers with a gRPC error or not with gRPC', async (t) => {
  const answers: ((stream: http2.ServerHttp2Stream) => void)[] = [
    (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': 'unknown%20method' }, { endStream: true }),
    (s) => s.respond({ ':status': 404, 'content-type': 'text/plain' }, { endStream: true }),
    (s) => {
      // A frame that promises 100 bytes, then the stream ends with status OK.
      s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
      s.end(Buffer.from([0, 0, 0, 0, 100, 0x0a]));
    },
  ];
  let next = 0;
  const server = http2.createServer();
  server.on('stream', (s) => answers[next++]!(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const target = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const bench = benchModel(2);
  const failures: string[] = [];
  for (let i = 0; i < answers.length; i++) {
    const g = new SimulatedGateway(target, `gateway-${i}`, 'node1', bench.clusters, bench.routes);
    await until(`gateway ${i} to fail`, () => g.failed);
    failures.push(g.failed!.message);
    g.close();
  }
  t.match(failures[0], /^ADS stream ended with grpc-status 12: unknown method$/);
  t.match(failures[1], /^ADS answered HTTP 404 \(text\/plain\), not a gRPC stream$/);
  t.match(failures[2], /^the response body ended inside a message \(100 of its 100 bytes missing\)$/);
});
