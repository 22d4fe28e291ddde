// Envoy's JSON form of protobuf messages (proto3 JSON with the proto field names, as in
// Envoy YAML and `/config_dump`) to and from the binary form sent on the wire.
//
// The resource builders write this JSON form because it reads like Envoy configuration and
// is exactly what the admin server shows; protobufjs's own object form differs for the
// well-known types (Duration "5s" vs {seconds: 5}, wrappers, Struct, Any), so this module
// converts between the two, guided by the message descriptors.
import protobuf from 'protobufjs';
import { envoyProtos, type MessageType } from './protos.js';

/** A JSON value; protobuf messages in Envoy's JSON form are JsonObjects. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject { [key: string]: JsonValue }

/** A packed resource: what goes into DiscoveryResponse.resources. */
export interface EncodedAny {
  readonly type_url: string;
  readonly value: Uint8Array;
}

export class ProtoJsonError extends Error {
  constructor(readonly typeName: string, readonly path: string, readonly problem: string) {
    super(`${typeName}${path ? ` field ${path}` : ''}: ${problem}`);
    this.name = 'ProtoJsonError';
  }
}

const WRAPPERS = new Set([
  'google.protobuf.DoubleValue', 'google.protobuf.FloatValue', 'google.protobuf.Int64Value',
  'google.protobuf.UInt64Value', 'google.protobuf.Int32Value', 'google.protobuf.UInt32Value',
  'google.protobuf.BoolValue', 'google.protobuf.StringValue', 'google.protobuf.BytesValue',
]);

const fullNames = new WeakMap<protobuf.ReflectionObject, string>();

/** Full name without the leading dot protobufjs keeps (memoized: protobufjs rebuilds it from the parents on every read). */
export function fullName(t: protobuf.ReflectionObject): string {
  let name = fullNames.get(t);
  if (name === undefined) fullNames.set(t, (name = t.fullName.replace(/^\./, '')));
  return name;
}

export function isWrapper(t: MessageType): boolean {
  return WRAPPERS.has(fullName(t));
}

/** "1.5s" → [seconds, nanos]; throws on anything else. */
export function parseDuration(text: string): { seconds: number; nanos: number } {
  const m = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(text);
  if (!m) throw new Error(`expected a duration like "5s" or "0.250s", got ${JSON.stringify(text)}`);
  const sign = m[1] ? -1 : 1;
  const nanos = m[3] ? Number(m[3].padEnd(9, '0')) : 0;
  return { seconds: sign * Number(m[2]), nanos: sign * nanos };
}

export function formatDuration(seconds: number, nanos: number): string {
  if (nanos === 0) return `${seconds}s`;
  const neg = seconds < 0 || nanos < 0;
  const frac = String(Math.abs(nanos)).padStart(9, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${Math.abs(seconds)}.${frac}s`;
}

/** Duration JSON (string or {seconds, nanos}) in nanoseconds, for comparisons. */
export function durationNanos(v: JsonValue | undefined): number {
  if (typeof v === 'string') {
    const d = parseDuration(v);
    return d.seconds * 1e9 + d.nanos;
  }
  if (v && typeof v === 'object' && !Array.isArray(v)) return Number(v.seconds ?? 0) * 1e9 + Number(v.nanos ?? 0);
  throw new Error(`expected a duration, got ${JSON.stringify(v)}`);
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

type PbObject = Record<string, unknown>;

/** Converts Envoy JSON to the object form protobufjs's fromObject expects. */
function toPb(type: MessageType, json: JsonValue, path: string, top: string): unknown {
  const name = fullName(type);
  const fail = (problem: string): never => {
    throw new ProtoJsonError(top, path, problem);
  };
  switch (name) {
    case 'google.protobuf.Duration':
      if (typeof json === 'string') {
        try {
          return parseDuration(json);
        } catch (err) {
          return fail((err as Error).message);
        }
      }
      if (isObject(json)) return json;
      return fail(`expected a duration like "5s", got ${JSON.stringify(json)}`);
    case 'google.protobuf.Timestamp':
      if (typeof json === 'string') {
        const ms = Date.parse(json);
        if (Number.isNaN(ms)) return fail(`expected an RFC 3339 timestamp, got ${JSON.stringify(json)}`);
        return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
      }
      return json;
    case 'google.protobuf.Struct':
      if (!isObject(json)) return fail(`expected a JSON object, got ${JSON.stringify(json)}`);
      return { fields: Object.fromEntries(Object.entries(json).map(([k, v]) => [k, structValue(v)])) };
    case 'google.protobuf.Value':
      return structValue(json);
    case 'google.protobuf.ListValue':
      if (!Array.isArray(json)) return fail(`expected a JSON array, got ${JSON.stringify(json)}`);
      return { values: json.map(structValue) };
    case 'google.protobuf.Any': {
      if (!isObject(json)) return fail(`expected an object with "@type", got ${JSON.stringify(json)}`);
      const url = json['@type'];
      if (typeof url !== 'string') return fail('Any needs "@type" (the type URL of the packed message)');
      let inner: MessageType;
      try {
        inner = envoyProtos().type(url);
      } catch (err) {
        return fail((err as Error).message);
      }
      const { '@type': _drop, ...rest } = json;
      // A packed well-known type keeps its JSON form under "value".
      const body = isWellKnown(inner) ? (rest.value ?? null) : rest;
      const obj = toPb(inner, body, path ? `${path}<${fullName(inner)}>` : `<${fullName(inner)}>`, top);
      return { type_url: url, value: inner.encode(inner.fromObject(obj as PbObject)).finish() };
    }
    default:
      break;
  }
  if (isWrapper(type)) return { value: scalarToPb(type.fields.value, json, path, top) };
  if (!isObject(json)) return fail(`expected a ${name} object, got ${JSON.stringify(json)}`);
  const out: PbObject = {};
  for (const [key, value] of Object.entries(json)) {
    const field = type.fields[key];
    const at = path ? `${path}.${key}` : key;
    if (!field) throw new ProtoJsonError(top, at, `unknown field (not in ${name})`);
    if (value === null) continue;
    field.resolve();
    if (field.map) {
      if (!isObject(value)) throw new ProtoJsonError(top, at, 'expected an object (a map)');
      out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fieldValueToPb(field, v, `${at}[${JSON.stringify(k)}]`, top)]));
    } else if (field.repeated) {
      if (!Array.isArray(value)) throw new ProtoJsonError(top, at, `expected a list, got ${JSON.stringify(value)}`);
      out[key] = value.map((v, i) => fieldValueToPb(field, v, `${at}[${i}]`, top));
    } else {
      out[key] = fieldValueToPb(field, value, at, top);
    }
  }
  return out;
}

function isWellKnown(t: MessageType): boolean {
  const n = fullName(t);
  return isWrapper(t) || ['google.protobuf.Duration', 'google.protobuf.Timestamp', 'google.protobuf.Struct', 'google.protobuf.Value', 'google.protobuf.ListValue'].includes(n);
}

function fieldValueToPb(field: protobuf.Field, value: JsonValue, path: string, top: string): unknown {
  if (field.resolvedType instanceof protobuf.Type) return toPb(field.resolvedType, value, path, top);
  return scalarToPb(field, value, path, top);
}

function scalarToPb(field: protobuf.Field, value: JsonValue, path: string, top: string): unknown {
  if (field.resolvedType instanceof protobuf.Enum) {
    const values = field.resolvedType.values;
    if (typeof value === 'string' && value in values) return value;
    if (typeof value === 'number' && Object.values(values).includes(value)) return value;
    throw new ProtoJsonError(top, path, `expected one of ${Object.keys(values).join(', ')}, got ${JSON.stringify(value)}`);
  }
  switch (field.type) {
    case 'string':
      if (typeof value !== 'string') throw new ProtoJsonError(top, path, `expected a string, got ${JSON.stringify(value)}`);
      return value;
    case 'bool':
      if (typeof value !== 'boolean') throw new ProtoJsonError(top, path, `expected true or false, got ${JSON.stringify(value)}`);
      return value;
    case 'bytes':
      if (typeof value !== 'string') throw new ProtoJsonError(top, path, `expected base64 bytes, got ${JSON.stringify(value)}`);
      return value;
    case 'double':
    case 'float':
      if (typeof value === 'number' || (typeof value === 'string' && ['NaN', 'Infinity', '-Infinity'].includes(value))) return Number(value);
      throw new ProtoJsonError(top, path, `expected a number, got ${JSON.stringify(value)}`);
    default: {
      const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isInteger(n)) throw new ProtoJsonError(top, path, `expected an integer (${field.type}), got ${JSON.stringify(value)}`);
      if (field.type.startsWith('u') || field.type.startsWith('fixed')) {
        if (n < 0) throw new ProtoJsonError(top, path, `expected a non-negative integer (${field.type}), got ${n}`);
      }
      if (field.type.endsWith('32') && Math.abs(n) > 0xffffffff) throw new ProtoJsonError(top, path, `expected a 32-bit integer (${field.type}), got ${n}`);
      return typeof value === 'string' ? value : n;
    }
  }
}

/**
 * google.protobuf.Value's field names as the loaded descriptor spells them: protobufjs
 * bundles struct.proto with camelCase names (stringValue), protoc keeps snake_case.
 */
function valueFieldNames(): Record<'null' | 'number' | 'string' | 'bool' | 'struct' | 'list', string> {
  const fields = envoyProtos().type('google.protobuf.Value').fields;
  const pick = (snake: string, camel: string) => (snake in fields ? snake : camel);
  return {
    null: pick('null_value', 'nullValue'),
    number: pick('number_value', 'numberValue'),
    string: pick('string_value', 'stringValue'),
    bool: pick('bool_value', 'boolValue'),
    struct: pick('struct_value', 'structValue'),
    list: pick('list_value', 'listValue'),
  };
}

function structValue(v: JsonValue): PbObject {
  const f = valueFieldNames();
  if (v === null) return { [f.null]: 'NULL_VALUE' };
  if (typeof v === 'number') return { [f.number]: v };
  if (typeof v === 'string') return { [f.string]: v };
  if (typeof v === 'boolean') return { [f.bool]: v };
  if (Array.isArray(v)) return { [f.list]: { values: v.map(structValue) } };
  return { [f.struct]: { fields: Object.fromEntries(Object.entries(v).map(([k, x]) => [k, structValue(x)])) } };
}

/** Encodes a message given in Envoy JSON to protobuf binary. Throws ProtoJsonError naming the field. */
export function encodeJson(typeUrlOrName: string, json: JsonObject): Uint8Array {
  const type = envoyProtos().type(typeUrlOrName);
  const obj = toPb(type, json, '', fullName(type)) as PbObject;
  return type.encode(type.fromObject(obj)).finish();
}

/** Packs a message given in Envoy JSON into an Any. */
export function packAny(typeUrl: string, json: JsonObject): EncodedAny {
  return { type_url: typeUrl, value: encodeJson(typeUrl, json) };
}

const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: String, bytes: String, defaults: false, json: false };

/** Decodes protobuf binary into Envoy JSON (the inverse of encodeJson). */
export function decodeToJson(typeUrlOrName: string, bytes: Uint8Array): JsonObject {
  const type = envoyProtos().type(typeUrlOrName);
  return fromPb(type, type.toObject(type.decode(bytes), TO_OBJECT)) as JsonObject;
}

/** Unpacks an Any (as decoded from the wire) into Envoy JSON with "@type". */
export function unpackAny(any: { type_url: string; value: Uint8Array }): JsonObject {
  const inner = envoyProtos().type(any.type_url);
  const body = decodeToJson(any.type_url, any.value);
  return isWellKnown(inner) ? { '@type': any.type_url, value: wellKnownBody(inner, body) } : { '@type': any.type_url, ...body };
}

function wellKnownBody(t: MessageType, body: JsonObject): JsonValue {
  return fromPb(t, body) ?? null;
}

function fromPb(type: MessageType, obj: unknown): JsonValue | undefined {
  const name = fullName(type);
  const o = (obj ?? {}) as PbObject;
  switch (name) {
    case 'google.protobuf.Duration':
      return formatDuration(Number(o.seconds ?? 0), Number(o.nanos ?? 0));
    case 'google.protobuf.Timestamp':
      return new Date(Number(o.seconds ?? 0) * 1000 + Math.round(Number(o.nanos ?? 0) / 1e6)).toISOString();
    case 'google.protobuf.Struct':
      return Object.fromEntries(Object.entries((o.fields ?? {}) as Record<string, PbObject>).map(([k, v]) => [k, structJson(v)]));
    case 'google.protobuf.Value':
      return structJson(o);
    case 'google.protobuf.ListValue':
      return ((o.values ?? []) as PbObject[]).map(structJson);
    case 'google.protobuf.Any': {
      const url = String(o.type_url ?? '');
      const raw = typeof o.value === 'string' ? Buffer.from(o.value, 'base64') : (o.value as Uint8Array);
      return unpackAny({ type_url: url, value: raw ?? new Uint8Array() });
    }
    default:
      break;
  }
  if (isWrapper(type)) return (o.value ?? scalarDefault(type.fields.value)) as JsonValue;
  const out: JsonObject = {};
  for (const field of type.fieldsArray) {
    const v = o[field.name];
    if (v === undefined || v === null) continue;
    field.resolve();
    const conv = (x: unknown): JsonValue => (field.resolvedType instanceof protobuf.Type ? fromPb(field.resolvedType, x) ?? null : (x as JsonValue));
    if (field.map) out[field.name] = Object.fromEntries(Object.entries(v as PbObject).map(([k, x]) => [k, conv(x)]));
    else if (field.repeated) out[field.name] = (v as unknown[]).map(conv);
    else out[field.name] = conv(v);
  }
  return out;
}

function scalarDefault(field: protobuf.Field): JsonValue {
  if (field.type === 'bool') return false;
  if (field.type === 'string' || field.type === 'bytes') return '';
  if (field.type.endsWith('64')) return '0';
  return 0;
}

function structJson(v: PbObject): JsonValue {
  const f = valueFieldNames();
  if (f.string in v) return v[f.string] as string;
  if (f.number in v) return v[f.number] as number;
  if (f.bool in v) return v[f.bool] as boolean;
  if (f.struct in v) return Object.fromEntries(Object.entries(((v[f.struct] as PbObject).fields ?? {}) as Record<string, PbObject>).map(([k, x]) => [k, structJson(x)]));
  if (f.list in v) return (((v[f.list] as PbObject).values ?? []) as PbObject[]).map(structJson);
  return null;
}
