// Two xDS replicas, as deploy/ runs them: every node proxy reports its load to both (LRS),
// both see the same load and serve the same weights to their gateways.
import t from 'tap';
import { request } from 'undici';
import { LoadReporter } from '../proxy/load-reporter.js';
import { ENDPOINT_TYPE } from '../xds/protos.js';
import { startXdsServerWithLoadReports } from '../xds/load-reports.js';
import { HELLO_HOST, testStack } from './support.js';
import { until } from './fixtures/xds/server.js';

t.test('two replicas hear every proxy and serve the same weights', async (t) => {
  const stack = await testStack({ nodes: 3, rttMs: 10, jitterMs: 0, policy: 'chikai', capacity: 2, serviceTimeMs: { min: 3, max: 5 } });
  t.teardown(() => stack.close());
  const start = () => startXdsServerWithLoadReports({
    model: stack.model, listen: { host: '127.0.0.1', port: 0 }, proxyPort: stack.proxyPort, loadReportIntervalMs: 100, settleMs: 300, log: () => undefined,
  });
  const replicas = [await start(), await start()];
  for (const r of replicas) t.teardown(() => r.close());
  const servers = replicas.map((r) => ({ host: '127.0.0.1', port: r.address.port }));
  for (const [node, proxy] of stack.proxies) {
    const reporter = new LoadReporter({ node, model: stack.model, load: proxy.reportedLoad, servers });
    t.teardown(() => reporter.close());
    await reporter.start();
  }
  await until('both replicas hear all three proxies', () => replicas.every((r) => r.loadReports.reporters().length === 3), 10_000);

  // Load on node3's proxy: its pod gets busy, service times are measured, weights move.
  const end = performance.now() + 2000;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (performance.now() < end) await (await request(stack.proxyUrl('node3'), { headers: { host: HELLO_HOST } })).body.text();
  }));

  const pods = stack.model.current.state.endpoints.map((e) => e.pod);
  const nodes = stack.model.current.nodes.map((n) => n.name);
  const loadOf = (i: number) => {
    const l = replicas[i]!.loadReports.load;
    return JSON.stringify({
      rtt: nodes.flatMap((a) => nodes.map((b) => [a, b, l.rttMs(a, b), l.reachable(a, b)])),
      pods: pods.map((p) => [p, l.inFlight(p), l.serviceTimeMs(p), l.capacity(p)]),
    });
  };
  const weightsOf = (i: number) => JSON.stringify(replicas[i]!.cache.viewKeys().sort().map((k) => [k, replicas[i]!.cache.view(k).types.get(ENDPOINT_TYPE)?.version]));
  const same = await until('both replicas hold the same load and serve the same assignments', () => loadOf(0) === loadOf(1) && weightsOf(0) === weightsOf(1) && loadOf(0), 15_000, 20);
  const measured = JSON.parse(same) as { pods: [string, number, number | undefined][] };
  t.ok(measured.pods.some(([pod, , service]) => pod.includes('node3') && service !== undefined), 'the load they agree on was measured by the proxies (node3\'s pod has a service time)');
  t.ok(replicas.every((r) => r.loadReports.load.rttMs('node3', 'node1')! > 5), 'and so were the RTTs (10 ms configured)');
  t.pass(`both serve ${weightsOf(0)}`);
});
