// A minimal state-of-the-world ADS server that serves the Envoy gateways a configuration the
// bench sets, per gateway node: stock Kourier's (the same clusters and routes for every
// gateway), FaaSt's (each gateway to its node's proxy) and the oracle's fixed locality
// split. It plays net-kourier's control plane (go-control-plane behind a snapshot set by
// the translator); chikai's own xDS server (xds/) serves the `chikai` system.
//
// Protocol: every response a fresh nonce; one response per type outstanding, the next after
// the ACK; requests echoing an older nonce ignored; a version that equals what the client
// ACKed is not sent again. A NACK is a bench error: `synced()` rejects with Envoy's message.
import { createHash } from 'node:crypto';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { packAny, type JsonObject } from '../../xds/protojson.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, PUSH_ORDER, ROUTE_TYPE, isResourceTypeUrl, type ResourceTypeUrl } from '../../xds/protos.js';
import { adsServiceDefinition, shutdownGrpc, type DiscoveryRequest, type DiscoveryResponse } from '../../xds/wire.js';

/** What one gateway is served (Envoy JSON). */
export interface GatewayConfig {
  readonly clusters: readonly JsonObject[];
  readonly endpoints: readonly JsonObject[];
  readonly listeners: readonly JsonObject[];
  readonly routes: readonly JsonObject[];
}

const RESOURCES_OF: Readonly<Record<ResourceTypeUrl, (c: GatewayConfig) => readonly JsonObject[]>> = {
  [CLUSTER_TYPE]: (c) => c.clusters,
  [ENDPOINT_TYPE]: (c) => c.endpoints,
  [LISTENER_TYPE]: (c) => c.listeners,
  [ROUTE_TYPE]: (c) => c.routes,
};

function resourceName(type: ResourceTypeUrl, r: JsonObject): string {
  return String(type === ENDPOINT_TYPE ? r.cluster_name : r.name);
}

interface TypeState {
  /** Names asked for; empty: everything (CDS and LDS wildcard). */
  names: readonly string[];
  nonce?: string;
  awaiting: boolean;
  sentVersion?: string;
  ackedVersion?: string;
}

class GatewayConfigError extends Error {
  override name = 'GatewayConfigError';
}

class Stream {
  /** The gateway's node: its Envoy node's locality.sub_zone. */
  node: string | undefined;
  readonly types = new Map<ResourceTypeUrl, TypeState>();
  private nonces = 0;

  constructor(private readonly call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>, private readonly server: FixedXdsServer) {}

  /** The resources of one type this gateway should have, and their version. */
  wanted(type: ResourceTypeUrl, st: TypeState): { version: string; resources: JsonObject[] } | undefined {
    const config = this.node === undefined ? undefined : this.server.configOf(this.node);
    if (!config) return undefined;
    const all = RESOURCES_OF[type](config);
    const resources = st.names.length === 0 ? [...all] : all.filter((r) => st.names.includes(resourceName(type, r)));
    const version = createHash('sha256').update(JSON.stringify(resources)).digest('hex').slice(0, 16);
    return { version, resources };
  }

  onRequest(req: DiscoveryRequest): void {
    if (this.node === undefined && req.node) this.node = req.node.locality?.sub_zone || req.node.id;
    const type = req.type_url ?? '';
    if (!isResourceTypeUrl(type)) return;
    let st = this.types.get(type);
    if (!st) {
      st = { names: [], awaiting: false };
      this.types.set(type, st);
    }
    if (req.response_nonce) {
      if (req.response_nonce !== st.nonce) return; // answers an older response
      st.awaiting = false;
      if (req.error_detail) {
        this.server.nacked(`gateway ${this.node ?? '?'} refused ${type.split('.').pop()} version ${st.sentVersion}: ${req.error_detail.message ?? '(no message)'}`);
      } else {
        st.ackedVersion = st.sentVersion;
      }
    }
    st.names = [...(req.resource_names ?? [])];
    this.push(type);
  }

  push(type: ResourceTypeUrl): void {
    const st = this.types.get(type);
    if (!st || st.awaiting) return;
    const want = this.wanted(type, st);
    if (!want || want.version === st.sentVersion) return;
    st.nonce = `${++this.nonces}`;
    st.sentVersion = want.version;
    st.awaiting = true;
    this.call.write({ version_info: want.version, type_url: type, nonce: st.nonce, resources: want.resources.map((r) => packAny(type, r)) });
  }

  /** True when this gateway ACKed what it is served now, for every type it asked for. */
  synced(): boolean {
    if (this.types.size === 0) return false;
    for (const [type, st] of this.types) {
      const want = this.wanted(type, st);
      if (!want || st.ackedVersion !== want.version) return false;
    }
    return true;
  }

  end(): void {
    try {
      this.call.end();
    } catch {
      // already closed
    }
  }
}

export class FixedXdsServer {
  private configs: ReadonlyMap<string, GatewayConfig> = new Map();
  private readonly streams = new Set<Stream>();
  private nack: string | undefined;

  private constructor(private readonly grpc: Server, readonly port: number) {}

  /** Starts the server on 127.0.0.1 (a free port unless one is given). */
  static async start(port = 0): Promise<FixedXdsServer> {
    const grpc = new Server();
    let self: FixedXdsServer | undefined;
    grpc.addService(adsServiceDefinition(), {
      StreamAggregatedResources: (call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => {
        const s = new Stream(call, self!);
        self!.streams.add(s);
        call.on('data', (req: DiscoveryRequest) => s.onRequest(req));
        const gone = () => self!.streams.delete(s);
        call.on('end', () => {
          gone();
          s.end();
        });
        call.on('error', gone);
        call.on('close', gone);
      },
      // DeltaAggregatedResources: not implemented (UNIMPLEMENTED); the gateways' bootstrap asks for SotW.
    });
    const bound = await new Promise<number>((resolve, reject) => grpc.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
    self = new FixedXdsServer(grpc, bound);
    return self;
  }

  get address(): { host: string; port: number } {
    return { host: '127.0.0.1', port: this.port };
  }

  configOf(node: string): GatewayConfig | undefined {
    return this.configs.get(node);
  }

  /** From now on every gateway node is served its entry of `configs` (CDS → EDS → LDS → RDS). */
  set(configs: ReadonlyMap<string, GatewayConfig>): void {
    this.configs = configs;
    for (const s of this.streams) for (const type of PUSH_ORDER) s.push(type);
  }

  /** @internal A gateway refused a response. */
  nacked(message: string): void {
    this.nack ??= message;
  }

  /** Resolves once a gateway on every one of `nodes` has ACKed its current configuration. */
  async synced(nodes: readonly string[], timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.nack) throw new GatewayConfigError(this.nack);
      const done = new Set([...this.streams].filter((s) => s.synced()).map((s) => s.node));
      const missing = nodes.filter((n) => !done.has(n));
      if (missing.length === 0) return;
      if (Date.now() > deadline) throw new GatewayConfigError(`gateways ${missing.join(', ')} did not ACK their configuration within ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async close(): Promise<void> {
    await shutdownGrpc(this.grpc, () => {
      for (const s of this.streams) s.end();
    });
  }
}
