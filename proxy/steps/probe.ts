// Probes answered by the proxy itself, as the activator answers them:
//   K-Network-Probe: activator   Knative's probe of the activator: 200 (503 while draining)
//   K-Network-Probe: probe       Knative's ingress status prober through a gateway's probe
//                                route: 200 echoing the K-Network-Hash the route appended,
//                                which tells the prober this gateway serves that KIngress
//                                version (400 without one)
//   User-Agent: kube-probe/…     the kubelet's: 200 `ok` (503 `draining`)
import type { Exchange, Handler, Outcome } from '../exchange.js';
import { NO_NODE } from '../exchange.js';
import { KNATIVE_NAMESPACE_HEADER, KNATIVE_REVISION_HEADER, NETWORK_HASH_HEADER, NETWORK_PROBE_HEADER } from '../headers.js';

function answered(status: number, body: string, headers?: Record<string, string>): Promise<Outcome> {
  return Promise.resolve({ kind: 'answered', status, body, headers, node: NO_NODE });
}

export function probeStep(draining: () => boolean, next: Handler<Exchange>): Handler<Exchange> {
  return (x) => {
    const h = x.req.headers;
    const probe = h[NETWORK_PROBE_HEADER];
    if (probe === 'activator') return answered(draining() ? 503 : 200, 'activator');
    if (probe === 'probe') {
      const hash = x.req.headersDistinct[NETWORK_HASH_HEADER]?.[0];
      return hash ? answered(200, '', { [NETWORK_HASH_HEADER]: hash }) : answered(400, 'a probe request must contain a non-empty K-Network-Hash header\n');
    }
    if (h['user-agent']?.startsWith('kube-probe/') && !h[KNATIVE_REVISION_HEADER] && !h[KNATIVE_NAMESPACE_HEADER]) {
      const d = draining();
      return answered(d ? 503 : 200, d ? 'draining' : 'ok');
    }
    return next(x);
  };
}
