// Upgrade requests (WebSocket and friends) are passed through to the pod with http-proxy,
// which relays the 101 response and then the raw bytes both ways.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import type { EndpointState } from './endpoints.js';

export class UpgradeForwarder {
  private readonly proxy = httpProxy.createProxyServer({ ws: true });

  constructor(private readonly localAddress: string | undefined) {
    // Errors are reported per call below; this keeps a stray one from crashing the process.
    this.proxy.on('error', () => undefined);
  }

  /** Relay the upgrade; resolves when the tunnel (or the attempt) is over. */
  forward(req: IncomingMessage, socket: Duplex, head: Buffer, endpoint: EndpointState): Promise<'closed' | Error> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (r: 'closed' | Error) => {
        if (!settled) {
          settled = true;
          resolve(r);
        }
      };
      socket.once('close', () => done('closed'));
      this.proxy.ws(req, socket, head, {
        target: `http://${endpoint.info.address}:${endpoint.info.port}`,
        localAddress: this.localAddress,
      }, (err: Error) => {
        if (!socket.destroyed) {
          socket.end('HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nchikai: upgrade to the pod failed\n');
        }
        done(err);
      });
    });
  }

  close(): void {
    this.proxy.close();
  }
}
