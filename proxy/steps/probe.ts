// Knative's probes of the activator (`K-Network-Probe: activator`) and the kubelet's
// (`User-Agent: kube-probe/…`), answered by the proxy itself: 200, or 503 while draining.
import type { Exchange, Handler } from '../exchange.js';
import { NO_NODE } from '../exchange.js';
import { KNATIVE_NAMESPACE_HEADER, KNATIVE_REVISION_HEADER, NETWORK_PROBE_HEADER } from '../headers.js';

export function probeStep(draining: () => boolean, next: Handler<Exchange>): Handler<Exchange> {
  return (x) => {
    const h = x.req.headers;
    if (h[NETWORK_PROBE_HEADER] === 'activator') {
      return Promise.resolve({ kind: 'answered', status: draining() ? 503 : 200, body: 'activator', node: NO_NODE });
    }
    if (h['user-agent']?.startsWith('kube-probe/') && !h[KNATIVE_REVISION_HEADER] && !h[KNATIVE_NAMESPACE_HEADER]) {
      const d = draining();
      return Promise.resolve({ kind: 'answered', status: d ? 503 : 200, body: d ? 'draining' : 'ok', node: NO_NODE });
    }
    return next(x);
  };
}
