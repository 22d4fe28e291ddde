// Load reports: what a proxy knows (loadReportOf), how an xDS server merges reports
// (ReportedLoad), and the LRS streams between them: only what changed goes out, a server
// that (re)connects gets everything, every replica holds the same load.
import t from 'tap';
import { credentials, makeGenericClientConstructor, type ClientDuplexStream } from '@grpc/grpc-js';
import { ReportedLoad, loadReportOf, type LoadDelta } from '../cluster/load-report.js';
import { configuredLoadView, podCostInputs, type LoadChange } from '../cluster/load.js';
import type { ClusterModel } from '../cluster/model.js';
import { LoadReporter } from '../proxy/load-reporter.js';
import { startXdsServerWithLoadReports } from '../xds/load-reports.js';
import { lrsServiceDefinition, type LoadStatsRequest, type LoadStatsResponse } from '../xds/lrs.js';
import { FixedLoadView, ObservedLoadView, testModel } from './fixtures/xds/model.js';
import { until } from './fixtures/xds/server.js';

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
});

t.test('merged view: RTT from the sender\'s own report, the busiest count of a pod, a forgotten reporter no longer counts', async (t) => {
  const m = model();
  const view = new ReportedLoad(configuredLoadView(() => m.current));
  const changes: LoadChange[] = [];
  view.onChange((c) => changes.push(c));
  const delta = (peers: LoadDelta['peers'], pods: LoadDelta['pods']): LoadDelta => ({ peers, pods });
  t.equal(view.rttMs('node3', 'node1'), 50, 'no report yet: the configured latency');
  view.apply('node3', delta(new Map([['node1', { rttMs: 61, reachable: true }], ['node2', { reachable: false }]]), new Map([['p', { inFlight: 2, serviceTimeMs: 4 }]])));
  view.apply('node1', delta(new Map(), new Map([['p', { inFlight: 5, serviceTimeMs: 6 }]])));
  t.equal(view.rttMs('node3', 'node1'), 61, 'node3 measured 61 ms to node1');
  t.equal(view.rttMs('node1', 'node3'), 50, 'node1 did not report a measurement: configured');
  t.equal(view.reachable('node3', 'node2'), false, 'node3 cannot reach node2');
  t.equal(view.inFlight('p'), 5, 'the largest count any proxy saw');
  t.equal(view.serviceTimeMs('p'), 5, 'service time averaged over the reports');
  await new Promise((r) => setImmediate(r));
  t.same(changes.map((c) => ({ pods: [...c.pods], fromNodes: [...c.fromNodes] })), [{ pods: ['p'], fromNodes: ['node3'] }], 'listeners hear once per tick what moved');

  view.apply('node1', delta(new Map(), new Map([['p', { inFlight: 0 }]])));
  t.equal(view.inFlight('p'), 2, 'an idle report clears that proxy\'s count');
  view.forget('node3');
  t.equal(view.rttMs('node3', 'node1'), 50, 'a forgotten reporter\'s RTTs fall back to the configuration');
  t.equal(view.reachable('node3', 'node2'), true, 'and so does its reachability');
  t.equal(view.inFlight('p'), 0);
  t.same(view.reporters(), []);
});

t.test('a pod\'s own node weighs it by what its own reporters saw; the others\' largest count only when they said nothing', async (t) => {
  const m = model();
  const view = new ReportedLoad(configuredLoadView(() => m.current));
  const pods = (entries: [string, number][]): LoadDelta => ({ peers: new Map(), pods: new Map(entries.map(([p, n]) => [p, { inFlight: n }])) });
  const P = 'hello-00001-node1';
  view.apply('node3', pods([[P, 6]]));
  t.equal(view.localInFlight(P, 'node1'), 6, 'node1 has said nothing of its pod: the largest count anyone saw');
  view.apply('gateway/node1', pods([[P, 2]]));
  view.apply('node1', pods([[P, 1]]));
  t.equal(view.localInFlight(P, 'node1'), 2, 'node1\'s gateway saw 2: node1 goes by that, not by node3\'s 6 from another moment');
  t.equal(view.inFlight(P), 6, 'seen from elsewhere, still the largest');
  const inFlightFrom = (node: string) => podCostInputs(m.current, 'default/hello-00001', node, view).find((i) => i.pod === P)?.inFlight;
  t.equal(inFlightFrom('node1'), 2, 'the cost model on node1 (its gateway\'s assignment) weighs its own pod by node1\'s count');
  t.equal(inFlightFrom('node2'), 6, 'from node2, by the largest');
});

t.test('over LRS a proxy sends everything once, then only what changed; a server that reconnects gets everything again', async (t) => {
  const m = model();
  const server = await startXdsServerWithLoadReports({ model: m, listen: { host: '127.0.0.1', port: 0 }, proxyPort: 8012, loadReportIntervalMs: 50, log: () => undefined });
  t.teardown(() => server.close());
  const reports: { reporter: string; delta: LoadDelta }[] = [];
  server.loadReports.on('report', (reporter, delta) => reports.push({ reporter, delta }));
  const load = new FixedLoadView().setRttFrom('node3', 'node1', 48).setRttFrom('node3', 'node2', 52).setInFlight('hello-00001-node3', 2).setServiceTime('hello-00001-node3', 4);
  const reporter = new LoadReporter({ node: 'node3', model: m, load, servers: [{ host: '127.0.0.1', port: server.address.port }] });
  t.teardown(() => reporter.close());
  await reporter.start();

  const first = await until('the first report with content', () => reports.find((r) => r.delta.peers.size > 0));
  t.equal(first.reporter, 'node3', 'reports are attributed to the proxy\'s node');
  t.same(Object.fromEntries(first.delta.peers), { node1: { rttMs: 48, reachable: true }, node2: { rttMs: 52, reachable: true } }, 'its RTTs');
  t.same(Object.fromEntries(first.delta.pods), { 'hello-00001-node3': { inFlight: 2, serviceTimeMs: 4 } }, 'only the pods it has seen load on');
  await until('the server weighs with them', () => server.loadReports.load.rttMs('node3', 'node1') === 48);
  t.equal(server.loadReports.load.inFlight('hello-00001-node3'), 2);
  const metrics = await server.metrics.registry.metrics();
  t.match(metrics, /chikai_xds_load_reporters 1\n/, 'the xDS server\'s metrics count the reporting proxy');
  t.match(metrics, /chikai_xds_load_report_bytes_total [1-9]/, 'and the report bytes');

  const mark = reports.length;
  await until('a few quiet intervals', () => reports.length >= mark + 3);
  t.ok(reports.slice(mark).every((r) => r.delta.peers.size === 0 && r.delta.pods.size === 0), 'nothing moved: empty reports (the stream is alive, nothing more)');

  load.setInFlight('hello-00001-node1', 7).setRttFrom('node3', 'node2', 52.5);
  const next = await until('the change', () => reports.slice(mark).find((r) => r.delta.pods.size > 0));
  t.same(Object.fromEntries(next.delta.pods), { 'hello-00001-node1': { inFlight: 7 } }, 'only the pod that changed');
  t.same(next.delta.peers.size, 0, 'an RTT within 2 % (0.5 ms of 52) is not reported');
  await until('the server has it', () => server.loadReports.load.inFlight('hello-00001-node1') === 7);

  // The server goes away and comes back on the same port: the proxy reconnects and resends all.
  const port = server.address.port;
  await server.close();
  t.equal(server.loadReports.load.inFlight('hello-00001-node1'), 0, 'a closed stream takes its reporter\'s load with it');
  const again = await startXdsServerWithLoadReports({ model: m, listen: { host: '127.0.0.1', port }, proxyPort: 8012, loadReportIntervalMs: 50, log: () => undefined });
  t.teardown(() => again.close());
  const resent: LoadDelta[] = [];
  again.loadReports.on('report', (_r, d) => resent.push(d));
  const full = await until('the whole state again', () => resent.find((d) => d.pods.size > 0), 15_000);
  t.same([...full.pods.keys()].sort(), ['hello-00001-node1', 'hello-00001-node3'], 'every pod with load');
  t.same([...full.peers.keys()].sort(), ['node1', 'node2'], 'and every RTT');
});

t.test('a load view that says what moved is read where it moved', async (t) => {
  const m = model();
  const server = await startXdsServerWithLoadReports({ model: m, listen: { host: '127.0.0.1', port: 0 }, proxyPort: 8012, loadReportIntervalMs: 50, log: () => undefined });
  t.teardown(() => server.close());
  const load = new ObservedLoadView().setRttFrom('node1', 'node3', 40);
  const reporter = new LoadReporter({ node: 'node1', model: m, load, servers: [{ host: '127.0.0.1', port: server.address.port }] });
  t.teardown(() => reporter.close());
  await reporter.start();
  await until('the first state', () => server.loadReports.load.rttMs('node1', 'node3') === 40);
  load.setInFlight('hello-00001-node2', 3).setRttFrom('node1', 'node3', 60);
  load.moved({ pods: ['hello-00001-node2'], fromNodes: ['node1'] });
  await until('the moved values', () => server.loadReports.load.inFlight('hello-00001-node2') === 3 && server.loadReports.load.rttMs('node1', 'node3') === 60);
  t.pass('both reached the server');
});

t.test('a proxy report stream from a node that is not in the cluster is refused with the reason', async (t) => {
  const m = model();
  const server = await startXdsServerWithLoadReports({ model: m, listen: { host: '127.0.0.1', port: 0 }, proxyPort: 8012, log: () => undefined });
  t.teardown(() => server.close());
  const Ctor = makeGenericClientConstructor(lrsServiceDefinition(), 'LoadReportingService');
  const client = new Ctor(`127.0.0.1:${server.address.port}`, credentials.createInsecure());
  t.teardown(() => client.close());
  const call = (client as unknown as Record<string, () => ClientDuplexStream<LoadStatsRequest, LoadStatsResponse>>).StreamLoadStats!.call(client);
  const err = await new Promise<Error & { code?: number; details?: string }>((resolve) => {
    call.on('error', resolve);
    call.on('data', () => undefined);
    call.write({ node: { id: 'chikai-proxy/node99', cluster: 'chikai-proxy', locality: { sub_zone: 'node99' } } });
  });
  t.equal(err.code, 3, 'INVALID_ARGUMENT');
  t.match(err.details, /node\.locality\.sub_zone must name a node of the cluster.*"node99"/);
  t.same(server.loadReports.reporters(), [], 'nothing recorded');
});
