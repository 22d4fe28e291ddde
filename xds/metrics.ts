// The xDS server's Prometheus metrics, in a registry of its own (the node proxies keep
// theirs, so both can live in one process without clashing names).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface XdsMetricsSources {
  /** Clients whose latest response of a type was NACKed, per type short name (CDS, EDS…). */
  nackedClients(): ReadonlyMap<string, number>;
  /** Resources refused by validation, per type short name. */
  invalidResources(): ReadonlyMap<string, number>;
  /** Served locality weights: one row per gateway view, cluster and locality. */
  localityWeights(): Iterable<{ view: string; cluster: string; locality: string; priority: number; weight: number }>;
}

export class XdsMetrics {
  readonly registry = new Registry();
  readonly connectedClients: Gauge<'protocol'>;
  readonly responses: Counter<'type' | 'protocol'>;
  readonly acks: Counter<'type'>;
  readonly nacks: Counter<'type' | 'node'>;
  readonly staleNonces: Counter<'type'>;
  readonly publishes: Counter<'view'>;
  readonly suppressedWeightChanges: Counter<'view'>;
  readonly ackSeconds: Histogram<'type'>;

  constructor(sources: XdsMetricsSources) {
    const registers = [this.registry];
    this.connectedClients = new Gauge({ name: 'chikai_xds_connected_clients', help: 'ADS streams open now', labelNames: ['protocol'], registers });
    this.responses = new Counter({ name: 'chikai_xds_responses_total', help: 'Discovery responses sent', labelNames: ['type', 'protocol'], registers });
    this.acks = new Counter({ name: 'chikai_xds_acks_total', help: 'Responses ACKed by clients', labelNames: ['type'], registers });
    this.nacks = new Counter({ name: 'chikai_xds_nacks_total', help: 'Responses NACKed by clients (the last good version stays; nothing is re-pushed)', labelNames: ['type', 'node'], registers });
    this.staleNonces = new Counter({ name: 'chikai_xds_stale_nonces_total', help: 'Requests ignored because they answered a superseded response', labelNames: ['type'], registers });
    this.publishes = new Counter({ name: 'chikai_xds_view_publishes_total', help: 'New versions of a gateway view', labelNames: ['view'], registers });
    this.suppressedWeightChanges = new Counter({ name: 'chikai_xds_weight_changes_suppressed_total', help: 'EDS changes not pushed because weights moved by no more than the threshold', labelNames: ['view'], registers });
    this.ackSeconds = new Histogram({
      name: 'chikai_xds_push_to_ack_seconds',
      help: 'Time from sending a response to its ACK',
      labelNames: ['type'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    new Gauge({
      name: 'chikai_xds_nacked_clients',
      help: 'Clients whose latest response of a type was NACKed',
      labelNames: ['type'],
      registers,
      collect() {
        this.reset();
        for (const [type, n] of sources.nackedClients()) this.set({ type }, n);
      },
    });
    new Gauge({
      name: 'chikai_xds_invalid_resources',
      help: 'Resources refused by their PGV validation rules (not sent)',
      labelNames: ['type'],
      registers,
      collect() {
        this.reset();
        for (const [type, n] of sources.invalidResources()) this.set({ type }, n);
      },
    });
    new Gauge({
      name: 'chikai_xds_locality_weight',
      help: 'Served locality weight (1..100 within a priority) per gateway view, cluster and locality node',
      labelNames: ['view', 'cluster', 'locality', 'priority'],
      registers,
      collect() {
        this.reset();
        for (const r of sources.localityWeights()) this.set({ view: r.view, cluster: r.cluster, locality: r.locality, priority: String(r.priority) }, r.weight);
      },
    });
  }
}
