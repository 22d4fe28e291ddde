// `chikai status` against a real Envoy 1.37 gateway holding an assignment whose priority 0
// has two localities: the gateway's own node and a cheaper one. chikai lists the cheaper
// node first; Envoy's config dump lists its own locality first. The gateway is in sync and
// status must say so (it once said `EDS … differs` for every loaded cloud gateway).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { renderBootstrap } from '../gateway/bootstrap.js';
import { ensureEnvoy } from '../gateway/envoy-binary.js';
import { EnvoyProcess } from '../gateway/envoy-process.js';
import { pickGatewayPorts } from '../gateway/gateways.js';
import { gatewayStatus } from '../gateway/status.js';
import { EXTERNAL_LISTENER, INTERNAL_LISTENER, PROBE_LISTENER } from '../xds/resources.js';
import { FixedLoadView, testModel } from './fixtures/xds/model.js';
import { startTestServer, until } from './fixtures/xds/server.js';

type Obj = Record<string, unknown>;
const HELLO = 'default/hello-00001';
const list = (v: unknown): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);

/** hello's localities in a config dump, in the dump's order: [sub_zone, priority]. */
function localities(dump: Obj): [string, number][] {
  const section = list(dump['configs']).find((c) => String(c['@type']).endsWith('.EndpointsConfigDump')) ?? {};
  const cla = list(section['dynamic_endpoint_configs']).map((c) => c['endpoint_config'] as Obj).find((c) => c['cluster_name'] === HELLO);
  return list(cla?.['endpoints']).map((l) => [String((l['locality'] as Obj)['sub_zone']), Number(l['priority'] ?? 0)]);
}

t.test('a gateway whose priority 0 holds its own node and a cheaper one is IN SYNC, whatever order Envoy lists them in', async (t) => {
  const model = testModel(3);
  const node2 = model.current.node('node2')!;
  // node2's pod is busy, node1's (half a millisecond away) idle: node2's gateway shares hello
  // between node1 (cheaper, first) and its own pod at priority 0; node3 (edge, 50 ms) is behind.
  const load = new FixedLoadView()
    .setRtt('node1', 'node2', 0.5).setRtt('node1', 'node3', 50).setRtt('node2', 'node3', 50)
    .setInFlight('hello-00001-node2', 6).setCapacity('hello-00001-node2', 4).setServiceTime('hello-00001-node2', 4)
    .setCapacity('hello-00001-node1', 4).setServiceTime('hello-00001-node1', 4)
    .setCapacity('hello-00001-node3', 4).setServiceTime('hello-00001-node3', 4);
  const ports = await pickGatewayPorts(model.current.nodes.map((n) => n.address));
  const { server, adminUrl } = await startTestServer(t, model, { load, gatewayPorts: ports });
  const served = (await (await request(`${adminUrl}/config_dump?node=node2`)).body.json()) as Obj;
  t.same(localities(served), [['node1', 0], ['node2', 0], ['node3', 1]], 'chikai serves node2: node1 then node2 at priority 0, node3 behind');

  const workDir = mkdtempSync(join(tmpdir(), 'chikai-status-envoy-'));
  t.teardown(() => rmSync(workDir, { recursive: true, force: true }));
  const envoy = EnvoyProcess.start({
    binary: (await ensureEnvoy()).path,
    name: 'status-node2',
    workDir,
    bootstrap: renderBootstrap({ node: node2, xds: { host: '127.0.0.1', port: server.address.port }, adminPort: ports.admin, statsPort: ports.stats }),
    admin: { host: node2.address, port: ports.admin },
    listeners: [EXTERNAL_LISTENER, INTERNAL_LISTENER, PROBE_LISTENER],
  });
  t.teardown(() => envoy.stop());
  await envoy.ready(60_000);
  const held = await until('Envoy holds hello\'s assignment', async () => {
    const dump = (await (await request(`${envoy.adminUrl}/config_dump?include_eds`)).body.json()) as Obj;
    return localities(dump).length === 3 ? localities(dump) : undefined;
  }, 30_000, 100);
  t.same(held.slice(0, 2).map(([n]) => n).sort(), ['node1', 'node2'], `Envoy holds both at priority 0 (its order: ${JSON.stringify(held)})`);

  const client = await until('node2 ACKed every type', () => {
    const c = server.clients().find((x) => x.node_id === 'node2');
    return c && ['CDS', 'EDS', 'LDS', 'RDS'].every((k) => c.types[k]?.acked_version && c.types[k]?.acked_version === c.types[k]?.sent_version) ? c : undefined;
  }, 30_000, 100);
  const status = await gatewayStatus('node2', client, adminUrl.replace('http://', ''), `${node2.address}:${ports.admin}`);
  t.equal(status.types.EDS.state, 'SYNCED', `EDS in sync: ${JSON.stringify(status.types.EDS.differences)}`);
  t.ok(status.in_sync, 'node2\'s gateway IN SYNC');
});
