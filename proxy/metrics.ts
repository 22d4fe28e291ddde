// The proxy's Prometheus metrics, on its own registry (one per proxy, so several proxies
// can share a process in the demo and the tests).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'revision' | 'target_node' | 'code'>;
  readonly duration: Histogram<'revision' | 'target_node'>;
  readonly inFlight: Gauge<'revision'>;
  readonly podInFlight: Gauge<'revision' | 'pod'>;
  readonly buffered: Gauge<'revision'>;
  readonly heldAtZero: Gauge<'revision'>;
  readonly coldStart: Histogram<'revision'>;
  readonly queueWait: Histogram<'revision' | 'outcome'>;
  readonly retries: Counter<'revision' | 'reason'>;
  readonly refusedConnections: Counter<'reason'>;
  /** monlat's name, so existing dashboards work: milliseconds. */
  readonly latencyBetweenNodes: Gauge<'from' | 'to'>;
  readonly nodeRtt: Gauge<'from' | 'to'>;
  readonly nodeReachable: Gauge<'from' | 'to'>;

  constructor(
    node: string,
    withProcessMetrics: boolean,
    /** This proxy's requests in flight at pods, per revision (PodSlots counts them). */
    inFlightByRevision: () => Iterable<[string, number]>,
    /** The same per pod: [revision, pod, requests]. */
    inFlightByPod: () => Iterable<[string, string, number]>,
  ) {
    this.registry.setDefaultLabels({ node });
    if (withProcessMetrics) collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({
      name: 'chikai_requests_total',
      help: 'Requests answered by the node proxy, by revision, node of the pod that served it ("none" when no pod did) and status code',
      labelNames: ['revision', 'target_node', 'code'],
      registers: [this.registry],
    });
    this.duration = new Histogram({
      name: 'chikai_request_duration_seconds',
      help: 'Time from the request arriving at the proxy to the end of the response',
      labelNames: ['revision', 'target_node'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
    this.inFlight = new Gauge({
      name: 'chikai_requests_in_flight',
      help: 'Requests this proxy has in flight at pods (holding a slot) now',
      labelNames: ['revision'],
      registers: [this.registry],
      // Read from the slots' own count at scrape time: nothing to do per request.
      collect() {
        for (const [revision, n] of inFlightByRevision()) this.set({ revision }, n);
      },
    });
    this.podInFlight = new Gauge({
      name: 'chikai_pod_requests_in_flight',
      help: 'Requests this proxy has in flight at each pod (holding a slot) now',
      labelNames: ['revision', 'pod'],
      registers: [this.registry],
      collect() {
        // Pods that went idle or left drop out instead of staying at their last value.
        this.reset();
        for (const [revision, pod, n] of inFlightByPod()) this.set({ revision, pod }, n);
      },
    });
    this.buffered = new Gauge({
      name: 'chikai_requests_buffered',
      help: 'Requests waiting in the proxy for a ready pod or a free slot (queue depth)',
      labelNames: ['revision'],
      registers: [this.registry],
    });
    this.heldAtZero = new Gauge({
      name: 'chikai_requests_held_at_zero',
      help: 'Requests that arrived while their revision had no ready pod and have no response yet (demand per revision and node: a scheduler can place the first pod by it)',
      labelNames: ['revision'],
      registers: [this.registry],
    });
    this.coldStart = new Histogram({
      name: 'chikai_cold_start_seconds',
      help: 'Requests that arrived while their revision had no ready pod: time from arrival to the start of the response',
      labelNames: ['revision'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300],
      registers: [this.registry],
    });
    this.queueWait = new Histogram({
      name: 'chikai_queue_wait_seconds',
      help: 'Time requests spent queued in the proxy, by outcome (served, full, deadline, abandoned, cleared, error)',
      labelNames: ['revision', 'outcome'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300],
      registers: [this.registry],
    });
    this.retries = new Counter({
      name: 'chikai_retries_total',
      help: 'Requests sent again to another pod after a connection failure before any response byte',
      labelNames: ['revision', 'reason'],
      registers: [this.registry],
    });
    this.refusedConnections = new Counter({
      name: 'chikai_connections_refused_total',
      help: 'Client connections refused on the traffic port (idle_per_client: the client already held its cap of idle connections)',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.latencyBetweenNodes = new Gauge({
      name: 'latency_between_nodes',
      help: 'Measured round trip between two nodes in milliseconds (monlat compatible)',
      labelNames: ['from', 'to'],
      registers: [this.registry],
    });
    this.nodeRtt = new Gauge({
      name: 'chikai_node_rtt_seconds',
      help: 'Measured round trip between two nodes in seconds',
      labelNames: ['from', 'to'],
      registers: [this.registry],
    });
    this.nodeReachable = new Gauge({
      name: 'chikai_node_reachable',
      help: '1 while the node answers probes, 0 once it has not for the unreachable timeout',
      labelNames: ['from', 'to'],
      registers: [this.registry],
    });
  }
}
