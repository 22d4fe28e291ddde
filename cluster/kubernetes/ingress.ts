// Knative Ingresses (KIngress, networking.internal.knative.dev/v1alpha1) — the routing
// table Knative's route controller writes and Kourier translates into LDS/RDS. The
// cluster model has no place for hosts, paths and traffic splits, so they are kept here
// as IngressRoutes, the input the xDS server builds listeners and routes from.
import { revisionKey } from '../model.js';
import { IngressSpecError, kingressHash } from './ingress-hash.js';
import { asObject, metaOf, stringMap } from './objects.js';

/** The class Kourier serves; Knative stamps it on every KIngress it creates for Kourier. */
export const KOURIER_INGRESS_CLASS = 'kourier.ingress.networking.knative.dev';
/** Older Knative releases spell the annotation with a dot, newer ones with a dash. */
export const INGRESS_CLASS_ANNOTATIONS = ['networking.knative.dev/ingress.class', 'networking.knative.dev/ingress-class'] as const;

const NAMESPACE_HEADER = 'knative-serving-namespace';
const REVISION_HEADER = 'knative-serving-revision';

/** ExternalIP rules go to the external and the internal listener; ClusterLocal only to the internal one. */
export type IngressVisibility = 'ExternalIP' | 'ClusterLocal';

export interface IngressSplit {
  readonly serviceNamespace: string;
  readonly serviceName: string;
  /** Port number or port name of the Kubernetes service. */
  readonly servicePort: number | string;
  /** Share of the path's requests in percent; a single split without a percent gets 100. */
  readonly percent: number;
  /** Headers added to requests sent to this split (Knative-Serving-Namespace/-Revision among them). */
  readonly appendHeaders: Readonly<Record<string, string>>;
  /** `<namespace>/<revision>` named by the split's Knative-Serving-* headers, if it targets a revision. */
  readonly revision: string | undefined;
}

export interface IngressPath {
  /** Path prefix to match; '/' when the KIngress leaves it out. */
  readonly path: string;
  /** Exact header matches that must all hold for the path to apply. */
  readonly headers: Readonly<Record<string, string>>;
  /** Host header to send upstream instead of the client's (domain mappings use it). */
  readonly rewriteHost: string | undefined;
  /** Headers added to every request on this path, before the split's own. */
  readonly appendHeaders: Readonly<Record<string, string>>;
  readonly splits: readonly IngressSplit[];
}

export interface IngressRule {
  readonly hosts: readonly string[];
  readonly visibility: IngressVisibility;
  readonly paths: readonly IngressPath[];
}

export interface IngressTls {
  readonly hosts: readonly string[];
  readonly secretNamespace: string;
  readonly secretName: string;
}

/** One KIngress, flattened for route generation. */
export interface IngressRoutes {
  /** `<namespace>/<name>` of the KIngress. */
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  /** metadata.generation: changes whenever the spec does. */
  readonly generation: number;
  readonly ingressClass: string | undefined;
  /** 'Redirected' asks for a redirect of plain HTTP to HTTPS on external rules. */
  readonly httpOption: 'Enabled' | 'Redirected';
  readonly rules: readonly IngressRule[];
  readonly tls: readonly IngressTls[];
  /**
   * Knative's hash of the spec as the API server returned it (knative.dev/networking
   * ComputeHash): the value gateways append as K-Network-Hash on the probe routes, the one
   * Knative's ingress status prober waits for. Undefined when the spec holds a value
   * Go's decoder would refuse (net-kourier could not read such a KIngress either).
   */
  readonly hash: string | undefined;
}

export function ingressClassOf(obj: unknown): string | undefined {
  const meta = metaOf(obj);
  if (!meta) return undefined;
  for (const a of INGRESS_CLASS_ANNOTATIONS) if (meta.annotations[a]) return meta.annotations[a];
  return undefined;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string' && s !== '') : [];
}

function lowerKeys(h: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
}

function splitFrom(raw: unknown, only: boolean): IngressSplit | undefined {
  const s = asObject(raw);
  const serviceName = typeof s?.['serviceName'] === 'string' ? s['serviceName'] : '';
  if (!s || !serviceName) return undefined;
  const serviceNamespace = typeof s['serviceNamespace'] === 'string' ? s['serviceNamespace'] : '';
  const port = s['servicePort'];
  const appendHeaders = stringMap(s['appendHeaders']);
  const lower = lowerKeys(appendHeaders);
  const percent = typeof s['percent'] === 'number' && s['percent'] > 0 ? s['percent'] : only ? 100 : 0;
  return {
    serviceNamespace,
    serviceName,
    servicePort: typeof port === 'number' || typeof port === 'string' ? port : 80,
    percent,
    appendHeaders,
    revision: lower[NAMESPACE_HEADER] && lower[REVISION_HEADER] ? revisionKey(lower[NAMESPACE_HEADER], lower[REVISION_HEADER]) : undefined,
  };
}

function pathFrom(raw: unknown): IngressPath | undefined {
  const p = asObject(raw);
  if (!p) return undefined;
  const rawSplits = Array.isArray(p['splits']) ? p['splits'] : [];
  const splits = rawSplits.map((s) => splitFrom(s, rawSplits.length === 1)).filter((s): s is IngressSplit => !!s);
  const headers: Record<string, string> = {};
  for (const [name, match] of Object.entries(asObject(p['headers']) ?? {})) {
    const exact = asObject(match)?.['exact'];
    if (typeof exact === 'string') headers[name] = exact;
  }
  return {
    path: typeof p['path'] === 'string' && p['path'] !== '' ? p['path'] : '/',
    headers,
    rewriteHost: typeof p['rewriteHost'] === 'string' && p['rewriteHost'] !== '' ? p['rewriteHost'] : undefined,
    appendHeaders: stringMap(p['appendHeaders']),
    splits,
  };
}

/** A KIngress as IngressRoutes; undefined when the object has no name or namespace. */
export function ingressRoutesFrom(obj: unknown): IngressRoutes | undefined {
  const meta = metaOf(obj);
  if (!meta || !meta.namespace) return undefined;
  const o = asObject(obj) ?? {};
  const spec = asObject(o['spec']) ?? {};
  const generation = asObject(o['metadata'])?.['generation'];
  const rules: IngressRule[] = (Array.isArray(spec['rules']) ? spec['rules'] : []).flatMap((raw) => {
    const r = asObject(raw);
    if (!r) return [];
    const http = asObject(r['http']);
    const paths = (Array.isArray(http?.['paths']) ? (http['paths'] as unknown[]) : []).map(pathFrom).filter((p): p is IngressPath => !!p);
    return [{
      hosts: strings(r['hosts']).map((h) => h.toLowerCase()),
      visibility: r['visibility'] === 'ClusterLocal' ? 'ClusterLocal' : 'ExternalIP',
      paths,
    }];
  });
  const tls: IngressTls[] = (Array.isArray(spec['tls']) ? spec['tls'] : []).flatMap((raw) => {
    const t = asObject(raw);
    if (!t) return [];
    return [{
      hosts: strings(t['hosts']).map((h) => h.toLowerCase()),
      secretNamespace: typeof t['secretNamespace'] === 'string' ? t['secretNamespace'] : meta.namespace,
      secretName: typeof t['secretName'] === 'string' ? t['secretName'] : '',
    }];
  });
  return {
    key: `${meta.namespace}/${meta.name}`,
    namespace: meta.namespace,
    name: meta.name,
    generation: typeof generation === 'number' ? generation : 0,
    ingressClass: ingressClassOf(obj),
    httpOption: spec['httpOption'] === 'Redirected' ? 'Redirected' : 'Enabled',
    rules,
    tls,
    hash: hashOf(meta.namespace, meta.name, o['spec']),
  };
}

function hashOf(namespace: string, name: string, spec: unknown): string | undefined {
  try {
    return kingressHash(namespace, name, spec);
  } catch (err) {
    if (err instanceof IngressSpecError) return undefined;
    throw err;
  }
}
