// The traffic map's model from scraped text: Envoy's /clusters, the xDS server's served
// views and the proxies' /metrics in, flows with rates, pods, queues, RTTs, weights and
// endpoint events out.
import t from 'tap';
import { parseEnvoyClusters, parsePrometheusText } from '../map/exposition.js';
import { advance, EVENT_HISTORY, type MapNode, type MapState, type Scrape, type Scraped } from '../map/model.js';

const NODES: MapNode[] = [
  { name: 'node1', region: 'cloud', zone: 'cloud-a', address: '127.0.1.1' },
  { name: 'node3', region: 'edge', zone: 'edge-a', address: '127.0.1.3' },
];
const POD1 = { address: '127.0.1.1', port: 40001, pod: 'hello-00001-node1-aaaaa', node: 'node1' };
const POD3 = { address: '127.0.1.3', port: 40003, pod: 'hello-00001-node3-ccccc', node: 'node3' };

/** Envoy's /clusters text for one gateway: per host rq_total / rq_active, plus the lines that are not hosts. */
function envoyText(hosts: { host: typeof POD1; total: number; active: number; cluster?: string }[]): string {
  const lines = [
    'chikai_xds::observability_name::chikai_xds',
    'chikai_xds::default_priority::max_connections::1024',
    'chikai_xds::127.0.0.1:18000::rq_total::999',
    'chikai_xds::127.0.0.1:18000::sub_zone::',
  ];
  for (const h of hosts) {
    const c = h.cluster ?? 'default/hello-00001';
    const id = `${c}::${h.host.address}:${h.host.port}`;
    lines.push(`${c}::default_priority::max_requests::1024`, `${id}::rq_total::${h.total}`, `${id}::rq_active::${h.active}`, `${id}::rq_success::${h.total}`,
      `${id}::hostname::`, `${id}::health_flags::healthy`, `${id}::sub_zone::${h.host.node}`, `${id}::success_rate::-1`);
  }
  return lines.join('\n') + '\n';
}

interface ServedLocality { node: string; priority: number; weight: number; share: number; hosts: { address: string; port: number; pod?: string; kind?: 'pod' | 'proxy'; healthy?: boolean }[] }

/** The xDS admin's /clusters?format=json for one gateway. */
function servedJson(clusters: Record<string, ServedLocality[]>): string {
  return JSON.stringify({
    cluster_statuses: Object.entries(clusters).map(([name, ls]) => ({
      name,
      host_statuses: ls.flatMap((l) => l.hosts.map((h) => ({
        address: { socket_address: { address: h.address, port_value: h.port } },
        health_status: { eds_health_status: h.healthy === false ? 'UNHEALTHY' : 'HEALTHY' },
        locality: { region: '', zone: '', sub_zone: l.node },
        priority: l.priority,
        locality_weight: l.weight,
        expected_share: l.share / l.hosts.length,
        kind: h.kind ?? 'pod',
        pod: h.kind === 'proxy' ? '' : h.pod,
      }))),
    })),
  });
}

const helloFrom = (local: typeof POD1, remote: typeof POD1, localShare = 1): ServedLocality[] => [
  { node: local.node, priority: 0, weight: 100, share: localShare, hosts: [{ ...local }] },
  { node: remote.node, priority: localShare === 1 ? 1 : 0, weight: localShare === 1 ? 1 : 100 - Math.round(localShare * 100), share: 1 - localShare, hosts: [{ ...remote }] },
];

function proxyText(node: string, o: { toLocal: number; toRemote?: number; errors?: number; inFlight?: number; atPod?: Record<string, number>; buffered?: number; rttSeconds?: number; reachable?: 0 | 1 }): string {
  const other = node === 'node1' ? 'node3' : 'node1';
  return [
    '# HELP chikai_requests_total Requests answered by the node proxy',
    '# TYPE chikai_requests_total counter',
    `chikai_requests_total{revision="default/hello-00001",target_node="${node}",code="200",node="${node}"} ${o.toLocal}`,
    `chikai_requests_total{revision="default/hello-00001",target_node="${node}",code="502",node="${node}"} ${o.errors ?? 0}`,
    `chikai_requests_total{revision="default/hello-00001",target_node="${other}",code="200",node="${node}"} ${o.toRemote ?? 0}`,
    `chikai_requests_total{revision="unknown",target_node="none",code="404",node="${node}"} 7`,
    `chikai_requests_in_flight{revision="default/hello-00001",node="${node}"} ${o.inFlight ?? 0}`,
    `chikai_requests_buffered{revision="default/hello-00001",node="${node}"} ${o.buffered ?? 0}`,
    ...(o.atPod ? Object.entries(o.atPod).map(([pod, n]) => `chikai_pod_requests_in_flight{revision="default/hello-00001",pod="${pod}",node="${node}"} ${n}`) : []),
    `chikai_node_rtt_seconds{from="${node}",to="${other}",node="${node}"} ${o.rttSeconds ?? 0.05}`,
    `latency_between_nodes{from="${node}",to="${other}",node="${node}"} ${(o.rttSeconds ?? 0.05) * 1000}`,
    `chikai_node_reachable{from="${node}",to="${other}",node="${node}"} ${o.reachable ?? 1}`,
  ].join('\n') + '\n';
}

const ok = (text: string): Scraped => ({ text });

function scrape(at: number, o: {
  envoy1?: Scraped; envoy3?: Scraped; served1?: Scraped; served3?: Scraped; proxy1?: Scraped; proxy3?: Scraped;
}): Scrape {
  const served = ok(servedJson({ 'default/hello-00001': helloFrom(POD3, POD1) }));
  return {
    at,
    nodes: NODES,
    envoyClusters: { node1: o.envoy1 ?? ok(envoyText([])), node3: o.envoy3 ?? ok(envoyText([])) },
    served: { node1: o.served1 ?? ok(servedJson({ 'default/hello-00001': helloFrom(POD1, POD3) })), node3: o.served3 ?? served },
    proxyMetrics: { node1: o.proxy1 ?? ok(proxyText('node1', { toLocal: 0 })), node3: o.proxy3 ?? ok(proxyText('node3', { toLocal: 0 })) },
  };
}

t.test('Prometheus text: names, labels with escapes, values', async (t) => {
  const samples = parsePrometheusText([
    '# HELP x_total a counter',
    '# TYPE x_total counter',
    'x_total{a="1",b="say \\"hi\\"\\nback\\\\slash"} 3',
    'up 1 1700000000000',
    'h_bucket{le="+Inf"} +Inf',
    '',
  ].join('\n'));
  t.same(samples, [
    { name: 'x_total', labels: { a: '1', b: 'say "hi"\nback\\slash' }, value: 3 },
    { name: 'up', labels: {}, value: 1 },
    { name: 'h_bucket', labels: { le: '+Inf' }, value: Infinity },
  ]);
  t.throws(() => parsePrometheusText('ok 1\nbroken{a="1" 2\n'), /metrics line 2: .*closing quote|metrics line 2/);
  t.throws(() => parsePrometheusText('novalue\n'), /metrics line 1: expected "name value"/);
  t.throws(() => parsePrometheusText('x{a="1"} twelve\n'), /metrics line 1: x has no number value/);
});

t.test('Envoy /clusters: one entry per cluster and host, cluster-wide lines skipped', async (t) => {
  const hosts = parseEnvoyClusters(envoyText([{ host: POD3, total: 12, active: 2 }]));
  const pod = hosts.find((h) => h.cluster === 'default/hello-00001');
  t.same(pod, {
    cluster: 'default/hello-00001', host: '127.0.1.3:40003',
    stats: { rq_total: 12, rq_active: 2, rq_success: 12, success_rate: -1 },
    attributes: { hostname: '', health_flags: 'healthy', sub_zone: 'node3' },
  });
  t.equal(hosts.length, 2, 'the xDS cluster\'s host and the pod; no entry for max_connections lines');
});

t.test('flows: gateway → pod from Envoy\'s per-host counters, proxy → pod from chikai_requests_total, with rates', async (t) => {
  const first = advance(undefined, scrape(10_000, {
    envoy3: ok(envoyText([{ host: POD3, total: 100, active: 3 }, { host: POD1, total: 10, active: 0 }])),
    proxy3: ok(proxyText('node3', { toLocal: 50, errors: 2, toRemote: 4 })),
  }));
  const flow = (s: MapState, from: string, via: string, to: string) => s.map.flows.find((f) => f.from === from && f.via === via && f.to === to);
  t.same(flow(first, 'node3', 'gateway', 'node3'), { from: 'node3', via: 'gateway', to: 'node3', toKind: 'pod', revision: 'default/hello-00001', total: 100, ratePerSecond: null, active: 3 }, 'no rate before a second scrape');
  t.equal(flow(first, 'node3', 'proxy', 'node3')?.total, 52, 'the proxy\'s count over every status code');
  t.equal(flow(first, 'node3', 'proxy', 'node1')?.total, 4);
  t.notOk(first.map.flows.some((f) => f.to === 'none' || f.revision === 'unknown'), 'requests no pod served are not a flow');
  t.notOk(first.map.flows.some((f) => f.revision === 'chikai_xds'), 'Envoy\'s own clusters are not flows');

  const second = advance(first, scrape(12_000, {
    envoy3: ok(envoyText([{ host: POD3, total: 700, active: 1 }, { host: POD1, total: 30, active: 2 }])),
    proxy3: ok(proxyText('node3', { toLocal: 250, errors: 2, toRemote: 4 })),
  }));
  t.equal(second.map.seq, 2);
  t.equal(flow(second, 'node3', 'gateway', 'node3')?.ratePerSecond, 300, '600 more in 2 s');
  t.equal(flow(second, 'node3', 'gateway', 'node1')?.ratePerSecond, 10);
  t.equal(flow(second, 'node3', 'proxy', 'node3')?.ratePerSecond, 100);
  t.equal(flow(second, 'node3', 'proxy', 'node1')?.ratePerSecond, 0);
  t.notOk(flow(second, 'node1', 'gateway', 'node1'), 'a gateway whose Envoy reports no host has no flows');

  // Envoy restarted: its counters start again from 0.
  const third = advance(second, scrape(13_000, { envoy3: ok(envoyText([{ host: POD3, total: 40, active: 0 }, { host: POD1, total: 30, active: 0 }])), proxy3: ok(proxyText('node3', { toLocal: 250, errors: 2, toRemote: 4 })) }));
  t.equal(flow(third, 'node3', 'gateway', 'node3')?.ratePerSecond, 40, 'a counter that went down counts from 0');
  t.equal(flow(third, 'node3', 'proxy', 'node3')?.ratePerSecond, 0, 'nothing new through the proxy');
});

t.test('pods, proxies and links: in flight from every gateway and proxy, queues, measured RTTs', async (t) => {
  const s = advance(undefined, scrape(1000, {
    envoy1: ok(envoyText([{ host: POD3, total: 5, active: 2 }, { host: POD1, total: 5, active: 1 }])),
    envoy3: ok(envoyText([{ host: POD3, total: 9, active: 3 }])),
    proxy1: ok(proxyText('node1', { toLocal: 1, inFlight: 4, atPod: { [POD1.pod]: 3, [POD3.pod]: 1 }, buffered: 6, rttSeconds: 0.0512 })),
    proxy3: ok(proxyText('node3', { toLocal: 1, atPod: { [POD3.pod]: 2 }, rttSeconds: 0.049, reachable: 0 })),
  }));
  t.same(s.map.pods, [
    { pod: POD1.pod, node: 'node1', revision: 'default/hello-00001', ready: true, inFlightFromGateways: 1, inFlightFromProxies: 3 },
    { pod: POD3.pod, node: 'node3', revision: 'default/hello-00001', ready: true, inFlightFromGateways: 5, inFlightFromProxies: 3 },
  ], 'a pod behind a node proxy shows the proxies\' requests too');
  t.same(s.map.queues, [
    { node: 'node1', revision: 'default/hello-00001', queued: 6, inFlight: 4 },
    { node: 'node3', revision: 'default/hello-00001', queued: 0, inFlight: 0 },
  ]);
  t.equal(s.map.links.length, 2);
  t.equal(s.map.links[0].from, 'node1');
  t.equal(s.map.links[0].rttMs?.toFixed(1), '51.2', 'from chikai_node_rtt_seconds, in ms');
  t.equal(s.map.links[1].reachable, false);
});

t.test('weights: what the xDS server serves each gateway, per locality', async (t) => {
  const s = advance(undefined, scrape(1000, { served3: ok(servedJson({ 'default/hello-00001': helloFrom(POD3, POD1, 0.6) })) }));
  const node3 = s.map.weights.find((w) => w.gateway === 'node3');
  t.same(node3, {
    gateway: 'node3', revision: 'default/hello-00001',
    localities: [
      { node: 'node3', priority: 0, weight: 100, share: 0.6, kind: 'pod' },
      { node: 'node1', priority: 0, weight: 40, share: 0.4, kind: 'pod' },
    ],
  });
  t.equal(s.map.weights.length, 2, 'one entry per gateway and revision');
});

t.test('endpoint events: a revision woken from zero, a pod turning ready, and back to zero', async (t) => {
  const proxies = (ready = true): ServedLocality[] => [
    { node: 'node3', priority: 0, weight: 1, share: 1, hosts: [{ address: '127.0.1.3', port: 8012, kind: 'proxy' }] },
    { node: 'node1', priority: 1, weight: 1, share: 0, hosts: [{ address: '127.0.1.1', port: 8012, kind: 'proxy', healthy: ready }] },
  ];
  const later = (ls: ServedLocality[]) => ok(servedJson({ 'default/hello-00001': helloFrom(POD3, POD1), 'default/later-00001': ls }));
  const LATER = { address: '127.0.1.3', port: 40100, pod: 'later-00001-node3-zzzzz' };
  let s = advance(undefined, scrape(1000, { served1: later(proxies()), served3: later(proxies()) }));
  t.same(s.map.events, [], 'the first scrape is the baseline');
  t.notOk(s.map.pods.some((p) => p.revision === 'default/later-00001'), 'no pod at zero');

  // A pod appears, not ready yet: the proxies still stand in.
  const starting: ServedLocality[] = [{ node: 'node3', priority: 0, weight: 100, share: 0, hosts: [{ ...LATER, healthy: false }] }];
  s = advance(s, scrape(2000, { served3: later([...starting, ...proxies()]), served1: later(proxies()) }));
  t.same(s.map.events.map((e) => [e.revision, e.change, e.kind, e.endpoint, e.node]), [['default/later-00001', 'added', 'pod', LATER.pod, 'node3']]);
  t.equal(s.map.pods.find((p) => p.pod === LATER.pod)?.ready, false);

  // Ready: the pod serves, the proxies leave.
  const ready: ServedLocality[] = [{ node: 'node3', priority: 0, weight: 100, share: 1, hosts: [{ ...LATER }] }];
  s = advance(s, scrape(3000, { served3: later(ready), served1: later(ready) }));
  t.same(s.map.events.slice(0, 3).map((e) => [e.change, e.kind, e.node, e.at]), [
    ['ready', 'pod', 'node3', 3000],
    ['removed', 'proxy', 'node3', 3000],
    ['removed', 'proxy', 'node1', 3000],
  ], 'newest first');

  // The xDS server cannot be read for a moment: nothing is reported gone.
  s = advance(s, scrape(4000, { served3: { error: 'connection refused' }, served1: { error: 'connection refused' } }));
  t.equal(s.map.events.length, 4, 'no events while the served endpoints are unknown');
  t.ok(s.map.pods.some((p) => p.pod === LATER.pod), 'the last known pods stay on the map');
  t.match(s.map.nodes.find((n) => n.name === 'node3')?.gatewayError, /xDS view: connection refused/);

  // Back to zero.
  s = advance(s, scrape(5000, { served3: later(proxies()), served1: later(proxies()) }));
  t.same(s.map.events.slice(0, 3).map((e) => [e.change, e.kind, e.node]), [
    ['added', 'proxy', 'node3'],
    ['added', 'proxy', 'node1'],
    ['removed', 'pod', 'node3'],
  ]);

  // The history is bounded.
  for (let i = 0; i < EVENT_HISTORY; i++) s = advance(s, scrape(6000 + i * 2000, { served3: later(i % 2 ? proxies() : proxies(false)), served1: later(i % 2 ? proxies() : proxies(false)) }));
  t.equal(s.map.events.length, EVENT_HISTORY);
});

t.test('a target that is down or answers garbage marks its node; the rest of the map stands', async (t) => {
  const s = advance(undefined, scrape(1000, {
    envoy3: { error: 'http://127.0.1.3:9901/clusters: connect ECONNREFUSED' },
    served1: ok('<html>not json</html>'),
    proxy1: ok('chikai_requests_total{revision="x" 1\n'),
    proxy3: ok(proxyText('node3', { toLocal: 3 })),
  }));
  const node = (n: string) => s.map.nodes.find((x) => x.name === n)!;
  t.match(node('node3').gatewayError, /Envoy admin: .*ECONNREFUSED/);
  t.match(node('node1').gatewayError, /xDS view: the xDS admin \/clusters answer is not JSON/);
  t.match(node('node1').proxyError, /proxy metrics: metrics line 1/);
  t.equal(node('node3').proxyError, null);
  t.equal(s.map.flows.find((f) => f.via === 'proxy' && f.from === 'node3' && f.to === 'node3')?.total, 3, 'node3\'s proxy still counted');
  t.same(s.map.links.map((l) => l.from), ['node3'], 'RTTs from the proxy that answered');
});
