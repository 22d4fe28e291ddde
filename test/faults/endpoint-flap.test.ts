// The cluster model changes 100 times a second (endpoints removed, re-added, turning
// unready and ready) under load: the proxy does not crash, its memory stays flat, and no
// request reaches an endpoint that left the model more than one update before it arrived.
import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ClusterModel, type EndpointInfo } from '../../cluster/model.js';
import { seededRandom } from '../../cluster/emulated/network.js';
import { NodeProxy } from '../../proxy/server.js';
import { createPolicy } from '../../proxy/policy/index.js';
import { parseQueueSettings } from '../../proxy/queueing.js';
import { RssSampler, heapAfterGc, report, runLoad, scale, sleep } from './support.js';

const REV = 'default/hello-00001';

t.test('endpoints flapping 100×/s under load: no crash, memory flat, nothing routed to a long-gone endpoint', async (t) => {
  const model = new ClusterModel({
    domain: 'cluster.local', externalDomains: [], latency: {},
    nodes: [{ name: 'node1', region: 'r', zone: 'z', address: '127.0.1.1' }],
    revisions: [{ namespace: 'default', service: 'hello', name: 'hello-00001', hosts: [], containerConcurrency: 0, timeoutSeconds: 30, protocol: 'http1' }],
    endpoints: [],
  });
  /** Per pod: model version from which it is absent or unready (undefined while it is in). */
  const goneSince = new Map<string, number>();
  let arrivals = 0;
  const late: number[] = [];
  const pods: EndpointInfo[] = [];
  for (let i = 0; i < 8; i++) {
    const name = `hello-00001-flap-${i}`;
    const server = http.createServer((req, res) => {
      arrivals++;
      const since = goneSince.get(name);
      // Updates that happened after the one that removed the pod, before the request got here.
      if (since !== undefined && model.current.version - since >= 1) late.push(model.current.version - since);
      setTimeout(() => res.end(`ok ${name}\n`), 2);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.1.1', r));
    t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
    pods.push({ pod: name, revision: REV, node: 'node1', address: '127.0.1.1', port: (server.address() as AddressInfo).port, ready: true });
  }
  model.setEndpoints(REV, pods);
  const proxy = new NodeProxy({
    model, node: 'node1', listen: { host: '127.0.1.1', port: 0 }, admin: { host: '127.0.1.1', port: 0 },
    policy: createPolicy('knative'), queue: parseQueueSettings(undefined, 'test'), drainSeconds: 0, localAddress: '127.0.1.1',
  });
  await proxy.start();
  t.teardown(() => proxy.close());

  const rand = seededRandom(99);
  let updates = 0;
  const flap = () => {
    const present = model.current.endpoints(REV).filter((e) => e.ready).map((e) => e.pod);
    const pod = pods[Math.floor(rand() * pods.length)];
    const isIn = present.includes(pod.pod);
    if (isIn && present.length <= 2) return flap();
    if (isIn) {
      if (rand() < 0.5) model.removeEndpoint(pod.pod);
      else model.setReady(pod.pod, false);
      goneSince.set(pod.pod, model.current.version);
    } else {
      goneSince.delete(pod.pod);
      if (model.current.endpoints(REV).some((e) => e.pod === pod.pod)) model.setReady(pod.pod, true);
      else model.addEndpoint(pod);
    }
    updates++;
  };
  const timer = setInterval(flap, 10);
  t.teardown(() => clearInterval(timer));
  const rss = new RssSampler();
  const seconds = scale(6, 30);
  const load = runLoad({ url: `http://127.0.1.1:${proxy.address.port}`, connections: 16, durationSeconds: seconds, host: 'hello.default', timeoutSeconds: 30 });
  await sleep(1500);
  const heapEarly = heapAfterGc();
  const r = await load.result;
  clearInterval(timer);
  const heapLate = heapAfterGc();
  const peak = await rss.stop();
  const rate = updates / seconds;
  const growth = (heapLate - heapEarly) / 1048576;
  t.comment(`${updates} model updates (${rate.toFixed(0)}/s); load ${r.ok} ok of ${r.sent}, statuses ${JSON.stringify(r.statuses)}, errors ${r.errors}; ` +
    `${arrivals} arrivals, ${late.length} at a pod gone for ≥ 1 update (most ${Math.max(0, ...late)}); heap ${(heapEarly / 1048576).toFixed(1)} → ${(heapLate / 1048576).toFixed(1)} MB`);
  t.ok(rate > 60, 'the model really changed close to 100 times a second');
  t.equal(r.errors, 0, 'no request lost');
  t.equal(r.non2xx, 0, 'no request failed');
  t.ok(late.every((n) => n <= 1), 'no request reached a pod removed more than one update before it arrived');
  t.ok(growth < 8, `heap flat after GC (${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB)`);
  report(t, { scenario: 'endpoints flapping 100×/s under load', sent: r.sent, failed: r.non2xx, lost: r.errors, peakRss: peak, rssOf: 'test process',
    note: `${updates} updates; ${late.length} of ${arrivals} arrivals at a pod gone ≥ 1 update; heap ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB` });
});
