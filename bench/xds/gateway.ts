// A simulated gateway: one state-of-the-world ADS stream, a real gRPC call over its own
// HTTP/2 connection, that subscribes like a Kourier gateway (CDS and LDS wildcard, EDS per
// cluster, RDS per route config) and ACKs every response at once with its version and
// nonce, keeping nothing but versions and counters. It speaks gRPC over node:http2 itself
// rather than through @grpc/grpc-js, which reassembles each message (2.5 MB per gateway
// at 1000 revisions) before handing it over: here every byte the server sends is received,
// but only the head of each response is read as it streams in (response-heads.ts) and the
// resources are skipped where they lie, so the bench's process spends little per byte and
// measures the server, not itself. ACKs are written from a pre-encoded subscription shared
// by every gateway.
import http2 from 'node:http2';
import protobuf from 'protobufjs';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, envoyProtos } from '../../xds/protos.js';
import { ADS_SERVICE, type DiscoveryRequest } from '../../xds/wire.js';
import { ResponseHeadReader, type ResponseHead } from './response-heads.js';

const TYPES = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] as const;
const NO_NAMES: readonly string[] = [];
const ADS_PATH = `/${ADS_SERVICE}/StreamAggregatedResources`;
/** Envoy's HTTP/2 flow-control windows, stream and connection (Node's default, 64 KiB, would make every server wait for window updates and measure that instead). */
const WINDOW_BYTES = 256 << 20;

function requestType(): protobuf.Type {
  return envoyProtos().type('envoy.service.discovery.v3.DiscoveryRequest');
}

/** A gRPC message on the wire: uncompressed flag, big-endian length, the message. */
function grpcFrame(parts: readonly Uint8Array[]): Buffer {
  const length = parts.reduce((s, p) => s + p.length, 0);
  const frame = Buffer.allocUnsafe(5 + length);
  frame[0] = 0;
  frame.writeUInt32BE(length, 1);
  let at = 5;
  for (const p of parts) {
    frame.set(p, at);
    at += p.length;
  }
  return frame;
}

const namesChunks = new WeakMap<readonly string[], Uint8Array>();

/** An ACK, framed: its few header fields, then the subscription's names, encoded once per list. */
function ack(typeUrl: string, versionInfo: string, nonce: string, names: readonly string[]): Buffer {
  const t = requestType();
  let chunk = namesChunks.get(names);
  if (!chunk) {
    const w = protobuf.Writer.create();
    for (const n of names) w.uint32((t.fields.resource_names!.id << 3) | 2).string(n);
    namesChunks.set(names, (chunk = w.finish()));
  }
  const head = t.encode(t.fromObject({ type_url: typeUrl, version_info: versionInfo, response_nonce: nonce })).finish();
  return grpcFrame([head, chunk]);
}

export class SimulatedGateway {
  private readonly session: http2.ClientHttp2Session;
  private readonly stream: http2.ClientHttp2Stream;
  private readonly names: Map<string, readonly string[]>;
  private closing = false;
  /** ACKs sent, by type URL. */
  readonly acks = new Map<string, number>();
  /** When the last EDS ACK was written (performance.now()). */
  lastEdsAckAt = 0;
  lastResponseAt = 0;
  /** Resources received in EDS responses (each response's count summed). */
  edsResources = 0;
  /** Bytes of response messages received (gRPC frame prefixes not counted). */
  bytes = 0;
  failed: Error | undefined;

  constructor(address: string, id: string, node: string, clusters: readonly string[], routes: readonly string[]) {
    // Its own connection, as every gateway pod has. Node refuses new streams once a session
    // holds more than maxSessionMemory (MB); the windows already bound what is in flight.
    this.session = http2.connect(`http://${address}`, { settings: { initialWindowSize: WINDOW_BYTES }, maxSessionMemory: Number.MAX_SAFE_INTEGER });
    this.session.on('connect', () => this.session.setLocalWindowSize(WINDOW_BYTES));
    this.session.on('error', (err) => this.fail(err));
    // The lists are shared by every gateway (their encoding is too).
    this.names = new Map([[CLUSTER_TYPE, NO_NAMES], [ENDPOINT_TYPE, clusters], [LISTENER_TYPE, NO_NAMES], [ROUTE_TYPE, routes]]);
    this.stream = this.session.request({ ':method': 'POST', ':path': ADS_PATH, 'content-type': 'application/grpc', te: 'trailers' });
    const reader = new ResponseHeadReader((head) => this.onResponse(head));
    this.stream.on('response', (headers) => {
      const status = headers[':status'];
      const type = String(headers['content-type'] ?? '');
      if (status !== 200 || !type.startsWith('application/grpc')) this.fail(new Error(`ADS answered HTTP ${status} (${type || 'no content-type'}), not a gRPC stream`));
      else this.checkStatus(headers);
    });
    this.stream.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        this.fail(err as Error);
      }
    });
    this.stream.on('trailers', (trailers) => this.checkStatus(trailers));
    this.stream.on('end', () => {
      try {
        reader.end();
      } catch (err) {
        this.fail(err as Error);
      }
      if (!this.closing) this.fail(new Error('the server ended the ADS stream'));
    });
    this.stream.on('error', (err) => this.fail(err));
    const identity = { id, cluster: 'kourier-knative', locality: { region: node === 'node3' ? 'edge' : 'cloud', zone: node === 'node3' ? 'edge-a' : 'cloud-a', sub_zone: node }, user_agent_name: 'chikai-bench' };
    const t = requestType();
    TYPES.forEach((type, i) => {
      const request: DiscoveryRequest = { ...(i === 0 ? { node: identity } : {}), type_url: type, resource_names: [...this.names.get(type)!], version_info: '' };
      this.stream.write(grpcFrame([t.encode(t.fromObject(request)).finish()]));
    });
  }

  /** A grpc-status other than OK (in trailers, or in the headers of a trailers-only answer) fails the gateway. */
  private checkStatus(headers: http2.IncomingHttpHeaders): void {
    const status = headers['grpc-status'];
    if (status === undefined || status === '0') return;
    const message = headers['grpc-message'];
    this.fail(new Error(`ADS stream ended with grpc-status ${String(status)}${message ? `: ${decodeURIComponent(String(message))}` : ''}`));
  }

  private fail(err: Error): void {
    if (this.closing) return;
    this.failed ??= err;
  }

  private onResponse(head: ResponseHead): void {
    this.stream.write(ack(head.type_url, head.version_info, head.nonce, this.names.get(head.type_url) ?? NO_NAMES));
    const now = performance.now();
    this.lastResponseAt = now;
    this.bytes += head.bytes;
    this.acks.set(head.type_url, (this.acks.get(head.type_url) ?? 0) + 1);
    if (head.type_url === ENDPOINT_TYPE) {
      this.lastEdsAckAt = now;
      this.edsResources += head.resources;
    }
  }

  /** Every type answered at least once. */
  get synced(): boolean {
    return TYPES.every((t) => (this.acks.get(t) ?? 0) > 0);
  }

  edsAcks(): number {
    return this.acks.get(ENDPOINT_TYPE) ?? 0;
  }

  /** Cancels the stream (as a gateway going away does) and closes the connection. */
  close(): void {
    this.closing = true;
    this.stream.close(http2.constants.NGHTTP2_CANCEL);
    this.session.close();
  }
}
