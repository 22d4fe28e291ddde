// ADS protocol discipline, driven by a raw gRPC client that sends exactly what each test
// writes: ACK, NACK, stale nonces, wildcard completeness, removal, delta subscriptions,
// reconnects, push order, the weight threshold and refused resources.
import t, { type Test } from 'tap';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../xds/protos.js';
import { NEUTRAL_VIEW } from '../xds/cache.js';
import { DeltaClient, SotwClient, testNode, type DecodedResponse } from './fixtures/xds/ads-client.js';
import { FixedLoadView, podsOnEveryNode, revision, testModel } from './fixtures/xds/model.js';
import { sleep, startTestServer, until } from './fixtures/xds/server.js';

const HELLO = 'default/hello-00001';
const WORLD = 'default/world-00001';

function sotw(t: Test, target: string, subZone: string | undefined = 'node1'): SotwClient {
  const c = new SotwClient(target, testNode(subZone));
  t.teardown(() => c.close());
  return c;
}

function weights(res: DecodedResponse, cluster: string): Record<string, { w: number; p: number }> {
  const cla = res.resources.find((r) => r.cluster_name === cluster);
  const out: Record<string, { w: number; p: number }> = {};
  for (const l of (cla?.endpoints ?? []) as { locality: { sub_zone: string }; load_balancing_weight: number; priority?: number }[]) {
    out[l.locality.sub_zone] = { w: l.load_balancing_weight, p: l.priority ?? 0 };
  }
  return out;
}

t.test('SotW: responses carry nonces, ACKs are recorded, quiet after ACK, EDS follows model changes', async (t) => {
  const model = testModel(3);
  const { server, target } = await startTestServer(t, model);
  const c = sotw(t, target);
  c.subscribe(CLUSTER_TYPE);
  const cds = await c.next(CLUSTER_TYPE);
  t.ok(cds.nonce, 'CDS response has a nonce');
  t.ok(cds.version, 'CDS response has a version');
  t.same(cds.names, [HELLO]);
  t.equal(cds.resources[0].type, 'EDS');
  t.same(cds.resources[0].common_lb_config, { locality_weighted_lb_config: {}, healthy_panic_threshold: { value: 0 } });
  c.ack(cds);
  c.setNames(ENDPOINT_TYPE, [HELLO]);
  c.subscribe(ENDPOINT_TYPE, [HELLO]);
  const eds = await c.next(ENDPOINT_TYPE);
  t.not(eds.nonce, cds.nonce, 'every response has its own nonce');
  t.same(Object.keys(weights(eds, HELLO)).sort(), ['node1', 'node2', 'node3'], 'one locality per node');
  c.ack(eds);
  await until('EDS ACK recorded', () => server.clients()[0]?.types.EDS?.acked_version === eds.version);
  t.equal(server.clients()[0].types.CDS.acked_version, cds.version);
  t.equal(server.clients()[0].view, 'node1', 'view chosen from node.locality.sub_zone');
  t.ok(await c.quiet(ENDPOINT_TYPE, 600), 'nothing re-sent while nothing changed (3 recompute ticks)');

  model.setReady('hello-00001-node2', false);
  const eds2 = await c.next(ENDPOINT_TYPE);
  t.not(eds2.version, eds.version, 'a readiness change is a new version');
  const node2 = (eds2.resources[0].endpoints as { locality: { sub_zone: string }; lb_endpoints: { health_status: string }[] }[])
    .find((l) => l.locality.sub_zone === 'node2');
  t.equal(node2?.lb_endpoints[0].health_status, 'UNHEALTHY', 'unready pod is UNHEALTHY');
  c.ack(eds2);
  await until('second ACK', () => server.clients()[0]?.types.EDS?.acked_version === eds2.version);
});

t.test('NACK keeps the last good version, is never answered by a re-push, and shows in /clients and /metrics', async (t) => {
  const model = testModel(3);
  const { server, target, adminUrl, logs } = await startTestServer(t, model);
  const c = sotw(t, target);
  c.setNames(ENDPOINT_TYPE, [HELLO]);
  c.subscribe(ENDPOINT_TYPE, [HELLO]);
  const good = await c.next(ENDPOINT_TYPE);
  c.ack(good);
  model.setReady('hello-00001-node3', false);
  const bad = await c.next(ENDPOINT_TYPE);
  c.nack(bad, good.version, 'endpoints[0]: test says no');
  t.ok(await c.quiet(ENDPOINT_TYPE, 800), 'the refused version is not pushed again (4 recompute ticks)');
  const status = await until('NACK in /clients', async () => {
    const body = await (await fetch(`${adminUrl}/clients`)).json() as { clients: { types: Record<string, { nacked?: { error: string; version: string }; acked_version?: string }> }[] };
    return body.clients[0]?.types.EDS?.nacked ? body.clients[0].types.EDS : undefined;
  });
  t.equal(status.nacked?.error, 'endpoints[0]: test says no', '/clients shows the NACK error');
  t.equal(status.nacked?.version, bad.version, '/clients shows the refused version');
  t.equal(status.acked_version, good.version, 'the last good version stays ACKed');
  const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
  t.match(metrics, /chikai_xds_nacked_clients\{type="EDS"\} 1/);
  t.match(metrics, /chikai_xds_nacks_total\{type="EDS",node="node1"\} 1/);
  t.ok(logs.some((l) => l.includes('NACKed') && l.includes('test says no')), 'the NACK is logged');

  // A different version is sent; ACKing it clears the NACK but keeps it as history.
  model.setReady('hello-00001-node3', true);
  const next = await c.next(ENDPOINT_TYPE);
  t.not(next.version, bad.version);
  c.ack(next);
  await until('ACK after NACK', () => {
    const eds = server.clients()[0]?.types.EDS;
    return eds?.acked_version === next.version && !eds.awaiting_ack;
  });
  t.notOk(server.clients()[0].types.EDS.nacked, 'no standing NACK after the ACK');
  t.equal(server.clients()[0].types.EDS.last_nack?.version, bad.version, 'the NACK stays visible as last_nack');
});

t.test('a request with a stale nonce is ignored', async (t) => {
  const model = testModel(3, [revision('hello', 'hello-00001'), revision('world', 'world-00001')]);
  const { server, target } = await startTestServer(t, model);
  const c = sotw(t, target);
  c.subscribe(ENDPOINT_TYPE, [HELLO]);
  const first = await c.next(ENDPOINT_TYPE);
  c.send({ type_url: ENDPOINT_TYPE, version_info: first.version, response_nonce: first.nonce, resource_names: [HELLO, WORLD] });
  const second = await c.next(ENDPOINT_TYPE);
  t.same(second.names.sort(), [HELLO, WORLD], 'a subscription change with the current nonce is answered');
  // Echoing the first nonce again, now superseded, with yet another subscription.
  c.send({ type_url: ENDPOINT_TYPE, version_info: first.version, response_nonce: first.nonce, resource_names: [WORLD] });
  t.ok(await c.quiet(ENDPOINT_TYPE, 500), 'no response to the stale request');
  await until('stale nonce counted', () => server.clients()[0]?.types.EDS?.stale_nonces_ignored === 1);
  t.equal(server.clients()[0].types.EDS.subscribed.length, 2, 'its subscription change was not applied');
  t.equal(server.clients()[0].types.EDS.awaiting_ack, true, 'still waiting for the ACK of the latest response');
});

t.test('wildcard CDS and LDS are complete; removal is omission; api_listeners only by name', async (t) => {
  const model = testModel(3);
  const { target } = await startTestServer(t, model);
  const c = sotw(t, target);
  c.subscribe(CLUSTER_TYPE);
  const cds1 = await c.next(CLUSTER_TYPE);
  c.ack(cds1);
  c.subscribe(LISTENER_TYPE);
  const lds = await c.next(LISTENER_TYPE);
  t.same(lds.names.sort(), ['listener_8080', 'listener_8081', 'listener_8090'], 'wildcard LDS: the Kourier listeners');
  c.ack(lds);
  const world = revision('world', 'world-00001');
  model.update((s) => ({ ...s, revisions: [...s.revisions, world], endpoints: [...s.endpoints, ...podsOnEveryNode(world, s.nodes, 31000)] }));
  const cds2 = await c.next(CLUSTER_TYPE);
  t.same(cds2.names.sort(), [HELLO, WORLD], 'an added cluster comes with every other (complete set)');
  c.ack(cds2);
  model.update((s) => ({ ...s, revisions: s.revisions.filter((r) => r.name !== 'hello-00001'), endpoints: s.endpoints.filter((e) => e.revision !== HELLO) }));
  const cds3 = await c.next(CLUSTER_TYPE);
  t.same(cds3.names, [WORLD], 'a removed cluster is left out of the next complete set');
  c.ack(cds3);
  t.ok(await c.quiet(LISTENER_TYPE, 300), 'wildcard LDS unchanged by revisions (api_listeners are not in it)');

  const g = sotw(t, target, 'node2');
  g.subscribe(LISTENER_TYPE, ['world.default']);
  const api = await g.next(LISTENER_TYPE);
  t.same(api.names, ['world.default'], 'a named LDS request gets the api_listener for that host');
  const hcm = (api.resources[0].api_listener as { api_listener: { '@type': string; rds: { route_config_name: string } } }).api_listener;
  t.equal(hcm['@type'], 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager');
  t.equal(hcm.rds.route_config_name, 'internal_services');
});

t.test('push order CDS → EDS → LDS → RDS, and EDS is re-sent after its cluster changes', async (t) => {
  const model = testModel(2);
  const { target } = await startTestServer(t, model);
  const c = sotw(t, target);
  c.subscribe(CLUSTER_TYPE);
  c.ack(await c.next(CLUSTER_TYPE));
  c.setNames(ENDPOINT_TYPE, [HELLO]);
  c.subscribe(ENDPOINT_TYPE, [HELLO]);
  const eds1 = await c.next(ENDPOINT_TYPE);
  c.ack(eds1);
  c.subscribe(LISTENER_TYPE);
  c.ack(await c.next(LISTENER_TYPE));
  c.setNames(ROUTE_TYPE, ['internal_services', 'external_services']);
  c.subscribe(ROUTE_TYPE, ['internal_services', 'external_services']);
  c.ack(await c.next(ROUTE_TYPE));
  const mark = c.received.length;

  // One model change touching clusters (HTTP/2), endpoints (a pod goes unready), routes (timeout).
  model.update((s) => ({
    ...s,
    revisions: s.revisions.map((r) => ({ ...r, protocol: 'h2c' as const, timeoutSeconds: 60 })),
    endpoints: s.endpoints.map((e) => (e.node === 'node2' ? { ...e, ready: false } : e)),
  }));
  const cds = await c.next(CLUSTER_TYPE);
  t.ok(cds.resources[0].typed_extension_protocol_options, 'h2c revision: cluster speaks HTTP/2 upstream');
  c.ack(cds);
  const eds = await c.next(ENDPOINT_TYPE);
  c.ack(eds);
  const rds = await c.next(ROUTE_TYPE);
  c.ack(rds);
  const order = c.received.slice(mark).map((r) => r.type);
  t.ok(order.indexOf(CLUSTER_TYPE) < order.indexOf(ENDPOINT_TYPE) && order.indexOf(ENDPOINT_TYPE) < order.indexOf(ROUTE_TYPE), `order ${order.map((x) => x.split('.').pop()).join(' → ')}`);

  // A cluster-only change: its EDS content is unchanged but still re-sent.
  model.update((s) => ({ ...s, revisions: s.revisions.map((r) => ({ ...r, protocol: 'http1' as const })) }));
  c.ack(await c.next(CLUSTER_TYPE));
  const again = await c.next(ENDPOINT_TYPE);
  t.equal(again.version, eds.version, 'same assignment, same version');
  t.not(again.nonce, eds.nonce, 're-sent with a new nonce so the updated cluster finishes warming');
  c.ack(again);
});

t.test('a client that reconnects with its last version gets no re-push; a changed one does', async (t) => {
  const model = testModel(3);
  const { target } = await startTestServer(t, model);
  const a = new SotwClient(target, testNode('node3'));
  a.subscribe(CLUSTER_TYPE);
  const cds = await a.next(CLUSTER_TYPE);
  a.ack(cds);
  a.subscribe(ENDPOINT_TYPE, [HELLO]);
  const eds = await a.next(ENDPOINT_TYPE);
  a.ack(eds);
  a.close();

  const b = sotw(t, target, 'node3');
  b.subscribe(CLUSTER_TYPE, [], cds.version);
  b.subscribe(ENDPOINT_TYPE, [HELLO], eds.version);
  t.ok(await b.quiet(CLUSTER_TYPE, 400), 'CDS: current version, nothing sent');
  t.ok(await b.quiet(ENDPOINT_TYPE, 1), 'EDS: current version, nothing sent');
  model.setReady('hello-00001-node1', false);
  const eds2 = await b.next(ENDPOINT_TYPE);
  t.not(eds2.version, eds.version, 'a later change reaches the reconnected client');

  const stale = sotw(t, target, 'node3');
  stale.subscribe(ENDPOINT_TYPE, [HELLO], eds.version);
  const caughtUp = await stale.next(ENDPOINT_TYPE);
  t.equal(caughtUp.version, eds2.version, 'reconnecting with an older version gets the current one');
});

t.test('delta: wildcard, subscribe, unsubscribe, absent names, removal, reconnect with versions, NACK', async (t) => {
  const model = testModel(3, [revision('hello', 'hello-00001'), revision('world', 'world-00001')]);
  const { server, target } = await startTestServer(t, model);
  const d = new DeltaClient(target, testNode('node2'));
  t.teardown(() => d.close());
  d.send({ type_url: CLUSTER_TYPE });
  const cds = await d.next(CLUSTER_TYPE);
  t.same(cds.resources.map((r) => r.name).sort(), [HELLO, WORLD], 'empty first CDS request = wildcard');
  t.ok(cds.resources.every((r) => r.version), 'each resource has a version');
  d.ack(cds);
  d.send({ type_url: ENDPOINT_TYPE, resource_names_subscribe: [HELLO, 'default/nope-00001'] });
  const eds = await d.next(ENDPOINT_TYPE);
  t.same(eds.resources.map((r) => r.name), [HELLO], 'only the subscribed assignment');
  t.same(eds.removed, ['default/nope-00001'], 'a name that does not exist is reported as removed');
  d.ack(eds);
  d.send({ type_url: ENDPOINT_TYPE, resource_names_subscribe: [WORLD] });
  const eds2 = await d.next(ENDPOINT_TYPE);
  t.same(eds2.resources.map((r) => r.name), [WORLD], 'subscribing adds just the new name');
  d.ack(eds2);
  d.send({ type_url: ENDPOINT_TYPE, resource_names_unsubscribe: [WORLD] });
  // The client shares this process: let the server read the ACK and the unsubscribe first.
  await until('unsubscribe seen', () => {
    const eds = server.clients().find((c) => c.protocol === 'delta')?.types.EDS;
    return eds !== undefined && !eds.awaiting_ack && !eds.subscribed.includes(WORLD);
  });
  model.setReady('world-00001-node1', false);
  const unexpected = await d.next(ENDPOINT_TYPE, 400).catch(() => undefined);
  t.notOk(unexpected, `no update for an unsubscribed name ${JSON.stringify(unexpected && { r: unexpected.resources.map((r) => r.name), rm: unexpected.removed })}`);
  model.setReady('hello-00001-node1', false);
  const eds3 = await d.next(ENDPOINT_TYPE);
  t.same(eds3.resources.map((r) => r.name), [HELLO], 'only the changed resource is sent');
  d.nack(eds3, 'delta test says no');
  t.ok(await d.quiet(ENDPOINT_TYPE, 500), 'NACK: not re-pushed');
  await until('delta NACK visible', () => server.clients().find((c) => c.protocol === 'delta')?.types.EDS?.nacked?.error === 'delta test says no');

  model.update((s) => ({ ...s, revisions: s.revisions.filter((r) => r.name !== 'world-00001'), endpoints: s.endpoints.filter((e) => e.revision !== WORLD) }));
  const cds2 = await d.next(CLUSTER_TYPE);
  t.same(cds2.removed, [WORLD], 'a deleted cluster is in removed_resources');
  t.same(cds2.resources, [], 'and nothing else is re-sent');
  d.ack(cds2);

  // Reconnect with what the client has: nothing to send.
  const versions = Object.fromEntries(cds.resources.filter((r) => r.name === HELLO).map((r) => [r.name, r.version]));
  const again = new DeltaClient(target, testNode('node2', 'gateway-again'));
  t.teardown(() => again.close());
  again.send({ type_url: CLUSTER_TYPE, initial_resource_versions: versions });
  t.ok(await again.quiet(CLUSTER_TYPE, 400), 'initial_resource_versions current: no re-push');
  const stale = new DeltaClient(target, testNode('node2', 'gateway-stale'));
  t.teardown(() => stale.close());
  stale.send({ type_url: CLUSTER_TYPE, initial_resource_versions: { ...versions, [WORLD]: 'old' } });
  const fix = await stale.next(CLUSTER_TYPE);
  t.same(fix.removed, [WORLD], 'a reconnecting client holding a deleted resource is told to remove it');
  t.same(fix.resources, [], 'current resources are not re-sent');
});

t.test('weights: recomputed every tick, pushed only past the threshold; a quiet cluster causes no churn', async (t) => {
  const model = testModel(3);
  // node1's gateway has no pod on its node (with one, a split leaving the node would go
  // through node1's proxy instead of weights), so the remote pods' weights are what it gets.
  model.update((s) => ({ ...s, endpoints: s.endpoints.filter((e) => e.node !== 'node1') }));
  const load = new FixedLoadView();
  // Sub-millisecond costs keep both nodes within the margin of the cheapest, in priority 0,
  // so weights are visible: node2 0.3 ms, node3 0.5 ms, weights ∝ 1/cost (about 63/38).
  load.setServiceTime('hello-00001-node2', 0.2).setServiceTime('hello-00001-node3', 0.2);
  load.setRtt('node1', 'node2', 0.1).setRtt('node1', 'node3', 0.3);
  const { server, target } = await startTestServer(t, model, { load, recomputeMs: 100, weightChangeThreshold: 5 });
  const c = sotw(t, target, 'node1');
  c.setNames(ENDPOINT_TYPE, [HELLO]);
  c.subscribe(ENDPOINT_TYPE, [HELLO]);
  const first = await c.next(ENDPOINT_TYPE);
  c.ack(first);
  const w1 = weights(first, HELLO);
  t.ok(Object.values(w1).every((x) => x.p === 0), `all in priority 0: ${JSON.stringify(w1)}`);
  t.ok(await c.quiet(ENDPOINT_TYPE, 1000), 'ten recompute ticks of a quiet cluster: no push');
  const publishes = await server.metrics.registry.getSingleMetricAsString('chikai_xds_view_publishes_total');
  t.notMatch(publishes, /view="node1"\} [2-9]/, 'the node1 view was published once');

  // A small load change moves weights by less than 5 points: recomputed, not pushed.
  load.setServiceTime('hello-00001-node3', 0.21);
  t.ok(await c.quiet(ENDPOINT_TYPE, 500), 'small weight change not pushed');
  t.match(await server.metrics.registry.getSingleMetricAsString('chikai_xds_weight_changes_suppressed_total'), /view="node1"\} [1-9]/);
  // A big one is.
  load.setServiceTime('hello-00001-node3', 0.6);
  const second = await c.next(ENDPOINT_TYPE);
  const w2 = weights(second, HELLO);
  t.ok(Math.abs(w2.node3.w - w1.node3.w) > 5, `node3 weight ${w1.node3.w} → ${w2.node3.w}`);
});

t.test('the neutral view for a gateway with no or an unknown sub_zone', async (t) => {
  const model = testModel(3);
  model.update((s) => ({ ...s, endpoints: s.endpoints.map((e) => ({ ...e, ready: false })) }));
  const { server, target } = await startTestServer(t, model, { proxyPort: 8012 });
  for (const sub of [undefined, 'node-from-elsewhere']) {
    const c = new SotwClient(target, testNode(sub));
    t.teardown(() => c.close());
    c.subscribe(ENDPOINT_TYPE, [HELLO]);
    const eds = await c.next(ENDPOINT_TYPE);
    const w = weights(eds, HELLO);
    t.same(Object.values(w).map((x) => x.p), [0, 0, 0], `${sub ?? 'no sub_zone'}: every node's proxy at priority 0`);
    const ports = (eds.resources[0].endpoints as { lb_endpoints: { endpoint: { address: { socket_address: { port_value: number } } } }[] }[])
      .map((l) => l.lb_endpoints[0].endpoint.address.socket_address.port_value);
    t.same(ports, [8012, 8012, 8012], 'endpoints are the proxies');
  }
  await until('views known', () => server.clients().length === 2 && server.clients().every((c) => c.view === NEUTRAL_VIEW));
  t.pass('both clients get the neutral view');
});

t.test('a resource that breaks a PGV rule is not sent; the last good version stays and the error names resource and field', async (t) => {
  const model = testModel(3);
  const { server, target, adminUrl, logs } = await startTestServer(t, model);
  const c = sotw(t, target, 'node1');
  c.setNames(ENDPOINT_TYPE, [HELLO]);
  c.subscribe(ENDPOINT_TYPE, [HELLO]);
  const good = await c.next(ENDPOINT_TYPE);
  c.ack(good);
  // A pod port no socket can have: SocketAddress.port_value has (validate.rules).uint32.lte = 65535.
  model.update((s) => ({ ...s, endpoints: s.endpoints.map((e) => (e.node === 'node2' ? { ...e, port: 70000 } : e)) }));
  t.ok(await c.quiet(ENDPOINT_TYPE, 600), 'the invalid assignment is not sent');
  const inv = server.invalidResources().find((r) => r.name === HELLO && r.viewKey === 'node1');
  t.ok(inv, 'recorded as invalid');
  t.match(inv?.error ?? '', /ClusterLoadAssignment "default\/hello-00001".*endpoints\[\d\]\.lb_endpoints\[0\]\.endpoint\.address\.socket_address\.port_value: must be at most 65535, got 70000 \[uint32\.lte\]/);
  t.equal(inv?.servingLastGood, true);
  t.ok(logs.some((l) => l.includes('port_value') && l.includes('still serving its last good version')), 'logged once with the field');
  const body = await (await fetch(`${adminUrl}/invalid_resources`)).json() as { invalid_resources: { name: string; violations: { field: string; rule: string }[] }[] };
  t.ok(body.invalid_resources.some((r) => r.name === HELLO && r.violations.some((v) => v.rule === 'uint32.lte')), '/invalid_resources lists it');
  const dump = await (await fetch(`${adminUrl}/config_dump?node=node1`)).json() as { configs: { dynamic_endpoint_configs?: { version_info: string; endpoint_config: { endpoints: { lb_endpoints: { endpoint: { address: { socket_address: { port_value: number } } } }[] }[] } }[] }[] };
  const ports = dump.configs[1].dynamic_endpoint_configs?.[0].endpoint_config.endpoints.map((l) => l.lb_endpoints[0].endpoint.address.socket_address.port_value);
  t.notOk(ports?.includes(70000), 'config_dump shows the last good version');
  // Fixing the model clears the error and sends the fixed version.
  model.update((s) => ({ ...s, endpoints: s.endpoints.map((e) => (e.port === 70000 ? { ...e, port: 30011 } : e)) }));
  await until('error cleared', () => !server.invalidResources().some((r) => r.name === HELLO));
  const fixed = await c.next(ENDPOINT_TYPE);
  t.not(fixed.version, good.version, 'the fixed assignment is sent');
});

t.test('time from an endpoint change to all of 10 clients ACKing', async (t) => {
  const model = testModel(3);
  const { server, target } = await startTestServer(t, model, { recomputeMs: 1000 });
  const clients = Array.from({ length: 10 }, (_, i) => {
    const c = new SotwClient(target, testNode(`node${(i % 3) + 1}`, `gw-${i}`));
    t.teardown(() => c.close());
    c.setNames(ENDPOINT_TYPE, [HELLO]);
    // Auto-ACK, as Envoy does.
    c.subscribe(ENDPOINT_TYPE, [HELLO]);
    return c;
  });
  const pump = async (c: SotwClient) => {
    for (;;) {
      let r: DecodedResponse;
      try {
        r = await c.next(ENDPOINT_TYPE, 60_000);
      } catch {
        return;
      }
      c.ack(r);
    }
  };
  for (const c of clients) void pump(c);
  const allAcked = () => server.clients().length === 10 && server.clients().every((c) => c.types.EDS?.acked_version && !c.types.EDS.awaiting_ack);
  await until('initial ACKs', allAcked);
  const samples: number[] = [];
  for (let i = 0; i < 20; i++) {
    const before = new Map(server.clients().map((c) => [c.stream, c.types.EDS.acked_version]));
    const t0 = performance.now();
    model.setReady('hello-00001-node2', i % 2 === 0 ? false : true);
    await until('all ACK the change', () => server.clients().every((c) => c.types.EDS.acked_version !== before.get(c.stream) && !c.types.EDS.awaiting_ack), 5000, 1);
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const median = samples[Math.floor(samples.length / 2)];
  t.comment(`endpoint change → 10 clients ACKed: median ${median.toFixed(1)} ms, max ${samples[samples.length - 1].toFixed(1)} ms over ${samples.length} changes`);
  t.equal(samples.length, 20, 'every change reached every client without waiting for a recompute tick');
  await sleep(10);
});
