// Knative's scale-to-zero timing on a manual clock: demand at zero scales to one at once,
// one pod stays for the stable window after the last demand plus the grace period.
import t from 'tap';
import { ScaleToZeroDecider } from '../cluster/emulated/scaling.js';
import { ManualClock } from './fixtures/clock.js';

const REV = 'default/sleepy-00001';
const settings = { stableWindowMs: 10_000, scaleToZeroGraceMs: 5_000 };

t.test('at zero nothing happens without demand; the first demand scales up on the node that reported it', async (t) => {
  const clock = new ManualClock();
  const d = new ScaleToZeroDecider(settings, clock);
  t.same(d.decide(REV), { kind: 'hold' });
  clock.advance(60_000);
  t.same(d.decide(REV), { kind: 'hold' }, 'still nothing a minute later');
  d.demand(REV, 'node3');
  t.same(d.decide(REV), { kind: 'scale-up', node: 'node3' });
  t.equal(d.phase(REV), 'zero');
});

t.test('one pod stays for the stable window plus the grace period after the last demand, then goes', async (t) => {
  const clock = new ManualClock();
  const d = new ScaleToZeroDecider(settings, clock);
  d.demand(REV, 'node3');
  d.scaled(REV, 1);
  t.equal(d.phase(REV), 'active');
  clock.advance(8_000);
  d.demand(REV); // the pod's own count: still serving
  clock.advance(9_999);
  t.equal(d.phase(REV), 'active', 'the window restarts with every demand');
  clock.advance(1);
  t.equal(d.phase(REV), 'inactive', 'a whole stable window without demand: the average is 0');
  t.same(d.decide(REV), { kind: 'hold' }, 'but the grace period keeps the pod');
  t.equal(d.scaleDownDueAt(REV), clock.now() + 5_000);
  clock.advance(4_999);
  t.same(d.decide(REV), { kind: 'hold' });
  clock.advance(1);
  t.same(d.decide(REV), { kind: 'scale-down' });
  d.scaled(REV, 0);
  t.same(d.decide(REV), { kind: 'hold' }, 'at zero again, waiting for demand');
  t.equal(d.scaleDownDueAt(REV), undefined);
});

t.test('demand during the grace period keeps the pod', async (t) => {
  const clock = new ManualClock();
  const d = new ScaleToZeroDecider(settings, clock);
  d.demand(REV, 'node1');
  d.scaled(REV, 1);
  clock.advance(12_000);
  t.equal(d.phase(REV), 'inactive');
  d.demand(REV, 'node1');
  t.equal(d.phase(REV), 'active');
  clock.advance(14_999);
  t.same(d.decide(REV), { kind: 'hold' });
});

t.test('a pod is not idle before it is ready: a cold start longer than the window does not remove it under the held requests', async (t) => {
  const clock = new ManualClock();
  const d = new ScaleToZeroDecider(settings, clock);
  d.demand(REV, 'node3'); // the proxy's one immediate stat; the request it holds reports nothing more for a while
  d.scaled(REV, 1);
  clock.advance(20_000); // a slow container
  t.same(d.decide(REV), { kind: 'scale-down' }, 'window and grace passed since the stat…');
  d.ready(REV);
  t.same(d.decide(REV), { kind: 'hold' }, '…but they count from readiness');
  t.equal(d.phase(REV), 'active');
  clock.advance(15_000);
  t.same(d.decide(REV), { kind: 'scale-down' });
});

t.test('demand that has gone stale at zero does not start a pod; the demanding nodes are listed newest first', async (t) => {
  const clock = new ManualClock();
  const d = new ScaleToZeroDecider(settings, clock);
  d.demand(REV, 'node1');
  clock.advance(1_000);
  d.demand(REV, 'node3');
  t.same(d.demandNodes(REV), ['node3', 'node1']);
  clock.advance(9_500);
  t.same(d.demandNodes(REV), ['node3'], 'node1 asked more than a window ago');
  t.same(d.decide(REV), { kind: 'scale-up', node: 'node3' });
  clock.advance(500);
  t.same(d.decide(REV), { kind: 'hold' }, 'nobody is waiting any more');
});
