// Hostile HTTP against a `chikai proxy` process, while a normal load runs beside it: every
// input gets its documented answer (README "Hostile input"), nothing reaches a pod that
// should not, the proxy never connects outside the cluster model, and the normal load's
// success rate is measured.
import t, { type Test } from 'tap';
import net, { type AddressInfo } from 'node:net';
import { request } from 'undici';
import { startProxyProcess, HOST, WITNESS_HOST, type ProxyProcess } from './proxy-process.js';
import { RssSampler, rawExchange, remoteRss, report, runLoad, scale, successPercent, until, type RawAnswer } from './support.js';

const W = WITNESS_HOST;

/** An HTTP server outside the cluster model: the proxy must never connect to it. */
async function outsider(t: Test): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as AddressInfo).port, connections: () => connections };
}

interface Case {
  readonly name: string;
  readonly bytes: string | Buffer;
  /** Expected status (0: the connection is closed without an answer). */
  readonly status: number;
  /** Request lines the witness pod may see for this input (default: none). */
  readonly reaches?: readonly string[];
  readonly opts?: Parameters<typeof rawExchange>[3];
}

const crlf = (...lines: string[]) => `${lines.join('\r\n')}\r\n\r\n`;

function cases(outsiderPort: number, maxBody: number): Case[] {
  const big = 'a'.repeat(maxBody + 1);
  const chunkedBig = `${(maxBody + 1).toString(16)}\r\n${big}\r\n0\r\n\r\n`;
  return [
    { name: 'smuggling: Content-Length and Transfer-Encoding together', status: 400,
      bytes: crlf('POST /a HTTP/1.1', `Host: ${W}`, 'Content-Length: 4', 'Transfer-Encoding: chunked') + `0\r\n\r\n${crlf('GET /smuggled HTTP/1.1', `Host: ${W}`)}` },
    { name: 'smuggling: two different Content-Length', status: 400,
      bytes: crlf('POST /a HTTP/1.1', `Host: ${W}`, 'Content-Length: 0', 'Content-Length: 44') + crlf('GET /smuggled HTTP/1.1', `Host: ${W}`) },
    { name: 'smuggling: Content-Length list "0, 44"', status: 400,
      bytes: crlf('POST /a HTTP/1.1', `Host: ${W}`, 'Content-Length: 0, 44') + crlf('GET /smuggled HTTP/1.1', `Host: ${W}`) },
    { name: 'smuggling: Transfer-Encoding "xchunked"', status: 400,
      bytes: crlf('POST /a HTTP/1.1', `Host: ${W}`, 'Transfer-Encoding: xchunked') + '0\r\n\r\n' + crlf('GET /smuggled HTTP/1.1', `Host: ${W}`) },
    { name: 'smuggling: Transfer-Encoding "chunked, identity"', status: 400,
      bytes: crlf('POST /a HTTP/1.1', `Host: ${W}`, 'Transfer-Encoding: chunked, identity') + '0\r\n\r\n' + crlf('GET /smuggled HTTP/1.1', `Host: ${W}`) },
    { name: 'smuggling: space before the colon ("Transfer-Encoding : chunked")', status: 400,
      bytes: crlf('POST /a HTTP/1.1', `Host: ${W}`, 'Transfer-Encoding : chunked', 'Content-Length: 4') + '0\r\n\r\n' + crlf('GET /smuggled HTTP/1.1', `Host: ${W}`) },
    { name: 'smuggling: Transfer-Encoding folded onto a second line', status: 400,
      bytes: crlf('POST /a HTTP/1.1', `Host: ${W}`, 'Transfer-Encoding:', ' chunked', 'Content-Length: 4') + '0\r\n\r\n' + crlf('GET /smuggled HTTP/1.1', `Host: ${W}`) },
    { name: 'smuggling: bad chunk size', status: 400,
      bytes: crlf('POST /a HTTP/1.1', `Host: ${W}`, 'Transfer-Encoding: chunked') + '0x4\r\nabcd\r\n0\r\n\r\n' },
    { name: 'oversized header (20 KiB value)', status: 431,
      bytes: crlf('GET / HTTP/1.1', `Host: ${W}`, `X-Big: ${'b'.repeat(20 * 1024)}`) },
    { name: 'header flood (4000 headers, 60 KiB)', status: 431,
      bytes: crlf('GET / HTTP/1.1', `Host: ${W}`, ...Array.from({ length: 4000 }, (_, i) => `X-H${i}: v`)) },
    { name: 'body over proxy.maxBodyBytes (Content-Length)', status: 413,
      bytes: crlf('POST /big HTTP/1.1', `Host: ${W}`, `Content-Length: ${big.length}`) + big },
    { name: 'body over proxy.maxBodyBytes (chunked)', status: 413,
      bytes: crlf('POST /big HTTP/1.1', `Host: ${W}`, 'Transfer-Encoding: chunked') + chunkedBig },
    { name: 'absolute-form URI to a host outside the cluster', status: 404,
      bytes: crlf(`GET http://127.0.0.1:${outsiderPort}/steal HTTP/1.1`, `Host: 127.0.0.1:${outsiderPort}`) },
    { name: 'absolute-form URI outside the cluster, Host of a revision', status: 404,
      bytes: crlf(`GET http://127.0.0.1:${outsiderPort}/steal HTTP/1.1`, `Host: ${W}`) },
    { name: 'absolute-form URI of a revision (origin-form upstream)', status: 200, reaches: ['GET /abs?x=1'],
      bytes: crlf(`GET http://${W}/abs?x=1 HTTP/1.1`, `Host: ${W}`, 'Connection: close') },
    { name: 'CONNECT to a host outside the cluster', status: 405,
      bytes: crlf(`CONNECT 127.0.0.1:${outsiderPort} HTTP/1.1`, `Host: 127.0.0.1:${outsiderPort}`) },
    { name: 'CONNECT to a revision host', status: 405,
      bytes: crlf(`CONNECT ${W}:80 HTTP/1.1`, `Host: ${W}:80`) },
    { name: 'Host outside the cluster', status: 404, bytes: crlf('GET / HTTP/1.1', 'Host: evil.example.org') },
    { name: 'Host with userinfo ("witness...@evil")', status: 404, bytes: crlf('GET / HTTP/1.1', `Host: ${W}@evil.example.org`) },
    { name: 'Host not a host name ("bad host!")', status: 404, bytes: crlf('GET / HTTP/1.1', 'Host: bad host!') },
    { name: 'no Host (HTTP/1.1)', status: 400, bytes: crlf('GET / HTTP/1.1', 'X-A: 1') },
    { name: 'two Host headers', status: 400, bytes: crlf('GET / HTTP/1.1', 'Host: evil.example.org', `Host: ${W}`) },
    { name: 'NUL in a header value', status: 400, bytes: crlf('GET / HTTP/1.1', `Host: ${W}`, 'X-A: a\u0000b') },
    { name: 'bare CR in a header value', status: 400, bytes: crlf('GET / HTTP/1.1', `Host: ${W}`, 'X-A: a\rX-B: b') },
    { name: 'bare LF ending a header line', status: 400, bytes: `GET /lf HTTP/1.1\r\nHost: ${W}\nX-A: a\r\n\r\n` },
    { name: 'CRLF injected through a percent-encoded path', status: 200, reaches: ['GET /%0d%0aX-Injected:%201'],
      bytes: crlf('GET /%0d%0aX-Injected:%201 HTTP/1.1', `Host: ${W}`, 'Connection: close') },
    { name: 'control character in the request target', status: 400, bytes: crlf('GET /a\u0001b HTTP/1.1', `Host: ${W}`) },
    { name: 'unknown HTTP version', status: 400, bytes: crlf('GET / HTTP/3.7', `Host: ${W}`) },
    { name: 'garbage instead of a request line', status: 400, bytes: '\u0016\u0003\u0001\u0002\u0000\u0001\u0000\u0001\u00fc\u0003\u0003 not http\r\n\r\n' },
  ];
}

async function normalLoad(p: ProxyProcess, seconds: number) {
  return runLoad({ url: p.url, connections: 8, durationSeconds: seconds, host: HOST, timeoutSeconds: 20 });
}

t.test('hostile HTTP: each input gets its documented answer while a normal load is served', async (t) => {
  const maxBody = 1024;
  const p = await startProxyProcess(t, { pods: 2, proxyExtra: `maxBodyBytes: ${maxBody}, headersTimeoutSeconds: 2` });
  const out = await outsider(t);
  const rss = new RssSampler(() => remoteRss(p.adminUrl), 200);
  const load = normalLoad(p, scale(12, 30));
  const table: string[] = [];
  let sent = 0;
  let wrong = 0;
  for (const c of cases(out.port, maxBody)) {
    const before = p.witnessSeen.length;
    const a: RawAnswer = await rawExchange(p.host, p.port, c.bytes, { timeoutMs: 4000, ...c.opts });
    sent++;
    const reached = p.witnessSeen.slice(before);
    if (a.status !== c.status) wrong++;
    t.equal(a.status, c.status, `${c.name}: ${c.status}${a.status !== c.status ? ` (got ${JSON.stringify(a.text.slice(0, 120))})` : ''}`);
    t.same(reached, c.reaches ?? [], `${c.name}: ${c.reaches ? 'reaches the pod as' : 'nothing reaches the pod'}`);
    table.push(`| ${c.name} | ${a.status || 'closed'} |`);
  }
  t.equal(out.connections(), 0, 'the proxy never connected to the host outside the cluster');

  // Slowloris: one header byte every 300 ms never completes within the headers timeout.
  const slow = await rawExchange(p.host, p.port, crlf('GET / HTTP/1.1', `Host: ${W}`, `X-Slow: ${'s'.repeat(40)}`), { writes: 60, gapMs: 300, timeoutMs: 10_000 });
  sent++;
  t.ok(slow.closed, `slowloris: the connection is closed (after ${(slow.ms / 1000).toFixed(1)} s)`);
  t.equal(slow.status, 408, 'slowloris: 408 Request Timeout');
  t.ok(slow.written < 60, `slowloris: closed while the client was still trickling (after ${slow.written} of 60 parts, 300 ms apart), not when it was done`);
  table.push(`| slowloris (a header byte every 300 ms) | ${slow.status} after ${(slow.ms / 1000).toFixed(1)} s |`);

  const r = await (await load).result;
  const peak = await rss.stop();
  t.comment(`hostile inputs and their answers:\n| input | answer |\n| --- | --- |\n${table.join('\n')}`);
  t.comment(`normal load meanwhile: ${r.ok}/${r.sent} ok, statuses ${JSON.stringify(r.statuses)}, errors ${r.errors}`);
  t.equal(r.errors, 0, 'the normal load lost no request');
  t.equal(r.non2xx, 0, 'the normal load got only 2xx');
  t.equal(p.child.exitCode, null, 'the proxy is still running');
  report(t, { scenario: 'hostile HTTP inputs (+ normal load)', sent: sent + r.sent, failed: wrong + r.non2xx, lost: r.errors, peakRss: peak, rssOf: 'proxy process',
    note: `${sent} hostile, ${wrong} wrong answers; normal load ${successPercent(r)} ok` });
});

t.test(`${scale(2000, 10000)} concurrent idle connections: normal load still served, memory bounded, closed after the headers timeout`, async (t) => {
  const headersTimeout = scale(8, 25);
  // Uncapped (maxIdleConnectionsPerClient 0): what each idle connection costs, at a scale
  // one client could not reach with the default cap (test/proxy-client-limit.test.ts).
  const p = await startProxyProcess(t, { pods: 2, proxyExtra: `headersTimeoutSeconds: ${headersTimeout}, maxIdleConnectionsPerClient: 0`,
    // Small semi-spaces: the normal load's garbage is collected promptly instead of counting as
    // the idle connections' memory.
    nodeFlags: ['--max-semi-space-size=2'] });
  const n = scale(2000, 10000);
  const base = await remoteRss(p.adminUrl);
  const rss = new RssSampler(() => remoteRss(p.adminUrl), 200);
  const sockets: net.Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  let refused = 0;
  for (let i = 0; i < n; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, n - i) }, () => new Promise<void>((resolve) => {
      const s = net.connect({ host: p.host, port: p.port }, () => resolve());
      s.on('error', () => { refused++; resolve(); });
      // Read whatever the proxy says (a 408 at the headers timeout) and notice its close.
      s.resume();
      s.on('end', () => s.destroy());
      sockets.push(s);
    })));
  }
  const open = sockets.filter((s) => !s.destroyed).length;
  const health = await request(`${p.adminUrl}/healthz`, { headersTimeout: 5000 });
  t.equal(health.statusCode, 200, 'the admin port answers while the traffic port holds the idle connections');
  await health.body.dump();
  t.comment(`${open} idle connections open (${refused} refused), proxy RSS ${(base / 1048576).toFixed(0)} MB before`);
  const load = normalLoad(p, scale(5, 15));
  const r = await (await load).result;
  const held = sockets.filter((s) => !s.destroyed).length;
  // A connection that never sends a request is held only until the headers timeout.
  const t0 = performance.now();
  await until('the idle connections to be closed by the proxy', () => sockets.every((s) => s.destroyed), (headersTimeout + 10) * 1000, 200);
  t.pass(`every idle connection was closed by the proxy (the last ${((performance.now() - t0) / 1000).toFixed(1)} s after the load ended)`);
  const peak = await rss.stop();
  t.equal(open, n, 'every connection was accepted');
  t.equal(r.errors, 0, 'the normal load lost no request');
  t.equal(r.non2xx, 0, 'the normal load got only 2xx');
  const growthMb = (peak - base) / 1048576;
  t.comment(`normal load with ${held} idle connections held open: ${r.ok}/${r.sent} ok; proxy RSS +${growthMb.toFixed(1)} MB (${((peak - base) / n / 1024).toFixed(1)} KiB per connection)`);
  t.ok(peak - base < n * 64 * 1024, 'less than 64 KiB of proxy memory per idle connection');
  report(t, { scenario: `${n} idle connections (+ normal load)`, sent: n + r.sent, failed: r.non2xx, lost: r.errors, peakRss: peak, rssOf: 'proxy process',
    note: `normal load ${successPercent(r)} ok; +${growthMb.toFixed(0)} MB for the idle connections` });
});

t.test('admin and metrics listen on their own port, apart from traffic', async (t) => {
  const p = await startProxyProcess(t, { pods: 1 });
  t.not(new URL(p.adminUrl).port, String(p.port), 'admin port differs from the traffic port');
  const viaTraffic = await request(`${p.url}/metrics`, { headers: { host: `127.0.1.1:${p.port}` } });
  const trafficBody = await viaTraffic.body.text();
  t.equal(viaTraffic.statusCode, 404, '/metrics on the traffic port is just an unknown host');
  t.notMatch(trafficBody, /chikai_requests_total/, 'and shows no metrics');
  const viaPod = await request(`${p.url}/metrics`, { headers: { host: HOST } });
  t.notMatch(await viaPod.body.text(), /chikai_requests_total/, 'with a revision host it goes to the pod, not to the proxy\'s metrics');
  const admin = await request(`${p.adminUrl}/metrics`);
  t.equal(admin.statusCode, 200);
  t.match(await admin.body.text(), /chikai_requests_total/, 'the admin port serves the metrics');
  const probe = await request(`${p.adminUrl}/`, { headers: { host: HOST } });
  t.equal(probe.statusCode, 404, 'the admin port forwards nothing');
  await probe.body.dump();
});
