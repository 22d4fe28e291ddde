// protoc-gen-validate (PGV) checks, the ones Envoy runs on every resource it receives.
// The rules are not copied here: they are the `(validate.rules)`, `(validate.required)` and
// `(validate.disabled)` options of the loaded Envoy descriptors, read per field. A resource
// that fails is not sent; each failure names the resource, the field path and the rule.
import { isIP } from 'node:net';
import protobuf from 'protobufjs';
import { envoyProtos, type MessageType } from './protos.js';
import { durationNanos, fullName, isWrapper, type JsonObject, type JsonValue } from './protojson.js';

export interface Violation {
  /** Dotted field path inside the resource, e.g. `endpoints[0].priority`. */
  readonly field: string;
  /** The PGV rule, e.g. `string.min_len`, or `unknown_field` / `type` for shape errors. */
  readonly rule: string;
  readonly message: string;
}

export class ResourceValidationError extends Error {
  constructor(
    readonly typeUrl: string,
    readonly resourceName: string,
    readonly violations: readonly Violation[],
  ) {
    const type = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
    const list = violations.map((v) => `${v.field || '(message)'}: ${v.message} [${v.rule}]`).join('; ');
    super(`${type} ${JSON.stringify(resourceName)} refused by its validation rules: ${list}`);
    this.name = 'ResourceValidationError';
  }
}

/** PGV rules as parsed by protobufjs from `[(validate.rules) = {...}]`. */
type Rules = Record<string, unknown>;

const rulesCache = new WeakMap<protobuf.Field, Rules | null>();

function deepMerge(a: Rules, b: Rules): Rules {
  const out: Rules = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = prev && typeof prev === 'object' && !Array.isArray(prev) && v && typeof v === 'object' && !Array.isArray(v)
      ? deepMerge(prev as Rules, v as Rules)
      : v;
  }
  return out;
}

/** The field's `(validate.rules)`, merged when written as several options. */
function fieldRules(field: protobuf.Field): Rules | null {
  const cached = rulesCache.get(field);
  if (cached !== undefined) return cached;
  let rules: Rules | null = null;
  for (const opt of (field.parsedOptions ?? []) as unknown as Rules[]) {
    const r = (opt as Rules)['(validate.rules)'];
    if (r && typeof r === 'object') rules = deepMerge(rules ?? {}, r as Rules);
  }
  rulesCache.set(field, rules);
  return rules;
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const HEADER_NAME_STRICT = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
const HEADER_VALUE_STRICT = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
const HEADER_LOOSE = /^[^\u0000\u000A\u000D]*$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

function isHostname(s: string): boolean {
  const h = s.endsWith('.') ? s.slice(0, -1) : s;
  if (h.length === 0 || h.length > 253) return false;
  return h.split('.').every((l) => /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/.test(l));
}

class Walker {
  readonly violations: Violation[] = [];

  private add(field: string, rule: string, message: string): void {
    this.violations.push({ field, rule, message });
  }

  message(type: MessageType, json: JsonValue, path: string): void {
    if (!isObject(json)) {
      this.add(path, 'type', `expected a ${fullName(type)} object, got ${JSON.stringify(json)}`);
      return;
    }
    if ((type.options as Rules | undefined)?.['(validate.disabled)'] === true) return;
    for (const key of Object.keys(json)) {
      if (!type.fields[key]) this.add(join(path, key), 'unknown_field', `no field ${JSON.stringify(key)} in ${fullName(type)}`);
    }
    for (const oneof of type.oneofsArray) {
      const set = oneof.fieldsArray.filter((f) => json[f.name] !== undefined && json[f.name] !== null);
      if (set.length > 1) this.add(path, 'oneof', `only one of ${oneof.name} {${oneof.oneof.join(', ')}} may be set, got ${set.map((f) => f.name).join(' and ')}`);
      if (set.length === 0 && (oneof.options as Rules | undefined)?.['(validate.required)'] === true) {
        this.add(join(path, oneof.name), 'oneof.required', `exactly one of ${oneof.oneof.join(', ')} is required`);
      }
    }
    for (const field of type.fieldsArray) {
      field.resolve();
      this.field(field, json[field.name], join(path, field.name));
    }
  }

  private field(field: protobuf.Field, value: JsonValue | undefined, path: string): void {
    const rules = fieldRules(field);
    const present = value !== undefined && value !== null;
    if (field.map) {
      const map = present && isObject(value) ? value : {};
      if (present && !isObject(value)) this.add(path, 'type', 'expected an object (a map)');
      const mr = rules?.map as Rules | undefined;
      const n = Object.keys(map).length;
      if (mr?.min_pairs !== undefined && n < Number(mr.min_pairs)) this.add(path, 'map.min_pairs', `needs at least ${mr.min_pairs} entries, has ${n}`);
      if (mr?.max_pairs !== undefined && n > Number(mr.max_pairs)) this.add(path, 'map.max_pairs', `allows at most ${mr.max_pairs} entries, has ${n}`);
      for (const [k, v] of Object.entries(map)) {
        if (mr?.keys) this.scalarRules(mr.keys as Rules, k, `${path}[${JSON.stringify(k)}]`, 'map.keys.');
        this.single(field, v, mr?.values as Rules | undefined, `${path}[${JSON.stringify(k)}]`, true);
      }
      return;
    }
    if (field.repeated) {
      const list = present && Array.isArray(value) ? value : [];
      if (present && !Array.isArray(value)) this.add(path, 'type', `expected a list, got ${JSON.stringify(value)}`);
      const rr = rules?.repeated as Rules | undefined;
      if (rr?.min_items !== undefined && list.length < Number(rr.min_items)) this.add(path, 'repeated.min_items', `needs at least ${rr.min_items} item(s), has ${list.length}`);
      if (rr?.max_items !== undefined && list.length > Number(rr.max_items)) this.add(path, 'repeated.max_items', `allows at most ${rr.max_items} item(s), has ${list.length}`);
      if (rr?.unique === true && new Set(list.map((x) => JSON.stringify(x))).size !== list.length) this.add(path, 'repeated.unique', 'items must be unique');
      list.forEach((item, i) => this.single(field, item, rr?.items as Rules | undefined, `${path}[${i}]`, true));
      return;
    }
    this.single(field, value, rules ?? undefined, path, present);
  }

  /** One value of a field (a singular field, a list item or a map value). */
  private single(field: protobuf.Field, value: JsonValue | undefined, rules: Rules | undefined, path: string, present: boolean): void {
    const t = field.resolvedType;
    if (t instanceof protobuf.Type) {
      const msgRules = rules?.message as Rules | undefined;
      const name = fullName(t);
      const required = msgRules?.required === true
        || (rules?.duration as Rules | undefined)?.required === true
        || (rules?.timestamp as Rules | undefined)?.required === true
        || (rules?.any as Rules | undefined)?.required === true;
      if (!present) {
        // A required member of a oneof only binds when that member is the one chosen.
        const inOneof = field.partOf !== null && field.partOf !== undefined;
        if (required && !inOneof) this.add(path, 'message.required', 'value is required');
        return;
      }
      if (name === 'google.protobuf.Duration') {
        this.durationRules(rules?.duration as Rules | undefined, value as JsonValue, path);
        return;
      }
      if (name === 'google.protobuf.Timestamp') {
        this.timestampRules(rules?.timestamp as Rules | undefined, value as JsonValue, path);
        return;
      }
      if (name === 'google.protobuf.Any') {
        this.anyValue(rules?.any as Rules | undefined, value as JsonValue, path);
        return;
      }
      if (isWrapper(t)) {
        // Wrapper rules apply to the wrapped scalar; the JSON form is the bare value.
        const inner = isObject(value) && 'value' in value ? value.value : value;
        if (rules) this.scalarRules(rules, inner as JsonValue, path, '');
        return;
      }
      if (name === 'google.protobuf.Struct' || name === 'google.protobuf.Value' || name === 'google.protobuf.ListValue') return;
      if (msgRules?.skip === true) return;
      this.message(t, value as JsonValue, path);
      return;
    }
    // Scalars and enums. Singular proto3 fields outside a oneof always have a value (the
    // default when absent), so their rules apply even when the field is missing, as in PGV.
    const inOneof = field.partOf !== null && field.partOf !== undefined;
    const optional = (field.options as Rules | undefined)?.proto3_optional === true;
    if (!present && (inOneof || optional)) return;
    const v = present ? value : defaultOf(field);
    if (t instanceof protobuf.Enum) {
      this.enumRules(t, rules?.enum as Rules | undefined, v as JsonValue, path);
      return;
    }
    if (rules) this.scalarRules(rules, v as JsonValue, path, '');
  }

  private scalarRules(rules: Rules, v: JsonValue, path: string, prefix: string): void {
    for (const kind of ['string', 'bytes', 'bool', 'double', 'float', 'int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'fixed64', 'sfixed32', 'sfixed64']) {
      const r = rules[kind] as Rules | undefined;
      if (!r) continue;
      const rule = `${prefix}${kind}`;
      if (kind === 'string') this.stringRules(r, v, path, rule);
      else if (kind === 'bytes') this.bytesRules(r, v, path, rule);
      else if (kind === 'bool') {
        if (r.const !== undefined && v !== r.const) this.add(path, `${rule}.const`, `must be ${r.const}, got ${JSON.stringify(v)}`);
      } else this.numberRules(r, v, path, rule, (x) => String(x));
    }
  }

  private stringRules(r: Rules, v: JsonValue, path: string, rule: string): void {
    if (typeof v !== 'string') {
      this.add(path, 'type', `expected a string, got ${JSON.stringify(v)}`);
      return;
    }
    const runes = [...v].length;
    const bytes = Buffer.byteLength(v);
    const shown = JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
    const check = (ok: boolean, name: string, msg: string): void => {
      if (!ok) this.add(path, `${rule}.${name}`, `${msg}, got ${shown}`);
    };
    if (r.const !== undefined) check(v === r.const, 'const', `must equal ${JSON.stringify(r.const)}`);
    if (r.len !== undefined) check(runes === Number(r.len), 'len', `must be exactly ${r.len} characters long`);
    if (r.min_len !== undefined) check(runes >= Number(r.min_len), 'min_len', `must be at least ${r.min_len} character(s) long`);
    if (r.max_len !== undefined) check(runes <= Number(r.max_len), 'max_len', `must be at most ${r.max_len} characters long`);
    if (r.len_bytes !== undefined) check(bytes === Number(r.len_bytes), 'len_bytes', `must be exactly ${r.len_bytes} bytes long`);
    if (r.min_bytes !== undefined) check(bytes >= Number(r.min_bytes), 'min_bytes', `must be at least ${r.min_bytes} byte(s) long`);
    if (r.max_bytes !== undefined) check(bytes <= Number(r.max_bytes), 'max_bytes', `must be at most ${r.max_bytes} bytes long`);
    if (typeof r.pattern === 'string') {
      const re = compilePattern(r.pattern);
      if (re) check(re.test(v), 'pattern', `must match /${r.pattern}/`);
    }
    if (typeof r.prefix === 'string') check(v.startsWith(r.prefix), 'prefix', `must start with ${JSON.stringify(r.prefix)}`);
    if (typeof r.suffix === 'string') check(v.endsWith(r.suffix), 'suffix', `must end with ${JSON.stringify(r.suffix)}`);
    if (typeof r.contains === 'string') check(v.includes(r.contains), 'contains', `must contain ${JSON.stringify(r.contains)}`);
    if (typeof r.not_contains === 'string') check(!v.includes(r.not_contains), 'not_contains', `must not contain ${JSON.stringify(r.not_contains)}`);
    if (Array.isArray(r.in)) check(r.in.includes(v), 'in', `must be one of ${JSON.stringify(r.in)}`);
    if (Array.isArray(r.not_in)) check(!r.not_in.includes(v), 'not_in', `must not be one of ${JSON.stringify(r.not_in)}`);
    if (r.email === true) check(/^[^@\s]+@[^@\s]+$/.test(v) && isHostname(v.split('@')[1]), 'email', 'must be an email address');
    if (r.hostname === true) check(isHostname(v), 'hostname', 'must be a host name (RFC 1034)');
    if (r.ip === true) check(isIP(v) !== 0, 'ip', 'must be an IP address');
    if (r.ipv4 === true) check(isIP(v) === 4, 'ipv4', 'must be an IPv4 address');
    if (r.ipv6 === true) check(isIP(v) === 6, 'ipv6', 'must be an IPv6 address');
    if (r.address === true) check(isIP(v) !== 0 || isHostname(v), 'address', 'must be a host name or an IP address');
    if (r.uuid === true) check(UUID.test(v), 'uuid', 'must be a UUID');
    if (r.uri === true) check(/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(v) && URL.canParse(v), 'uri', 'must be an absolute URI');
    if (r.well_known_regex !== undefined) {
      const strict = r.strict !== false;
      const which = String(r.well_known_regex);
      if (which === 'HTTP_HEADER_NAME' || which === '1') {
        check((strict ? HEADER_NAME_STRICT : HEADER_LOOSE).test(v), 'well_known_regex', `must be a valid HTTP header name${strict ? '' : ' (no NUL, CR or LF)'}`);
      } else if (which === 'HTTP_HEADER_VALUE' || which === '2') {
        check((strict ? HEADER_VALUE_STRICT : HEADER_LOOSE).test(v), 'well_known_regex', `must be a valid HTTP header value${strict ? '' : ' (no NUL, CR or LF)'}`);
      }
    }
  }

  private bytesRules(r: Rules, v: JsonValue, path: string, rule: string): void {
    if (typeof v !== 'string') {
      this.add(path, 'type', `expected base64 bytes, got ${JSON.stringify(v)}`);
      return;
    }
    const n = Buffer.from(v, 'base64').length;
    if (r.len !== undefined && n !== Number(r.len)) this.add(path, `${rule}.len`, `must be exactly ${r.len} bytes, got ${n}`);
    if (r.min_len !== undefined && n < Number(r.min_len)) this.add(path, `${rule}.min_len`, `must be at least ${r.min_len} byte(s), got ${n}`);
    if (r.max_len !== undefined && n > Number(r.max_len)) this.add(path, `${rule}.max_len`, `must be at most ${r.max_len} bytes, got ${n}`);
  }

  /** const / lt / lte / gt / gte / in / not_in, with PGV's "outside the range" reading when gt > lt. */
  private numberRules(r: Rules, raw: JsonValue, path: string, rule: string, show: (x: number) => string): void {
    const v = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
    if (typeof v !== 'number' || Number.isNaN(v)) {
      this.add(path, 'type', `expected a number, got ${JSON.stringify(raw)}`);
      return;
    }
    this.rangeRules(r, v, path, rule, (x) => Number(x), show);
  }

  private rangeRules(r: Rules, v: number, path: string, rule: string, num: (x: unknown) => number, show: (x: number) => string): void {
    const got = `got ${show(v)}`;
    if (r.const !== undefined && v !== num(r.const)) this.add(path, `${rule}.const`, `must equal ${show(num(r.const))}, ${got}`);
    const lo = r.gt !== undefined ? { n: num(r.gt), strict: true } : r.gte !== undefined ? { n: num(r.gte), strict: false } : undefined;
    const hi = r.lt !== undefined ? { n: num(r.lt), strict: true } : r.lte !== undefined ? { n: num(r.lte), strict: false } : undefined;
    const aboveLo = (x: number) => (lo ? (lo.strict ? x > lo.n : x >= lo.n) : true);
    const belowHi = (x: number) => (hi ? (hi.strict ? x < hi.n : x <= hi.n) : true);
    const loText = lo ? `${lo.strict ? 'greater than' : 'at least'} ${show(lo.n)}` : '';
    const hiText = hi ? `${hi.strict ? 'less than' : 'at most'} ${show(hi.n)}` : '';
    const loRule = lo ? (lo.strict ? 'gt' : 'gte') : '';
    const hiRule = hi ? (hi.strict ? 'lt' : 'lte') : '';
    if (lo && hi && lo.n >= hi.n) {
      // gt > lt means the value must lie outside [lt, gt].
      if (!(aboveLo(v) || belowHi(v))) this.add(path, `${rule}.${loRule}`, `must be ${hiText} or ${loText}, ${got}`);
    } else if (lo && hi) {
      if (!(aboveLo(v) && belowHi(v))) this.add(path, `${rule}.${aboveLo(v) ? hiRule : loRule}`, `must be ${loText} and ${hiText}, ${got}`);
    } else if (lo && !aboveLo(v)) {
      this.add(path, `${rule}.${loRule}`, `must be ${loText}, ${got}`);
    } else if (hi && !belowHi(v)) {
      this.add(path, `${rule}.${hiRule}`, `must be ${hiText}, ${got}`);
    }
    if (Array.isArray(r.in) && !r.in.map(num).includes(v)) this.add(path, `${rule}.in`, `must be one of ${r.in.map((x) => show(num(x))).join(', ')}, ${got}`);
    if (Array.isArray(r.not_in) && r.not_in.map(num).includes(v)) this.add(path, `${rule}.not_in`, `must not be one of ${r.not_in.map((x) => show(num(x))).join(', ')}, ${got}`);
  }

  private enumRules(t: protobuf.Enum, r: Rules | undefined, v: JsonValue, path: string): void {
    const n = typeof v === 'string' ? t.values[v] : typeof v === 'number' ? v : undefined;
    if (typeof v === 'string' && n === undefined) {
      this.add(path, 'enum.defined_only', `${JSON.stringify(v)} is not a value of ${fullName(t)} (one of ${Object.keys(t.values).join(', ')})`);
      return;
    }
    if (n === undefined) {
      this.add(path, 'type', `expected a ${fullName(t)} name, got ${JSON.stringify(v)}`);
      return;
    }
    if (!r) return;
    if (r.defined_only === true && !Object.values(t.values).includes(n)) this.add(path, 'enum.defined_only', `${n} is not a value of ${fullName(t)}`);
    const name = (x: number) => t.valuesById[x] ?? String(x);
    this.rangeRules({ const: r.const, in: r.in, not_in: r.not_in }, n, path, 'enum', (x) => Number(x), name);
  }

  private durationRules(r: Rules | undefined, v: JsonValue, path: string): void {
    let nanos: number;
    try {
      nanos = durationNanos(v);
    } catch (err) {
      this.add(path, 'type', (err as Error).message);
      return;
    }
    if (!r) return;
    const num = (x: unknown) => Number((x as Rules | undefined)?.seconds ?? 0) * 1e9 + Number((x as Rules | undefined)?.nanos ?? 0);
    const show = (x: number) => `${x / 1e9}s`;
    this.rangeRules(r, nanos, path, 'duration', num, show);
  }

  private timestampRules(r: Rules | undefined, v: JsonValue, path: string): void {
    const ms = typeof v === 'string' ? Date.parse(v) : Number((v as JsonObject | null)?.seconds ?? 0) * 1000;
    if (Number.isNaN(ms)) {
      this.add(path, 'type', `expected an RFC 3339 timestamp, got ${JSON.stringify(v)}`);
      return;
    }
    if (!r) return;
    const num = (x: unknown) => Number((x as Rules | undefined)?.seconds ?? 0) * 1000 + Number((x as Rules | undefined)?.nanos ?? 0) / 1e6;
    this.rangeRules({ const: r.const, lt: r.lt, lte: r.lte, gt: r.gt, gte: r.gte }, ms, path, 'timestamp', num, (x) => new Date(x).toISOString());
    if (r.lt_now === true && !(ms < Date.now())) this.add(path, 'timestamp.lt_now', 'must be in the past');
    if (r.gt_now === true && !(ms > Date.now())) this.add(path, 'timestamp.gt_now', 'must be in the future');
  }

  private anyValue(r: Rules | undefined, v: JsonValue, path: string): void {
    if (!isObject(v) || typeof v['@type'] !== 'string') {
      this.add(path, 'type', 'expected an Any with "@type"');
      return;
    }
    const url = v['@type'];
    if (Array.isArray(r?.in) && !r.in.includes(url)) this.add(path, 'any.in', `type must be one of ${JSON.stringify(r.in)}, got ${JSON.stringify(url)}`);
    if (Array.isArray(r?.not_in) && r.not_in.includes(url)) this.add(path, 'any.not_in', `type must not be one of ${JSON.stringify(r.not_in)}, got ${JSON.stringify(url)}`);
    let inner: MessageType;
    try {
      inner = envoyProtos().type(url);
    } catch (err) {
      this.add(path, 'any.type', (err as Error).message);
      return;
    }
    // Envoy validates a typed_config when it builds the extension, so the packed message
    // is checked too.
    const { '@type': _drop, ...body } = v;
    this.message(inner, body, `${path}<${fullName(inner)}>`);
  }
}

function join(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function defaultOf(field: protobuf.Field): JsonValue {
  if (field.resolvedType instanceof protobuf.Enum) return 0;
  if (field.type === 'string' || field.type === 'bytes') return '';
  if (field.type === 'bool') return false;
  return 0;
}

const patternCache = new Map<string, RegExp | null>();

/** PGV patterns are RE2; the ones Envoy uses are valid JavaScript regexps too. */
function compilePattern(pattern: string): RegExp | null {
  let re = patternCache.get(pattern);
  if (re === undefined) {
    try {
      re = new RegExp(pattern, 'u');
    } catch {
      re = null;
    }
    patternCache.set(pattern, re);
  }
  return re;
}

/** Every PGV violation in a message given in Envoy JSON (empty when it passes). */
export function validateMessage(typeUrlOrName: string, json: JsonObject): Violation[] {
  const walker = new Walker();
  walker.message(envoyProtos().type(typeUrlOrName), json, '');
  return walker.violations;
}

/** Throws a ResourceValidationError naming the resource and fields when a resource breaks a PGV rule. */
export function assertValidResource(typeUrl: string, name: string, json: JsonObject): void {
  const violations = validateMessage(typeUrl, json);
  if (violations.length > 0) throw new ResourceValidationError(typeUrl, name, violations);
}
