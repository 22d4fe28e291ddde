// What the proxy learns from responses (proxy/load.ts), on a manual clock: each pod's
// service time (time to first byte minus the round trip, EWMA), which returns to the
// default while a pod gets no traffic, and its capacity from the ORCA header.
import t from 'tap';
import { DEFAULT_SERVICE_TIME_MS, nodeOfferedUtilization } from '../cluster/load.js';
import { ClusterModel } from '../cluster/model.js';
import { parseOrcaHeader } from '../cluster/orca.js';
import { NodeLoadTracker } from '../proxy/load.js';
import { ManualClock } from './fixtures/clock.js';
import { clusterState, endpoint } from './fixtures/cluster-state.js';

function tracker() {
  const clock = new ManualClock();
  const model = new ClusterModel(clusterState({ latency: { node3: { node1: { rttMs: 50, jitterMs: 0 } } }, endpoints: [endpoint('local', 'node3'), endpoint('remote', 'node1')] }));
  const inFlight: Record<string, number> = { local: 2 };
  return { clock, model, t: new NodeLoadTracker('node3', model, undefined, (pod) => inFlight[pod] ?? 0, clock) };
}

t.test('service time: time to first byte minus the round trip, averaged with α = 0.25', async (t) => {
  const { t: tr } = tracker();
  t.equal(tr.serviceTimeMs('local'), undefined, 'unobserved: the cost model uses its default');
  tr.observe('local', 'node3', 8, undefined);
  t.equal(tr.serviceTimeMs('local'), 8, 'a node-local pod: all of the time to first byte');
  tr.observe('local', 'node3', 4, undefined);
  t.equal(tr.serviceTimeMs('local'), 7, '8 + 0.25 × (4 − 8)');
  tr.observe('remote', 'node1', 54, undefined);
  t.equal(tr.serviceTimeMs('remote'), 4, 'a remote pod: the configured 50 ms round trip taken out (nothing measured yet)');
  t.equal(tr.inFlight('local'), 2, 'in flight comes from the slots');
});

t.test('an estimate nobody refreshes returns to the default: one slow answer does not shut a pod out', async (t) => {
  const { clock, t: tr } = tracker();
  tr.observe('local', 'node3', 404, undefined); // a cold first request on a busy machine
  t.equal(tr.serviceTimeMs('local'), 404);
  clock.advance(1000);
  t.ok(Math.abs(tr.serviceTimeMs('local')! - (DEFAULT_SERVICE_TIME_MS + 400 / Math.E)) < 1e-9, 'after 1 s: a third of the way back from the default');
  clock.advance(9000);
  t.ok(tr.serviceTimeMs('local')! < DEFAULT_SERVICE_TIME_MS + 0.02, 'after 10 s: the default again');
  tr.observe('local', 'node3', 8, undefined);
  t.ok(Math.abs(tr.serviceTimeMs('local')! - (DEFAULT_SERVICE_TIME_MS + 0.25 * (8 - DEFAULT_SERVICE_TIME_MS))) < 0.02, 'a new sample averages with the decayed estimate');
});

t.test('capacity from the pod\'s ORCA report; pods that left are forgotten', async (t) => {
  const { model, t: tr } = tracker();
  tr.observe('remote', 'node1', 60, parseOrcaHeader('TEXT named_metrics.in_flight=3, named_metrics.capacity=8'));
  t.equal(tr.capacity('remote'), 8);
  tr.observe('remote', 'node1', 60, parseOrcaHeader('TEXT named_metrics.capacity=0'));
  t.equal(tr.capacity('remote'), 8, 'a capacity below 1 is ignored');
  model.removeEndpoint('remote');
  tr.prune();
  t.equal(tr.capacity('remote'), undefined);
  t.equal(tr.serviceTimeMs('remote'), undefined);
});

t.test('offered utilization: arrivals per second (τ = 1 s) × the pods\' own service time ÷ the node\'s slots', async (t) => {
  const { clock, model, t: tr } = tracker();
  const rev = 'default/hello-00001';
  const offered = () => nodeOfferedUtilization(model.current, rev, 'node3', tr)!;
  t.equal(offered(), 0, 'nothing arrived');
  // The local pod reports 1 slot and 4 ms of work per request (ORCA), whatever the queue adds to the time to first byte.
  tr.observe('local', 'node3', 40, parseOrcaHeader('TEXT named_metrics.capacity=1, named_metrics.service_ms=4'));
  for (let i = 0; i < 3000; i++) {
    clock.advance(4);
    tr.arrived(rev);
  }
  t.ok(Math.abs(tr.arrivalsPerSecond(rev, 'node3')! - 250) < 1, `250 requests/s (${tr.arrivalsPerSecond(rev, 'node3')!.toFixed(1)})`);
  t.ok(Math.abs(offered() - 1) < 0.01, `250/s × 4 ms on one slot: 1.0 (${offered().toFixed(3)})`);
  t.equal(tr.arrivalsPerSecond(rev, 'node1'), undefined, 'another node\'s arrivals: not seen here');
  t.equal(nodeOfferedUtilization(model.current, rev, 'node1', tr), undefined, 'so neither is its offered utilization');
  clock.advance(1000);
  t.ok(Math.abs(offered() - 1 / Math.E) < 0.01, 'a second without arrivals: down to 1/e');
});
