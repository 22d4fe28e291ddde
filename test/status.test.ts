// `chikai status` against the real xDS server with a raw ADS client as the gateway: a NACK
// shows with Envoy's error and the version kept, an admin that does not answer is named,
// and both make the exit code 1. (The in-sync and stale cases run against real Envoys in
// gateway.test.ts.)
import t, { type Test } from 'tap';
import { execFile } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { canonical, gatewayStatus } from '../gateway/status.js';
import { ENDPOINT_TYPE } from '../xds/protos.js';
import { SotwClient, testNode } from './fixtures/xds/ads-client.js';
import { testModel } from './fixtures/xds/model.js';
import { startTestServer, until } from './fixtures/xds/server.js';

const CHIKAI = fileURLToPath(new URL('../bin/chikai.js', import.meta.url));

function status(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CHIKAI, 'status', ...args], (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The xDS server and node1's gateway, subscribed to hello's assignment and holding (ACKing) the first one. */
async function gatewayHoldingFirstAssignment(t: Test) {
  const model = testModel(3);
  const { server, target, adminUrl } = await startTestServer(t, model);
  const c = new SotwClient(target, testNode('node1'));
  t.teardown(() => c.close());
  c.setNames(ENDPOINT_TYPE, ['default/hello-00001']);
  c.subscribe(ENDPOINT_TYPE, ['default/hello-00001']);
  const first = await c.next(ENDPOINT_TYPE);
  c.ack(first);
  return { model, server, adminUrl, c, first };
}

t.test('a NACKed assignment shows with Envoy\'s error; an unreachable gateway admin is named; exit 1', async (t) => {
  const { model, server, adminUrl, c, first: good } = await gatewayHoldingFirstAssignment(t);
  model.setReady('hello-00001-node3', false);
  const bad = await c.next(ENDPOINT_TYPE);
  c.nack(bad, good.version, 'cluster default/hello-00001: test says no');
  await until('the NACK recorded', () => server.clients()[0]?.types['EDS']?.nacked);

  const xdsAdmin = adminUrl.replace('http://', '');
  const run = await status(['--xds-admin', xdsAdmin, '--gateway-admin', 'node1=127.0.0.1:1']);
  t.equal(run.code, 1, 'exit code 1');
  const line = run.stdout.split('\n').find((l) => l.startsWith('node1 ')) ?? '';
  t.match(line, /^node1\s+CONNECTED\s+NOT SENT\s+/, 'connected; CDS never asked for');
  t.ok(line.includes(`NACKED ${bad.version.slice(0, 8)}: "cluster default/hello-00001: test says no" (keeps ${good.version.slice(0, 8)})`), `the NACK, its error and the version kept: ${line}`);
  t.match(line, /OUT OF SYNC: cannot reach node1's Envoy admin at http:\/\/127\.0\.0\.1:1\/config_dump/, 'the admin it could not read');
  t.equal(run.stdout.trim().split('\n').length, 2, 'a header and one line: only the gateway asked about');

  const json = await status(['--xds-admin', xdsAdmin, '--gateway-admin', 'node1=127.0.0.1:1', '--format', 'json']);
  const parsed = JSON.parse(json.stdout) as { in_sync: boolean; gateways: { node: string; types: Record<string, { state: string; nack?: { error: string } }> }[] };
  t.equal(parsed.in_sync, false);
  t.equal(parsed.gateways[0]?.types['EDS']?.state, 'NACKED');
  t.equal(parsed.gateways[0]?.types['EDS']?.nack?.error, 'cluster default/hello-00001: test says no');
});

t.test('bad flags and a missing xDS admin server get a clear answer', async (t) => {
  const badFlag = await status(['--gateway-admin', 'node1=nowhere']);
  t.equal(badFlag.code, 2);
  t.match(badFlag.stderr, /--gateway-admin node1=nowhere: expected NODE=HOST:PORT/);
  const noServer = await status(['--xds-admin', '127.0.0.1:1']);
  t.equal(noServer.code, 2);
  t.match(noServer.stderr, /^chikai: cannot reach the xDS admin server at http:\/\/127\.0\.0\.1:1\/clients .*npm start/m);
});

t.test('a version served after the client list was read is STALE (on its way), not DIFFERS', async (t) => {
  const { model, server, adminUrl, c, first } = await gatewayHoldingFirstAssignment(t);
  await until('the ACK recorded', () => server.clients()[0]?.types['EDS']?.acked_version === first.version);
  const xdsAdmin = adminUrl.replace('http://', '');
  // What this gateway's Envoy holds: the first version (the xDS admin's dump has Envoy's shape).
  const held = await (await fetch(`${adminUrl}/config_dump?node=node1`)).text();
  const envoy = http.createServer((_req, res) => res.end(held));
  await new Promise<void>((r) => envoy.listen(0, '127.0.0.1', r));
  t.teardown(() => envoy.close());
  const envoyAdmin = `127.0.0.1:${(envoy.address() as AddressInfo).port}`;
  // The client list as status read it, then a change the server serves before the dumps are read.
  const client = server.clients()[0];
  t.equal((await gatewayStatus('node1', client, xdsAdmin, envoyAdmin)).types.EDS.state, 'SYNCED', 'before the change: in sync');
  model.setReady('hello-00001-node3', false);
  await c.next(ENDPOINT_TYPE);
  const s = await gatewayStatus('node1', client, xdsAdmin, envoyAdmin);
  t.equal(s.types.EDS.state, 'STALE', 'the new assignment is on its way');
  t.same(s.types.EDS.differences, [], 'no difference reported for a push in flight');
});

t.test('a push that lands while Envoy\'s config is read is read again, never DIFFERS', async (t) => {
  const { model, server, adminUrl, c, first } = await gatewayHoldingFirstAssignment(t);
  await until('the ACK recorded', () => server.clients()[0]?.types['EDS']?.acked_version === first.version);
  const xdsAdmin = adminUrl.replace('http://', '');
  const client = server.clients()[0];
  // node1's Envoy admin: each read of it lets the server push a change first (hello's node3 pod
  // flips readiness), which the gateway takes and ACKs, so the dump it answers is newer than
  // the served config status read just before it.
  let pushesLeft = 1;
  let ready = true;
  const envoy = http.createServer((_req, res) => {
    void (async () => {
      if (pushesLeft > 0) {
        pushesLeft--;
        ready = !ready;
        model.setReady('hello-00001-node3', ready);
        const pushed = await c.next(ENDPOINT_TYPE);
        c.ack(pushed);
        await until('the ACK recorded', () => server.clients()[0]?.types['EDS']?.acked_version === pushed.version);
      }
      res.end(await (await fetch(`${adminUrl}/config_dump?node=node1`)).text());
    })();
  });
  await new Promise<void>((r) => envoy.listen(0, '127.0.0.1', r));
  t.teardown(() => envoy.close());
  const envoyAdmin = `127.0.0.1:${(envoy.address() as AddressInfo).port}`;

  const once = await gatewayStatus('node1', client, xdsAdmin, envoyAdmin);
  t.equal(once.types.EDS.state, 'SYNCED', 'read again after the push: in sync with what the gateway ACKed since');
  t.equal(once.types.EDS.acked_version, server.clients()[0]?.types['EDS']?.acked_version, 'the ACK shown is the one after the push');

  pushesLeft = 3;
  const always = await gatewayStatus('node1', server.clients()[0], xdsAdmin, envoyAdmin);
  t.equal(always.types.EDS.state, 'STALE', 'a push on every read: on its way, not a difference');
  t.same(always.types.EDS.differences, ['EDS pushed again during each of 3 reads'], 'and why it could not be checked');
  t.equal(pushesLeft, 0, 'three reads, then an answer');
});

t.test('an assignment is compared as the balancer reads it: localities sharing a priority in any order, as Envoy lists them', (t) => {
  const locality = (node: string, port: number, weight: number, priority?: number) => ({
    locality: { region: 'cloud', zone: 'cloud-a', sub_zone: node },
    lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.1.1', port_value: port } } }, health_status: 'HEALTHY' }],
    load_balancing_weight: weight,
    ...(priority === undefined ? {} : { priority }),
  });
  // What chikai serves node2's gateway under load: node1's and node2's pods share priority 0.
  const served = { cluster_name: 'default/hello-00001', endpoints: [locality('node1', 8001, 8), locality('node2', 8002, 92), locality('node3', 8003, 1, 1)] };
  // Envoy's dump of it lists the gateway's own locality first.
  const envoyOrder = { cluster_name: 'default/hello-00001', endpoints: [locality('node2', 8002, 92), locality('node1', 8001, 8), locality('node3', 8003, 1, 1)] };
  t.equal(canonical(ENDPOINT_TYPE, envoyOrder), canonical(ENDPOINT_TYPE, served), 'same assignment: in sync');
  const explicitPriority = { cluster_name: 'default/hello-00001', endpoints: [locality('node2', 8002, 92, 0), locality('node1', 8001, 8, 0), locality('node3', 8003, 1, 1)] };
  t.equal(canonical(ENDPOINT_TYPE, explicitPriority), canonical(ENDPOINT_TYPE, served), 'priority 0 written out or left out: the same');
  const twoHosts = (first: number, second: number) => ({ cluster_name: 'default/hello-00001', endpoints: [{ ...locality('node1', first, 1), lb_endpoints: [first, second].map((port) => ({ endpoint: { address: { socket_address: { address: '127.0.1.1', port_value: port } } } })) }] });
  t.equal(canonical(ENDPOINT_TYPE, twoHosts(8001, 8004)), canonical(ENDPOINT_TYPE, twoHosts(8004, 8001)), 'hosts of a locality in any order: the same');
  const otherPriorities = { cluster_name: 'default/hello-00001', endpoints: [locality('node2', 8002, 92), locality('node1', 8001, 8, 1), locality('node3', 8003, 1, 2)] };
  t.not(canonical(ENDPOINT_TYPE, otherPriorities), canonical(ENDPOINT_TYPE, served), 'node1 in another priority: differs');
  const otherWeights = { cluster_name: 'default/hello-00001', endpoints: [locality('node2', 8002, 50), locality('node1', 8001, 50), locality('node3', 8003, 1, 1)] };
  t.not(canonical(ENDPOINT_TYPE, otherWeights), canonical(ENDPOINT_TYPE, served), 'other weights: differs');
  t.end();
});

t.test('a push the gateway took after the client list was read is read again: SYNCED with the newer ACK, not STALE', async (t) => {
  const { model, server, adminUrl, c, first } = await gatewayHoldingFirstAssignment(t);
  await until('the ACK recorded', () => server.clients()[0]?.types['EDS']?.acked_version === first.version);
  const xdsAdmin = adminUrl.replace('http://', '');
  // The client list as status read it; then a push the gateway takes and ACKs before its configs are read.
  const before = server.clients()[0];
  model.setReady('hello-00001-node3', false);
  const pushed = await c.next(ENDPOINT_TYPE);
  c.ack(pushed);
  await until('the new ACK recorded', () => server.clients()[0]?.types['EDS']?.acked_version === pushed.version);
  const held = await (await fetch(`${adminUrl}/config_dump?node=node1`)).text();
  const envoy = http.createServer((_req, res) => res.end(held));
  await new Promise<void>((r) => envoy.listen(0, '127.0.0.1', r));
  t.teardown(() => envoy.close());
  const s = await gatewayStatus('node1', before, xdsAdmin, `127.0.0.1:${(envoy.address() as AddressInfo).port}`);
  t.equal(s.types.EDS.state, 'SYNCED', 'in sync with what the gateway holds');
  t.equal(s.types.EDS.acked_version, pushed.version, 'the ACK of the push, from the client list read again');

  // A server that serves a version no client list shows sent: STALE, and why.
  const never = { ...before!, types: { ...before!.types, EDS: { ...before!.types['EDS']!, sent_version: first.version, acked_version: first.version } } };
  const stale = await gatewayStatus('node1', never, xdsAdmin, `127.0.0.1:${(envoy.address() as AddressInfo).port}`, async () => new Map([['node1', never]]));
  t.equal(stale.types.EDS.state, 'STALE');
  t.same(stale.types.EDS.differences, [`EDS ${pushed.version.slice(0, 8)} served, not yet shown sent to the gateway`], 'the version served and not shown sent');
});
