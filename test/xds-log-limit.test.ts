// The xDS server's log lines are rate-limited per client: a client flooding the server with
// requests it refuses gets a burst of lines, then one per interval, each saying how many
// were left out, while another client's lines still pass. Time is the injected clock.
import t from 'tap';
import { RateLimitedLog, peerHost } from '../xds/log-limit.js';
import { ManualClock } from './fixtures/clock.js';
import { SotwClient, testNode } from './fixtures/xds/ads-client.js';
import { testModel } from './fixtures/xds/model.js';
import { startTestServer, until } from './fixtures/xds/server.js';

t.test('a key gets its burst, then one line per interval that counts what was dropped', async (t) => {
  const clock = new ManualClock();
  const lines: string[] = [];
  const log = new RateLimitedLog({ write: (l) => lines.push(l), clock, burst: 3, intervalMs: 10_000 });
  for (let i = 0; i < 20; i++) log.log('10.0.0.7', `bad ${i}`);
  t.same(lines, ['bad 0', 'bad 1', 'bad 2'], 'the burst passes, the rest of the flood does not');
  log.log('10.0.0.8', 'other client');
  t.equal(lines.at(-1), 'other client', 'another client is not silenced by the first');
  clock.advance(9_999);
  log.log('10.0.0.7', 'still too early');
  t.equal(lines.length, 4, 'nothing more before the interval');
  clock.advance(1);
  log.log('10.0.0.7', 'bad 21');
  t.equal(lines.at(-1), 'bad 21 [rate-limited: 18 earlier lines about 10.0.0.7 not logged]', 'the next line says how many were dropped');
  clock.advance(10_000);
  log.log('10.0.0.7', 'bad 22');
  t.equal(lines.at(-1), 'bad 22', 'no note when nothing was dropped');
});

t.test('all clients together are capped too', async (t) => {
  const clock = new ManualClock();
  const lines: string[] = [];
  const log = new RateLimitedLog({ write: (l) => lines.push(l), clock, burst: 2, totalBurst: 10, maxKeys: 100 });
  for (let i = 0; i < 1000; i++) log.log(`10.0.${i >> 8}.${i & 255}`, `from client ${i}`);
  t.equal(lines.length, 10, 'a flood from many addresses is held to the total budget');
  clock.advance(1_000);
  log.log('10.9.9.9', 'later');
  t.equal(lines.at(-1), 'later', '10 lines per interval come back for everyone');
});

t.test('peer strings map to one key per client machine', async (t) => {
  t.equal(peerHost('ipv4:10.0.0.7:51234'), '10.0.0.7');
  t.equal(peerHost('10.0.0.7:51234'), '10.0.0.7');
  t.equal(peerHost('[::1]:5000'), '::1');
  t.equal(peerHost('ipv6:[fd00::2]:443'), 'fd00::2');
});

t.test('a gateway sending unknown types over and over is logged a few times, not per message', async (t) => {
  const clock = new ManualClock();
  const { logs, target } = await startTestServer(t, testModel(2), { clock });
  const c = new SotwClient(target, testNode('node1'));
  t.teardown(() => c.close());
  for (let i = 0; i < 50; i++) c.subscribe(`type.googleapis.com/not.a.Type${i}`);
  c.subscribe('type.googleapis.com/envoy.config.cluster.v3.Cluster');
  await c.next('type.googleapis.com/envoy.config.cluster.v3.Cluster');
  const unknown = logs.filter((l) => l.includes('which chikai does not serve'));
  t.equal(unknown.length, 5, 'the default burst of 5 lines, then silence');
  clock.advance(10_000);
  c.subscribe('type.googleapis.com/not.a.TypeAgain');
  await until('the next line after the interval', () => logs.some((l) => l.includes('TypeAgain')));
  t.match(logs.find((l) => l.includes('TypeAgain')), /\[rate-limited: 45 earlier lines about 127\.0\.0\.1 not logged\]/);
});
