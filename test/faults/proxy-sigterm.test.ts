// A proxy process gets SIGTERM under load: readiness turns 503 first, the load balancer
// (emulated: the load stops sending once it sees 503 on /readyz) takes it out, every
// request already accepted finishes, and the process exits 0.
import t from 'tap';
import { request } from 'undici';
import { startProxyProcess, HOST } from './proxy-process.js';
import { RssSampler, remoteRss, report, scale, sleep } from './support.js';

t.test('SIGTERM under load: readiness first, zero in-flight requests lost, exit 0', async (t) => {
  const p = await startProxyProcess(t, { pods: 2, podCapacity: 100, serviceTimeMs: { min: 5, max: 10 }, drainSeconds: 2 });
  const rss = new RssSampler(() => remoteRss(p.adminUrl), 200);
  let ready = true;
  let readyTurnedAt = 0;
  const results: { status: number; error?: string; sentAt: number }[] = [];
  let running = true;
  // 32 closed-loop clients, half on slow requests so plenty are in flight at any moment.
  const clients = Array.from({ length: 32 }, async (_, i) => {
    while (running && ready) {
      const sentAt = performance.now();
      try {
        const res = await request(`${p.url}${i % 2 ? '/sleep?ms=400' : '/'}`, { headers: { host: HOST } });
        await res.body.dump();
        results.push({ status: res.statusCode, sentAt });
      } catch (err) {
        results.push({ status: 0, error: (err as Error).message, sentAt });
      }
    }
  });
  // The load balancer's view: /readyz every 50 ms; it stops sending once that fails.
  const lb = (async () => {
    while (running) {
      try {
        const r = await request(`${p.adminUrl}/readyz`);
        await r.body.dump();
        if (r.statusCode !== 200 && ready) {
          ready = false;
          readyTurnedAt = performance.now();
        }
      } catch {
        // the admin port closes at exit
      }
      await sleep(50);
    }
  })();
  await sleep(scale(1500, 8000));
  const sigtermAt = performance.now();
  const peakBefore = rss.peak;
  p.child.kill('SIGTERM');
  const code = await p.exited;
  const exitedAt = performance.now();
  running = false;
  await Promise.all(clients);
  await lb;
  const lost = results.filter((r) => r.status === 0);
  const failed = results.filter((r) => r.status !== 0 && r.status !== 200);
  t.comment(`${results.length} requests, ${lost.length} lost, ${failed.length} failed; readiness failed ${(readyTurnedAt - sigtermAt).toFixed(0)} ms after SIGTERM; exit ${code}`);
  t.ok(readyTurnedAt > sigtermAt && readyTurnedAt < exitedAt, 'readiness turned 503 after SIGTERM, while the proxy was still serving (before it exited)');
  t.same(lost.map((r) => r.error), [], 'no request lost');
  t.equal(failed.length, 0, 'no request failed');
  t.equal(code, 0, 'the process exits 0 after the drain');
  report(t, { scenario: 'proxy SIGTERM under load (drain 2 s)', sent: results.length, failed: failed.length, lost: lost.length, recoveryMs: readyTurnedAt - sigtermAt, peakRss: Math.max(peakBefore, await rss.stop()), rssOf: 'proxy process',
    note: 'recovery = SIGTERM → readiness 503; load balancer emulated by polling /readyz' });
});
