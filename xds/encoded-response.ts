// Discovery responses in wire form, assembled from resources encoded once. A resource's
// bytes inside a response (the `resources` field holding its Any, or a delta Resource) are
// the same for every stream that gets it, so they are made once per entry and shared; the
// complete set of a type (what every wildcard CDS/LDS subscriber of a view gets) is made
// once per snapshot. Per stream only the small header (version, nonce) is encoded.
import protobuf from 'protobufjs';
import type { ResourceEntry, TypeSnapshot } from './cache.js';
import { envoyProtos, type MessageType } from './protos.js';

/** A message already serialized; the ADS service definition passes it through as it is. */
export interface EncodedMessage {
  readonly encoded: Buffer;
}

export function isEncodedMessage(m: object): m is EncodedMessage {
  return Buffer.isBuffer((m as Partial<EncodedMessage>).encoded);
}

interface Types {
  readonly sotw: MessageType;
  readonly delta: MessageType;
  readonly any: MessageType;
  readonly resource: MessageType;
}

let types: Types | undefined;

function messageTypes(): Types {
  types ??= {
    sotw: envoyProtos().type('envoy.service.discovery.v3.DiscoveryResponse'),
    delta: envoyProtos().type('envoy.service.discovery.v3.DeltaDiscoveryResponse'),
    any: envoyProtos().type('google.protobuf.Any'),
    resource: envoyProtos().type('envoy.service.discovery.v3.Resource'),
  };
  return types;
}

/** One occurrence of a length-delimited field: its tag, the length, the bytes. */
function lengthDelimited(fieldId: number, bytes: Uint8Array): Uint8Array {
  return protobuf.Writer.create().uint32((fieldId << 3) | 2).bytes(bytes).finish();
}

const sotwChunks = new WeakMap<ResourceEntry, Uint8Array>();
const deltaChunks = new WeakMap<ResourceEntry, Uint8Array>();

function sotwChunk(e: ResourceEntry): Uint8Array {
  let c = sotwChunks.get(e);
  if (!c) {
    const t = messageTypes();
    const any = t.any.encode(t.any.fromObject({ type_url: e.any.type_url, value: e.any.value })).finish();
    sotwChunks.set(e, (c = lengthDelimited(t.sotw.fields.resources!.id, any)));
  }
  return c;
}

function deltaChunk(e: ResourceEntry): Uint8Array {
  let c = deltaChunks.get(e);
  if (!c) {
    const t = messageTypes();
    const r = t.resource.encode(t.resource.fromObject({ name: e.name, version: e.version, resource: { type_url: e.any.type_url, value: e.any.value } })).finish();
    deltaChunks.set(e, (c = lengthDelimited(t.delta.fields.resources!.id, r)));
  }
  return c;
}

/** Every wildcard resource of a type snapshot, in its order: what a wildcard subscriber gets. */
export function wildcardEntries(ts: TypeSnapshot): ResourceEntry[] {
  return [...ts.resources.values()].filter((e) => e.inWildcard);
}

/** The nonce every stream uses for its first response from a snapshot: with it, streams share the whole message. */
export function sharedNonce(ts: TypeSnapshot): string {
  return `n${ts.id}`;
}

const completeMessages = new WeakMap<TypeSnapshot, EncodedMessage>();

export interface SotwHeader {
  readonly version_info: string;
  readonly type_url: string;
  readonly nonce: string;
  readonly control_plane?: { readonly identifier: string };
}

/**
 * A DiscoveryResponse carrying `resources`, or, with `complete`, every wildcard resource of
 * that snapshot. The complete response with the snapshot's version and shared nonce is
 * encoded once and handed to every stream that gets it.
 */
export function encodeSotwResponse(header: SotwHeader, resources: readonly ResourceEntry[] | { readonly complete: TypeSnapshot }): EncodedMessage {
  const ts = 'complete' in resources ? resources.complete : undefined;
  const shareable = ts !== undefined && header.nonce === sharedNonce(ts) && header.version_info === ts.version;
  if (shareable) {
    const cached = completeMessages.get(ts);
    if (cached) return cached;
  }
  const t = messageTypes().sotw;
  const head = t.encode(t.fromObject({ ...header })).finish();
  const body = (ts ? wildcardEntries(ts) : (resources as readonly ResourceEntry[])).map(sotwChunk);
  const message = { encoded: Buffer.concat([head, ...body]) };
  if (shareable) completeMessages.set(ts, message);
  return message;
}

export interface DeltaHeader {
  readonly system_version_info: string;
  readonly type_url: string;
  readonly removed_resources: readonly string[];
  readonly nonce: string;
  readonly control_plane?: { readonly identifier: string };
}

export function encodeDeltaResponse(header: DeltaHeader, resources: readonly ResourceEntry[]): EncodedMessage {
  const t = messageTypes().delta;
  const head = t.encode(t.fromObject({ ...header, removed_resources: [...header.removed_resources] })).finish();
  return { encoded: Buffer.concat([head, ...resources.map(deltaChunk)]) };
}
