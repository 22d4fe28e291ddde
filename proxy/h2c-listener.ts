// One port, both protocols, as the activator's 8012 and 8013 do: a connection that opens
// with the HTTP/2 connection preface (h2c with prior knowledge, RFC 9113 §3.3) goes to the
// HTTP/2 server, any other to the HTTP/1 server. The first bytes are read, looked at and
// put back, so each server parses the connection from its start.
import type http from 'node:http';
import type http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { Clock } from '../cluster/clock.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/**
 * Makes `http1` (which listens) hand h2c connections to `h2`. A client that sends nothing
 * within `decideWithinMs` is dropped, as a client that does not finish its headers is.
 * Returns what drops the connections not yet handed to either server (neither server
 * knows them, so neither closeAllConnections would).
 */
export function acceptH2c(http1: http.Server, h2: http2.Http2Server, clock: Clock, decideWithinMs: number): () => void {
  const undecided = new Set<Socket>();
  // Node's own HTTP/1 connection handling, called for the connections that are HTTP/1, so
  // they keep its parser, timeouts and connection tracking (closeAllConnections).
  const http1Connection = http1.listeners('connection')[0] as (socket: Socket) => void;
  http1.removeAllListeners('connection');
  http1.on('connection', (socket: Socket) => {
    undecided.add(socket);
    let seen: Buffer = Buffer.alloc(0);
    const give = clock.after(decideWithinMs, () => socket.destroy());
    const onError = () => socket.destroy();
    // The HTTP server is half-open: a client that closes before its first byte would
    // otherwise linger here until the deadline.
    const onEnd = () => socket.destroy();
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const h2c = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (h2c && seen.length < PREFACE.length) return; // a preface so far: wait for the rest
      give.cancel();
      undecided.delete(socket);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.pause();
      socket.unshift(seen);
      if (h2c) {
        h2.emit('connection', socket);
      } else {
        http1Connection.call(http1, socket);
        socket.resume();
      }
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.once('end', onEnd);
    socket.once('close', () => {
      give.cancel();
      undecided.delete(socket);
    });
  });
  return () => {
    for (const s of undecided) s.destroy();
    undecided.clear();
  };
}
