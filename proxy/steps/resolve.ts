// Which revision a request is for: the Knative headers the Kourier route appends, else the
// Host header in one of Knative's forms (`svc.ns`, `svc.ns.svc`, `svc.ns.svc.<domain>`,
// `svc.ns.<external domain>`, or a host the revision names). Unknown: 404 naming what was
// asked. A found revision gives the request its context (exchange.ts, Route): the
// revision, the snapshot it was found in, the headers it will be forwarded with and its
// deadline.
import type { IncomingHttpHeaders } from 'node:http';
import { hostName } from '../../cluster/host.js';
import type { ClusterModel, ClusterSnapshot, RevisionInfo } from '../../cluster/model.js';
import { revisionKey } from '../../cluster/model.js';
import type { Exchange, Handler, Route, Routed } from '../exchange.js';
import { NO_NODE } from '../exchange.js';
import { KNATIVE_NAMESPACE_HEADER, KNATIVE_REVISION_HEADER, upstreamRequestHeaders } from '../headers.js';

export type Resolution =
  | { readonly revision: RevisionInfo; readonly key: string }
  | { readonly notFound: string };

function single(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
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

export function resolveStep(model: ClusterModel, next: Handler<Routed>): Handler<Exchange> {
  return (x) => {
    const snapshot = model.current;
    const found = resolveRevision(x.req.headers, snapshot);
    if ('notFound' in found) return Promise.resolve({ kind: 'answered', status: 404, body: `chikai: no revision for ${found.notFound}\n`, node: NO_NODE });
    const req = x.req;
    const route: Route = {
      revision: found.revision,
      revisionKey: found.key,
      snapshot,
      entry: {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        host: String(req.headers.host ?? ''),
        headers: upstreamRequestHeaders(req.headers, req.socket.remoteAddress, false),
        remoteAddress: req.socket.remoteAddress ?? '',
        revision: found.key,
        // The revision timeout counts from arrival; the queue may shorten it (chikai-timeout-ms).
        deadline: x.arrivedAt + found.revision.timeoutSeconds * 1000,
      },
    };
    x.route = route;
    return next({ x, route });
  };
}
