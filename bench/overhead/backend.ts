// The overhead scenario's backend, in its own process: answers every request at once with
// a short body, keep-alive, so what is measured in front of it is the forwarder.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const BODY = Buffer.from('Konnichiwa from the bench backend\n');

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': BODY.length });
  res.end(BODY);
});
server.keepAliveTimeout = 65_000;
server.listen({ host: '127.0.0.1', port: 0 }, () => {
  process.send!({ port: (server.address() as AddressInfo).port });
});
process.on('disconnect', () => process.exit(0));
