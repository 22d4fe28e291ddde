// The floor of chikai's platform, as a peer in the overhead scenario: Node's HTTP server
// in front, undici's Pool `dispatch` behind (what chikai's proxy uses on both sides), and
// nothing else — no routing, no queue, no metrics, no timeouts, no header rewriting
// beyond dropping the client's connection headers. What chikai costs above it is its
// own request path; what it costs above nginx on top of that is the platform.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool, type Dispatcher } from 'undici';

const target = process.argv[2];
if (!target) throw new Error('usage: node-undici-forwarder.js http://127.0.0.1:PORT');
const pool = new Pool(target, { headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 30_000 });
const CONNECTION_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding']);

class Relay implements Dispatcher.DispatchHandler {
  constructor(private readonly res: http.ServerResponse) {}

  // undici takes a handler for its current API by this method's presence.
  onRequestStart(): void {}

  onResponseStart(_c: Dispatcher.DispatchController, status: number, headers: http.IncomingHttpHeaders): void {
    const out: http.OutgoingHttpHeaders = {};
    for (const name in headers) if (!CONNECTION_HEADERS.has(name)) out[name] = headers[name];
    this.res.writeHead(status, out);
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.res.write(chunk);
  }

  onResponseEnd(): void {
    this.res.end();
  }

  onResponseError(): void {
    // A response cut short must not look complete to the client.
    if (this.res.headersSent) return void this.res.destroy();
    this.res.writeHead(502);
    this.res.end();
  }
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const headers: Record<string, string | string[]> = {};
  for (const name in req.headers) if (!CONNECTION_HEADERS.has(name)) headers[name] = req.headers[name]!;
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.dispatch({ method: req.method as Dispatcher.HttpMethod, path: req.url ?? '/', headers, body: hasBody ? req : null }, new Relay(res));
});
server.listen({ host: '127.0.0.1', port: 0 }, () => {
  process.send!({ port: (server.address() as AddressInfo).port });
});
process.on('disconnect', () => process.exit(0));
