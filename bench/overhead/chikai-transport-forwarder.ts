// chikai's transport with no request path, as a peer in the overhead scenario: the proxy's
// own HTTP/1 exchange and forwarder (proxy/http1.ts, proxy/forward.ts: the activator's
// header rewriting, the request's abort signal, the response observer, backpressure) behind
// Node's HTTP server with the proxy's settings, one endpoint, and none of the steps of
// proxy/chain.ts (no routing, policy, slots, queue, timeouts, retries, metrics, probes).
// Against node-undici it prices chikai's transport; against chikai, the request path.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { EndpointState } from '../../proxy/endpoints.js';
import { Http1Exchange } from '../../proxy/http1.js';
import { upstreamRequestHeaders } from '../../proxy/headers.js';

const target = process.argv[2];
const url = target ? new URL(target) : undefined;
if (!url) throw new Error('usage: chikai-transport-forwarder.js http://127.0.0.1:PORT');
const endpoint = new EndpointState({ pod: 'backend', revision: 'default/hello-00001', node: 'node1', address: url.hostname, port: Number(url.port), ready: true }, undefined);
const now = (): number => performance.timeOrigin + performance.now();
const observe = (): void => undefined;

const server = http.createServer({ requestTimeout: 0, headersTimeout: 15_000, connectionsCheckingInterval: 1000, keepAliveTimeout: 65_000 }, (req, res) => {
  const x = new Http1Exchange(req, res, now(), 0, now);
  void x.forward(endpoint, upstreamRequestHeaders(req.headers, req.socket.remoteAddress, false), x.signal, observe).then((r) => {
    if (r.kind === 'failed-before-response') x.answer({ status: 502, body: `${r.error.message}\n` });
    else if (r.kind === 'failed-mid-response') x.cut();
  }, () => x.cut());
});
server.listen({ host: '127.0.0.1', port: 0 }, () => {
  process.send!({ port: (server.address() as AddressInfo).port });
});
process.on('disconnect', () => process.exit(0));
