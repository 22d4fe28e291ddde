// Hostile ADS clients against one xDS server: unknown type URLs, undecodable messages and
// garbage Any payloads, a client NACKing everything, one never ACKing, thousands of
// subscribe/unsubscribe churns, streams opened and dropped in a loop. The server stays up,
// its memory flat, its stream table clean, and a well-behaved client still gets updates.
import t from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CLUSTER_TYPE, ENDPOINT_TYPE } from '../../xds/protos.js';
import { DeltaClient, SotwClient, testNode } from '../fixtures/xds/ads-client.js';
import { revision, testModel } from '../fixtures/xds/model.js';
import { startTestServer } from '../fixtures/xds/server.js';
import { RssSampler, heapAfterGc, report, scale, sleep, until } from './support.js';

const HELLO = 'default/hello-00001';
const DROPPER = fileURLToPath(new URL('./ads-dropper.js', import.meta.url));

t.test('hostile ADS clients: server up, memory flat, a good client unaffected', async (t) => {
  const model = testModel(3, [revision('hello', 'hello-00001'), revision('world', 'world-00001')]);
  const { server, target, logs } = await startTestServer(t, model);
  const rss = new RssSampler();
  let sent = 0;

  // The well-behaved client, connected throughout.
  const good = new SotwClient(target, testNode('node1', 'good-client'));
  t.teardown(() => good.close());
  good.setNames(ENDPOINT_TYPE, [HELLO]);
  good.subscribe(ENDPOINT_TYPE, [HELLO]);
  good.ack(await good.next(ENDPOINT_TYPE));
  const heapBefore = heapAfterGc();
  const streamsBefore = server.clients().length;

  // Unknown type URLs and nonsense fields on a SotW stream.
  const odd = new SotwClient(target, testNode('node2', 'odd-client'));
  for (const type of ['type.googleapis.com/envoy.config.nope.v3.Nope', '', 'x'.repeat(10_000), 'type.googleapis.com/google.protobuf.Empty']) {
    odd.send({ type_url: type, resource_names: ['a', 'b'], version_info: 'v', response_nonce: 'n' });
    sent++;
  }
  t.ok(await odd.quiet(CLUSTER_TYPE, 200), 'unknown types get no answer');
  odd.close();

  // A client that NACKs everything, and one that never ACKs, through model changes.
  const nacker = new SotwClient(target, testNode('node2', 'nacker'));
  const silent = new SotwClient(target, testNode('node3', 'silent'));
  t.teardown(() => { nacker.close(); silent.close(); });
  nacker.subscribe(CLUSTER_TYPE);
  silent.subscribe(CLUSTER_TYPE);
  nacker.setNames(ENDPOINT_TYPE, [HELLO]);
  nacker.subscribe(ENDPOINT_TYPE, [HELLO]);
  silent.subscribe(ENDPOINT_TYPE, [HELLO]);
  let nacks = 0;
  let modelChanges = 1;
  const nackLoop = (async () => {
    for (;;) {
      const r = await nacker.next(ENDPOINT_TYPE, 1500).catch(() => undefined);
      if (!r) return;
      nacker.nack(r, '', 'I refuse everything');
      nacks++;
      sent++;
    }
  })();

  // Churn: thousands of delta subscribe/unsubscribe changes on one stream.
  const churner = new DeltaClient(target, testNode('node1', 'churner'));
  t.teardown(() => churner.close());
  const churns = scale(3000, 20000);
  for (let i = 0; i < churns; i++) {
    const name = i % 3 === 0 ? HELLO : `default/ghost-${i % 50}`;
    churner.send(i % 2 === 0 ? { type_url: ENDPOINT_TYPE, resource_names_subscribe: [name] } : { type_url: ENDPOINT_TYPE, resource_names_unsubscribe: [name] });
    sent++;
    if (i % 200 === 0) {
      model.setReady('hello-00001-node2', i % 400 === 0);
      modelChanges++;
      await sleep(5);
    }
  }

  // Streams opened and dropped in a loop, and undecodable messages, from another process
  // (see ads-dropper.ts: the grpc-js client objects must not count as server memory).
  const drops = scale(300, 3000);
  const garbage = scale(50, 500);
  const dropper = spawn(process.execPath, [DROPPER, target, String(drops), String(garbage)], { stdio: 'inherit' });
  const dropperCode = await new Promise<number | null>((r) => dropper.on('exit', r));
  t.equal(dropperCode, 0, 'the dropper process ran through');
  sent += drops + garbage;

  // The good client still gets a change promptly.
  model.setReady('hello-00001-node3', false);
  const update = await good.next(ENDPOINT_TYPE, 5000).catch(() => undefined);
  t.ok(update, 'the well-behaved client still receives updates');
  if (update) good.ack(update);
  await nackLoop;
  churner.close();
  const silentStatus = await until('silent client status', () => server.clients().find((c) => c.node_id === 'silent'));
  t.ok(Object.values(silentStatus.types).every((s) => s.responses <= 1), 'a client that never ACKs gets at most one response per type (no pile-up)');
  t.ok(nacks >= 1 && nacks <= modelChanges + 2, `the NACKing client gets at most one response per model change (${nacks} NACKed, ${modelChanges} changes)`);
  nacker.close();
  silent.close();
  await until('streams of the hostile clients to be gone', () => server.clients().length <= streamsBefore, 10_000, 50);
  t.pass(`stream table back to ${server.clients().length} (the good client)`);
  await sleep(200);
  const heapAfter = heapAfterGc();
  const growth = (heapAfter - heapBefore) / 1048576;
  t.comment(`${sent} hostile messages/streams; heap ${(heapBefore / 1048576).toFixed(1)} → ${(heapAfter / 1048576).toFixed(1)} MB; ${logs.length} log lines`);
  t.ok(growth < 16, `server heap flat after GC (${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB)`);
  const peak = await rss.stop();
  report(t, { scenario: 'hostile ADS clients', sent, failed: update ? 0 : 1, lost: 0, peakRss: peak, rssOf: 'test process',
    note: `${churns} churns, ${drops} dropped streams, ${garbage} undecodable/garbage-Any; heap ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB` });
});
