// Child process for the hostile-ADS scenario: opens and drops ADS streams in a loop and
// sends undecodable messages, so that the grpc-js client objects it leaves behind (closed
// channels stay referenced while their shared connection is up) do not count against the
// xDS server's memory, which the parent measures.
// usage: node ads-dropper.js TARGET STREAMS GARBAGE
import { credentials, makeGenericClientConstructor, type ClientDuplexStream } from '@grpc/grpc-js';
import { seededRandom } from '../../cluster/emulated/network.js';
import { CLUSTER_TYPE, envoyProtos } from '../../xds/protos.js';
import { ADS_SERVICE } from '../../xds/wire.js';
import { SotwClient, testNode } from '../fixtures/xds/ads-client.js';

const [target, streams, garbage] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const identity = (b: Buffer) => b;
const RawAds = makeGenericClientConstructor({
  Raw: { path: `/${ADS_SERVICE}/StreamAggregatedResources`, requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
}, 'RawAds');
const requestType = envoyProtos().type('envoy.service.discovery.v3.DiscoveryRequest');
const rand = seededRandom(7);

// Undecodable bytes, and a NACK whose error_detail carries an Any of an unknown type.
for (let i = 0; i < garbage; i++) {
  const client = new RawAds(target, credentials.createInsecure());
  const call = (client as unknown as { Raw: () => ClientDuplexStream<Buffer, Buffer> }).Raw();
  call.on('error', () => undefined);
  call.on('data', () => undefined);
  const junk = Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 300) }, () => Math.floor(rand() * 256)));
  call.write(i % 2 ? junk : Buffer.from(requestType.encode(requestType.fromObject({
    node: { id: `junk-${i}` }, type_url: CLUSTER_TYPE, response_nonce: 'nope',
    error_detail: { code: 3, message: 'junk', details: [{ type_url: 'type.googleapis.com/not.a.Type', value: junk }] },
  })).finish()));
  await sleep(2);
  call.cancel();
  client.close();
}
// Streams opened and dropped.
for (let i = 0; i < streams; i++) {
  const c = new SotwClient(target, testNode('node1', `dropper-${i}`));
  c.subscribe(CLUSTER_TYPE);
  if (i % 3 === 0) await sleep(1);
  c.close();
}
process.exit(0);
