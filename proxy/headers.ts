// Header rewriting between the client and the pod, the way Knative's activator does it.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

export const KNATIVE_NAMESPACE_HEADER = 'knative-serving-namespace';
export const KNATIVE_REVISION_HEADER = 'knative-serving-revision';
export const PROXY_REQUEST_HEADER = 'k-proxy-request';
export const NETWORK_PROBE_HEADER = 'k-network-probe';
/** Knative's ingress probe hash: answered on probes, never passed to a pod (knative.dev/networking probe handler). */
export const NETWORK_HASH_HEADER = 'k-network-hash';

/** Headers that describe one connection, never forwarded (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade',
]);

const NO_TOKENS: ReadonlySet<string> = new Set();

function connectionTokens(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): ReadonlySet<string> {
  const c = headers['connection'];
  // Most requests carry no Connection header or just keep-alive: no allocation for them.
  if (c === undefined || c === 'keep-alive') return NO_TOKENS;
  const list = Array.isArray(c) ? c.join(',') : c;
  return new Set(list.split(',').map((t) => t.trim().toLowerCase()).filter(Boolean));
}

/**
 * The headers sent to the pod: hop-by-hop, Knative routing and K-Network-Hash headers removed,
 * `K-Proxy-Request: activator` and the X-Forwarded-* pair set.
 */
export function upstreamRequestHeaders(
  headers: IncomingHttpHeaders,
  clientAddress: string | undefined,
  encrypted: boolean,
): Record<string, string | string[]> {
  const drop = connectionTokens(headers);
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || drop.has(name)) continue;
    // `TE: trailers` says the client reads trailers (gRPC requires it); the rest of TE is per hop.
    if (name === 'te') {
      if (String(value).trim().toLowerCase() === 'trailers') out[name] = 'trailers';
      continue;
    }
    if (HOP_BY_HOP.has(name)) continue;
    if (name === KNATIVE_NAMESPACE_HEADER || name === KNATIVE_REVISION_HEADER || name === NETWORK_HASH_HEADER) continue;
    // undici sends 100-continue itself only when asked; the client's expectation was
    // already answered by this server.
    if (name === 'expect') continue;
    out[name] = value;
  }
  out[PROXY_REQUEST_HEADER] = 'activator';
  const client = clientAddress?.startsWith('::ffff:') ? clientAddress.slice(7) : clientAddress;
  const xff = headers['x-forwarded-for'];
  if (client) out['x-forwarded-for'] = xff ? `${Array.isArray(xff) ? xff.join(', ') : xff}, ${client}` : client;
  if (!headers['x-forwarded-proto']) out['x-forwarded-proto'] = encrypted ? 'https' : 'http';
  return out;
}

/** The pod's response headers as sent to the client, hop-by-hop ones removed. */
export function downstreamResponseHeaders(headers: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const drop = connectionTokens(headers);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name)) continue;
    out[name] = value;
  }
  return out;
}
