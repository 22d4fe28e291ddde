// The ADS gRPC service and its messages, (de)serialized with the loaded Envoy protos.
// Shared by the server and by raw ADS clients (tests, tools).
import { createHash } from 'node:crypto';
import type { MethodDefinition, Server, ServiceDefinition } from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { messageCodec } from '../cluster/message-codec.js';
import { isEncodedMessage, type EncodedMessage } from './encoded-response.js';
import { envoyProtos } from './protos.js';
import type { EncodedAny } from './protojson.js';

export interface NodeIdentity {
  id?: string;
  cluster?: string;
  locality?: { region?: string; zone?: string; sub_zone?: string };
  user_agent_name?: string;
  user_agent_version?: string;
}

export interface ErrorDetail {
  code?: number;
  message?: string;
}

export interface DiscoveryRequest {
  version_info?: string;
  node?: NodeIdentity;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: ErrorDetail;
}

export interface DiscoveryResponse {
  version_info: string;
  resources: EncodedAny[];
  type_url: string;
  nonce: string;
  control_plane?: { identifier: string };
}

export interface DeltaDiscoveryRequest {
  node?: NodeIdentity;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: ErrorDetail;
}

export interface DeltaResource {
  name: string;
  version: string;
  resource?: EncodedAny;
}

export interface DeltaDiscoveryResponse {
  system_version_info: string;
  resources: DeltaResource[];
  type_url: string;
  removed_resources: string[];
  nonce: string;
  control_plane?: { identifier: string };
}

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';

const DECODE: protobuf.IConversionOptions = { longs: String, enums: String, defaults: false, arrays: true, objects: true };

export interface Codec<T> {
  serialize(m: T | EncodedMessage): Buffer;
  deserialize(b: Buffer): T;
}

/**
 * (De)serializes one Envoy message type with protobufjs; a message the server already
 * encoded (shared resource bytes) passes through.
 */
export function protoCodec<T extends object>(typeName: string, decode: protobuf.IConversionOptions = DECODE): Codec<T> {
  const codec = messageCodec<T>(envoyProtos().type(typeName), decode);
  return {
    serialize: (m: T | EncodedMessage) => (isEncodedMessage(m) ? m.encoded : codec.serialize(m)),
    deserialize: codec.deserialize,
  };
}

/** A bidirectional streaming method of `service` for @grpc/grpc-js. */
export function bidiMethod<Req, Res>(
  service: string,
  method: string,
  req: { serialize: (m: Req) => Buffer; deserialize: (b: Buffer) => Req },
  res: { serialize: (m: Res) => Buffer; deserialize: (b: Buffer) => Res },
): MethodDefinition<Req, Res> {
  return {
    path: `/${service}/${method}`,
    requestStream: true,
    responseStream: true,
    requestSerialize: req.serialize,
    requestDeserialize: req.deserialize,
    responseSerialize: res.serialize,
    responseDeserialize: res.deserialize,
  };
}

/**
 * A state-of-the-world request as the server reads it. A gateway repeats its whole
 * subscription in every ACK (a thousand EDS names at a thousand revisions), so the names are
 * not decoded up front: `namesDigest` identifies the list as sent, and `resourceNames()`
 * decodes it only when the digest differs from the stream's last one.
 */
export interface IncomingDiscoveryRequest {
  readonly version_info?: string;
  readonly node?: NodeIdentity;
  readonly type_url?: string;
  readonly response_nonce?: string;
  readonly error_detail?: ErrorDetail;
  /** How many resource_names, and whether one of them is '*'. */
  readonly namesCount: number;
  readonly namesHasWildcard: boolean;
  /** Equal digests mean equal resource_names lists (same names, same order). */
  readonly namesDigest: string;
  resourceNames(): string[];
}

const EMPTY_NAMES_DIGEST = 'none';

function sotwRequestReader(): (b: Buffer) => IncomingDiscoveryRequest {
  const protos = envoyProtos();
  const f = protos.type('envoy.service.discovery.v3.DiscoveryRequest').fields;
  const ids = { version: f.version_info!.id, node: f.node!.id, names: f.resource_names!.id, type: f.type_url!.id, nonce: f.response_nonce!.id, error: f.error_detail!.id };
  const nodeType = protos.type('envoy.config.core.v3.Node');
  const statusType = protos.type('google.rpc.Status');
  const STAR = 0x2a;
  const namesOf = (b: Buffer): string[] => {
    const r = protobuf.Reader.create(b);
    const out: string[] = [];
    while (r.pos < r.len) {
      const tag = r.uint32();
      if (tag >>> 3 === ids.names) out.push(r.string());
      else r.skipType(tag & 7);
    }
    return out;
  };
  return (b: Buffer) => {
    const r = protobuf.Reader.create(b);
    const req: { -readonly [K in keyof IncomingDiscoveryRequest]?: IncomingDiscoveryRequest[K] } = {};
    let count = 0;
    let star = false;
    let start = -1;
    let end = -1;
    let contiguous = true;
    while (r.pos < r.len) {
      const at = r.pos;
      const tag = r.uint32();
      const field = tag >>> 3;
      if (field === ids.names) {
        if (start < 0) start = at;
        else if (end !== at) contiguous = false;
        const len = r.uint32();
        if (len === 1 && b[r.pos] === STAR) star = true;
        r.skip(len);
        end = r.pos;
        count += 1;
        continue;
      }
      if (field === ids.version) req.version_info = r.string();
      else if (field === ids.type) req.type_url = r.string();
      else if (field === ids.nonce) req.response_nonce = r.string();
      else if (field === ids.node) req.node = nodeType.toObject(nodeType.decode(r, r.uint32()), DECODE) as NodeIdentity;
      else if (field === ids.error) req.error_detail = statusType.toObject(statusType.decode(r, r.uint32()), DECODE) as ErrorDetail;
      else r.skipType(tag & 7);
    }
    let names: string[] | undefined;
    const resourceNames = () => (names ??= count === 0 ? [] : namesOf(b));
    // The names as sent, when they lie together (they always do from Envoy and grpc-js); else the decoded list.
    const digest = count === 0
      ? EMPTY_NAMES_DIGEST
      : contiguous
        ? createHash('sha1').update(b.subarray(start, end)).digest('base64')
        : `list:${createHash('sha1').update(resourceNames().join('\n')).digest('base64')}`;
    return { ...req, namesCount: count, namesHasWildcard: star, namesDigest: digest, resourceNames };
  };
}

/** AggregatedDiscoveryService for @grpc/grpc-js (server.addService, makeGenericClientConstructor). */
export function adsServiceDefinition(): ServiceDefinition {
  const req = protoCodec<DiscoveryRequest>('envoy.service.discovery.v3.DiscoveryRequest');
  const res = protoCodec<DiscoveryResponse>('envoy.service.discovery.v3.DiscoveryResponse');
  const dreq = protoCodec<DeltaDiscoveryRequest>('envoy.service.discovery.v3.DeltaDiscoveryRequest');
  const dres = protoCodec<DeltaDiscoveryResponse>('envoy.service.discovery.v3.DeltaDiscoveryResponse');
  return {
    // The server reads SotW requests its own way (their repeated names are digested, not decoded).
    StreamAggregatedResources: { ...bidiMethod(ADS_SERVICE, 'StreamAggregatedResources', req, res), requestDeserialize: sotwRequestReader() },
    DeltaAggregatedResources: bidiMethod(ADS_SERVICE, 'DeltaAggregatedResources', dreq, dres),
  };
}

/**
 * Stops a gRPC server: new calls refused at once, open ones ended by `endOpenCalls` (ADS
 * and LRS streams never end on their own), and whatever is left after `graceMs` cut.
 */
export function shutdownGrpc(server: Server, endOpenCalls: () => void = () => undefined, graceMs = 1000): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
    endOpenCalls();
  });
}
