// A simulated gateway: one raw state-of-the-world ADS stream that subscribes like a
// Kourier gateway (CDS and LDS wildcard, EDS per cluster, RDS per route config) and ACKs
// every response at once, keeping nothing but versions and counters.
import { credentials, makeGenericClientConstructor, type Client, type ClientDuplexStream } from '@grpc/grpc-js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../xds/protos.js';
import { adsServiceDefinition, type DiscoveryRequest, type DiscoveryResponse } from '../../xds/wire.js';

const TYPES = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] as const;

export class SimulatedGateway {
  private readonly client: Client;
  private readonly call: ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>;
  private readonly names: Map<string, string[]>;
  /** ACKs sent, by type URL. */
  readonly acks = new Map<string, number>();
  /** When the last EDS ACK was written (performance.now()). */
  lastEdsAckAt = 0;
  lastResponseAt = 0;
  failed: Error | undefined;

  constructor(address: string, id: string, node: string, clusters: readonly string[], routes: readonly string[]) {
    const Ctor = makeGenericClientConstructor(adsServiceDefinition(), 'AggregatedDiscoveryService');
    // Its own connection, as every gateway pod has (grpc-js would share one otherwise).
    this.client = new Ctor(address, credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': 256 << 20 });
    this.names = new Map([[CLUSTER_TYPE, []], [ENDPOINT_TYPE, [...clusters]], [LISTENER_TYPE, []], [ROUTE_TYPE, [...routes]]]);
    const method = (this.client as unknown as Record<string, () => ClientDuplexStream<DiscoveryRequest, DiscoveryResponse>>).StreamAggregatedResources;
    this.call = method.call(this.client);
    this.call.on('data', (res: DiscoveryResponse) => this.onResponse(res));
    this.call.on('error', (err: Error) => { this.failed ??= err; });
    const identity = { id, cluster: 'kourier-knative', locality: { region: node === 'node3' ? 'edge' : 'cloud', zone: node === 'node3' ? 'edge-a' : 'cloud-a', sub_zone: node }, user_agent_name: 'chikai-bench' };
    TYPES.forEach((type, i) => this.call.write({ ...(i === 0 ? { node: identity } : {}), type_url: type, resource_names: this.names.get(type)!, version_info: '' }));
  }

  private onResponse(res: DiscoveryResponse): void {
    this.call.write({ type_url: res.type_url, version_info: res.version_info ?? '', response_nonce: res.nonce ?? '', resource_names: this.names.get(res.type_url) ?? [] });
    const now = performance.now();
    this.lastResponseAt = now;
    this.acks.set(res.type_url, (this.acks.get(res.type_url) ?? 0) + 1);
    if (res.type_url === ENDPOINT_TYPE) this.lastEdsAckAt = now;
  }

  /** Every type answered at least once. */
  get synced(): boolean {
    return TYPES.every((t) => (this.acks.get(t) ?? 0) > 0);
  }

  edsAcks(): number {
    return this.acks.get(ENDPOINT_TYPE) ?? 0;
  }

  close(): void {
    this.call.end();
    this.client.close();
  }
}
