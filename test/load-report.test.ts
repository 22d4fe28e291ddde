// Load reports: what a proxy serves on /load and how the xDS server merges them.
import t from 'tap';
import { ClusterModel } from '../cluster/model.js';
import { ReportedLoadView, loadReportOf, parseLoadReport, type LoadReport } from '../cluster/load-report.js';
import { configuredLoadView } from '../cluster/load.js';
import { FixedLoadView, testModel } from './fixtures/xds/model.js';

function model(): ClusterModel {
  const m = testModel(3);
  m.update((s) => ({ ...s, latency: { node3: { node1: { rttMs: 50, jitterMs: 0 }, node2: { rttMs: 50, jitterMs: 0 } } } }));
  return m;
}

t.test('a proxy\'s report carries its RTTs, reachability and every pod\'s load', async (t) => {
  const m = model();
  const view = new FixedLoadView().setRtt('node3', 'node1', 48.5).setReachable('node3', 'node2', false).setInFlight('hello-00001-node1', 3).setServiceTime('hello-00001-node3', 4.2).setCapacity('hello-00001-node3', 4);
  const r = loadReportOf('node3', view, m.current, 1000);
  t.same(r.peers, { node1: { rttMs: 48.5, reachable: true }, node2: { reachable: false } });
  t.same(r.pods['hello-00001-node1'], { inFlight: 3 });
  t.same(r.pods['hello-00001-node3'], { inFlight: 0, serviceTimeMs: 4.2, capacity: 4 });
  t.same(parseLoadReport(JSON.parse(JSON.stringify(r)), 'test'), r, 'survives JSON');
});

t.test('a malformed report is refused with the field named', async (t) => {
  t.throws(() => parseLoadReport([], 'http://x/load'), /load report from http:\/\/x\/load: field \(top level\) should be a JSON object/);
  t.throws(() => parseLoadReport({ node: 'n', at: 1, peers: {}, pods: { p: { inFlight: -1 } } }, 'u'), /field pods\.p\.inFlight should be a number ≥ 0/);
  t.throws(() => parseLoadReport({ node: 'n', at: 1, peers: { x: { rttMs: 3 } }, pods: {} }, 'u'), /field peers\.x\.reachable should be true or false/);
});

t.test('merged view: RTT from the sender\'s own report, the busiest count of a pod, stale reports ignored', async (t) => {
  const m = model();
  let now = 10_000;
  const view = new ReportedLoadView(configuredLoadView(() => m.current), 2000, () => now);
  const report = (node: string, at: number, extra: Partial<LoadReport> = {}): LoadReport => ({ node, at, peers: {}, pods: {}, ...extra });
  t.equal(view.rttMs('node3', 'node1'), 50, 'no report yet: the configured latency');
  view.update(report('node3', now, { peers: { node1: { rttMs: 61, reachable: true }, node2: { reachable: false } }, pods: { p: { inFlight: 2, serviceTimeMs: 4 } } }));
  view.update(report('node1', now, { pods: { p: { inFlight: 5, serviceTimeMs: 6 } } }));
  t.equal(view.rttMs('node3', 'node1'), 61, 'node3 measured 61 ms to node1');
  t.equal(view.rttMs('node1', 'node3'), 50, 'node1 did not report a measurement: configured');
  t.equal(view.reachable('node3', 'node2'), false, 'node3 cannot reach node2');
  t.equal(view.inFlight('p'), 5, 'the largest count any proxy saw');
  t.equal(view.serviceTimeMs('p'), 5, 'service time averaged over the reports');
  now += 2500;
  t.equal(view.rttMs('node3', 'node1'), 50, 'a stale report no longer counts');
  t.equal(view.reachable('node3', 'node2'), true, 'nor does its reachability');
  t.equal(view.inFlight('p'), 0);
  t.same(view.freshNodes(), []);
});
