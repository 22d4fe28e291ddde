// What chikai reads from Kubernetes objects, and how each object becomes part of the
// cluster model. The inputs are whatever the API server sent (typed list items or raw
// watch JSON), so every field is read defensively: a missing or odd field yields a
// default or skips the object, never an exception in the informer callback.
import type { EndpointInfo, NodeInfo, RevisionInfo } from '../model.js';
import { revisionKey } from '../model.js';

export const REGION_LABEL = 'topology.kubernetes.io/region';
export const ZONE_LABEL = 'topology.kubernetes.io/zone';
/** Pre-1.17 names of the topology labels, still set by some providers. */
const LEGACY_REGION_LABEL = 'failure-domain.beta.kubernetes.io/region';
const LEGACY_ZONE_LABEL = 'failure-domain.beta.kubernetes.io/zone';

export const KNATIVE_SERVICE_LABEL = 'serving.knative.dev/service';
export const KNATIVE_CONFIGURATION_LABEL = 'serving.knative.dev/configuration';
export const KNATIVE_REVISION_LABEL = 'serving.knative.dev/revision';
/** Knative labels its private (pod-backed) service, and the EndpointSlice controller copies it. */
export const SERVICE_TYPE_LABEL = 'networking.internal.knative.dev/serviceType';
export const PRIVATE_SERVICE_SELECTOR = `${SERVICE_TYPE_LABEL}=Private`;
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/** Knative's defaults when a Revision leaves the field out. */
const DEFAULT_TIMEOUT_SECONDS = 300;
/** Port names of the private service that lead to queue-proxy (h2c revisions use http2). */
const QUEUE_PORT_NAMES = ['http', 'http2', 'h2c'];

// ---- defensive readers ----------------------------------------------------------------

export type JsonObject = Readonly<Record<string, unknown>>;

export function asObject(v: unknown): JsonObject | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as JsonObject) : undefined;
}

function asArray(v: unknown): readonly unknown[] {
  return Array.isArray(v) ? v : [];
}

function asString(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function asNumber(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

export function stringMap(v: unknown): Readonly<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(asObject(v) ?? {})) if (typeof val === 'string') out[k] = val;
  return out;
}

export interface ObjectMetaView {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
}

/** Name, namespace and labels of any Kubernetes object; undefined when it has no name. */
export function metaOf(obj: unknown): ObjectMetaView | undefined {
  const meta = asObject(asObject(obj)?.['metadata']);
  const name = asString(meta?.['name']);
  if (!meta || !name) return undefined;
  return { name, namespace: asString(meta['namespace']) ?? '', labels: stringMap(meta['labels']), annotations: stringMap(meta['annotations']) };
}

// ---- Node -----------------------------------------------------------------------------

/**
 * A Node as the model sees it. The address is the InternalIP until the node's proxy pod is
 * known (proxyAddressesFrom replaces it: proxies and gateways reach a proxy pod to pod, no
 * host port). Undefined when the node has no usable address yet.
 */
export function nodeInfoFrom(obj: unknown): NodeInfo | undefined {
  const meta = metaOf(obj);
  if (!meta) return undefined;
  const addresses = asArray(asObject(asObject(obj)?.['status'])?.['addresses'])
    .map((a) => ({ type: asString(asObject(a)?.['type']), address: asString(asObject(a)?.['address']) }))
    .filter((a): a is { type: string; address: string } => !!a.type && !!a.address);
  const pick = (type: string) => {
    const all = addresses.filter((a) => a.type === type).map((a) => a.address);
    // Dual-stack nodes list both families; the model and the proxies speak IPv4 first.
    return all.find((a) => !a.includes(':')) ?? all[0];
  };
  const address = pick('InternalIP') ?? pick('ExternalIP');
  if (!address) return undefined;
  const l = meta.labels;
  return {
    name: meta.name,
    region: l[REGION_LABEL] ?? l[LEGACY_REGION_LABEL] ?? 'default',
    zone: l[ZONE_LABEL] ?? l[LEGACY_ZONE_LABEL] ?? 'default',
    address,
  };
}

// ---- Revision -------------------------------------------------------------------------

/** A Knative Revision (serving.knative.dev/v1) as the model sees it. */
export function revisionInfoFrom(obj: unknown): RevisionInfo | undefined {
  const meta = metaOf(obj);
  if (!meta || !meta.namespace) return undefined;
  const spec = asObject(asObject(obj)?.['spec']) ?? {};
  const cc = asNumber(spec['containerConcurrency']);
  const timeout = asNumber(spec['timeoutSeconds']);
  const ports = asArray(spec['containers']).flatMap((c) => asArray(asObject(c)?.['ports']));
  const h2c = ports.some((p) => asString(asObject(p)?.['name']) === 'h2c');
  return {
    namespace: meta.namespace,
    // A revision made from a bare Configuration has no service label.
    service: meta.labels[KNATIVE_SERVICE_LABEL] ?? meta.labels[KNATIVE_CONFIGURATION_LABEL] ?? meta.name,
    name: meta.name,
    hosts: [],
    containerConcurrency: cc !== undefined && cc >= 0 ? Math.floor(cc) : 0,
    timeoutSeconds: timeout !== undefined && timeout > 0 ? timeout : DEFAULT_TIMEOUT_SECONDS,
    protocol: h2c ? 'h2c' : 'http1',
  };
}

// ---- EndpointSlice --------------------------------------------------------------------

/**
 * The revision an EndpointSlice of a Knative private service belongs to, as
 * `<namespace>/<revision>`. Knative's revision label is copied from the service onto the
 * slice; the service name (`<revision>-private`) is the fallback, because Knative
 * shortens long child names with a hash and the label survives that.
 */
export function sliceRevisionKey(obj: unknown): string | undefined {
  const meta = metaOf(obj);
  if (!meta || !meta.namespace) return undefined;
  const rev = meta.labels[KNATIVE_REVISION_LABEL];
  if (rev) return revisionKey(meta.namespace, rev);
  const svc = meta.labels[SERVICE_NAME_LABEL];
  if (svc?.endsWith('-private')) return revisionKey(meta.namespace, svc.slice(0, -'-private'.length));
  return undefined;
}

/** The queue-proxy port of a private-service slice, by its well-known port name. */
function queuePort(obj: JsonObject): number | undefined {
  const ports = asArray(obj['ports']).map((p) => ({ name: asString(asObject(p)?.['name']) ?? '', port: asNumber(asObject(p)?.['port']) }));
  for (const name of QUEUE_PORT_NAMES) {
    const hit = ports.find((p) => p.name === name && p.port !== undefined);
    if (hit) return hit.port;
  }
  return ports.length === 1 ? ports[0].port : undefined;
}

export interface SliceEndpoints {
  readonly revision: string;
  readonly endpoints: readonly EndpointInfo[];
}

/**
 * The pods of one EndpointSlice: pod name (targetRef), first address, the queue-proxy
 * port, the node and readiness. Endpoints without a node or an address are left out
 * (nothing could route to them); a nil `ready` condition counts as ready, as the
 * EndpointSlice API asks consumers to do.
 */
export function sliceEndpointsFrom(obj: unknown): SliceEndpoints | undefined {
  const o = asObject(obj);
  const meta = metaOf(obj);
  const revision = sliceRevisionKey(obj);
  if (!o || !meta || !revision) return undefined;
  const port = queuePort(o);
  if (port === undefined) return { revision, endpoints: [] };
  const endpoints: EndpointInfo[] = [];
  for (const raw of asArray(o['endpoints'])) {
    const e = asObject(raw);
    if (!e) continue;
    const address = asString(asArray(e['addresses'])[0]);
    const node = asString(e['nodeName']);
    if (!address || !node) continue;
    const ref = asObject(e['targetRef']);
    const pod = (asString(ref?.['kind']) ?? 'Pod') === 'Pod' ? asString(ref?.['name']) : undefined;
    const cond = asObject(e['conditions']) ?? {};
    const ready = cond['ready'] !== false && cond['terminating'] !== true;
    endpoints.push({ pod: pod ?? `${meta.name}-${address}`, revision, node, address, port, ready });
  }
  return { revision, endpoints };
}

/**
 * Every endpoint of every slice, one entry per pod. While the EndpointSlice controller
 * moves a pod between slices it can appear twice; the ready copy wins.
 */
export function mergeSliceEndpoints(slices: readonly unknown[]): EndpointInfo[] {
  const byPod = new Map<string, EndpointInfo>();
  for (const s of slices) {
    const parsed = sliceEndpointsFrom(s);
    if (!parsed) continue;
    for (const e of parsed.endpoints) {
      const key = `${e.revision}\u0000${e.pod}`;
      const seen = byPod.get(key);
      if (!seen || (!seen.ready && e.ready)) byPod.set(key, e);
    }
  }
  return [...byPod.values()].sort((a, b) => (a.revision === b.revision ? a.pod.localeCompare(b.pod) : a.revision.localeCompare(b.revision)));
}

// ---- the proxies' own EndpointSlices ---------------------------------------------------

/**
 * Where each node's chikai proxy pod is, from the EndpointSlices of the proxies' Service:
 * node name → pod address. A ready endpoint wins over one that is not (a pod being
 * replaced); endpoints without a node or an address are left out.
 */
export function proxyAddressesFrom(slices: readonly unknown[]): Map<string, string> {
  const out = new Map<string, { address: string; ready: boolean }>();
  for (const s of slices) {
    for (const raw of asArray(asObject(s)?.['endpoints'])) {
      const e = asObject(raw);
      const address = asString(asArray(e?.['addresses'])[0]);
      const node = asString(e?.['nodeName']);
      if (!address || !node) continue;
      const cond = asObject(e?.['conditions']) ?? {};
      const ready = cond['ready'] !== false && cond['terminating'] !== true;
      const seen = out.get(node);
      if (!seen || (!seen.ready && ready)) out.set(node, { address, ready });
    }
  }
  return new Map([...out].map(([node, p]) => [node, p.address]));
}
