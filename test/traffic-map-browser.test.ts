// The live traffic map in a real browser (Debian's chromium, headless): the demo's cluster
// with one Envoy gateway per node, load through node3's gateway and node3's proxy; the page
// must draw the node3 → node3 flow and show the same counts that Envoy's admin and the
// proxy's /metrics report, scraped just before and just after the sample the page shows.
// CHIKAI_MAP_SCREENSHOT=docs/traffic-map.png writes the README's screenshot.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { DEMO_CLUSTER_FILE, parseClusterFile } from '../cluster/config.js';
import { readFileSync } from 'node:fs';
import { stackMapTargets, startEmulatedStack, type EmulatedStack } from '../bin/stack.js';
import { TrafficMapServer } from '../map/server.js';
import { parseEnvoyClusters, parsePrometheusText } from '../map/exposition.js';
import { chromiumMissing, startBrowser, type HeadlessBrowser } from './fixtures/browser.js';
import { ClosedLoopLoad, poll } from './fixtures/load.js';
import { HELLO_HOST, sleep } from './support.js';

// The demo's cluster plus a revision at zero (no pod), which the events test wakes.
const file = parseClusterFile(readFileSync(DEMO_CLUSTER_FILE, 'utf8').replace(
  /^revisions:\n/m,
  'revisions:\n  - { namespace: default, service: later, name: later-00001, containerConcurrency: 0, timeoutSeconds: 60 }\n',
), 'traffic-map-test-cluster.yaml');

const missing = chromiumMissing();
if (missing) {
  t.test('the traffic map in a real browser', { skip: `needs chromium: ${missing}` }, () => undefined);
} else {
  let stack: EmulatedStack | undefined;
  let map: TrafficMapServer | undefined;
  let browser: HeadlessBrowser | undefined;
  const loads: ClosedLoopLoad[] = [];
  t.teardown(async () => {
    await Promise.all(loads.map((l) => l.stop()));
    await browser?.close();
    await map?.close();
    await stack?.close();
  });

  const text = async (url: string) => {
    const res = await request(url);
    return res.body.text();
  };
  /** What node3's Envoy counted for node3's pods and proxy (its own sub_zone attribute says where a host is). */
  const envoyToNode3 = async () => parseEnvoyClusters(await text(`${stack!.gatewayAdminUrl('node3')}/clusters`))
    .filter((h) => h.cluster === 'default/hello-00001' && h.attributes['sub_zone'] === 'node3')
    .reduce((s, h) => s + (h.stats['rq_total'] ?? 0), 0);
  /** What node3's proxy counted for node3's pods, over every status code. */
  const proxyToNode3 = async () => parsePrometheusText(await text(`${stack!.adminUrl('node3')}/metrics`))
    .filter((s) => s.name === 'chikai_requests_total' && s.labels['target_node'] === 'node3' && s.labels['revision'] === 'default/hello-00001')
    .reduce((sum, s) => sum + s.value, 0);
  const serverSeq = async () => (JSON.parse(await text(`${mapUrl}map.json`)) as { seq: number }).seq;
  let mapUrl = '';

  t.before(async () => {
    stack = await startEmulatedStack({
      file, proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 16,
      xds: { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } },
      gateways: { ports: 'free' },
    });
    map = new TrafficMapServer({ targets: stackMapTargets(stack) });
    const a = await map.listen('127.0.0.1', 0);
    mapUrl = `http://127.0.0.1:${a.port}/`;
    // Light load, which node3's pod keeps up with: through node3's gateway, and a little
    // straight to node3's proxy (the activator's path).
    loads.push(new ClosedLoopLoad(stack.gatewayUrl('node3') + '/', HELLO_HOST, 3).start());
    loads.push(new ClosedLoopLoad(stack.proxyUrl('node3') + '/', HELLO_HOST, 1).start());
    await sleep(1500);
    browser = await startBrowser();
  });

  t.test('the page draws the node3 → node3 flow while load runs', async (t) => {
    const page = browser!.page;
    await page.goto(mapUrl);
    const flow = page.locator('path.flow[data-from="node3"][data-via="gateway"][data-to="node3"]');
    await flow.waitFor({ state: 'attached', timeout: 30_000 });
    t.ok(Number(await flow.getAttribute('data-rate')) > 0, 'node3\'s gateway sends requests/s to node3\'s pod');
    t.ok(Number(await flow.getAttribute('stroke-width')) > 1.5, 'drawn wider than an idle arrow');
    const viaProxy = page.locator('path.flow[data-from="node3"][data-via="proxy"][data-to="node3"]');
    await viaProxy.waitFor({ state: 'attached', timeout: 30_000 });
    t.ok(await page.locator('.node[data-node="node3"]').count(), 'node3 is on the map');
    t.ok(await page.locator('.region.edge').count(), 'an edge region apart from the cloud');
    const rtt = page.locator('.rtt[data-from="node1"][data-to="node3"], .rtt[data-from="node3"][data-to="node1"]').first();
    t.match(await rtt.textContent(), /\d+\.\d ms/, 'the measured round trip between node3 and node1 is shown');
    const weightRow = page.locator('#weights tr[data-gateway="node3"][data-revision="default/hello-00001"]');
    // Its own node's pod, or its own node's proxy once the gateway's load asks for it (xds/proxy-in-path.ts).
    t.match(await weightRow.textContent(), /P0 node3 (\(proxy\) )?\d+/, 'node3\'s gateway: its own node is priority 0');
  });

  t.test('the counts shown are the counts Envoy and the proxy report', async (t) => {
    const page = browser!.page;
    const before = { gateway: await envoyToNode3(), proxy: await proxyToNode3() };
    // A scrape started after `before` was read: two after the last one finished by now.
    const wanted = (await serverSeq()) + 2;
    await page.waitForFunction((seq) => Number(document.getElementById('status')?.dataset['seq'] ?? 0) >= seq, wanted, { timeout: 30_000 });
    const shown = await page.evaluate(() => {
      const cell = (via: string, kind: string) => document.querySelector(`#flows tr[data-from="node3"][data-via="${via}"][data-to="node3"][data-to-kind="${kind}"] td.total`)?.textContent ?? '';
      // Node3's gateway sends to node3's pod, and to node3's proxy while its load asks for it:
      // Envoy counts both under node3's locality.
      return { gateway: Number(cell('gateway', 'pod')) + Number(cell('gateway', 'proxy')), proxy: Number(cell('proxy', 'pod')), seq: Number(document.getElementById('status')?.dataset['seq']) };
    });
    const after = { gateway: await envoyToNode3(), proxy: await proxyToNode3() };
    t.ok(shown.seq >= wanted, `the page shows scrape #${shown.seq}, started after the counts before were read`);
    t.ok(after.gateway > before.gateway && after.proxy > before.proxy, `load was flowing (Envoy ${before.gateway} → ${after.gateway}, proxy ${before.proxy} → ${after.proxy})`);
    t.ok(shown.gateway >= before.gateway && shown.gateway <= after.gateway, `gateway node3 → node3: shown ${shown.gateway}, Envoy's rq_total ${before.gateway} before and ${after.gateway} after`);
    t.ok(shown.proxy >= before.proxy && shown.proxy <= after.proxy, `proxy node3 → node3: shown ${shown.proxy}, chikai_requests_total ${before.proxy} before and ${after.proxy} after`);

    const path = process.env['CHIKAI_MAP_SCREENSHOT'] ?? join(mkdtempSync(join(tmpdir(), 'chikai-map-')), 'traffic-map.png');
    await page.screenshot({ path, fullPage: true });
    t.pass(`screenshot under load: ${path}`);
    if (!process.env['CHIKAI_MAP_SCREENSHOT']) rmSync(path, { force: true });
  });

  t.test('a revision going from zero to one pod and back shows as endpoint events', async (t) => {
    const page = browser!.page;
    const events = page.locator('#events');
    // At zero the gateways send default/later-00001 to the proxies; a pod appears on node3.
    const pod = await stack!.cluster.addPod({ revision: 'default/later-00001', node: 'node3', serviceTimeMs: { min: 1, max: 2 }, capacity: 4 });
    await events.locator('tr', { hasText: pod.name }).first().waitFor({ timeout: 30_000 });
    const woke = await events.textContent();
    t.match(woke, new RegExp(`default/later-00001added${pod.name}node3`), 'the pod is listed as added on node3');
    t.match(woke, /default\/later-00001removedproxy \(no ready pod\)node\d/, 'the proxies stop standing in for it');
    // And back to zero.
    await stack!.cluster.removePod(pod.name, 0);
    await events.locator('tr', { hasText: 'removed' }).filter({ hasText: pod.name }).first().waitFor({ timeout: 30_000 });
    t.match(await events.textContent(), /default\/later-00001addedproxy \(no ready pod\)node\d/, 'the proxies stand in again');
  });
}
