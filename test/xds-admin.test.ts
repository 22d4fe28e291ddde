// The xDS admin port, read the way one reads Envoy's: /config_dump in ConfigDump's JSON
// shape (endpoint configs included), /clusters in /clusters' text form, /clients with
// what each gateway ACKed, and clear answers to wrong requests.
import t from 'tap';
import { CLUSTER_TYPE } from '../xds/protos.js';
import { SotwClient, testNode } from './fixtures/xds/ads-client.js';
import { testModel } from './fixtures/xds/model.js';
import { startTestServer, until } from './fixtures/xds/server.js';

interface Dump { configs: ({ '@type': string } & Record<string, unknown>)[] }

t.test('config_dump has the four ConfigDump sections of what the node\'s gateway is served', async (t) => {
  const model = testModel(3);
  const { adminUrl } = await startTestServer(t, model);
  const res = await fetch(`${adminUrl}/config_dump?node=node3`);
  t.equal(res.status, 200);
  const dump = await res.json() as Dump;
  const types = dump.configs.map((c) => c['@type'].split('.').pop());
  t.same(types, ['ClustersConfigDump', 'EndpointsConfigDump', 'ListenersConfigDump', 'RoutesConfigDump'], 'in Envoy\'s order');
  const clusters = dump.configs[0]['dynamic_active_clusters'] as { version_info: string; cluster: { name: string; '@type': string } }[];
  t.same(clusters.map((c) => c.cluster.name), ['default/hello-00001']);
  t.equal(clusters[0].cluster['@type'], 'type.googleapis.com/envoy.config.cluster.v3.Cluster', 'each resource carries its @type');
  t.ok(clusters[0].version_info, 'and its version');
  const eds = dump.configs[1]['dynamic_endpoint_configs'] as { endpoint_config: { cluster_name: string; endpoints: { locality: { sub_zone: string }; load_balancing_weight: number; priority?: number }[] } }[];
  const node3 = eds[0].endpoint_config.endpoints.find((l) => l.locality.sub_zone === 'node3');
  t.equal(node3?.priority ?? 0, 0, 'the gateway\'s own node is priority 0');
  const listeners = dump.configs[2]['dynamic_listeners'] as { name: string }[];
  t.ok(['listener_8080', 'listener_8081', 'listener_8090'].every((n) => listeners.some((l) => l.name === n)), 'Kourier\'s listeners');
  const routes = dump.configs[3]['dynamic_route_configs'] as { route_config: { name: string } }[];
  t.same(routes.map((r) => r.route_config.name).sort(), ['external_services', 'internal_services']);
});

t.test('/clusters lists every host with locality, priority, weight and health; /clients shows the gateways', async (t) => {
  const model = testModel(3);
  const { adminUrl, target } = await startTestServer(t, model);
  model.setReady('hello-00001-node1', false);
  await until('view rebuilt', async () => (await (await fetch(`${adminUrl}/clusters?node=node3`)).text()).includes('failed_eds_health'));
  const text = await (await fetch(`${adminUrl}/clusters?node=node3`)).text();
  const lines = text.split('\n');
  for (const field of ['health_flags', 'weight', 'region', 'zone', 'sub_zone', 'priority', 'locality_weight', 'expected_share']) {
    t.equal(lines.filter((l) => new RegExp(`^default/hello-00001::127\\.0\\.1\\.\\d:\\d+::${field}::`).test(l)).length, 3, `${field} for each of the three hosts`);
  }
  t.match(text, /127\.0\.1\.1:\d+::health_flags::\/failed_eds_health/, 'the unready pod is marked failed');
  const json = await (await fetch(`${adminUrl}/clusters?node=node3&format=json`)).json() as { cluster_statuses: { name: string; host_statuses: unknown[] }[] };
  t.equal(json.cluster_statuses[0].name, 'default/hello-00001');
  t.equal(json.cluster_statuses[0].host_statuses.length, 3, 'JSON form too');

  const c = new SotwClient(target, testNode('node2', 'gateway-node2'));
  t.teardown(() => c.close());
  c.subscribe(CLUSTER_TYPE);
  c.ack(await c.next(CLUSTER_TYPE));
  const clients = await until('ACK visible', async () => {
    const body = await (await fetch(`${adminUrl}/clients`)).json() as { clients: { node_id: string; view: string; types: Record<string, { acked_version?: string }> }[] };
    return body.clients.find((x) => x.types['CDS']?.acked_version) ? body.clients : undefined;
  });
  t.equal(clients[0].node_id, 'gateway-node2');
  t.equal(clients[0].view, 'node2', 'its view is its sub_zone\'s');
});

t.test('wrong requests get a clear answer', async (t) => {
  const { adminUrl } = await startTestServer(t, testModel(2));
  const noNode = await fetch(`${adminUrl}/clusters`);
  t.equal(noNode.status, 400);
  t.match(await noNode.text(), /needs \?node=<gateway node name> \(nodes: node1, node2\)/);
  const unknown = await fetch(`${adminUrl}/config_dump?node=node9`);
  t.equal(unknown.status, 200, 'an unknown node gets the neutral view, as its gateway would');
  t.equal(unknown.headers.get('x-chikai-view'), '(neutral)');
  const missing = await fetch(`${adminUrl}/stats`);
  t.equal(missing.status, 404);
  t.match(await missing.text(), /no such admin page \/stats[\s\S]*\/config_dump/, 'lists what exists');
  const post = await fetch(`${adminUrl}/clients`, { method: 'POST' });
  t.equal(post.status, 405);
  t.equal((await fetch(`${adminUrl}/readyz`)).status, 200);
});
