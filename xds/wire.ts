// The ADS gRPC service and its messages, (de)serialized with the loaded Envoy protos.
// Shared by the server and by raw ADS clients (tests, tools).
import type { ServiceDefinition } from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
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

/** Serializes plain messages; a message the server already encoded (shared resource bytes) passes through. */
function codec<T extends object>(typeName: string): { serialize: (m: T | EncodedMessage) => Buffer; deserialize: (b: Buffer) => T } {
  const type = envoyProtos().type(typeName);
  return {
    serialize: (m: T | EncodedMessage) => (isEncodedMessage(m) ? m.encoded : Buffer.from(type.encode(type.fromObject(m as Record<string, unknown>)).finish())),
    deserialize: (b: Buffer) => type.toObject(type.decode(b), DECODE) as T,
  };
}

/** AggregatedDiscoveryService for @grpc/grpc-js (server.addService, makeGenericClientConstructor). */
export function adsServiceDefinition(): ServiceDefinition {
  const req = codec<DiscoveryRequest>('envoy.service.discovery.v3.DiscoveryRequest');
  const res = codec<DiscoveryResponse>('envoy.service.discovery.v3.DiscoveryResponse');
  const dreq = codec<DeltaDiscoveryRequest>('envoy.service.discovery.v3.DeltaDiscoveryRequest');
  const dres = codec<DeltaDiscoveryResponse>('envoy.service.discovery.v3.DeltaDiscoveryResponse');
  return {
    StreamAggregatedResources: {
      path: `/${ADS_SERVICE}/StreamAggregatedResources`,
      requestStream: true,
      responseStream: true,
      requestSerialize: req.serialize,
      requestDeserialize: req.deserialize,
      responseSerialize: res.serialize,
      responseDeserialize: res.deserialize,
    },
    DeltaAggregatedResources: {
      path: `/${ADS_SERVICE}/DeltaAggregatedResources`,
      requestStream: true,
      responseStream: true,
      requestSerialize: dreq.serialize,
      requestDeserialize: dreq.deserialize,
      responseSerialize: dres.serialize,
      responseDeserialize: dres.deserialize,
    },
  };
}
