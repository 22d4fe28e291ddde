// The Kubernetes source against a fake API server that speaks the real list/watch wire
// format, driven through the real @kubernetes/client-node informers.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { ClusterModel, type ClusterSnapshot } from '../cluster/model.js';
import { kubeConfigForServer } from '../cluster/kubernetes/client.js';
import { startKubernetesSource, type KubernetesSource, type KubernetesSourceOptions } from '../cluster/kubernetes/source.js';
import type { IngressRoutes } from '../cluster/kubernetes/ingress.js';
import { ENDPOINT_SLICES, FakeApiServer, INGRESSES, NODES, REVISIONS } from './fixtures/kubernetes/fake-apiserver.js';
import { kingress, node, privateSlice, proxySlice, publicSlice, revision } from './fixtures/kubernetes/objects.js';

const WAIT_MS = 8000;

/** Resolve with the first snapshot (current or coming) that satisfies `ok`. */
function waitForModel(model: ClusterModel, ok: (s: ClusterSnapshot) => boolean, what: string): Promise<ClusterSnapshot> {
  if (ok(model.current)) return Promise.resolve(model.current);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      model.off('change', onChange);
      reject(new Error(`timed out waiting for: ${what}; model has ${JSON.stringify(model.current.state.endpoints)}`));
    }, WAIT_MS);
    const onChange = (s: ClusterSnapshot) => {
      if (!ok(s)) return;
      clearTimeout(timer);
      model.off('change', onChange);
      resolve(s);
    };
    model.on('change', onChange);
  });
}

function waitForIngresses(source: KubernetesSource, ok: (r: readonly IngressRoutes[]) => boolean, what: string): Promise<readonly IngressRoutes[]> {
  if (ok(source.ingresses())) return Promise.resolve(source.ingresses());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      source.off('ingresses', onRoutes);
      reject(new Error(`timed out waiting for: ${what}`));
    }, WAIT_MS);
    const onRoutes = (r: readonly IngressRoutes[]) => {
      if (!ok(r)) return;
      clearTimeout(timer);
      source.off('ingresses', onRoutes);
      resolve(r);
    };
    source.on('ingresses', onRoutes);
  });
}

async function until(ok: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Setup {
  api: FakeApiServer;
  source: KubernetesSource;
  warnings: string[];
}

async function setup(t: Test, seed: (api: FakeApiServer) => void, opts: Partial<KubernetesSourceOptions> = {}): Promise<Setup> {
  const api = await FakeApiServer.start({ token: 'secret-token' });
  t.teardown(() => api.close());
  seed(api);
  const warnings: string[] = [];
  const source = await startKubernetesSource({
    kubeConfig: await kubeConfigForServer(api.url, 'secret-token'),
    retry: { initialMs: 20, maxMs: 200 },
    onWarning: (m) => warnings.push(m),
    ...opts,
  });
  t.teardown(() => source.close());
  return { api, source, warnings };
}

function seedCluster(api: FakeApiServer): void {
  api.apply(NODES, node('edge-1', '10.0.0.1', 'edge', 'edge-a'));
  api.apply(NODES, node('cloud-1', '10.0.1.1', 'cloud', 'cloud-a'));
  api.apply(REVISIONS, revision({ service: 'hello', name: 'hello-00001', containerConcurrency: 2, timeoutSeconds: 30 }));
  api.apply(ENDPOINT_SLICES, privateSlice('default', 'hello-00001', []));
  // The public service's slice points at the activator; it must never become an endpoint.
  api.apply(ENDPOINT_SLICES, publicSlice('default', 'hello-00001', '10.0.9.9'));
}

const HELLO = 'default/hello-00001';
const readyPods = (s: ClusterSnapshot, rev = HELLO) => s.readyEndpoints(rev).map((e) => e.pod).sort();

t.test('the first list fills the model: nodes by InternalIP and topology labels, revisions, no pods yet', async (t) => {
  const { source } = await setup(t, seedCluster);
  const s = source.model.current;
  t.same(s.nodes, [
    { name: 'cloud-1', region: 'cloud', zone: 'cloud-a', address: '10.0.1.1' },
    { name: 'edge-1', region: 'edge', zone: 'edge-a', address: '10.0.0.1' },
  ]);
  t.same(s.revision(HELLO), { namespace: 'default', service: 'hello', name: 'hello-00001', hosts: [], containerConcurrency: 2, timeoutSeconds: 30, protocol: 'http1' });
  t.same(s.endpoints(HELLO), [], 'a revision scaled to zero has no endpoints (and the public slice is not one)');
  t.ok(source.synced);
});

t.test('each node\'s address is its proxy pod\'s, from the proxies\' EndpointSlices: no host port needed', async (t) => {
  const { api, source } = await setup(t, (api) => {
    seedCluster(api);
    api.apply(ENDPOINT_SLICES, proxySlice([{ pod: 'chikai-proxy-x1', ip: '10.244.0.2', node: 'edge-1' }]));
  }, { proxies: { namespace: 'knative-serving', service: 'chikai-proxy' } });
  const address = (s: ClusterSnapshot, n: string) => s.node(n)?.address;
  t.equal(address(source.model.current, 'edge-1'), '10.244.0.2', 'edge-1 is probed and reached at its proxy pod');
  t.equal(address(source.model.current, 'cloud-1'), '10.0.1.1', 'a node whose proxy is not known yet keeps its InternalIP');
  // The proxy on cloud-1 starts; edge-1's proxy is replaced (old one terminating, new one ready).
  api.apply(ENDPOINT_SLICES, proxySlice([
    { pod: 'chikai-proxy-x1', ip: '10.244.0.2', node: 'edge-1', ready: false },
    { pod: 'chikai-proxy-x2', ip: '10.244.0.9', node: 'edge-1' },
    { pod: 'chikai-proxy-c1', ip: '10.244.1.3', node: 'cloud-1' },
  ]));
  const s = await waitForModel(source.model, (x) => address(x, 'cloud-1') === '10.244.1.3', 'cloud-1 proxy pod');
  t.equal(address(s, 'edge-1'), '10.244.0.9', 'the ready pod of a node wins over the one leaving');
  t.ok(api.requests.some((r) => r.includes('/namespaces/knative-serving/endpointslices') && r.includes('chikai-proxy')), 'watched by service name in the proxies\' namespace');
});

t.test('a revision scaling 0 → 2 → 0 pods moves its endpoints through the model', async (t) => {
  const { api, source } = await setup(t, seedCluster);
  const model = source.model;
  const versions: number[] = [];
  model.on('change', (s) => versions.push(s.version));

  // Pods scheduled, queue-proxy not ready yet.
  api.apply(ENDPOINT_SLICES, privateSlice('default', 'hello-00001', [
    { pod: 'hello-00001-deployment-a', ip: '10.244.0.5', node: 'edge-1', ready: false },
    { pod: 'hello-00001-deployment-b', ip: '10.244.1.7', node: 'cloud-1', ready: false },
  ]));
  let s = await waitForModel(model, (x) => x.endpoints(HELLO).length === 2, 'two unready endpoints');
  t.same(readyPods(s), [], 'not ready pods are known but not ready');

  api.apply(ENDPOINT_SLICES, privateSlice('default', 'hello-00001', [
    { pod: 'hello-00001-deployment-a', ip: '10.244.0.5', node: 'edge-1' },
    { pod: 'hello-00001-deployment-b', ip: '10.244.1.7', node: 'cloud-1' },
  ]));
  s = await waitForModel(model, (x) => x.readyEndpoints(HELLO).length === 2, 'two ready endpoints');
  t.same(s.endpoints(HELLO), [
    { pod: 'hello-00001-deployment-a', revision: HELLO, node: 'edge-1', address: '10.244.0.5', port: 8012, ready: true },
    { pod: 'hello-00001-deployment-b', revision: HELLO, node: 'cloud-1', address: '10.244.1.7', port: 8012, ready: true },
  ], 'each pod with its node, address and the queue-proxy port');

  api.apply(ENDPOINT_SLICES, privateSlice('default', 'hello-00001', []));
  s = await waitForModel(model, (x) => x.endpoints(HELLO).length === 0, 'scaled back to zero');
  t.same(s.endpoints(HELLO), []);
  t.ok(versions.length >= 3 && versions.every((v, i) => i === 0 || v > versions[i - 1]), 'every step is a new snapshot');
});

t.test('an existing model keeps its latency and domains while the source replaces nodes, revisions and endpoints', async (t) => {
  const model = new ClusterModel({
    domain: 'cluster.example',
    externalDomains: ['apps.example.com'],
    nodes: [{ name: 'stale', region: 'x', zone: 'x', address: '127.0.0.1' }],
    revisions: [],
    endpoints: [],
    latency: { 'edge-1': { 'cloud-1': { rttMs: 50, jitterMs: 10 } } },
  });
  const { source } = await setup(t, seedCluster, { model });
  t.equal(source.model, model);
  const s = await waitForModel(model, (x) => x.nodes.length === 2, 'nodes from the API');
  t.same(s.nodes.map((n) => n.name), ['cloud-1', 'edge-1']);
  t.equal(s.state.domain, 'cluster.example');
  t.same(s.link('edge-1', 'cloud-1'), { rttMs: 50, jitterMs: 10 });
  t.ok(s.revision(HELLO));
});

t.test('a KIngress change shows up in the IngressRoutes', async (t) => {
  const { api, source } = await setup(t, (api) => {
    seedCluster(api);
    api.apply(INGRESSES, kingress('default', 'hello', [{ revision: 'hello-00001', percent: 100 }]));
    api.apply(INGRESSES, kingress('default', 'other', [{ revision: 'other-00001', percent: 100 }], { cls: 'istio.ingress.networking.knative.dev' }));
  }, { readIngresses: true });

  const first = source.ingresses();
  t.same(first.map((r) => r.key), ['default/hello'], 'only Kourier-class ingresses');
  const [local, external] = first[0].rules;
  t.equal(local.visibility, 'ClusterLocal');
  t.same(local.hosts, ['hello.default', 'hello.default.svc', 'hello.default.svc.cluster.local']);
  t.equal(external.visibility, 'ExternalIP');
  t.same(external.hosts, ['hello.default.example.com']);
  t.same(external.paths[0].splits.map((s) => [s.revision, s.percent]), [[HELLO, 100]]);
  t.same(external.paths[0].splits[0].appendHeaders, { 'Knative-Serving-Namespace': 'default', 'Knative-Serving-Revision': 'hello-00001' });
  t.equal(external.paths[0].path, '/');

  api.apply(INGRESSES, kingress('default', 'hello', [{ revision: 'hello-00001', percent: 80 }, { revision: 'hello-00002', percent: 20 }], { externalHost: 'hello.apps.example.org' }));
  const next = await waitForIngresses(source, (r) => r[0]?.rules[1]?.paths[0]?.splits.length === 2, 'the 80/20 split');
  const ext = next[0].rules[1];
  t.same(ext.hosts, ['hello.apps.example.org']);
  t.same(ext.paths[0].splits.map((s) => [s.revision, s.percent, s.serviceName, s.servicePort]), [
    [HELLO, 80, 'hello-00001', 80],
    ['default/hello-00002', 20, 'hello-00002', 80],
  ]);
  t.ok(next[0].generation > first[0].generation, 'a new generation');

  api.remove(INGRESSES, 'default', 'hello');
  await waitForIngresses(source, (r) => r.length === 0, 'the ingress deleted');
  t.pass('deleted ingresses disappear');
});

t.test('a watch broken in the middle of an event resumes from its resourceVersion without losing the update', async (t) => {
  const { api, source } = await setup(t, seedCluster);
  const model = source.model;
  await until(() => api.openWatches(ENDPOINT_SLICES) === 1, 'the slice watch');
  const listsBefore = api.lists(ENDPOINT_SLICES);
  const watchesBefore = api.watches(ENDPOINT_SLICES);
  const rvBefore = api.resourceVersion;

  t.equal(api.breakWatches(ENDPOINT_SLICES, 'mid-event'), 1);
  // While the client is disconnected: the pods come up.
  api.apply(ENDPOINT_SLICES, privateSlice('default', 'hello-00001', [
    { pod: 'hello-00001-deployment-a', ip: '10.244.0.5', node: 'edge-1' },
  ]));
  const s = await waitForModel(model, (x) => readyPods(x).length === 1, 'the update made while the watch was down');
  t.same(readyPods(s), ['hello-00001-deployment-a']);
  t.equal(api.lists(ENDPOINT_SLICES), listsBefore, 'resumed with a watch, not a new list');
  t.ok(api.watches(ENDPOINT_SLICES) > watchesBefore, 'a new watch was opened');
  t.ok(api.requests.some((r) => r.includes('/endpointslices?') && r.includes('watch=true') && r.includes(`resourceVersion=${rvBefore}`)),
    `the new watch asked for events after resourceVersion ${rvBefore}`);

  // A clean end of the stream (the API server's watch timeout) resumes the same way.
  await until(() => api.openWatches(NODES) === 1, 'the node watch');
  api.breakWatches(NODES, 'end');
  api.apply(NODES, node('edge-2', '10.0.0.2', 'edge', 'edge-b'));
  await waitForModel(model, (x) => !!x.node('edge-2'), 'the node added while the watch was closed');
  t.equal(api.lists(NODES), 1, 'nodes were listed once');
});

t.test('a watch that can no longer resume (410 Gone) re-lists and converges, deletions included', async (t) => {
  const { api, source } = await setup(t, (api) => {
    seedCluster(api);
    api.apply(REVISIONS, revision({ service: 'old', name: 'old-00001' }));
  });
  const model = source.model;
  t.ok(model.current.revision('default/old-00001'));
  await until(() => api.openWatches(REVISIONS) === 1, 'the revision watch');
  const lists = api.lists(REVISIONS);

  // Disconnected while the history is compacted away: a deletion and a creation are missed.
  api.breakWatches(REVISIONS, 'reset');
  api.remove(REVISIONS, 'default', 'old-00001');
  api.apply(REVISIONS, revision({ service: 'hello', name: 'hello-00002', containerConcurrency: 10 }));
  api.compact(REVISIONS);

  const s = await waitForModel(model, (x) => !!x.revision('default/hello-00002') && !x.revision('default/old-00001'), 're-listed revisions');
  t.equal(s.revision('default/hello-00002')?.containerConcurrency, 10);
  t.equal(api.lists(REVISIONS), lists + 1, 'exactly one new list after the 410');

  // The same, when the 410 arrives as an ERROR event on an open watch.
  await until(() => api.openWatches(NODES) === 1, 'the node watch');
  const nodeLists = api.lists(NODES);
  api.compact(NODES);
  api.expireWatches(NODES);
  api.apply(NODES, node('cloud-2', '10.0.1.2'));
  await waitForModel(model, (x) => !!x.node('cloud-2'), 'the node after the ERROR 410 event');
  t.equal(api.lists(NODES), nodeLists + 1, 'the ERROR event led to a new list');
});

t.test('failures are retried with back-off and reported with the fix', async (t) => {
  const { api, source, warnings } = await setup(t, (api) => {
    seedCluster(api);
    api.failNext(REVISIONS, 'list', 403, 2);
  });
  t.ok(source.synced, 'synced after the retries');
  t.equal(api.lists(REVISIONS), 1, 'one list succeeded');
  t.equal(warnings.length, 2, 'one warning per failed attempt');
  t.match(warnings[0], /revisions\.serving\.knative\.dev .*forbidden \(403\).*get, list and watch.*ClusterRole/);

  // A watch refused after a break is retried too, and the model still converges.
  await until(() => api.openWatches(ENDPOINT_SLICES) === 1, 'the slice watch');
  api.failNext(ENDPOINT_SLICES, 'watch', 500, 2);
  api.breakWatches(ENDPOINT_SLICES, 'reset');
  api.apply(ENDPOINT_SLICES, privateSlice('default', 'hello-00001', [{ pod: 'p', ip: '10.244.0.9', node: 'edge-1' }]));
  await waitForModel(source.model, (x) => readyPods(x).length === 1, 'the update after refused watches');
  t.ok(source.health().every((h) => h.synced));
});

t.test('a cluster without Knative fails start-up, saying what is missing', async (t) => {
  const api = await FakeApiServer.start();
  t.teardown(() => api.close());
  api.failNext(REVISIONS, 'list', 404, 1000);
  const warnings: string[] = [];
  await t.rejects(
    startKubernetesSource({ kubeConfig: await kubeConfigForServer(api.url), syncTimeoutMs: 300, retry: { initialMs: 20, maxMs: 50 }, onWarning: (m) => warnings.push(m) }),
    /did not deliver a complete list within 300 ms:\n.*revisions\.serving\.knative\.dev.*not found \(404\): Knative Serving is not installed/,
  );
  // A request already on its way when start-up gave up may still land; after that, silence.
  await new Promise((r) => setTimeout(r, 50));
  const before = api.requests.length;
  await new Promise((r) => setTimeout(r, 200));
  t.equal(api.requests.length, before, 'no more requests after start-up gave up');
});

t.test('the proxy does not need Ingresses: without readIngresses none are read', async (t) => {
  const { api, source } = await setup(t, seedCluster);
  t.equal(api.lists(INGRESSES), 0);
  t.throws(() => source.ingresses(), /readIngresses: true/);
});

t.test('the source only reads, and only what deploy/base grants its ClusterRole', async (t) => {
  const rbac = parseAllDocuments(readFileSync(fileURLToPath(new URL('../../deploy/base/rbac.yaml', import.meta.url)), 'utf8')).map((d) => d.toJS() as {
    kind: string; metadata: { name: string }; rules?: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
  });
  const grants = (role: string) => new Set(rbac.find((o) => o.kind === 'ClusterRole' && o.metadata.name === role)!.rules!
    .flatMap((r) => r.resources.flatMap((res) => r.apiGroups.map((g) => `${g}/${res}`))));
  for (const [readIngresses, role] of [[false, 'chikai-proxy'], [true, 'chikai-xds']] as const) {
    const { api } = await setup(t, seedCluster, { readIngresses });
    await until(() => api.openWatches() === (readIngresses ? 4 : 3), 'every watch open');
    const used = new Set(api.requests.map((r) => {
      const [method, url] = r.split(' ');
      t.equal(method, 'GET', `${role}: ${r} only reads`);
      const parts = new URL(url, 'http://x').pathname.split('/').filter(Boolean);
      return parts[0] === 'api' ? `/${parts[parts.length - 1]}` : `${parts[1]}/${parts[parts.length - 1]}`;
    }));
    t.same([...used].sort(), [...grants(role)].sort(), `${role}: the ClusterRole grants exactly the resources read`);
  }
});
