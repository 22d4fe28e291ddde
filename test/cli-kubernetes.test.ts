// `chikai proxy --source kubernetes` and `chikai xds --source kubernetes` as processes, the
// way deploy/ runs them, against the fake API server (real list/watch wire format) with a
// kubeconfig file, and the proxy reporting to a websocket autoscaler:
// - the xDS server routes by the KIngress (traffic split 80/20, both revisions' clusters);
// - the proxy holds a request for a revision at zero, tells the autoscaler at once
//   (WireStatMessages, concurrency 1), and serves it when Kubernetes reports a pod.
import t, { type Test } from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';
import { request } from 'undici';
import { WebSocketServer } from 'ws';
import { ENDPOINT_SLICES, FakeApiServer, INGRESSES, NODES, REVISIONS } from './fixtures/kubernetes/fake-apiserver.js';
import { kingress, node, privateSlice, revision } from './fixtures/kubernetes/objects.js';

const CHIKAI = fileURLToPath(new URL('../bin/chikai.js', import.meta.url));
const statProto = protobuf.loadSync(fileURLToPath(new URL('../../proxy/stat.proto', import.meta.url))).lookupType('metrics.WireStatMessages');

function kubeconfig(server: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'chikai-kubeconfig-'));
  const file = join(dir, 'config');
  writeFileSync(file, [
    'apiVersion: v1', 'kind: Config', 'current-context: fake',
    'clusters:', `- name: fake`, `  cluster: { server: "${server}", insecure-skip-tls-verify: true }`,
    'users:', '- name: fake', '  user: { token: "t" }',
    'contexts:', '- name: fake', '  context: { cluster: fake, user: fake }',
  ].join('\n'));
  return file;
}

/** Starts `chikai <args>` and resolves with the first stdout line matching `ready`. */
async function run(t: Test, args: string[], ready: RegExp, env: Record<string, string> = {}): Promise<{ child: ChildProcess; match: RegExpExecArray; output: () => string }> {
  const child = spawn(process.execPath, [CHIKAI, ...args], { env: { ...process.env, KUBERNETES_SERVICE_HOST: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  t.teardown(() => { child.kill('SIGKILL'); });
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`chikai ${args[0]} did not start: ${out}`)), 20_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.on('exit', (code) => reject(new Error(`chikai ${args[0]} exited ${code}: ${out}`)));
  });
  return { child, match, output: () => out };
}

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('the xDS server routes by the KIngress from the Kubernetes API', async (t) => {
  const api = await FakeApiServer.start();
  t.teardown(() => api.close());
  api.apply(NODES, node('node-a', '127.0.1.1', 'edge'));
  api.apply(NODES, node('node-b', '127.0.1.2', 'cloud'));
  api.apply(REVISIONS, revision({ service: 'hello', name: 'hello-00001', timeoutSeconds: 30 }));
  api.apply(REVISIONS, revision({ service: 'hello', name: 'hello-00002', timeoutSeconds: 60 }));
  api.apply(ENDPOINT_SLICES, privateSlice('default', 'hello-00001', [{ pod: 'p1', ip: '127.0.1.1', node: 'node-a' }]));
  api.apply(ENDPOINT_SLICES, privateSlice('default', 'hello-00002', [{ pod: 'p2', ip: '127.0.1.2', node: 'node-b' }]));
  api.apply(INGRESSES, kingress('default', 'hello', [{ revision: 'hello-00001', percent: 80 }, { revision: 'hello-00002', percent: 20 }]));

  const xds = await run(t, ['xds', '--source', 'kubernetes', '--kubeconfig', kubeconfig(api.url), '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], /admin on 127\.0\.0\.1:(\d+)/);
  const admin = `http://127.0.0.1:${xds.match[1]}`;
  t.equal((await request(`${admin}/readyz`)).statusCode, 200, 'ready once the first lists are in');
  const dump = await (await request(`${admin}/config_dump?node=node-a`)).body.json() as { configs: Record<string, unknown>[] };
  const text = JSON.stringify(dump);
  const routes = dump.configs.find((c) => String(c['@type']).endsWith('RoutesConfigDump')) as { dynamic_route_configs: { route_config: { name: string; virtual_hosts: { domains: string[]; routes: { route: { weighted_clusters: { clusters: { name: string; weight: number }[] } } }[] }[] } }[] };
  const byName = new Map(routes.dynamic_route_configs.map((r) => [r.route_config.name, r.route_config]));
  const external = byName.get('external_services');
  const internal = byName.get('internal_services');
  t.ok(external && internal, 'both Kourier route configurations');
  t.same(external?.virtual_hosts.flatMap((v) => v.domains), ['hello.default.example.com', 'hello.default.example.com:*'], 'the ExternalIP rule is public');
  t.ok(internal?.virtual_hosts.some((v) => v.domains.includes('hello.default.svc.cluster.local')), 'the ClusterLocal rule is on the internal gateway');
  t.notOk(external?.virtual_hosts.some((v) => v.domains.includes('hello.default.svc.cluster.local')), 'and only there');
  const split = external?.virtual_hosts[0]?.routes[0]?.route.weighted_clusters.clusters.map((c) => [c.name, c.weight]);
  t.same(split, [['default/hello-00001', 80], ['default/hello-00002', 20]], 'the traffic split, as weighted clusters');
  t.match(text, /Knative-Serving-Revision/, 'the KIngress headers are appended');

  // A new traffic split in Kubernetes reaches the routes without a restart.
  api.apply(INGRESSES, kingress('default', 'hello', [{ revision: 'hello-00002', percent: 100 }]));
  await until('the new split', async () => {
    const d = JSON.stringify(await (await request(`${admin}/config_dump?node=node-a`)).body.json());
    return !d.includes('"name":"default/hello-00001","weight"') && /"name":"default\/hello-00002","weight":100/.test(d) ? true : undefined;
  });
  t.pass('100 % to hello-00002 after the KIngress changed');

  // hello-00001 scales 1 → 2 → 0 pods: node-a's gateway EDS follows, and at zero its hosts
  // are the nodes' chikai proxies (requests are buffered there while the pods start).
  const hostsOf = async () => (await (await request(`${admin}/clusters?node=node-a`)).body.text())
    .split('\n').filter((l) => l.startsWith('default/hello-00001::') && /::(pod|proxy)::/.test(l)).map((l) => l.split('::').slice(1).join(' ')).sort();
  api.apply(ENDPOINT_SLICES, privateSlice('default', 'hello-00001', [{ pod: 'p1', ip: '127.0.1.1', node: 'node-a' }, { pod: 'p3', ip: '127.0.1.2', node: 'node-b' }]));
  const two = await until('two pods in EDS', async () => { const h = await hostsOf(); return h.length === 2 ? h : undefined; });
  t.match(two.join('\n'), /pod p1[\s\S]*pod p3/, `two pods: ${two.join(', ')}`);
  api.apply(ENDPOINT_SLICES, privateSlice('default', 'hello-00001', []));
  const zero = await until('proxies in EDS', async () => { const h = await hostsOf(); return h.every((x) => x.includes('proxy')) && h.length === 2 ? h : undefined; });
  t.same(zero.map((h) => h.replace(/:\d+ /, ' ')), ['127.0.1.1 proxy node-a', '127.0.1.2 proxy node-b'], 'at zero: the node proxies on 8012');
  t.ok(zero.every((h) => h.includes(':8012 ')), 'on the proxies\' port');
});

t.test('the proxy from Kubernetes: a request at zero is held, the autoscaler hears at once, a pod appears and serves it', async (t) => {
  // The autoscaler's websocket stat server.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  t.teardown(() => new Promise<void>((r) => {
    for (const c of wss.clients) c.terminate();
    wss.close(() => r());
  }));
  const stats: { namespace: string; name: string; stat: { podName: string; averageConcurrentRequests: number } }[] = [];
  wss.on('connection', (ws) => ws.on('message', (data: Buffer) => {
    const msg = statProto.toObject(statProto.decode(data), { defaults: true }) as { messages: typeof stats };
    stats.push(...msg.messages);
  }));
  // The pod: an HTTP server on node-a's address.
  const pod = http.createServer((_req, res) => res.end('hello from p1\n'));
  await new Promise<void>((r) => pod.listen(0, '127.0.1.1', r));
  t.teardown(() => new Promise<void>((r) => { pod.closeAllConnections(); pod.close(() => r()); }));
  const podPort = (pod.address() as AddressInfo).port;

  const api = await FakeApiServer.start();
  t.teardown(() => api.close());
  api.apply(NODES, node('node-a', '127.0.1.1', 'edge'));
  api.apply(REVISIONS, revision({ service: 'hello', name: 'hello-00001', timeoutSeconds: 30 }));
  const slice = (ready: boolean) => {
    const s = privateSlice('default', 'hello-00001', ready ? [{ pod: 'p1', ip: '127.0.1.1', node: 'node-a' }] : []);
    s['ports'] = [{ name: 'http', port: podPort }];
    return s;
  };
  api.apply(ENDPOINT_SLICES, slice(false));

  const wsUrl = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  const proxy = await run(t, ['proxy', '--source', 'kubernetes', '--kubeconfig', kubeconfig(api.url), '--node', 'node-a', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--autoscaler', wsUrl],
    /listening on 127\.0\.0\.1:(\d+), admin on 127\.0\.0\.1:(\d+)/, { POD_NAME: 'chikai-proxy-abcde' });
  const url = `http://127.0.0.1:${proxy.match[1]}/`;
  const held = request(url, { headers: { host: 'hello.default.svc.cluster.local' } }).then(async (r) => `${r.statusCode} ${await r.body.text()}`);
  const cold = await until('a stat for hello-00001', () => stats.find((s) => s.name === 'hello-00001'));
  t.equal(cold.namespace, 'default');
  t.equal(cold.stat.podName, 'chikai-proxy-abcde', 'reported under the proxy\'s pod name');
  t.equal(cold.stat.averageConcurrentRequests, 1, 'concurrency 1: scale from zero');
  api.apply(ENDPOINT_SLICES, slice(true));
  t.equal(await held, '200 hello from p1\n', 'the held request is served once the pod is ready');
  const metrics = await (await request(`http://127.0.0.1:${proxy.match[2]}/metrics`)).body.text();
  t.match(metrics, /chikai_requests_total\{[^}]*revision="default\/hello-00001"[^}]*code="200"[^}]*\} 1/, 'counted in the proxy\'s metrics');
});

t.test('bad --source and an unreachable cluster are named', async (t) => {
  const bad = spawn(process.execPath, [CHIKAI, 'xds', '--source', 'etcd'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  bad.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const code = await new Promise<number | null>((r) => bad.on('exit', r));
  t.equal(code, 2);
  t.match(err, /--source expects file or kubernetes, got "etcd"/);
});
