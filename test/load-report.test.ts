// Load reports: what a proxy knows (loadReportOf), how an xDS server merges reports
// (ReportedLoad), and the LRS streams between them: only what changed goes out, a server
// that (re)connects gets everything, every replica holds the same load.
import t from 'tap';
import { credentials, makeGenericClientConstructor, type ClientDuplexStream } from '@grpc/grpc-js';
import { ReportedLoad, loadReportOf, type LoadDelta } from '../cluster/load-report.js';
import { configuredLoadView, nodeOfferedUtilization, podCostInputs, type LoadChange } from '../cluster/load.js';
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

t.test('a pod\'s own time per request is what the gateways report (the pod\'s ORCA figure); a proxy\'s service time counts the wait at the pod too', async (t) => {
  const m = model();
  const view = new ReportedLoad(configuredLoadView(() => m.current));
  const P = 'hello-00001-node1';
  view.apply('node3', { peers: new Map(), pods: new Map([[P, { inFlight: 5, serviceTimeMs: 29 }]]) });
  t.equal(view.workMs(P), undefined, 'only a proxy has said something: unknown (the cost model falls back to the service time)');
  view.replace('gateway/node1', new Map([[P, { inFlight: 2, serviceTimeMs: 4 }]]));
  t.equal(view.workMs(P), 4, 'node1\'s gateway passed on the pod\'s 4 ms');
  t.equal(view.serviceTimeMs(P), 16.5, 'the service time the cost model prices with still averages every reporter');
  view.replaceArrivals('node1', new Map([['default/hello-00001', 250]]));
  t.equal(nodeOfferedUtilization(m.current, 'default/hello-00001', 'node1', view), 1, '250/s at node1 × the pod\'s own 4 ms on one slot: 1.0, not 4.1 by the reporters\' averaged 16.5 ms');
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

t.test('a gateway\'s arrivals per revision: what it issued over the report\'s interval, to pods or proxy; a rate that moves is heard, a gateway gone takes its arrivals with it', async (t) => {
  const m = model();
  // The test writes its own reports: a long interval, so a busy machine's pause between two
  // writes never reads as a quiet gateway.
  const server = await startXdsServerWithLoadReports({ model: m, listen: { host: '127.0.0.1', port: 0 }, proxyPort: 8012, loadReportIntervalMs: 60_000, log: () => undefined });
  t.teardown(() => server.close());
  const moved: string[][] = [];
  server.loadReports.load.onChange((c) => moved.push([...(c.revisions ?? [])]));
  const Client = makeGenericClientConstructor(lrsServiceDefinition(), 'LoadReportingService');
  const client = new Client(`127.0.0.1:${server.address.port}`, credentials.createInsecure()) as unknown as { StreamLoadStats(): ClientDuplexStream<LoadStatsRequest, LoadStatsResponse>; close(): void };
  t.teardown(() => client.close());
  const call = client.StreamLoadStats();
  t.teardown(() => call.cancel());
  call.on('error', () => undefined);
  // As node3's Envoy reports (its bootstrap's node: id and locality, no chikai proxy cluster).
  const node = { id: 'gateway-node3', cluster: 'kourier', locality: { region: 'edge', zone: 'edge-a', sub_zone: 'node3' } };
  const locality = (subZone: string, issued: number) => ({ locality: { sub_zone: subZone }, total_issued_requests: issued, upstream_endpoint_stats: [] });
  const report = (issued: [number, number], ms: number): LoadStatsRequest => ({
    node,
    cluster_stats: [{ cluster_name: 'default/hello-00001', upstream_locality_stats: [locality('node3', issued[0]), locality('node1', issued[1])], load_report_interval: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 } }],
  });
  const HELLO = 'default/hello-00001';
  const rate = () => server.loadReports.load.arrivalsPerSecond(HELLO, 'node3');
  t.equal(rate(), undefined, 'no report: unknown');
  call.write({ node }); // Envoy's first message: who it is, no stats yet
  call.write(report([200, 50], 1000));
  await until('the first report', () => rate() !== undefined);
  t.equal(rate(), 250, '200 to node3 and 50 to node1 in 1 s: 250 requests/s arrive at node3\'s gateway');
  t.equal(server.loadReports.load.arrivalsPerSecond(HELLO, 'node1'), undefined, 'node1\'s gateway has not reported');
  await until('listeners heard of it', () => moved.some((r) => r.includes(HELLO)));
  const heard = moved.length;
  call.write(report([110, 20], 500));
  await until('the next report', () => rate() === 260);
  t.pass('130 in half a second: 260/s');
  call.write(report([270, 0], 1000));
  await until('the next report', () => rate() === 270);
  await new Promise((r) => setImmediate(r));
  t.equal(moved.length, heard, '250 → 260 → 270/s, within a tenth of the 250 last heard: nobody is told');
  call.write(report([280, 0], 1000));
  await until('a rate that drifted', () => moved.length > heard);
  t.same(moved.at(-1), [HELLO], '280/s, 12 % above the 250 last heard: the revision is rebuilt (a slow drift adds up)');
  call.cancel();
  await until('the gateway\'s stream ended', () => server.loadReports.reporters().length === 0);
  t.equal(rate(), undefined, 'a gateway gone: its arrivals no longer count');
});
