// Idle connections capped per client address. An idle connection (accepted, no request in
// progress: a keep-alive connection between requests, or one that has not sent a request
// yet) costs 18–35 KiB of proxy memory and nothing else bounds how many one client opens.
// A client already holding `maxIdlePerClient` idle connections gets its next one refused
// with a 503 naming the limit; every other client is served as before. Connections busy
// with a request are not counted: requests are bounded by the queue and the revision
// timeout.
import type http from 'node:http';
import type { Socket } from 'node:net';

interface Client {
  idle: number;
  /** Connections tracked for this address, busy or idle (the entry goes when none is left). */
  open: number;
}

interface Tracked {
  readonly client: Client;
  inFlight: number;
  /** Taken over by an upgrade (WebSocket): no longer an HTTP connection of ours. */
  released: boolean;
}

export class ClientConnectionLimit {
  private readonly clients = new Map<string, Client>();
  private readonly sockets = new WeakMap<Socket, Tracked>();

  /**
   * @param maxIdlePerClient idle connections one client address may hold (0 = no cap)
   * @param onRefused called with the client's address for each refused connection
   */
  constructor(private readonly maxIdlePerClient: number, private readonly onRefused: (address: string) => void = () => undefined) {}

  /** Watches `server`'s connections and requests; refuses a connection over the cap before HTTP reads it. */
  attach(server: http.Server): void {
    server.prependListener('connection', (socket: Socket) => this.accept(socket));
    server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const socket = req.socket;
      const t = this.sockets.get(socket);
      if (!t || t.released) return;
      if (t.inFlight++ === 0) t.client.idle -= 1;
      res.once('close', () => {
        if (t.released) return;
        if (--t.inFlight === 0 && !socket.destroyed) t.client.idle += 1;
      });
    });
    server.prependListener('upgrade', (req: http.IncomingMessage) => this.release(req.socket));
  }

  private accept(socket: Socket): void {
    const address = socket.remoteAddress ?? '';
    const client = this.clients.get(address) ?? { idle: 0, open: 0 };
    if (this.maxIdlePerClient > 0 && client.idle >= this.maxIdlePerClient) {
      this.onRefused(address);
      const body = `chikai: ${address} already holds ${client.idle} idle connections to this proxy (limit ${this.maxIdlePerClient}); reuse or close them\n`;
      socket.on('error', () => socket.destroy());
      socket.end(`HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      return;
    }
    this.clients.set(address, client);
    client.idle += 1;
    client.open += 1;
    const tracked: Tracked = { client, inFlight: 0, released: false };
    this.sockets.set(socket, tracked);
    socket.once('close', () => {
      if (!tracked.released && tracked.inFlight === 0) client.idle -= 1;
      tracked.released = true;
      if (--client.open === 0) this.clients.delete(address);
    });
  }

  private release(socket: Socket): void {
    const t = this.sockets.get(socket);
    if (!t || t.released) return;
    if (t.inFlight === 0) t.client.idle -= 1;
    t.released = true;
  }
}
