// The KIngress hash Knative's ingress status prober waits for (knative.dev/networking
// `pkg/ingress` ComputeHash): hex SHA-256 of Go's `encoding/json` encoding of the spec
// after Knative's defaults, followed by the namespace and the name. A gateway proves it
// serves the current spec by answering a probe with this hash, so chikai must produce the
// same bytes Go does:
// - the spec as Go's typed structs hold it (v1alpha1 ingress_types.go): unknown fields are
//   dropped, keys match case-sensitively (client-go decodes with sigs.k8s.io/json), null
//   and missing fields take Go's zero values;
// - Knative's SetDefaults: an empty rule visibility becomes ExternalIP, a path's single
//   split at 0 % becomes 100 %;
// - Go's encoder: struct field order, `omitempty`, map keys sorted by their UTF-8 bytes,
//   `<` `>` `&` U+2028 U+2029 and control characters escaped, IntOrString as a number or a
//   string, invalid UTF-16 (lone surrogates) as U+FFFD.
// Checked against vectors computed by Knative's own code (test/golden/ingress-hash/).
import { createHash } from 'node:crypto';

/** A spec value Go's decoder would refuse; net-kourier never sees such a KIngress (client-go cannot decode it). */
export class IngressSpecError extends Error {
  override readonly name = 'IngressSpecError';
}

// ---- the typed spec, as Go holds it after decoding ----------------------------------

interface HeaderMatch { exact: string }
interface BackendSplit {
  serviceNamespace: string;
  serviceName: string;
  /** intstr.IntOrString: a number (Type Int) or a string (Type String). */
  servicePort: number | string;
  percent: number;
  appendHeaders: Map<string, string> | null;
}
interface HttpPath {
  path: string;
  rewriteHost: string;
  headers: Map<string, HeaderMatch> | null;
  splits: BackendSplit[] | null;
  appendHeaders: Map<string, string> | null;
}
interface HttpRuleValue { paths: HttpPath[] | null }
interface Rule { hosts: string[] | null; visibility: string; http: HttpRuleValue | null }
interface Tls { hosts: string[] | null; secretName: string; secretNamespace: string }
interface Spec { tls: Tls[] | null; rules: Rule[] | null; httpOption: string }

// ---- decoding (what Go's json.Unmarshal into those structs keeps) ----------------------

type Fields = Readonly<Record<string, unknown>>;

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const text = JSON.stringify(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** A struct: an object, or null/missing (the zero struct). */
function struct(v: unknown, at: string): Fields {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new IngressSpecError(`${at}: expected an object, got ${describe(v)}`);
  return v as Fields;
}

function string(v: unknown, at: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new IngressSpecError(`${at}: expected a string, got ${describe(v)}`);
  return wellFormed(v);
}

function int(v: unknown, at: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined || v === null) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new IngressSpecError(`${at}: expected an integer, got ${describe(v)}`);
  return v === 0 ? 0 : v; // -0 decodes to 0
}

/** IntOrString's UnmarshalJSON: a JSON string is a name, anything else an int32 (null: 0). */
function intOrString(v: unknown, at: string): number | string {
  return typeof v === 'string' ? wellFormed(v) : int(v, at, -(2 ** 31), 2 ** 31 - 1);
}

function slice<T>(v: unknown, at: string, item: (v: unknown, at: string) => T): T[] | null {
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v)) throw new IngressSpecError(`${at}: expected a list, got ${describe(v)}`);
  return v.map((x, i) => item(x, `${at}[${i}]`));
}

function map<T>(v: unknown, at: string, value: (v: unknown, at: string) => T): Map<string, T> | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw new IngressSpecError(`${at}: expected an object, got ${describe(v)}`);
  const out = new Map<string, T>();
  for (const [k, x] of Object.entries(v as Fields)) out.set(wellFormed(k), value(x, `${at}[${JSON.stringify(k)}]`));
  return out;
}

function decodeSplit(v: unknown, at: string): BackendSplit {
  const o = struct(v, at);
  return {
    serviceNamespace: string(o['serviceNamespace'], `${at}.serviceNamespace`),
    serviceName: string(o['serviceName'], `${at}.serviceName`),
    servicePort: intOrString(o['servicePort'], `${at}.servicePort`),
    percent: int(o['percent'], `${at}.percent`),
    appendHeaders: map(o['appendHeaders'], `${at}.appendHeaders`, string),
  };
}

function decodePath(v: unknown, at: string): HttpPath {
  const o = struct(v, at);
  return {
    path: string(o['path'], `${at}.path`),
    rewriteHost: string(o['rewriteHost'], `${at}.rewriteHost`),
    headers: map(o['headers'], `${at}.headers`, (h, hat) => ({ exact: string(struct(h, hat)['exact'], `${hat}.exact`) })),
    splits: slice(o['splits'], `${at}.splits`, decodeSplit),
    appendHeaders: map(o['appendHeaders'], `${at}.appendHeaders`, string),
  };
}

function decodeRule(v: unknown, at: string): Rule {
  const o = struct(v, at);
  const http = o['http'];
  return {
    hosts: slice(o['hosts'], `${at}.hosts`, string),
    visibility: string(o['visibility'], `${at}.visibility`),
    http: http === undefined || http === null ? null : { paths: slice(struct(http, `${at}.http`)['paths'], `${at}.http.paths`, decodePath) },
  };
}

function decodeSpec(v: unknown): Spec {
  const o = struct(v, 'spec');
  return {
    tls: slice(o['tls'], 'spec.tls', (t, at) => {
      const x = struct(t, at);
      return { hosts: slice(x['hosts'], `${at}.hosts`, string), secretName: string(x['secretName'], `${at}.secretName`), secretNamespace: string(x['secretNamespace'], `${at}.secretNamespace`) };
    }),
    rules: slice(o['rules'], 'spec.rules', decodeRule),
    httpOption: string(o['httpOption'], 'spec.httpOption'),
  };
}

/** Knative's IngressSpec.SetDefaults (v1alpha1 ingress_defaults.go). */
function setDefaults(spec: Spec): void {
  for (const rule of spec.rules ?? []) {
    if (rule.visibility === '') rule.visibility = 'ExternalIP';
    // Knative would dereference a missing http block here; its webhook never lets one through.
    for (const path of rule.http?.paths ?? []) {
      if (path.splits?.length === 1 && path.splits[0].percent === 0) path.splits[0].percent = 100;
    }
  }
}

// ---- encoding (Go's encoding/json, HTML escaping on) ---------------------------------

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Go strings are UTF-8: its decoder turns an unpaired surrogate escape into U+FFFD. */
function wellFormed(s: string): string {
  return s.replace(LONE_SURROGATE, '\uFFFD');
}

const SHORT_ESCAPES: Readonly<Record<string, string>> = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };
// What Go escapes: quote, backslash, control characters, <, >, & (HTML-safe by default) and
// the JavaScript line separators U+2028/U+2029. Everything else, DEL included, stays raw.
const NEEDS_ESCAPE = /["\\\u0000-\u001f<>&\u2028\u2029]/g;

function jsonString(s: string): string {
  return `"${s.replace(NEEDS_ESCAPE, (c) => SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}

/** Go sorts map keys by comparing the strings' UTF-8 bytes (not UTF-16 code units). */
function sortedKeys(m: ReadonlyMap<string, unknown>): string[] {
  return [...m.keys()].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}

function encodeMap<T>(m: ReadonlyMap<string, T> | null, value: (v: T) => string): string {
  if (m === null) return 'null';
  return `{${sortedKeys(m).map((k) => `${jsonString(k)}:${value(m.get(k) as T)}`).join(',')}}`;
}

function encodeSlice<T>(s: readonly T[] | null, item: (v: T) => string): string {
  return s === null ? 'null' : `[${s.map(item).join(',')}]`;
}

/** A struct's fields in declaration order; `omit` marks an omitempty field whose value is empty. */
function encodeStruct(fields: readonly (readonly [name: string, json: string, omit: boolean])[]): string {
  return `{${fields.filter(([, , omit]) => !omit).map(([name, json]) => `${jsonString(name)}:${json}`).join(',')}}`;
}

const emptyList = (s: readonly unknown[] | null) => s === null || s.length === 0;
const emptyMap = (m: ReadonlyMap<string, unknown> | null) => m === null || m.size === 0;
const strings = (s: readonly string[] | null) => encodeSlice(s, jsonString);
const stringMap = (m: ReadonlyMap<string, string> | null) => encodeMap(m, jsonString);

function encodeSplit(s: BackendSplit): string {
  return encodeStruct([
    // IngressBackend is embedded (json:",inline"): its fields come first, none omitempty.
    ['serviceNamespace', jsonString(s.serviceNamespace), false],
    ['serviceName', jsonString(s.serviceName), false],
    ['servicePort', typeof s.servicePort === 'number' ? String(s.servicePort) : jsonString(s.servicePort), false],
    ['percent', String(s.percent), s.percent === 0],
    ['appendHeaders', stringMap(s.appendHeaders), emptyMap(s.appendHeaders)],
  ]);
}

function encodePath(p: HttpPath): string {
  return encodeStruct([
    ['path', jsonString(p.path), p.path === ''],
    ['rewriteHost', jsonString(p.rewriteHost), p.rewriteHost === ''],
    ['headers', encodeMap(p.headers, (h) => encodeStruct([['exact', jsonString(h.exact), false]])), emptyMap(p.headers)],
    ['splits', encodeSlice(p.splits, encodeSplit), false],
    ['appendHeaders', stringMap(p.appendHeaders), emptyMap(p.appendHeaders)],
  ]);
}

function encodeRule(r: Rule): string {
  return encodeStruct([
    ['hosts', strings(r.hosts), emptyList(r.hosts)],
    ['visibility', jsonString(r.visibility), r.visibility === ''],
    ['http', r.http === null ? 'null' : encodeStruct([['paths', encodeSlice(r.http.paths, encodePath), false]]), r.http === null],
  ]);
}

function encodeSpec(s: Spec): string {
  return encodeStruct([
    ['tls', encodeSlice(s.tls, (t) => encodeStruct([
      ['hosts', strings(t.hosts), emptyList(t.hosts)],
      ['secretName', jsonString(t.secretName), t.secretName === ''],
      ['secretNamespace', jsonString(t.secretNamespace), t.secretNamespace === ''],
    ])), emptyList(s.tls)],
    ['rules', encodeSlice(s.rules, encodeRule), emptyList(s.rules)],
    ['httpOption', jsonString(s.httpOption), s.httpOption === ''],
  ]);
}

/**
 * Go's `json.Marshal(ing.Spec)` after `ing.SetDefaults`, for a spec as the API server sent
 * it (parsed JSON). Throws IngressSpecError, naming the field, for a value Go would refuse.
 */
export function goEncodedIngressSpec(spec: unknown): string {
  const typed = decodeSpec(spec);
  setDefaults(typed);
  return encodeSpec(typed);
}

/** Knative's ingress.ComputeHash, hex: what a gateway appends as K-Network-Hash on probe routes. */
export function kingressHash(namespace: string, name: string, spec: unknown): string {
  return createHash('sha256').update(goEncodedIngressSpec(spec)).update(namespace).update(name).digest('hex');
}
