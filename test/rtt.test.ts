// The RTT prober's logic on a manual clock, with a probe transport the test answers: the
// median of the last samples, passive samples pulling the estimate down, a silent peer
// marked unreachable after 2.5 s (checked every 250 ms) and reachable again when it answers.
import t from 'tap';
import { ClusterModel } from '../cluster/model.js';
import { clusterState } from './fixtures/cluster-state.js';
import { RttProber, type ProbeTransport } from '../proxy/rtt.js';
import { ManualClock, settle } from './fixtures/clock.js';

const STATE = clusterState({ nodes: 2, revisions: [] });

/** Probes wait until the test answers them; each answer says how long the round trip took. */
class ScriptedPeers implements ProbeTransport {
  readonly pending: { url: string; sentAt: number; answer: () => void; fail: () => void }[] = [];
  readonly forgotten: string[] = [];
  constructor(private readonly clock: ManualClock) {}
  probe(url: string): Promise<void> {
    return new Promise((answer, reject) => this.pending.push({ url, sentAt: this.clock.now(), answer, fail: () => reject(new Error('timed out')) }));
  }
  forget(url: string): void {
    this.forgotten.push(url);
  }
  async close(): Promise<void> {}
}

function setup() {
  const clock = new ManualClock();
  const peers = new ScriptedPeers(clock);
  const updates: [string, number | undefined, boolean][] = [];
  const model = new ClusterModel(STATE);
  const prober = new RttProber({ node: 'node1', model, peerPort: 8012, clock, transport: peers, onUpdate: (to, rtt, reachable) => updates.push([to, rtt, reachable]) });
  /** Answer the probe that is out `ms` after it was sent (the clock moves on meanwhile). */
  const roundTrip = async (ms: number) => {
    const p = peers.pending.shift();
    if (!p) throw new Error('no probe out');
    clock.advance(p.sentAt + ms - clock.now());
    p.answer();
    await settle();
  };
  return { clock, peers, updates, model, prober, roundTrip };
}

t.test('the estimate is the median of the last samples; a faster forwarded request pulls it down', async (t) => {
  const { clock, peers, prober, roundTrip } = setup();
  prober.start();
  t.equal(prober.rttMs('node2'), undefined, 'unmeasured at first');
  t.equal(prober.rttMs('node1'), 0, 'its own node is 0');
  t.equal(peers.pending[0]?.url, 'http://127.0.1.2:8012', 'probes the peer proxy on its node address');
  for (const ms of [50, 48, 200, 52, 49]) {
    await roundTrip(ms);
    clock.advance(500 - ms); // the next probe goes out on the 500 ms interval
  }
  t.equal(prober.rttMs('node2'), 50, 'median of 50, 48, 200, 52, 49: one slow sample does not move it');
  prober.passiveSample('node2', 60);
  t.equal(prober.rttMs('node2'), 50, 'a slower forwarded request says nothing about the round trip');
  prober.passiveSample('node2', 30);
  prober.passiveSample('node2', 30);
  prober.passiveSample('node2', 30);
  t.equal(prober.rttMs('node2'), 48.5, 'faster ones are samples too: median of 30, 30, 30, 48, 49, 50, 52, 200');
  await prober.stop();
});

t.test('a peer silent for 2.5 s is unreachable, not before; it is reachable again when it answers', async (t) => {
  const { clock, peers, updates, prober, roundTrip } = setup();
  prober.start();
  await roundTrip(5);
  t.same(updates.at(-1), ['node2', 5, true]);
  // From now on the probe that is out never comes back.
  clock.advance(500);
  t.equal(peers.pending.length, 1, 'one probe out');
  clock.advance(1990); // 2.495 s since the last answer
  t.ok(prober.reachable('node2'), 'still reachable 2.5 s after its last answer');
  t.equal(peers.pending.length, 1, 'no second probe while one is out');
  clock.advance(255);
  t.notOk(prober.reachable('node2'), 'unreachable at the first check past 2.5 s');
  t.same(updates.at(-1), ['node2', 5, false], 'reported once');
  const reports = updates.length;
  clock.advance(5000);
  t.equal(updates.length, reports, 'not reported again while it stays silent');
  peers.pending.shift()!.fail(); // the transport gives up on the probe that never came back
  await settle();
  clock.advance(250);
  await roundTrip(7);
  t.ok(prober.reachable('node2'), 'reachable as soon as it answers');
  t.same(updates.at(-1), ['node2', 6, true], 'with the new sample in the median (5, 7)');
  await prober.stop();
});

t.test('a refused probe counts only as silence; nodes leaving the model are forgotten', async (t) => {
  const { clock, peers, prober, model } = setup();
  prober.start();
  peers.pending.shift()!.fail();
  await settle();
  clock.advance(500);
  t.equal(peers.pending.length, 1, 'probed again at the next interval');
  t.ok(prober.reachable('node2'), 'a refusal alone does not mark it');
  model.update((s) => ({ ...s, nodes: s.nodes.filter((n) => n.name !== 'node2') }));
  clock.advance(250);
  t.same(peers.forgotten, ['http://127.0.1.2:8012'], 'its connections are dropped');
  t.equal(prober.rttMs('node2'), undefined);
  await prober.stop();
  t.equal(clock.timers, 0, 'stop() leaves no timer');
});
