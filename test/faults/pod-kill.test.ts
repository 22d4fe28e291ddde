// A pod is killed (its server destroyed mid-response) while serving: GETs that had no
// response byte yet are retried on another pod, POSTs get a clear 502 naming the pod,
// nothing hangs, and a response already streaming is cut rather than passed off as whole.
import t from 'tap';
import { request } from 'undici';
import { testStack, HELLO_HOST } from '../support.js';
import { RssSampler, recoveryMs, report, runLoad, scale, sleep } from './support.js';

async function retries(adminUrl: string): Promise<number> {
  const text = await (await request(`${adminUrl}/metrics`)).body.text();
  return [...text.matchAll(/^chikai_retries_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

t.test('pods killed under GET and POST load: 0 GETs fail, POSTs get 502, nothing hangs', async (t) => {
  const stack = await testStack({ nodes: 1, podsPerNode: 3, capacity: 16, serviceTimeMs: { min: 10, max: 30 } });
  t.teardown(() => stack.close());
  const url = stack.proxyUrl('node1');
  const rss = new RssSampler();
  const kills = scale(1, 4);
  const seconds = scale(4, 16);

  /** Kill a pod every `seconds / (kills + 1)`; the endpoint leaves the model 500 ms later and a new pod starts. */
  const killer = async (startedAt: number, faults: number[]) => {
    for (let k = 0; k < kills; k++) {
      await sleep((seconds * 1000) / (kills + 1) - (k === 0 ? 0 : 500));
      const victim = stack.cluster.pods[0];
      faults.push(performance.now() - startedAt);
      victim.kill();
      await sleep(500); // Kubernetes takes a moment to notice; retries cover the gap
      stack.model.removeEndpoint(victim.name);
      await stack.cluster.addPod({ revision: 'default/hello-00001', node: 'node1', capacity: 16, serviceTimeMs: { min: 10, max: 30 } });
    }
  };

  const retriedBefore = await retries(stack.adminUrl('node1'));
  const get = runLoad({ url, connections: 24, durationSeconds: seconds, host: HELLO_HOST, timeoutSeconds: 30 });
  const getFaults: number[] = [];
  await killer(get.startedAt, getFaults);
  const g = await get.result;
  const retried = (await retries(stack.adminUrl('node1'))) - retriedBefore;
  t.comment(`GET: ${g.ok} ok of ${g.sent} sent, statuses ${JSON.stringify(g.statuses)}, errors ${g.errors}, ${retried} retried on another pod`);
  t.equal(g.non2xx, 0, 'no GET got an error status');
  t.equal(g.errors, 0, 'no GET was lost');
  t.ok(retried > 0, 'the requests caught on the killed pod were retried');
  report(t, { scenario: `pod killed under GET load (${kills}×)`, sent: g.sent, failed: g.non2xx, lost: g.errors, recoveryMs: recoveryMs(g.okAt, getFaults[0]), peakRss: rss.peak, rssOf: 'test process',
    note: `${retried} retried before the first response byte` });

  const post = runLoad({ url, connections: 24, durationSeconds: seconds, host: HELLO_HOST, method: 'POST', body: 'x'.repeat(512), timeoutSeconds: 30 });
  const postFaults: number[] = [];
  await killer(post.startedAt, postFaults);
  const p = await post.result;
  t.comment(`POST: ${p.ok} ok of ${p.sent} sent, statuses ${JSON.stringify(p.statuses)}, errors ${p.errors}, timeouts ${p.timeouts}`);
  t.equal(p.timeouts, 0, 'no POST hung');
  t.equal(p.errors, 0, 'every POST got an answer');
  t.same(Object.keys(p.statuses).filter((s) => s !== '200' && s !== '502'), [], 'POSTs got 200 or 502, nothing else');
  report(t, { scenario: `pod killed under POST load (${kills}×)`, sent: p.sent, failed: p.non2xx, lost: p.errors, recoveryMs: recoveryMs(p.okAt, postFaults[0]), peakRss: await rss.stop(), rssOf: 'test process',
    note: `${p.statuses['502'] ?? 0}× 502 naming the pod (POST is not retried once its body was sent)` });
});

t.test('requests in flight on a killed pod: GETs answered by another pod, POSTs get 502 naming it, a started response is cut', async (t) => {
  const stack = await testStack({ nodes: 1, podsPerNode: 2, capacity: 16 });
  t.teardown(() => stack.close());
  const url = stack.proxyUrl('node1');
  const [victim, survivor] = stack.cluster.pods;
  const call = async (method: 'GET' | 'POST', path: string) => {
    const r = await request(`${url}${path}`, { method, headers: { host: HELLO_HOST }, body: method === 'POST' ? 'payload' : undefined });
    let body: string;
    try {
      body = await r.body.text();
    } catch (err) {
      body = `(cut: ${(err as Error).message})`;
    }
    return { status: r.statusCode, body, pod: r.headers['x-chikai-pod'] };
  };
  const gets = Array.from({ length: 8 }, () => call('GET', '/sleep?ms=600'));
  const posts = Array.from({ length: 8 }, () => call('POST', '/sleep?ms=600'));
  const stream = call('GET', '/stream?chunks=20&intervalMs=50');
  await sleep(250);
  t.ok(victim.inFlight > 0, `the victim holds ${victim.inFlight} requests when it dies`);
  victim.kill();
  const g = await Promise.all(gets);
  const p = await Promise.all(posts);
  const s = await stream;
  t.same(g.map((r) => r.status), Array(8).fill(200), 'every GET answered 200');
  t.ok(g.every((r) => r.pod === survivor.name), 'by the surviving pod');
  const failed = p.filter((r) => r.status !== 200);
  t.ok(failed.length > 0, `${failed.length} POSTs were on the killed pod`);
  t.ok(failed.every((r) => r.status === 502 && r.body.includes(`pod ${victim.name} on node1 failed`)), 'and got 502 naming it');
  t.ok([...g, ...p].every((r) => r.status === 200 || r.status === 502), 'nothing waited for the revision timeout (503/504)');
  if (s.pod === victim.name) t.match(s.body, /^\(cut:/, 'a response already streaming from the killed pod is cut, not ended cleanly');
  else t.match(s.body, /chunk 19\n$/, 'the stream on the surviving pod completed');
});
