// Mutual TLS on the ADS port. chikai terminates TLS itself (node:tls, client certificate
// required and verified against the configured CA) and hands each verified connection to
// grpc-js, so a refused client can be logged with its address and the reason (grpc-js
// only traces failed handshakes).
// Every stream on the port (ADS and load reports) then comes from a client with a
// certificate of that CA; an ADS stream may moreover only ask for the node its certificate
// names: the subject's CN is the node name (as Kubernetes reads client certificates), and
// the gateway's node.id and node.locality.sub_zone must both be it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import tls, { type PeerCertificate, type TLSSocket } from 'node:tls';
import { status, type ConnectionInjector, type ServerDuplexStream } from '@grpc/grpc-js';

/** PEM files: the CA that signs client certificates, and this server's own certificate and key. */
export interface MutualTlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export interface MutualTls {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export class MutualTlsError extends Error {
  override name = 'MutualTlsError';
}

/** A folder laid out as a kubernetes.io/tls Secret with the CA beside it (cert-manager's): ca.crt, tls.crt, tls.key. */
export function tlsDirFiles(dir: string): MutualTlsFiles {
  return { ca: join(dir, 'ca.crt'), cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') };
}

/** Reads the three PEM files, naming the one that cannot be read or is not PEM. */
export function readMutualTls(files: MutualTlsFiles): MutualTls {
  const read = (what: string, path: string, marker: RegExp): Buffer => {
    let b: Buffer;
    try {
      b = readFileSync(path);
    } catch (err) {
      throw new MutualTlsError(`${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (!marker.test(b.toString('latin1'))) throw new MutualTlsError(`${what} ${path}: expected PEM (${marker.source.replace(/\\/g, '')})`);
    return b;
  };
  return {
    ca: read('the CA certificate', files.ca, /-----BEGIN CERTIFICATE-----/),
    cert: read('the certificate', files.cert, /-----BEGIN CERTIFICATE-----/),
    key: read('the private key', files.key, /-----BEGIN (RSA |EC )?PRIVATE KEY-----/),
  };
}

/** Why a completed handshake's client is not authorized, in words an operator can act on. */
function unauthorizedClient(socket: TLSSocket): string {
  if (Object.keys(socket.getPeerCertificate()).length === 0) return 'no client certificate (mutual TLS is required on this port)';
  const code = String(socket.authorizationError ?? '');
  if (/EXPIRED|NOT_YET_VALID/.test(code)) return `a client certificate outside its validity period (${code})`;
  return `a client certificate not signed by the configured CA (${code || 'not verified'})`;
}

/** Why a handshake failed before it completed. */
function handshakeFailure(err: NodeJS.ErrnoException): string {
  const text = `${err.code ?? ''} ${err.message}`;
  if (/WRONG_VERSION_NUMBER|HTTP_REQUEST|unknown protocol/i.test(text)) return 'no TLS (plaintext on a mutual TLS port)';
  return `TLS handshake failed: ${err.code ? `${err.code}: ` : ''}${err.message}`;
}

export interface TlsListener {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Listens on host:port, completes the TLS handshake with a verified client certificate and
 * passes the connection to grpc-js; a refused handshake is reported to `refused(client, why)`.
 */
export async function listenMutualTls(host: string, port: number, creds: MutualTls, injector: ConnectionInjector, refused: (client: string, why: string) => void): Promise<TlsListener> {
  const server = tls.createServer({
    ca: creds.ca,
    cert: creds.cert,
    key: creds.key,
    requestCert: true,
    // Checked below instead of by node:tls, which would drop the connection without saying
    // who it was or why: a client that is not authorized is closed before any HTTP/2 byte.
    rejectUnauthorized: false,
    ALPNProtocols: ['h2'],
    minVersion: 'TLSv1.2',
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    if (socket.authorized) return injector.injectConnection(socket);
    refused(socket.remoteAddress ?? 'an unknown address', unauthorizedClient(socket));
    socket.destroy();
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    refused(socket.remoteAddress ?? 'an unknown address', handshakeFailure(err));
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  return {
    port: typeof bound === 'object' && bound ? bound.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The node a verified client certificate names (its subject CN); undefined without mutual TLS. */
export function certificateNode(call: Pick<ServerDuplexStream<unknown, unknown>, 'getAuthContext'>): { node: string | undefined; tls: boolean } {
  const ctx = call.getAuthContext();
  const cert: PeerCertificate | undefined = ctx?.sslPeerCertificate;
  if (!ctx || ctx.transportSecurityType !== 'ssl') return { node: undefined, tls: false };
  const cn = cert?.subject?.CN;
  return { node: typeof cn === 'string' && cn !== '' ? cn : undefined, tls: true };
}

/** Why a gateway with certificate node `allowed` may not have the view it asks for; undefined when it may. */
export function nodeRefusal(allowed: string | undefined, nodeId: string | undefined, subZone: string | undefined): string | undefined {
  if (!allowed) return 'its client certificate names no node (subject CN)';
  if (nodeId !== allowed) return `its certificate is for node ${JSON.stringify(allowed)} but it claims node.id ${JSON.stringify(nodeId ?? '')}`;
  if (subZone !== allowed) return `its certificate is for node ${JSON.stringify(allowed)} but it asks for the view of sub_zone ${JSON.stringify(subZone ?? '')}`;
  return undefined;
}

/** The gRPC status a refused ADS stream ends with. */
export const REFUSED_STATUS = status.PERMISSION_DENIED;
