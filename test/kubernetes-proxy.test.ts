// From the Kubernetes API to the node proxy's choices: a revision scales 0 → 1 → 2 → 0
// → 1 pods in the (fake) API server and requests through the proxy follow, including a
// request held while the revision has no pod and served once one appears.
import t, { type Test } from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { kubeConfigForServer } from '../cluster/kubernetes/client.js';
import { startKubernetesSource } from '../cluster/kubernetes/source.js';
import type { ClusterModel } from '../cluster/model.js';
import { NodeProxy } from '../proxy/server.js';
import { createPolicy } from '../proxy/policy/index.js';
import { DEFAULT_QUEUE_CONFIG } from '../queue/index.js';
import { ENDPOINT_SLICES, FakeApiServer, NODES, REVISIONS } from './fixtures/kubernetes/fake-apiserver.js';
import { node, privateSlice, revision, type SlicePod } from './fixtures/kubernetes/objects.js';

const KEY = 'default/hello-00001';

/** A pod: answers with its name after `delayMs`, on its own loopback address. */
async function startPod(t: Test, name: string, host: string, port: number, delayMs: number): Promise<void> {
  const server = http.createServer((_req, res) => setTimeout(() => res.end(name), delayMs));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
}

async function until(ok: () => boolean, what: string, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('requests through the proxy follow the pods Kubernetes reports, from zero and back', async (t) => {
  // Two pods on two loopback addresses sharing one port, as pods share queue-proxy's 8012.
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.11', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  await startPod(t, 'pod-a', '127.0.0.11', port, 100);
  await startPod(t, 'pod-b', '127.0.0.12', port, 100);
  const podA: SlicePod = { pod: 'pod-a', ip: '127.0.0.11', node: 'node-a' };
  const podB: SlicePod = { pod: 'pod-b', ip: '127.0.0.12', node: 'node-b' };
  const slice = (pods: SlicePod[]) => {
    const s = privateSlice('default', 'hello-00001', pods);
    s['ports'] = [{ name: 'http', port }];
    return s;
  };

  const api = await FakeApiServer.start();
  t.teardown(() => api.close());
  api.apply(NODES, node('node-a', '127.0.1.1', 'edge'));
  api.apply(NODES, node('node-b', '127.0.1.2', 'cloud'));
  api.apply(REVISIONS, revision({ service: 'hello', name: 'hello-00001', containerConcurrency: 1, timeoutSeconds: 30 }));
  api.apply(ENDPOINT_SLICES, slice([]));

  const source = await startKubernetesSource({ kubeConfig: await kubeConfigForServer(api.url), retry: { initialMs: 20, maxMs: 200 }, onWarning: () => undefined });
  t.teardown(() => source.close());
  const model: ClusterModel = source.model;
  const proxy = new NodeProxy({
    model,
    node: 'node-a',
    listen: { host: '127.0.0.1', port: 0 },
    policy: createPolicy('knative'),
    queue: DEFAULT_QUEUE_CONFIG,
    drainSeconds: 0,
  });
  await proxy.start();
  t.teardown(() => proxy.close());
  const url = `http://127.0.0.1:${proxy.address.port}/`;
  const call = async () => {
    const res = await request(url, { headers: { host: 'hello.example.com', 'knative-serving-namespace': 'default', 'knative-serving-revision': 'hello-00001' } });
    return `${res.statusCode} ${await res.body.text()}`;
  };

  // Scaled to zero: the request waits in the proxy.
  t.equal(model.current.endpoints(KEY).length, 0);
  const held = call();
  await until(() => proxy.activeRequests === 1, 'the request held by the proxy');

  // One pod comes up: the held request is served by it.
  api.apply(ENDPOINT_SLICES, slice([podA]));
  t.equal(await held, '200 pod-a', 'the held request is served when Kubernetes reports the pod ready');

  // Two pods, containerConcurrency 1: two concurrent requests take one pod each.
  api.apply(ENDPOINT_SLICES, slice([podA, podB]));
  await until(() => model.current.readyEndpoints(KEY).length === 2, 'two ready pods in the model');
  const both = (await Promise.all([call(), call()])).sort();
  t.same(both, ['200 pod-a', '200 pod-b'], 'both pods serve');

  // pod-a goes not-ready: only pod-b is chosen.
  api.apply(ENDPOINT_SLICES, slice([{ ...podA, ready: false }, podB]));
  await until(() => model.current.readyEndpoints(KEY).length === 1, 'pod-a not ready');
  t.same(await Promise.all([call(), call()]), ['200 pod-b', '200 pod-b'], 'a not-ready pod gets nothing');

  // Back to zero, then a new pod: requests wait again and follow.
  api.apply(ENDPOINT_SLICES, slice([]));
  await until(() => model.current.endpoints(KEY).length === 0, 'scaled to zero again');
  const heldAgain = call();
  await until(() => proxy.activeRequests === 1, 'held again');
  api.apply(ENDPOINT_SLICES, slice([podB]));
  t.equal(await heldAgain, '200 pod-b');
});
