// The cluster model changes 100 times a second (endpoints removed, re-added, turning
// unready and ready) under load: the proxy does not crash, its memory stays flat, and no
// request is routed to an endpoint that left the model more than one update before the
// routing decision. How many updates a request then spends in transit is reported too.
import t from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ClusterModel, type EndpointInfo } from '../../cluster/model.js';
import { seededRandom } from '../../cluster/emulated/network.js';
import { NodeProxy } from '../../proxy/server.js';
import { createPolicy } from '../../proxy/policy/index.js';
import type { Policy } from '../../proxy/policy/policy.js';
import { DEFAULT_QUEUE_CONFIG } from '../../queue/index.js';
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
  /** Arrivals at a pod already gone: how many updates since it left. */
  const late: number[] = [];
  let picks = 0;
  /** Routing decisions for a pod already gone before the latest update. */
  const stalePicks: number[] = [];
  const gone = (pod: string): number | undefined => {
    const since = goneSince.get(pod);
    return since === undefined ? undefined : model.current.version - since;
  };
  const pods: EndpointInfo[] = [];
  for (let i = 0; i < 8; i++) {
    const name = `hello-00001-flap-${i}`;
    const server = http.createServer((req, res) => {
      arrivals++;
      // Updates that happened after the one that removed the pod, before the request got here.
      const after = gone(name);
      if (after !== undefined && after >= 1) late.push(after);
      setTimeout(() => res.end(`ok ${name}\n`), 2);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.1.1', r));
    t.teardown(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
    pods.push({ pod: name, revision: REV, node: 'node1', address: '127.0.1.1', port: (server.address() as AddressInfo).port, ready: true });
  }
  model.setEndpoints(REV, pods);
  // The routing decision itself, watched: which pod, and whether it was still in the model.
  const knative = createPolicy('knative');
  const watchedPolicy: Policy = {
    name: knative.name,
    eligible: knative.eligible?.bind(knative),
    observe: knative.observe?.bind(knative),
    pick(candidates, ctx) {
      const e = knative.pick(candidates, ctx);
      if (e) {
        picks++;
        const after = gone(e.pod);
        if (after !== undefined && after >= 1) stalePicks.push(after);
      }
      return e;
    },
  };
  const proxy = new NodeProxy({
    model, node: 'node1', listen: { host: '127.0.1.1', port: 0 }, admin: { host: '127.0.1.1', port: 0 },
    policy: watchedPolicy, queue: DEFAULT_QUEUE_CONFIG, drainSeconds: 0, localAddress: '127.0.1.1',
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
    `${picks} routing decisions, ${stalePicks.length} for a pod gone ≥ 1 update; ${arrivals} arrivals, ${late.length} at a pod gone for ≥ 1 update while in transit (most ${Math.max(0, ...late)}); heap ${(heapEarly / 1048576).toFixed(1)} → ${(heapLate / 1048576).toFixed(1)} MB`);
  t.ok(updates >= 100, `the model changed under the load ${updates} times (every 10 ms when the machine keeps up; ${rate.toFixed(0)}/s here)`);
  t.equal(r.errors, 0, 'no request lost');
  t.equal(r.non2xx, 0, 'no request failed');
  t.same(stalePicks, [], 'no request was routed to a pod removed more than one update before the decision');
  t.ok(growth < 8, `heap flat after GC (${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB)`);
  report(t, { scenario: 'endpoints flapping 100×/s under load', sent: r.sent, failed: r.non2xx, lost: r.errors, peakRss: peak, rssOf: 'test process',
    note: `${updates} updates; ${stalePicks.length} routed to a gone pod; ${late.length} of ${arrivals} arrived after their pod left (in transit, up to ${Math.max(0, ...late)} updates); heap ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB` });
});
