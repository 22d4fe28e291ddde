// The node proxy's data path on the emulated cluster, with real sockets end to end.
import t from 'tap';
import http from 'node:http';
import { request } from 'undici';
import WebSocket from 'ws';
import { testStack, get, HELLO_HOST, sleep } from './support.js';

t.test('routes by the Knative headers and by every Host form', async (t) => {
  const stack = await testStack({ nodes: 2 });
  t.teardown(() => stack.close());
  const url = stack.proxyUrl('node1');
  const forms = [
    'hello.default',
    'hello.default.svc',
    'hello.default.svc.cluster.local',
    'hello.default.svc.cluster.local:8080',
    'HELLO.default.example.com:80',
    'hello.custom.test',
  ];
  for (const host of forms) {
    const r = await get(url, { host });
    t.equal(r.status, 200, `Host ${host}`);
    t.match(r.body, /^Konnichiwa from hello-00001-node\d-\w+ in node\d\n$/, `Host ${host} reaches a hello pod`);
  }
  const byHeader = await get(url, { host: 'anything.example.org', 'knative-serving-namespace': 'default', 'knative-serving-revision': 'hello-00001' });
  t.equal(byHeader.status, 200, 'Knative-Serving-* headers win over Host');
  t.match(byHeader.body, /Konnichiwa/);
});

t.test('unknown hosts and revisions get 404 naming what was asked', async (t) => {
  const stack = await testStack({ nodes: 1 });
  t.teardown(() => stack.close());
  const url = stack.proxyUrl('node1');
  const r1 = await get(url, { host: 'nope.default.svc.cluster.local' });
  t.equal(r1.status, 404);
  t.match(r1.body, /nope\.default\.svc\.cluster\.local/);
  const r2 = await get(url, { host: 'x', 'knative-serving-namespace': 'default', 'knative-serving-revision': 'hello-00099' });
  t.equal(r2.status, 404);
  t.match(r2.body, /default\/hello-00099/);
  const r3 = await get(url, { host: 'bad host!' });
  t.equal(r3.status, 404);
  t.match(r3.body, /not a valid host name/);
  t.equal((await get(url)).status, 200, 'still serving');
});

t.test('headers: Knative and hop-by-hop stripped, activator and X-Forwarded-* set', async (t) => {
  const stack = await testStack({ nodes: 1 });
  t.teardown(() => stack.close());
  // node's own client: undici refuses to send hop-by-hop headers at all.
  const url = new URL(`${stack.proxyUrl('node1')}/headers`);
  const body = await new Promise<string>((resolve, reject) => {
    const req = http.request({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      headers: {
        host: 'hello.default',
        'knative-serving-namespace': 'default',
        'knative-serving-revision': 'hello-00001',
        connection: 'keep-alive, x-drop-me',
        'x-drop-me': '1',
        'keep-alive': 'timeout=5',
        'x-kept': 'yes',
      },
      agent: false,
    }, (res) => {
      t.equal(res.statusCode, 200);
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
  const seen = JSON.parse(body) as Record<string, string>;
  t.equal(seen['k-proxy-request'], 'activator');
  t.equal(seen['knative-serving-namespace'], undefined);
  t.equal(seen['knative-serving-revision'], undefined);
  t.equal(seen['x-drop-me'], undefined, 'headers named in Connection are hop-by-hop');
  t.equal(seen['keep-alive'], undefined);
  t.equal(seen['x-kept'], 'yes');
  t.equal(seen['x-forwarded-proto'], 'http');
  t.ok(seen['x-forwarded-for'], 'x-forwarded-for set');
  t.equal(seen['host'], 'hello.default', 'Host is passed on');
});

t.test('answers the activator probe itself', async (t) => {
  const stack = await testStack({ nodes: 1 });
  t.teardown(() => stack.close());
  const r = await get(stack.proxyUrl('node1'), { host: 'whatever', 'k-network-probe': 'activator' });
  t.equal(r.status, 200);
  t.equal(r.body, 'activator');
});

t.test('a dead pod: GET is retried on another pod; with every pod dead, 502 with a reason', async (t) => {
  const stack = await testStack({ nodes: 1, podsPerNode: 2, policy: 'round-robin' });
  t.teardown(() => stack.close());
  const url = stack.proxyUrl('node1');
  const [a, b] = stack.cluster.pods;
  a.kill();
  // The dead pod stays in the model (nobody told it yet): every request must still succeed.
  for (let i = 0; i < 6; i++) {
    const r = await get(url);
    t.equal(r.status, 200, `request ${i} served`);
    t.match(r.body, new RegExp(`from ${b.name} `));
  }
  const metrics = await (await request(`${stack.adminUrl('node1')}/metrics`)).body.text();
  t.match(metrics, /chikai_retries_total\{[^}]*revision="default\/hello-00001"[^}]*\} [1-9]/, 'retries are counted');
  b.kill();
  const r = await get(url);
  t.equal(r.status, 502);
  t.match(r.body, /chikai: pod hello-00001-node1-\w+ on node1 failed/);
});

t.test('no ready pod: the request waits and is served when a pod appears', async (t) => {
  const stack = await testStack({ nodes: 1 });
  t.teardown(() => stack.close());
  const pod = stack.cluster.pods[0];
  stack.model.setReady(pod.name, false);
  const pending = get(stack.proxyUrl('node1'));
  await sleep(300);
  const depth = await (await request(`${stack.adminUrl('node1')}/metrics`)).body.text();
  t.match(depth, /chikai_requests_buffered\{[^}]*revision="default\/hello-00001"[^}]*\} 1/, 'buffered request visible in metrics');
  stack.model.setReady(pod.name, true);
  const r = await pending;
  t.equal(r.status, 200);
  t.match(r.body, /Konnichiwa/);
});

t.test('no ready pod until the revision timeout: 503', async (t) => {
  const stack = await testStack({ nodes: 1, timeoutSeconds: 0.5 });
  t.teardown(() => stack.close());
  stack.model.setReady(stack.cluster.pods[0].name, false);
  const r = await get(stack.proxyUrl('node1'));
  t.equal(r.status, 503);
  t.match(r.body, /no pod became available before the request timeout/);
  // That it waits the whole timeout first, and not longer, is timed on a manual clock in
  // steps.test.ts (timeout) and queue.test.ts (deadlines).
});

t.test('a pod slower than the revision timeout: 504', async (t) => {
  const stack = await testStack({ nodes: 1, timeoutSeconds: 0.3 });
  t.teardown(() => stack.close());
  const r = await get(`${stack.proxyUrl('node1')}/sleep?ms=3000`);
  t.equal(r.status, 504);
  t.equal(r.body, 'activator request timeout\n');
  t.equal((await get(`${stack.proxyUrl('node1')}/sleep?ms=10`)).status, 200, 'still serving');
});

t.test('bodies stream both ways: the echo of the first part arrives before the client sent the rest', async (t) => {
  const stack = await testStack({ nodes: 1 });
  t.teardown(() => stack.close());
  const url = new URL(`${stack.proxyUrl('node1')}/echo`);
  const req = http.request({ host: url.hostname, port: url.port, path: '/echo', method: 'POST', headers: { host: HELLO_HOST, 'content-type': 'text/plain' }, agent: false });
  req.write('first part;');
  const res = await new Promise<http.IncomingMessage>((resolve) => req.on('response', resolve));
  t.equal(res.statusCode, 200);
  const first = await new Promise<string>((resolve) => res.once('data', (d: Buffer) => resolve(d.toString())));
  t.equal(first, 'first part;', 'neither the request nor the response was held whole by the proxy');
  let rest = '';
  res.on('data', (d: Buffer) => (rest += d.toString()));
  const ended = new Promise<void>((resolve) => res.on('end', () => resolve()));
  req.end('second part');
  await ended;
  t.equal(rest, 'second part');
});

t.test('WebSocket upgrade passes through and echoes, also after the revision timeout passed', async (t) => {
  const stack = await testStack({ nodes: 1, timeoutSeconds: 0.2 });
  t.teardown(() => stack.close());
  const ws = new WebSocket(`${stack.proxyUrl('node1').replace('http', 'ws')}/ws`, { headers: { host: HELLO_HOST } });
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
  const echoed = await new Promise<string>((resolve) => {
    ws.once('message', (m: Buffer) => resolve(m.toString()));
    ws.send('ohayou');
  });
  t.equal(echoed, 'ohayou');
  await sleep(400); // twice the revision timeout: it bounds waiting for the 101, not the tunnel
  const later = await new Promise<string>((resolve) => {
    ws.once('message', (m: Buffer) => resolve(m.toString()));
    ws.send('mada');
  });
  t.equal(later, 'mada', 'the upgraded tunnel outlives timeoutSeconds');
  ws.close();
  const bad = new WebSocket(`${stack.proxyUrl('node1').replace('http', 'ws')}/ws`, { headers: { host: 'nope.default' } });
  const status = await new Promise<number>((resolve) => bad.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
  t.equal(status, 404, 'unknown host on upgrade: 404');
});

t.test('closing the proxy ends its open WebSocket tunnels instead of waiting for them', async (t) => {
  const stack = await testStack({ nodes: 1 });
  t.teardown(() => stack.close());
  const ws = new WebSocket(`${stack.proxyUrl('node1').replace('http', 'ws')}/ws`, { headers: { host: HELLO_HOST } });
  await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
  const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
  await stack.proxies.get('node1')!.close();
  t.pass('close() returned with the tunnel open');
  t.equal(await closed, 1006, 'the client sees the connection cut');
});

t.test('metrics: requests by revision, target node and code; duration; in-flight; buffered', async (t) => {
  const stack = await testStack({ nodes: 2 });
  t.teardown(() => stack.close());
  for (let i = 0; i < 10; i++) await get(stack.proxyUrl('node1'));
  await get(stack.proxyUrl('node1'), { host: 'nope' });
  const res = await request(`${stack.adminUrl('node1')}/metrics`);
  t.match(res.headers['content-type'], /text\/plain/);
  const text = await res.body.text();
  t.match(text, /chikai_requests_total\{revision="default\/hello-00001",target_node="node\d",code="200",node="node1"\} \d+/);
  t.match(text, /chikai_requests_total\{revision="unknown",target_node="none",code="404",node="node1"\} 1/);
  t.match(text, /chikai_request_duration_seconds_count\{[^}]*revision="default\/hello-00001"[^}]*target_node="node\d"[^}]*\} \d+/);
  t.match(text, /# TYPE chikai_requests_in_flight gauge/);
  t.match(text, /chikai_requests_buffered\{revision="default\/hello-00001",node="node1"\} 0/, 'queue depth 0 from the revision\'s first request (dashboards show 0, not no data)');
  const served = [...text.matchAll(/chikai_requests_total\{revision="default\/hello-00001",target_node="node\d",code="200",node="node1"\} (\d+)/g)]
    .reduce((a, m) => a + Number(m[1]), 0);
  t.equal(served, 10, 'every served request counted once');
  t.equal((await get(`${stack.adminUrl('node1')}/readyz`, {})).status, 200);
  t.equal((await get(`${stack.adminUrl('node1')}/healthz`, {})).status, 200);
});

t.test('endpoints come and go at run time; the proxy follows without restart', async (t) => {
  const stack = await testStack({ nodes: 2 });
  t.teardown(() => stack.close());
  const url = stack.proxyUrl('node1');
  const added = await stack.cluster.addPod({ revision: 'default/hello-00001', node: 'node2', name: 'hello-00001-extra' });
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) seen.add((await get(url)).body.split(' ')[2]);
  t.ok(seen.has(added.name), 'the added pod receives traffic');
  for (const p of stack.cluster.pods.filter((p) => p.name !== added.name)) await stack.cluster.removePod(p.name);
  for (let i = 0; i < 5; i++) t.match((await get(url)).body, /from hello-00001-extra in node2/);
});
