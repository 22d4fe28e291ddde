// `chikai status`: the `istioctl proxy-status` of chikai. One line per gateway: whether it
// is connected to the xDS server, the version it ACKed per resource type and any NACK with
// Envoy's error (from the xDS admin's /clients), and whether what its Envoy admin reports
// (/config_dump?include_eds) holds exactly what chikai serves that node (the xDS admin's
// /config_dump?node=): the same listener, route, cluster and assignment names, the same
// content, and the ACKed version_info. A push that lands while these are read makes them
// read again (three reads in all at most, then that type is STALE: on its way). Exit code
// 1 when any gateway is out of sync.
import { parseArgs } from 'node:util';
import protobuf from 'protobufjs';
import { request } from 'undici';
import { DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { decodeToJson, encodeJson, type JsonObject, type JsonValue } from '../xds/protojson.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, envoyProtos, type MessageType, type ResourceTypeUrl } from '../xds/protos.js';
import type { ClientStatus, TypeStatus } from '../xds/streams.js';
import { UsageError } from '../bin/usage-error.js';

export class StatusUsageError extends UsageError {
  override name = 'StatusUsageError';
}

/** The xDS admin server cannot be read: nothing to compare with. */
export class StatusError extends Error {
  override name = 'StatusError';
}

type Short = 'CDS' | 'EDS' | 'LDS' | 'RDS';
const TYPES: readonly { short: Short; url: ResourceTypeUrl }[] = [
  { short: 'CDS', url: CLUSTER_TYPE },
  { short: 'EDS', url: ENDPOINT_TYPE },
  { short: 'LDS', url: LISTENER_TYPE },
  { short: 'RDS', url: ROUTE_TYPE },
];

export type TypeState = 'SYNCED' | 'STALE' | 'NACKED' | 'DIFFERS' | 'NOT SENT' | 'UNCHECKED';

export interface TypeSync {
  readonly state: TypeState;
  readonly acked_version?: string;
  readonly sent_version?: string;
  /** The standing NACK: the version Envoy refused and why. */
  readonly nack?: { readonly version: string; readonly error: string };
  /** What the gateway's Envoy admin holds differently from what chikai serves it. */
  readonly differences: readonly string[];
}

export interface GatewayStatus {
  readonly node: string;
  readonly connected: boolean;
  /** The ADS peer address and stream, when connected. */
  readonly peer?: string;
  readonly admin: string | undefined;
  readonly admin_error?: string;
  readonly types: Readonly<Record<Short, TypeSync>>;
  readonly in_sync: boolean;
}

type Obj = Record<string, unknown>;
const asObj = (v: unknown): Obj => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const asList = (v: unknown): Obj[] => (Array.isArray(v) ? (v as Obj[]) : []);

async function getJson(url: string, what: string): Promise<Obj> {
  let res;
  try {
    res = await request(url, { headersTimeout: 5000, bodyTimeout: 10_000 });
  } catch (err) {
    throw new Error(`cannot reach ${what} at ${url} (${(err as Error).message})`);
  }
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}: ${text.trim().split('\n')[0]}`);
  try {
    return asObj(JSON.parse(text));
  } catch {
    throw new Error(`${url} did not answer JSON`);
  }
}

function section(dump: Obj, suffix: string): Obj {
  return asList(dump['configs']).find((c) => String(c['@type'] ?? '').endsWith(`.${suffix}`)) ?? {};
}

interface Held {
  /** name → resource JSON. */
  readonly resources: Map<string, Obj>;
  /** version_info Envoy recorded: per type (CDS, LDS) or per resource (RDS). */
  readonly versions: Map<string, string>;
  /** Resources Envoy holds but does not use yet (warming) or refused. */
  readonly notActive: string[];
}

/** What chikai serves the node's gateway, from the xDS admin's config_dump. */
function intended(dump: Obj): Record<Short, Map<string, Obj>> {
  const by = (list: Obj[], pick: (x: Obj) => unknown) => new Map(list.map(pick).map(asObj).map((r) => [String(r['name'] ?? r['cluster_name']), r]));
  return {
    CDS: by(asList(section(dump, 'ClustersConfigDump')['dynamic_active_clusters']), (x) => x['cluster']),
    EDS: by(asList(section(dump, 'EndpointsConfigDump')['dynamic_endpoint_configs']), (x) => x['endpoint_config']),
    // api_listeners are for proxyless gRPC clients, served by name only: Envoy's wildcard LDS never gets them.
    LDS: new Map([...by(asList(section(dump, 'ListenersConfigDump')['dynamic_listeners']), (x) => asObj(x['active_state'])['listener'])].filter(([, l]) => !l['api_listener'])),
    RDS: by(asList(section(dump, 'RoutesConfigDump')['dynamic_route_configs']), (x) => x['route_config']),
  };
}

/** The version chikai serves the node now for one type (its config_dump's version_info). */
function servedVersion(dump: Obj, short: Short): string | undefined {
  const sectionOf: Record<Short, string> = { CDS: 'ClustersConfigDump', EDS: 'EndpointsConfigDump', LDS: 'ListenersConfigDump', RDS: 'RoutesConfigDump' };
  const s = section(dump, sectionOf[short]);
  if (typeof s['version_info'] === 'string') return s['version_info'];
  const first = asObj(asList(s['dynamic_endpoint_configs'] ?? s['dynamic_route_configs'])[0]);
  return typeof first['version_info'] === 'string' ? first['version_info'] : undefined;
}

function newerServed(served: string | undefined, acked: string | undefined): boolean {
  return served !== undefined && served !== '' && served !== acked;
}

/** What the gateway's Envoy holds, from its admin's config_dump?include_eds. */
function held(dump: Obj): Record<Short, Held> {
  const clusters = section(dump, 'ClustersConfigDump');
  const listeners = section(dump, 'ListenersConfigDump');
  const cds = new Map(asList(clusters['dynamic_active_clusters']).map((c) => asObj(c['cluster'])).map((c) => [String(c['name']), c]));
  const eds = new Map(asList(section(dump, 'EndpointsConfigDump')['dynamic_endpoint_configs']).map((c) => asObj(c['endpoint_config'])).map((c) => [String(c['cluster_name']), c]));
  const lds = new Map<string, Obj>();
  const ldsNotActive: string[] = [];
  for (const l of asList(listeners['dynamic_listeners'])) {
    const name = String(l['name']);
    const active = asObj(l['active_state'])['listener'];
    if (active) lds.set(name, asObj(active));
    if (l['warming_state']) ldsNotActive.push(`listener ${name} warming`);
    const err = asObj(l['error_state']);
    if (err['details']) ldsNotActive.push(`listener ${name} rejected: ${String(err['details'])}`);
  }
  const rds = new Map<string, Obj>();
  const rdsVersions = new Map<string, string>();
  for (const r of asList(section(dump, 'RoutesConfigDump')['dynamic_route_configs'])) {
    const rc = asObj(r['route_config']);
    rds.set(String(rc['name']), rc);
    rdsVersions.set(String(rc['name']), String(r['version_info'] ?? ''));
  }
  return {
    CDS: { resources: cds, versions: new Map([['', String(clusters['version_info'] ?? '')]]), notActive: asList(clusters['dynamic_warming_clusters']).map((c) => `cluster ${String(asObj(c['cluster'])['name'])} warming`) },
    // Envoy keeps no version for endpoint assignments: they are compared by content only.
    EDS: { resources: eds, versions: new Map(), notActive: [] },
    LDS: { resources: lds, versions: new Map([['', String(listeners['version_info'] ?? '')]]), notActive: ldsNotActive },
    RDS: { resources: rds, versions: rdsVersions, notActive: [] },
  };
}

function sortedKeys(v: JsonValue): JsonValue {
  if (Array.isArray(v)) return v.map(sortedKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortedKeys((v as JsonObject)[k])]));
  return v;
}

const priorityOf = (l: Obj): number => (typeof l['priority'] === 'number' ? l['priority'] : 0);
const textOf = (v: unknown): string => JSON.stringify(sortedKeys((v ?? null) as JsonValue));

/**
 * An assignment as Envoy stores it: the endpoint defaults it fills in dropped (chikai
 * leaves them out), and its localities in one order. Order within a priority means nothing
 * to the balancer, and Envoy's dump lists the gateway's own locality first: a node whose
 * pods share priority 0 with another node's would otherwise always differ.
 */
function assignmentAsEnvoyStoresIt(cla: JsonObject): JsonObject {
  const out = structuredClone(cla);
  for (const l of asList(out['endpoints'])) {
    for (const h of asList(l['lb_endpoints'])) {
      const ep = asObj(h['endpoint']);
      if (ep['health_check_config'] && Object.keys(asObj(ep['health_check_config'])).length === 0) delete ep['health_check_config'];
      if (h['load_balancing_weight'] === 1) delete h['load_balancing_weight'];
    }
  }
  const policy = asObj(out['policy']);
  if (policy['overprovisioning_factor'] === 140) delete policy['overprovisioning_factor'];
  if (out['policy'] && Object.keys(policy).length === 0) delete out['policy'];
  if (Array.isArray(out['endpoints'])) {
    const localities = asList(out['endpoints']);
    for (const l of localities) if (Array.isArray(l['lb_endpoints'])) l['lb_endpoints'] = asList(l['lb_endpoints']).sort((a, b) => textOf(a).localeCompare(textOf(b)));
    out['endpoints'] = localities.sort((a, b) => priorityOf(a) - priorityOf(b) || textOf(a['locality']).localeCompare(textOf(b['locality'])) || textOf(a).localeCompare(textOf(b))) as JsonValue[];
  }
  return out;
}

function isDefault(field: protobuf.Field, v: JsonValue): boolean {
  if (field.repeated || field.map || field.partOf) return false;
  if (field.resolvedType instanceof protobuf.Enum) return v === Object.keys(field.resolvedType.values).find((k) => field.resolvedType instanceof protobuf.Enum && field.resolvedType.values[k] === 0);
  if (field.resolvedType) return false;
  return v === 0 || v === '0' || v === false || v === '';
}

/**
 * Drops proto3 default scalars (Envoy's dump leaves them out, chikai may write them, e.g.
 * `priority: 0`), following the message types, into typed Any bodies too.
 */
function withoutDefaults(type: MessageType, v: JsonValue): JsonValue {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return v;
  const out: JsonObject = {};
  for (const [k, x] of Object.entries(v)) {
    const field = type.fields[k];
    if (!field) {
      out[k] = x;
      continue;
    }
    if (x === null || isDefault(field, x)) continue;
    const inner: MessageType | undefined = field.resolvedType instanceof protobuf.Type ? field.resolvedType : undefined;
    const one = (y: JsonValue): JsonValue => {
      if (inner?.fullName === '.google.protobuf.Any' && y && typeof y === 'object' && !Array.isArray(y) && typeof y['@type'] === 'string') {
        try {
          return { ...(withoutDefaults(envoyProtos().type(y['@type']), y) as JsonObject), '@type': y['@type'] };
        } catch {
          return y;
        }
      }
      return inner && !inner.fullName.startsWith('.google.protobuf.') ? withoutDefaults(inner, y) : y;
    };
    if (field.map && x && typeof x === 'object' && !Array.isArray(x)) {
      out[k] = Object.fromEntries(Object.entries(x).map(([mk, mv]) => [mk, one(mv)]));
    } else if (Array.isArray(x)) {
      out[k] = x.map(one);
    } else {
      out[k] = one(x);
    }
  }
  return out;
}

/**
 * A resource's canonical text: through protobuf and back (well-known types in one form),
 * default scalars dropped, keys sorted (Struct maps have no order).
 */
export function canonical(typeUrl: ResourceTypeUrl, resource: Obj): string {
  const { '@type': _t, ...body } = resource;
  let json = body as JsonObject;
  try {
    json = withoutDefaults(envoyProtos().type(typeUrl), decodeToJson(typeUrl, encodeJson(typeUrl, json))) as JsonObject;
  } catch {
    // A field this build's protos do not know: compare the JSON as it is.
  }
  if (typeUrl === ENDPOINT_TYPE) json = assignmentAsEnvoyStoresIt(json);
  return JSON.stringify(sortedKeys(json));
}

function compareType(short: Short, url: ResourceTypeUrl, want: Map<string, Obj>, have: Held, acked: string | undefined): string[] {
  const diffs: string[] = [...have.notActive];
  for (const name of want.keys()) if (!have.resources.has(name)) diffs.push(`${name} missing in Envoy`);
  for (const name of have.resources.keys()) if (!want.has(name)) diffs.push(`${name} not served by chikai`);
  for (const [name, w] of want) {
    const h = have.resources.get(name);
    if (h && canonical(url, w) !== canonical(url, h)) diffs.push(`${name} differs`);
  }
  if (acked !== undefined) {
    for (const [name, v] of have.versions) {
      if (v !== acked) diffs.push(`Envoy's ${name ? `${name} ` : ''}version_info ${v || '(none)'} is not the ACKed ${acked}`);
    }
  }
  return diffs.map((d) => `${short} ${d}`);
}

function typeStatusOf(t: TypeStatus | undefined): Pick<TypeSync, 'acked_version' | 'sent_version' | 'nack'> {
  if (!t) return {};
  return {
    acked_version: t.acked_version,
    sent_version: t.sent_version,
    ...(t.nacked ? { nack: { version: t.nacked.version, error: t.nacked.error } } : {}),
  };
}

/** The xDS server's ADS clients, one per gateway node: the newest stream (a reconnecting Envoy may briefly have two). */
export async function clientsByNode(xdsAdmin: string): Promise<Map<string, ClientStatus>> {
  const clients = asList((await getJson(`http://${xdsAdmin}/clients`, 'the xDS admin server'))['clients']) as unknown as ClientStatus[];
  const byNode = new Map<string, ClientStatus>();
  for (const c of [...clients].sort((a, b) => a.connected_at.localeCompare(b.connected_at))) byNode.set(c.locality.sub_zone || c.node_id, c);
  return byNode;
}

/** One read shared by every caller while it is in flight (gateways re-read after the same push read the client list once). */
function shared<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => (pending ??= read().finally(() => { pending = undefined; }));
}

/** Reads of one gateway that fit together: a push that lands between them makes them read again. */
const CONSISTENT_READ_ATTEMPTS = 3;

/**
 * The status of one gateway node, from the xDS admin and the gateway's Envoy admin.
 * `client` is the node's ADS stream as the client list showed it; `readClients` reads
 * that list again when a push lands while the gateway is read.
 */
export async function gatewayStatus(
  node: string,
  client: ClientStatus | undefined,
  xdsAdmin: string,
  envoyAdmin: string | undefined,
  readClients: () => Promise<Map<string, ClientStatus>> = () => clientsByNode(xdsAdmin),
): Promise<GatewayStatus> {
  for (let attempt = 1; ; attempt++) {
    const { status, readGap } = statusOf(node, client, envoyAdmin, await readGateway(node, xdsAdmin, envoyAdmin));
    // A push that landed while Envoy's config was read (Envoy may hold the newer version and
    // be compared with the older one), or before it but after the client list was read (the
    // list does not show it sent yet): read everything again, the client list too.
    if (!readGap || attempt === CONSISTENT_READ_ATTEMPTS) return status;
    client = (await readClients()).get(node);
  }
}

interface GatewayRead {
  /** What chikai serves the node (the xDS admin's config_dump), read before Envoy's. */
  readonly served: Obj;
  readonly have: Record<Short, Held> | undefined;
  readonly adminError: string | undefined;
  /** Types whose served version changed while Envoy's config was being read. */
  readonly moved: readonly Short[];
}

async function readGateway(node: string, xdsAdmin: string, envoyAdmin: string | undefined): Promise<GatewayRead> {
  const servedUrl = `http://${xdsAdmin}/config_dump?node=${encodeURIComponent(node)}`;
  const served = await getJson(servedUrl, 'the xDS admin server');
  if (!envoyAdmin) return { served, have: undefined, adminError: 'no Envoy admin address given (--gateway-admin)', moved: [] };
  let have: Record<Short, Held>;
  try {
    have = held(await getJson(`http://${envoyAdmin}/config_dump?include_eds`, `${node}'s Envoy admin`));
  } catch (err) {
    return { served, have: undefined, adminError: (err as Error).message, moved: [] };
  }
  const after = await getJson(servedUrl, 'the xDS admin server');
  return { served, have, adminError: undefined, moved: TYPES.map((t) => t.short).filter((short) => servedVersion(after, short) !== servedVersion(served, short)) };
}

/** The gateway's status from one read; `readGap`: a push fell between its reads (reading again may settle it). */
function statusOf(node: string, client: ClientStatus | undefined, envoyAdmin: string | undefined, { served, have, adminError, moved }: GatewayRead): { status: GatewayStatus; readGap: boolean } {
  const want = intended(served);
  let readGap = moved.length > 0;
  const types = {} as Record<Short, TypeSync>;
  for (const { short, url } of TYPES) {
    const t = client?.types[short];
    const base = typeStatusOf(t);
    let state: TypeState;
    let differences: string[] = [];
    if (!client || !t || (!t.sent_version && !t.acked_version)) state = 'NOT SENT';
    else if (t.nacked) state = 'NACKED';
    // Sent and not ACKed yet: on its way.
    else if (t.awaiting_ack || t.acked_version !== t.sent_version) state = 'STALE';
    // Served, and the client list (read again, three times in all) does not show it sent: on its way too.
    else if (newerServed(servedVersion(served, short), t.acked_version)) {
      state = 'STALE';
      readGap = true;
      differences = [`${short} ${servedVersion(served, short)?.slice(0, 8)} served, not yet shown sent to the gateway`];
    } else if (moved.includes(short)) {
      state = 'STALE';
      differences = [`${short} pushed again during each of ${CONSISTENT_READ_ATTEMPTS} reads`];
    } else if (!have) state = 'UNCHECKED';
    else {
      differences = compareType(short, url, want[short], have[short], t.acked_version);
      state = differences.length ? 'DIFFERS' : 'SYNCED';
    }
    // Even without an ADS stream, Envoy's admin shows whether it still holds the right config.
    if (state === 'NOT SENT' && have) differences = compareType(short, url, want[short], have[short], undefined);
    types[short] = { state, ...base, differences };
  }
  const inSync = !!client && !adminError && TYPES.every(({ short }) => types[short].state === 'SYNCED');
  const status = {
    node,
    connected: !!client,
    ...(client ? { peer: client.peer } : {}),
    admin: envoyAdmin,
    ...(adminError ? { admin_error: adminError } : {}),
    types,
    in_sync: inSync,
  };
  return { status, readGap };
}

/** `--gateway-admin`: NODE=HOST:PORT pairs, or one template with {node} and {address}. */
function gatewayAdmins(flags: readonly string[], nodes: ReadonlyMap<string, string>): { admins: Map<string, string>; expected: string[] } {
  const pairs = flags.filter((f) => /^[^={}]+=/.test(f));
  const templates = flags.filter((f) => !pairs.includes(f));
  if (templates.length > 1) throw new StatusUsageError(`--gateway-admin takes NODE=HOST:PORT (repeatable) or one template such as {address}:9901, got ${templates.join(' and ')}`);
  const admins = new Map<string, string>();
  for (const p of pairs) {
    const [n, a] = [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)];
    if (!/^.+:\d{1,5}$/.test(a)) throw new StatusUsageError(`--gateway-admin ${p}: expected NODE=HOST:PORT`);
    admins.set(n, a);
  }
  const template = templates[0] ?? (pairs.length ? undefined : '{address}:9901');
  if (template !== undefined) {
    if (!/^.+:\d{1,5}$/.test(template.replace(/\{(node|address)\}/g, 'x'))) throw new StatusUsageError(`--gateway-admin ${template}: expected HOST:PORT with {node} or {address} in it, e.g. {address}:9901`);
    for (const [n, address] of nodes) if (!admins.has(n)) admins.set(n, template.replaceAll('{node}', n).replaceAll('{address}', address));
  }
  return { admins, expected: pairs.length && template === undefined ? [...admins.keys()] : [...new Set([...nodes.keys(), ...admins.keys()])] };
}

function pad(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ')).join('\n');
}

function typeCell(t: TypeSync): string {
  const v = (t.acked_version ?? t.sent_version ?? '').slice(0, 8);
  if (t.state === 'NACKED') return `NACKED ${t.nack?.version.slice(0, 8)}: ${JSON.stringify(t.nack?.error ?? '')} (keeps ${v || 'nothing'})`;
  if (t.state === 'STALE') return `STALE sent ${t.sent_version?.slice(0, 8)}, ACKed ${t.acked_version?.slice(0, 8) ?? 'none'}`;
  return v ? `${t.state} ${v}` : t.state;
}

export function statusTable(statuses: readonly GatewayStatus[]): string {
  const rows = [['GATEWAY', 'XDS', 'CDS', 'EDS', 'LDS', 'RDS', 'ENVOY ADMIN', 'STATUS']];
  for (const s of statuses) {
    const problems = [...(s.admin_error ? [s.admin_error] : []), ...TYPES.flatMap(({ short }) => s.types[short].differences)];
    rows.push([
      s.node,
      s.connected ? 'CONNECTED' : 'NOT CONNECTED',
      ...TYPES.map(({ short }) => typeCell(s.types[short])),
      s.admin ?? '-',
      s.in_sync ? 'IN SYNC' : `OUT OF SYNC${problems.length ? `: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? `; … ${problems.length - 3} more` : ''}` : ''}`,
    ]);
  }
  return pad(rows);
}

export async function statusCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      'xds-admin': { type: 'string' },
      'gateway-admin': { type: 'string', multiple: true, default: [] },
      cluster: { type: 'string', default: DEMO_CLUSTER_FILE },
      format: { type: 'string', default: 'text' },
    },
  });
  if (!['text', 'json'].includes(values.format)) throw new StatusUsageError(`--format expects text or json, got ${JSON.stringify(values.format)}`);
  const file = loadClusterFile(values.cluster);
  const xdsAdmin = values['xds-admin'] ?? `${file.xds.admin.host}:${file.xds.admin.port}`;
  if (!/^.+:\d{1,5}$/.test(xdsAdmin)) throw new StatusUsageError(`--xds-admin expects HOST:PORT, got ${JSON.stringify(xdsAdmin)}`);
  const nodes = new Map(file.state.nodes.map((n) => [n.name, n.address]));
  const { admins, expected } = gatewayAdmins(values['gateway-admin'], nodes);

  let byNode: Map<string, ClientStatus>;
  try {
    byNode = await clientsByNode(xdsAdmin);
  } catch (err) {
    throw new StatusUsageError(`${(err as Error).message}; is \`npm start\` (or \`chikai xds\`) running? Pass --xds-admin HOST:PORT to point elsewhere`);
  }
  const names = [...new Set([...expected, ...byNode.keys()])];
  const readClients = shared(() => clientsByNode(xdsAdmin));
  const statuses = await Promise.all(names.map((n) => gatewayStatus(n, byNode.get(n), xdsAdmin, admins.get(n), readClients)));
  if (values.format === 'json') process.stdout.write(JSON.stringify({ in_sync: statuses.every((s) => s.in_sync), gateways: statuses }, null, 2) + '\n');
  else process.stdout.write(statusTable(statuses) + '\n');
  if (!statuses.every((s) => s.in_sync)) process.exitCode = 1;
}
