// A simulated gateway: one raw state-of-the-world ADS stream that subscribes like a
// Kourier gateway (CDS and LDS wildcard, EDS per cluster, RDS per route config) and ACKs
// every response at once, keeping nothing but versions and counters. It reads only the
// version, type and nonce of a response (the resources are skipped undecoded) and writes
// its ACKs from a pre-encoded subscription shared by every gateway, so the bench process
// spends little per message and measures the server, not itself.
import { credentials, makeGenericClientConstructor, type Client, type ClientDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, envoyProtos } from '../../xds/protos.js';
import { isEncodedMessage, type EncodedMessage } from '../../xds/encoded-response.js';
import { adsServiceDefinition, type DiscoveryRequest } from '../../xds/wire.js';

const TYPES = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] as const;
const NO_NAMES: readonly string[] = [];

/** What a gateway reads of a DiscoveryResponse. */
interface ResponseHead {
  version_info: string;
  type_url: string;
  nonce: string;
  resources: number;
}

let definition: ServiceDefinition | undefined;

function gatewayServiceDefinition(): ServiceDefinition {
  if (definition) return definition;
  const f = envoyProtos().type('envoy.service.discovery.v3.DiscoveryResponse').fields;
  const [version, resources, type, nonce] = [f.version_info!.id, f.resources!.id, f.type_url!.id, f.nonce!.id];
  const readHead = (b: Buffer): ResponseHead => {
    const r = protobuf.Reader.create(b);
    const head: ResponseHead = { version_info: '', type_url: '', nonce: '', resources: 0 };
    while (r.pos < r.len) {
      const tag = r.uint32();
      const field = tag >>> 3;
      if (field === version) head.version_info = r.string();
      else if (field === type) head.type_url = r.string();
      else if (field === nonce) head.nonce = r.string();
      else {
        if (field === resources) head.resources += 1;
        r.skipType(tag & 7);
      }
    }
    return head;
  };
  const ads = adsServiceDefinition();
  const sotw = ads.StreamAggregatedResources!;
  definition = {
    ...ads,
    StreamAggregatedResources: {
      ...sotw,
      requestSerialize: (m: DiscoveryRequest | EncodedMessage) => (isEncodedMessage(m) ? m.encoded : sotw.requestSerialize(m)),
      responseDeserialize: readHead,
    },
  };
  return definition;
}

const namesChunks = new WeakMap<readonly string[], Uint8Array>();

/** An ACK: its few header fields, then the subscription's names, encoded once per list. */
function ack(typeUrl: string, versionInfo: string, nonce: string, names: readonly string[]): EncodedMessage {
  const t = envoyProtos().type('envoy.service.discovery.v3.DiscoveryRequest');
  let chunk = namesChunks.get(names);
  if (!chunk) {
    const w = protobuf.Writer.create();
    for (const n of names) w.uint32((t.fields.resource_names!.id << 3) | 2).string(n);
    namesChunks.set(names, (chunk = w.finish()));
  }
  const head = t.encode(t.fromObject({ type_url: typeUrl, version_info: versionInfo, response_nonce: nonce })).finish();
  return { encoded: Buffer.concat([head, chunk]) };
}

export class SimulatedGateway {
  private readonly client: Client;
  private readonly call: ClientDuplexStream<DiscoveryRequest | EncodedMessage, ResponseHead>;
  private readonly names: Map<string, readonly string[]>;
  /** ACKs sent, by type URL. */
  readonly acks = new Map<string, number>();
  /** When the last EDS ACK was written (performance.now()). */
  lastEdsAckAt = 0;
  lastResponseAt = 0;
  /** Resources received in EDS responses (each response's count summed). */
  edsResources = 0;
  failed: Error | undefined;

  constructor(address: string, id: string, node: string, clusters: readonly string[], routes: readonly string[]) {
    const Ctor = makeGenericClientConstructor(gatewayServiceDefinition(), 'AggregatedDiscoveryService');
    // Its own connection, as every gateway pod has (grpc-js would share one otherwise), and
    // Envoy's HTTP/2 flow-control windows (256 MiB; Node's default is 64 KiB, which would
    // make every server wait for window updates and measure that instead).
    this.client = new Ctor(address, credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': 256 << 20,
      'grpc-node.flow_control_window': 256 << 20,
    });
    // The lists are shared by every gateway (their encoding is too).
    this.names = new Map([[CLUSTER_TYPE, NO_NAMES], [ENDPOINT_TYPE, clusters], [LISTENER_TYPE, NO_NAMES], [ROUTE_TYPE, routes]]);
    const method = (this.client as unknown as Record<string, () => ClientDuplexStream<DiscoveryRequest | EncodedMessage, ResponseHead>>).StreamAggregatedResources;
    this.call = method.call(this.client);
    this.call.on('data', (res: ResponseHead) => this.onResponse(res));
    this.call.on('error', (err: Error) => { this.failed ??= err; });
    const identity = { id, cluster: 'kourier-knative', locality: { region: node === 'node3' ? 'edge' : 'cloud', zone: node === 'node3' ? 'edge-a' : 'cloud-a', sub_zone: node }, user_agent_name: 'chikai-bench' };
    TYPES.forEach((type, i) => this.call.write({ ...(i === 0 ? { node: identity } : {}), type_url: type, resource_names: [...this.names.get(type)!], version_info: '' }));
  }

  private onResponse(res: ResponseHead): void {
    this.call.write(ack(res.type_url, res.version_info, res.nonce, this.names.get(res.type_url) ?? []));
    const now = performance.now();
    this.lastResponseAt = now;
    this.acks.set(res.type_url, (this.acks.get(res.type_url) ?? 0) + 1);
    if (res.type_url === ENDPOINT_TYPE) {
      this.lastEdsAckAt = now;
      this.edsResources += res.resources;
    }
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
