// chikai's xDS server for the Kourier gateways: gRPC ADS (state of the world and delta)
// plus the admin HTTP server, over one snapshot cache fed by the cluster model.
//
// A gateway's node is its Envoy node identity's `locality.sub_zone` (the Kubernetes node
// name; deploy/envoy sets it from the downward API). A gateway without a sub_zone, or with
// one the model does not know, gets the neutral view: weights as if every node were 0 ms
// away (load alone decides), and for revisions without ready pods every node's proxy at
// priority 0.
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import type { LoadView } from '../cluster/load.js';
import type { ClusterModel } from '../cluster/model.js';
import type { LocalityPreference } from '../cluster/cost.js';
import { AdminServer } from './admin.js';
import { SnapshotCache, type IngressSource, type InvalidResource } from './cache.js';
import { XdsMetrics } from './metrics.js';
import { ENDPOINT_TYPE, TYPE_SHORT_NAME, envoyProtos } from './protos.js';
import { DeltaStream, SotwStream, type AnyAdsStream, type ClientStatus } from './streams.js';
import { GatewayLoadReports, lrsServiceDefinition } from './lrs.js';
import type { LoadReport } from '../cluster/load-report.js';
import { adsServiceDefinition, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse, type DiscoveryRequest, type DiscoveryResponse } from './wire.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface XdsServerOptions {
  readonly model: ClusterModel;
  readonly load: LoadView;
  /** gRPC ADS address (Kourier's port is 18000). */
  readonly listen: HostPort;
  /** Admin HTTP address; no admin server when absent. */
  readonly admin?: HostPort;
  /** Port of the node-local chikai proxy, where revisions with no ready pod are sent. */
  readonly proxyPort: number;
  /** Rebuild period in ms (default 1000). */
  readonly recomputeMs?: number;
  /** Locality weight change (points of 1..100) below which EDS is not re-pushed (default 5). */
  readonly weightChangeThreshold?: number;
  /** Ports the Kourier listeners bind in Envoy (default 8080 external, 8081 internal, 8090 probe). */
  readonly gatewayPorts?: { readonly external: number; readonly internal: number; readonly probe?: number };
  /** Address the Kourier listeners bind on each gateway node (default 0.0.0.0, as Kourier's). */
  readonly gatewayListenerAddress?: (gatewayNode: string | undefined) => string;
  /** Accept the gateways' load reports (Envoy LRS) on the ADS port and hand each one here. */
  readonly gatewayLoad?: (report: LoadReport) => void;
  readonly preference?: LocalityPreference;
  /** Why the model is not ready to serve (e.g. the Kubernetes source still listing); /readyz fails meanwhile. */
  readonly notReady?: () => string | undefined;
  /** KIngresses to build routes from (Kubernetes); absent: routes from the model's hosts. */
  readonly ingresses?: IngressSource;
  /** Where NACKs, refused resources and stream errors are reported (default: console.warn). */
  readonly log?: (line: string) => void;
}

export interface XdsServer {
  /** Bound gRPC address. */
  readonly address: HostPort;
  /** Bound admin address, when an admin server was asked for. */
  readonly adminAddress: HostPort | undefined;
  readonly cache: SnapshotCache;
  readonly metrics: XdsMetrics;
  /** Connected ADS clients and their per-type ACK/NACK state (what /clients shows). */
  clients(): ClientStatus[];
  /** Resources refused by their PGV rules (what /invalid_resources shows). */
  invalidResources(): InvalidResource[];
  /** Rebuild every view now instead of at the next tick. */
  recompute(): void;
  close(): Promise<void>;
}

export async function startXdsServer(opts: XdsServerOptions): Promise<XdsServer> {
  const log = opts.log ?? ((line: string) => console.warn(line));
  envoyProtos();
  const cache = new SnapshotCache({
    model: opts.model,
    load: opts.load,
    recomputeMs: opts.recomputeMs,
    weightChangeThreshold: opts.weightChangeThreshold,
    ingresses: opts.ingresses,
    build: {
      proxyPort: opts.proxyPort,
      externalPort: opts.gatewayPorts?.external,
      internalPort: opts.gatewayPorts?.internal,
      probePort: opts.gatewayPorts?.probe,
      listenerAddress: opts.gatewayListenerAddress,
      preference: opts.preference,
    },
  });
  const streams = new Set<AnyAdsStream>();
  let streamSeq = 0;
  const metrics = new XdsMetrics({
    nackedClients() {
      const counts = new Map<string, number>(Object.values(TYPE_SHORT_NAME).map((t) => [t, 0]));
      for (const s of streams) for (const t of s.nackedTypes()) counts.set(t, (counts.get(t) ?? 0) + 1);
      return counts;
    },
    invalidResources() {
      const counts = new Map<string, number>(Object.values(TYPE_SHORT_NAME).map((t) => [t, 0]));
      for (const r of cache.invalidResources()) counts.set(TYPE_SHORT_NAME[r.typeUrl], (counts.get(TYPE_SHORT_NAME[r.typeUrl]) ?? 0) + 1);
      return counts;
    },
    *localityWeights() {
      for (const key of cache.viewKeys()) {
        for (const e of cache.view(key).types.get(ENDPOINT_TYPE)?.resources.values() ?? []) {
          for (const l of (e.json.endpoints ?? []) as { locality?: { sub_zone?: string }; priority?: number; load_balancing_weight?: number }[]) {
            yield { view: key, cluster: e.name, locality: l.locality?.sub_zone ?? '', priority: l.priority ?? 0, weight: l.load_balancing_weight ?? 0 };
          }
        }
      }
    },
  });
  const ctx = { cache, metrics, log, nextStreamId: () => `s${++streamSeq}` };
  cache.on('publish', (e) => {
    metrics.publishes.inc({ view: e.view.viewKey });
    for (const s of streams) s.onPublish();
  });
  cache.on('suppressed', (view) => metrics.suppressedWeightChanges.inc({ view }));
  cache.on('invalid', (r) => log(`xds: ${r.error}${r.servingLastGood ? ' (still serving its last good version)' : ''}`));
  cache.start();

  const track = (s: AnyAdsStream) => {
    streams.add(s);
    metrics.connectedClients.inc({ protocol: s.protocol });
  };
  const untrack = (s: AnyAdsStream) => {
    if (streams.delete(s)) metrics.connectedClients.dec({ protocol: s.protocol });
  };
  const grpcServer = new Server();
  const gatewayLoad = opts.gatewayLoad ? new GatewayLoadReports({ model: opts.model, onReport: opts.gatewayLoad }) : undefined;
  if (gatewayLoad) grpcServer.addService(lrsServiceDefinition(), gatewayLoad.handlers());
  grpcServer.addService(adsServiceDefinition(), {
    StreamAggregatedResources: (call: ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => {
      track(new SotwStream(call, ctx, (s) => untrack(s as SotwStream)));
    },
    DeltaAggregatedResources: (call: ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) => {
      track(new DeltaStream(call, ctx, (s) => untrack(s as DeltaStream)));
    },
  });
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      grpcServer.bindAsync(`${opts.listen.host}:${opts.listen.port}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
  } catch (err) {
    cache.stop();
    throw new Error(`xDS server cannot listen on ${opts.listen.host}:${opts.listen.port}: ${(err as Error).message} (pick a free port or stop what holds it)`);
  }
  const clients = () => [...streams].map((s) => s.status());
  let admin: AdminServer | undefined;
  let adminAddress: HostPort | undefined;
  if (opts.admin) {
    admin = new AdminServer({ cache, metrics, clients, nodeNames: () => opts.model.current.nodes.map((n) => n.name), notReady: opts.notReady });
    try {
      const a = await admin.listen(opts.admin.host, opts.admin.port);
      adminAddress = { host: a.address, port: a.port };
    } catch (err) {
      cache.stop();
      grpcServer.forceShutdown();
      throw new Error(`xDS admin server cannot listen on ${opts.admin.host}:${opts.admin.port}: ${(err as Error).message} (pick a free port or stop what holds it)`);
    }
  }
  let closed = false;
  return {
    address: { host: opts.listen.host, port },
    adminAddress,
    cache,
    metrics,
    clients,
    invalidResources: () => cache.invalidResources(),
    recompute: () => cache.recompute(),
    async close() {
      if (closed) return;
      closed = true;
      cache.stop();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          grpcServer.forceShutdown();
          resolve();
        }, 1000);
        grpcServer.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
        // Open ADS and LRS streams never end on their own; closing them lets tryShutdown finish.
        for (const s of streams) s.end();
        gatewayLoad?.close();
      });
      await admin?.close();
    },
  };
}
