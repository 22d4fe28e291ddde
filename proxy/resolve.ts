// Which revision a request is for: the Knative headers the Kourier route appends, else the
// Host header in one of Knative's forms (`svc.ns`, `svc.ns.svc`, `svc.ns.svc.<domain>`,
// `svc.ns.<external domain>`, or a host the revision names).
import type { IncomingHttpHeaders } from 'node:http';
import type { ClusterSnapshot, RevisionInfo } from '../cluster/model.js';
import { revisionKey } from '../cluster/model.js';
import { KNATIVE_NAMESPACE_HEADER, KNATIVE_REVISION_HEADER } from './headers.js';

export type Resolution =
  | { readonly revision: RevisionInfo; readonly key: string }
  | { readonly notFound: string };

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Host without port, lower-cased; undefined when absent or not a plausible host name. */
export function hostName(host: string | undefined): string | undefined {
  if (!host) return undefined;
  let h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end > 0 ? h.slice(0, end + 1) : undefined;
  }
  const colon = h.indexOf(':');
  if (colon >= 0) h = h.slice(0, colon);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(h) ? h : undefined;
}

export function resolveRevision(headers: IncomingHttpHeaders, snapshot: ClusterSnapshot): Resolution {
  const ns = single(headers[KNATIVE_NAMESPACE_HEADER]);
  const rev = single(headers[KNATIVE_REVISION_HEADER]);
  if (ns && rev) {
    const key = revisionKey(ns, rev);
    const revision = snapshot.revision(key);
    return revision ? { revision, key } : { notFound: `revision ${key} (from the Knative-Serving-Namespace/Revision headers)` };
  }
  const raw = single(headers.host);
  const host = hostName(raw);
  if (!host) return { notFound: raw ? `host ${JSON.stringify(raw)} (not a valid host name)` : 'a revision: the request has no Host header' };
  const revision = snapshot.revisionForHost(host);
  return revision ? { revision, key: revisionKey(revision.namespace, revision.name) } : { notFound: `host ${host}` };
}
