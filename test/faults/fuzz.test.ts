// A short fuzz run over the request line and headers: thousands of seeded random mutations
// of valid requests, sent to a `chikai proxy` process. Afterwards the proxy must be alive,
// serving, not grown, and it must never have dialled anything outside the cluster model.
import t from 'tap';
import net from 'node:net';
import { request } from 'undici';
import { seededRandom } from '../../cluster/emulated/network.js';
import { startProxyProcess, HOST, WITNESS_HOST } from './proxy-process.js';
import { RssSampler, rawExchange, remoteRss, report, scale } from './support.js';

const SEEDS: readonly string[] = [
  `GET /a?b=c HTTP/1.1\r\nHost: ${WITNESS_HOST}\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n`,
  `POST /p HTTP/1.1\r\nHost: ${WITNESS_HOST}\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello`,
  `POST /c HTTP/1.1\r\nHost: ${WITNESS_HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
  `GET / HTTP/1.1\r\nHost: x\r\nKnative-Serving-Namespace: default\r\nKnative-Serving-Revision: witness-00001\r\n\r\n`,
  `GET /ws HTTP/1.1\r\nHost: ${WITNESS_HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
  `GET http://${WITNESS_HOST}/abs HTTP/1.1\r\nHost: ${WITNESS_HOST}\r\n\r\n`,
];

/** An address outside the cluster that nothing else on this machine uses: the trap listens there. */
const TRAP = '127.0.9.9';

/** Bytes that matter to an HTTP parser. */
const INTERESTING = ['\r', '\n', '\r\n', '\0', ':', ' ', '\t', ',', ';', '%', '/', '?', '#', '@', '\u007f', '\u00ff', 'chunked', 'Content-Length: 7\r\n', 'Transfer-Encoding: chunked\r\n', `Host: ${TRAP}:1\r\n`, '0\r\n\r\n'];

function mutate(seed: string, rand: () => number): string {
  let s = seed;
  const n = 1 + Math.floor(rand() * 4);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(rand() * (s.length + 1));
    switch (Math.floor(rand() * 7)) {
      case 0: s = s.slice(0, at) + String.fromCharCode(Math.floor(rand() * 256)) + s.slice(at + 1); break; // replace a byte
      case 1: s = s.slice(0, at) + INTERESTING[Math.floor(rand() * INTERESTING.length)] + s.slice(at); break; // insert a token
      case 2: s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rand() * 8)); break; // delete a few bytes
      case 3: { // duplicate a line
        const lines = s.split('\r\n');
        const i = Math.floor(rand() * lines.length);
        lines.splice(i, 0, lines[i]);
        s = lines.join('\r\n');
        break;
      }
      case 4: s = s.slice(0, at); break; // truncate
      case 5: s = s.slice(0, at) + 'A'.repeat(Math.floor(rand() * 20000)) + s.slice(at); break; // a long run
      default: s = s.slice(0, at) + s.slice(at).replace(/\d+/, String(Math.floor(rand() * 2 ** 40))); break; // a number changed
    }
  }
  return s;
}

t.test(`fuzz: ${scale(3000, 20000)} mutated requests; afterwards the proxy is alive, serving and not grown`, async (t) => {
  const p = await startProxyProcess(t, { pods: 1, proxyExtra: 'maxBodyBytes: 65536' });
  let outside = 0;
  const trap = net.createServer((s) => { outside++; s.destroy(); });
  // Port 1 on an address of its own: a connection can only come from a request that named it.
  await new Promise<void>((r) => trap.listen(1, TRAP, r));
  t.teardown(() => new Promise<void>((r) => trap.close(() => r())));
  // Warm up so the baseline includes what any proxy allocates for its first requests.
  for (let i = 0; i < 50; i++) await (await request(p.url, { headers: { host: HOST } })).body.dump();
  const base = await remoteRss(p.adminUrl);
  const rss = new RssSampler(() => remoteRss(p.adminUrl), 200);
  const rand = seededRandom(20240607);
  const total = scale(3000, 20000);
  const statuses: Record<string, number> = {};
  let next = 0;
  await Promise.all(Array.from({ length: 24 }, async () => {
    while (next < total) {
      next++;
      const bytes = Buffer.from(mutate(SEEDS[Math.floor(rand() * SEEDS.length)], rand), 'latin1');
      const a = await rawExchange(p.host, p.port, bytes, { timeoutMs: 300, closeAfterFirstAnswer: true });
      const k = a.status ? String(a.status) : a.closed ? 'closed' : 'no answer in 300 ms';
      statuses[k] = (statuses[k] ?? 0) + 1;
    }
  }));
  const peak = await rss.stop();
  t.comment(`answers: ${JSON.stringify(statuses)}`);
  t.equal(p.child.exitCode, null, 'the proxy process is still running');
  const health = await request(`${p.adminUrl}/healthz`);
  t.equal(health.statusCode, 200, 'admin /healthz answers');
  await health.body.dump();
  const ok = await request(p.url, { headers: { host: HOST } });
  t.equal(ok.statusCode, 200, 'a normal request is served');
  await ok.body.dump();
  t.equal(outside, 0, 'nothing was dialled outside the cluster model');
  t.notOk(Object.keys(statuses).some((s) => /^5\d\d$/.test(s) && s !== '502' && s !== '503' && s !== '504'), 'no unexpected 5xx');
  const after = await remoteRss(p.adminUrl);
  const growth = (after - base) / 1048576;
  t.comment(`proxy RSS ${(base / 1048576).toFixed(0)} MB before, peak ${(peak / 1048576).toFixed(0)} MB, ${(after / 1048576).toFixed(0)} MB after`);
  t.ok(growth < 64, `RSS after the run within 64 MB of the baseline (+${growth.toFixed(1)} MB)`);
  const odd = Object.entries(statuses).filter(([k]) => !/^(200|400|404|405|408|413|431|502|503|504|closed|no answer in 300 ms)$/.test(k)).reduce((n, [, v]) => n + v, 0);
  report(t, { scenario: 'fuzz: mutated request lines and headers', sent: total, failed: odd, lost: 0, peakRss: peak, rssOf: 'proxy process',
    note: Object.entries(statuses).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}×${v}`).join(', ') });
});
