// Mutual TLS between the gateways and the xDS server, with real Envoy 1.37 gateways and
// certificates made by openssl for this run: the gateway with its node's certificate gets
// its config; one without a certificate, one with another CA's, and one claiming another
// node get nothing, and the server logs why (rate-limited per client).
import t, { type Test } from 'tap';
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { configuredLoadView } from '../cluster/load.js';
import { LoadReporter } from '../proxy/load-reporter.js';
import type { NodeInfo } from '../cluster/model.js';
import { renderBootstrap, type XdsTlsFiles } from '../gateway/bootstrap.js';
import { ensureEnvoy } from '../gateway/envoy-binary.js';
import { EnvoyProcess } from '../gateway/envoy-process.js';
import { pickGatewayPorts } from '../gateway/gateways.js';
import { readMutualTls } from '../xds/mtls.js';
import { EXTERNAL_LISTENER, INTERNAL_LISTENER, PROBE_LISTENER } from '../xds/resources.js';
import { startXdsServerWithLoadReports } from '../xds/load-reports.js';
import { TestPki, type PemPair } from './fixtures/certs.js';
import { ManualClock } from './fixtures/clock.js';
import { testModel } from './fixtures/xds/model.js';
import { until } from './support.js';

const SERVER_NAME = 'chikai-xds.chikai-system';
type Obj = Record<string, unknown>;

const pki = new TestPki();
t.teardown(() => pki.remove());
const model = testModel(4);
const node = (name: string): NodeInfo => model.current.node(name)!;
const logs: string[] = [];
let server: Awaited<ReturnType<typeof startXdsServerWithLoadReports>>;
let ca: PemPair;
let envoyBin: string;
let ports: Awaited<ReturnType<typeof pickGatewayPorts>>;

t.before(async () => {
  envoyBin = (await ensureEnvoy()).path;
  ca = await pki.ca('chikai-test-ca');
  const serverCert = await pki.issue(ca, 'xds', 'chikai-xds', 'server', [`DNS:${SERVER_NAME}`]);
  ports = await pickGatewayPorts(model.current.nodes.map((n) => n.address));
  server = await startXdsServerWithLoadReports({
    model,
    loadReportIntervalMs: 100,
    listen: { host: '127.0.0.1', port: 0 },
    proxyPort: 8012,
    gatewayPorts: ports,
    gatewayListenerAddress: (n) => (n && model.current.node(n)?.address) || '127.0.0.1',
    tls: readMutualTls({ ca: ca.cert, cert: serverCert.cert, key: serverCert.key }),
    // The log's rate limit never refills during the test: what it lets through is exact.
    clock: new ManualClock(),
    log: (l) => logs.push(l),
  });
});
t.teardown(async () => {
  await server?.close();
  t.comment(`xDS server log:\n${logs.join('\n')}`);
});

/** A real Envoy gateway for `nodeName` whose xDS cluster uses mutual TLS with `client` (or no certificate). */
function gateway(t: Test, nodeName: string, client: PemPair | undefined): EnvoyProcess {
  const n = node(nodeName);
  const files: XdsTlsFiles = { ca: ca.cert, cert: client?.cert ?? '', key: client?.key ?? '', serverName: SERVER_NAME };
  const bootstrap = renderBootstrap({ node: n, xds: { host: '127.0.0.1', port: server.address.port }, adminPort: ports.admin, statsPort: ports.stats, xdsTls: files });
  if (!client) {
    // The same TLS settings without a certificate to present.
    const xds = ((bootstrap['static_resources'] as Obj)['clusters'] as Obj[]).find((c) => c['name'] === 'chikai_xds')!;
    delete (((xds['transport_socket'] as Obj)['typed_config'] as Obj)['common_tls_context'] as Obj)['tls_certificates'];
  }
  const envoy = EnvoyProcess.start({
    binary: envoyBin, name: `mtls-${nodeName}`, bootstrap, workDir: pki.dir,
    admin: { host: n.address, port: ports.admin }, listeners: [EXTERNAL_LISTENER, INTERNAL_LISTENER, PROBE_LISTENER],
  });
  t.teardown(() => envoy.stop());
  return envoy;
}

/** What an Envoy got over ADS: the number of CDS and LDS updates it accepted. */
async function accepted(envoy: EnvoyProcess): Promise<{ cds: number; lds: number }> {
  const text = await (await request(`${envoy.adminUrl}/stats?filter=(cluster_manager\\.cds|listener_manager\\.lds)\\.update_success`)).body.text();
  const count = (name: string) => Number(new RegExp(`^${name.replace(/\./g, '\\.')}: (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  return { cds: count('cluster_manager.cds.update_success'), lds: count('listener_manager.lds.update_success') };
}

t.test('with its node\'s certificate a gateway gets its config', async (t) => {
  const envoy = gateway(t, 'node1', await pki.issue(ca, 'node1', 'node1', 'client'));
  await envoy.ready(60_000);
  const got = await accepted(envoy);
  t.ok(got.cds >= 1 && got.lds >= 1, `Envoy accepted CDS and LDS over mutual TLS (${JSON.stringify(got)})`);
  const client = server.clients().find((c) => c.node_id === 'node1');
  t.equal(client?.view, 'node1', 'served the view of the node its certificate names');
});

async function refusedWith(t: Test, envoy: EnvoyProcess, line: RegExp, nodeName: string): Promise<void> {
  await until(`the server to log ${line}`, () => logs.some((l) => line.test(l)), 60_000, 50);
  t.pass(`logged: ${logs.find((l) => line.test(l))}`);
  await until('Envoy\'s admin', async () => (await request(`${envoy.adminUrl}/ready`).then((r) => r.body.text(), () => undefined)) !== undefined, 30_000, 100);
  t.same(await accepted(envoy), { cds: 0, lds: 0 }, `${nodeName}'s gateway got no cluster and no listener`);
  t.notOk(server.clients().some((c) => c.node_id === nodeName), 'no ADS stream of it is being served');
}

t.test('without a client certificate: nothing, and the server says why', async (t) => {
  const envoy = gateway(t, 'node2', undefined);
  await refusedWith(t, envoy, /refused a connection from 127\.0\.1\.2: no client certificate/, 'node2');
});

t.test('with a certificate of another CA: nothing, and the server says why', async (t) => {
  const other = await pki.ca('other-ca');
  const envoy = gateway(t, 'node3', await pki.issue(other, 'node3-other', 'node3', 'client'));
  await refusedWith(t, envoy, /refused a connection from 127\.0\.1\.3: a client certificate not signed by the configured CA/, 'node3');
});

t.test('claiming another node than its certificate names: nothing, and the server says why', async (t) => {
  // node1's certificate in node4's gateway: it asks for node4's view.
  const envoy = gateway(t, 'node4', await pki.issue(ca, 'node1-stolen', 'node1', 'client'));
  await refusedWith(t, envoy, /refused ADS stream \S+ from 127\.0\.1\.4: its certificate is for node "node1" but it claims node\.id "node4"/, 'node4');
});

t.test('refusals are logged a few times per client, not once per attempt', async (t) => {
  const attempts = 20;
  for (let i = 0; i < attempts; i++) {
    await new Promise<void>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: server.address.port, localAddress: '127.0.3.9' });
      const s = tls.connect({ socket, ca: readFileSync(ca.cert), servername: SERVER_NAME, ALPNProtocols: ['h2'] });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.on('secureConnect', () => s.end());
    });
  }
  const lines = logs.filter((l) => l.includes('from 127.0.3.9'));
  t.equal(lines.length, 5, `${attempts} refused handshakes, 5 lines (the per-client burst)`);
  t.match(lines[0], /no client certificate/);
});

t.test('the proxies\' load reports need their own node\'s certificate too', async (t) => {
  const pem = (p: PemPair) => ({ ca: readFileSync(ca.cert), cert: readFileSync(p.cert), key: readFileSync(p.key), serverName: SERVER_NAME });
  const reporter = (nodeName: string, cert: PemPair) => {
    const r = new LoadReporter({ node: nodeName, model, load: configuredLoadView(() => model.current), servers: [{ host: '127.0.0.1', port: server.address.port }], tls: pem(cert), intervalMs: 100 });
    t.teardown(() => r.close());
    return r;
  };
  await reporter('node2', await pki.issue(ca, 'proxy-node2', 'node2', 'client')).start();
  await until('node2\'s proxy reporting', () => server.loadReports.reporters().includes('node2'));
  t.pass('a proxy with its node\'s certificate reports its load');
  await reporter('node3', await pki.issue(ca, 'proxy-node2-again', 'node2', 'client')).start();
  await until('the refusal logged', () => logs.some((l) => /refused load reports from 127\.0\.0\.1: its certificate is for node "node2" but it reports as sub_zone "node3"/.test(l)));
  t.notOk(server.loadReports.reporters().includes('node3'), 'one with another node\'s certificate does not');
});
