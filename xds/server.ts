// chikai's xDS server for the Kourier gateways: gRPC ADS (state of the world and delta)
// plus the admin HTTP server, over one snapshot store (xds/cache.ts) that the builder
// (xds/builder.ts) fills from the cluster model and the measured load.
//
// A gateway's node is its Envoy node identity's `locality.sub_zone` (the Kubernetes node
// name; deploy/envoy sets it from the downward API). A gateway without a sub_zone, or with
// one the model does not know, gets the neutral view: weights as if every node were 0 ms
// away (load alone decides), and for revisions without ready pods every node's proxy at
// priority 0.
import { Server, ServerCredentials, type ServerDuplexStream, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../cluster/clock.js';
import type { LoadView } from '../cluster/load.js';
import type { ClusterModel } from '../cluster/model.js';
import type { LocalityPreference } from '../cluster/cost.js';
import { AdminServer } from './admin.js';
import { SnapshotBuilder, type InvalidResource } from './builder.js';
import { SnapshotCache, type IngressSource } from './cache.js';
import { XdsMetrics } from './metrics.js';
import { RateLimitedLog } from './log-limit.js';
import { certificateNode, listenMutualTls, type MutualTls, type TlsListener } from './mtls.js';
import { ENDPOINT_TYPE, TYPE_SHORT_NAME, envoyProtos } from './protos.js';
import { DeltaStream, SotwStream, type AnyAdsStream, type ClientStatus } from './streams.js';
import type { EncodedMessage } from './encoded-response.js';
import { SubscriptionPool } from './subscriptions.js';
import { WriteBudget } from './write-budget.js';
import { adsServiceDefinition, shutdownGrpc, type DeltaDiscoveryRequest, type IncomingDiscoveryRequest } from './wire.js';

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
  /** Re-read period in ms for a load view that does not say what moved (default 1000). */
  readonly recomputeMs?: number;
  /** Locality weight change (points of 1..100) below which EDS is not re-pushed (default 5). */
  readonly weightChangeThreshold?: number;
  /** How long held-back weights must stay unchanged before they are pushed anyway (default 5000 ms). */
  readonly settleMs?: number;
  /** Ports the Kourier listeners bind in Envoy (default 8080 external, 8081 internal, 8090 probe). */
  readonly gatewayPorts?: { readonly external: number; readonly internal: number; readonly probe?: number };
  /** Address the Kourier listeners bind on each gateway node (default 0.0.0.0, as Kourier's). */
  readonly gatewayListenerAddress?: (gatewayNode: string | undefined) => string;
  readonly preference?: LocalityPreference;
  /** Why the model is not ready to serve (e.g. the Kubernetes source still listing); /readyz fails meanwhile. */
  readonly notReady?: () => string | undefined;
  /** KIngresses to build routes from (Kubernetes); absent: routes from the model's hosts. */
  readonly ingresses?: IngressSource;
  /** More gRPC services on the ADS port (the load reports, xds/load-reports.ts). */
  readonly services?: readonly { readonly definition: ServiceDefinition; readonly implementation: object }[];
  /** Response bytes that may wait in gRPC's send buffers at once, over all streams (default 64 MiB). */
  readonly writeBudgetBytes?: number;
  /** Where NACKs, refused resources and stream errors are reported (default: console.warn); a client's lines are rate-limited (xds/log-limit.ts). */
  readonly log?: (line: string) => void;
  /** Clock of the log's rate limit (default: the system clock). */
  readonly clock?: Clock;
  /**
   * Mutual TLS on the ADS port (xds/mtls.ts): clients need a certificate of this CA, and a
   * gateway gets only the view of the node its certificate names. Absent: plaintext.
   */
  readonly tls?: MutualTls;
}

export interface XdsServer {
  /** Bound gRPC address. */
  readonly address: HostPort;
  /** Bound admin address, when an admin server was asked for. */
  readonly adminAddress: HostPort | undefined;
  /** The snapshot store: what each view is served. */
  readonly cache: SnapshotCache;
  readonly builder: SnapshotBuilder;
  readonly metrics: XdsMetrics;
  /** Connected ADS clients and their per-type ACK/NACK state (what /clients shows). */
  clients(): ClientStatus[];
  /** Resources refused by their PGV rules (what /invalid_resources shows). */
  invalidResources(): InvalidResource[];
  /** Apply pending changes and re-read the load for every view now. */
  recompute(): void;
  close(): Promise<void>;
}

export async function startXdsServer(opts: XdsServerOptions): Promise<XdsServer> {
  const log = opts.log ?? ((line: string) => console.warn(line));
  const clientLog = new RateLimitedLog({ write: log, clock: opts.clock });
  envoyProtos();
  const cache = new SnapshotCache();
  const builder = new SnapshotBuilder({
    model: opts.model,
    load: opts.load,
    store: cache,
    recomputeMs: opts.recomputeMs,
    weightChangeThreshold: opts.weightChangeThreshold,
    settleMs: opts.settleMs,
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
  // Publishes go only to the streams of the view that changed.
  const byView = new Map<string, Set<AnyAdsStream>>();
  const leaveView = (s: AnyAdsStream, key: string | undefined) => {
    if (key === undefined) return;
    const set = byView.get(key);
    set?.delete(s);
    if (set?.size === 0) byView.delete(key);
  };
  let streamSeq = 0;
  const metrics = new XdsMetrics({
    nackedClients() {
      const counts = new Map<string, number>(Object.values(TYPE_SHORT_NAME).map((t) => [t, 0]));
      for (const s of streams) for (const t of s.nackedTypes()) counts.set(t, (counts.get(t) ?? 0) + 1);
      return counts;
    },
    invalidResources() {
      const counts = new Map<string, number>(Object.values(TYPE_SHORT_NAME).map((t) => [t, 0]));
      for (const r of builder.invalidResources()) counts.set(TYPE_SHORT_NAME[r.typeUrl], (counts.get(TYPE_SHORT_NAME[r.typeUrl]) ?? 0) + 1);
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
  const ctx = {
    cache,
    metrics,
    log: (client: string, line: string) => clientLog.log(client, line),
    writes: new WriteBudget(opts.writeBudgetBytes ?? 64 << 20),
    subscriptions: new SubscriptionPool(),
    nextStreamId: () => `s${++streamSeq}`,
    viewChanged(s: AnyAdsStream, from: string | undefined, to: string) {
      leaveView(s, from);
      let set = byView.get(to);
      if (!set) byView.set(to, (set = new Set()));
      set.add(s);
    },
  };
  cache.on('publish', (e) => {
    metrics.publishes.inc({ view: e.view.viewKey });
    for (const s of byView.get(e.view.viewKey) ?? []) s.onPublish(e);
  });
  // A node joined or left: gateways on it move between their own view and the neutral one.
  cache.on('views', () => {
    for (const s of streams) s.reviewView();
  });
  builder.on('suppressed', (view) => metrics.suppressedWeightChanges.inc({ view }));
  builder.on('invalid', (r) => log(`xds: ${r.error}${r.servingLastGood ? ' (still serving its last good version)' : ''}`));
  builder.on('inconsistent', (err) => log(`xds: ${err.message}`));
  builder.start();

  const track = (s: AnyAdsStream) => {
    streams.add(s);
    metrics.connectedClients.inc({ protocol: s.protocol });
  };
  const untrack = (s: AnyAdsStream) => {
    leaveView(s, s.currentView);
    if (streams.delete(s)) metrics.connectedClients.dec({ protocol: s.protocol });
  };
  // With mutual TLS every stream's certificate names the one node it may ask for.
  const allowedNode = (call: ServerDuplexStream<unknown, unknown>): { readonly node: string | undefined } | undefined =>
    opts.tls ? { node: certificateNode(call).node } : undefined;
  const grpcServer = new Server();
  grpcServer.addService(adsServiceDefinition(), {
    StreamAggregatedResources: (call: ServerDuplexStream<IncomingDiscoveryRequest, EncodedMessage>) => {
      track(new SotwStream(call, ctx, (s) => untrack(s as SotwStream), allowedNode(call)));
    },
    DeltaAggregatedResources: (call: ServerDuplexStream<DeltaDiscoveryRequest, EncodedMessage>) => {
      track(new DeltaStream(call, ctx, (s) => untrack(s as DeltaStream), allowedNode(call)));
    },
  });
  for (const svc of opts.services ?? []) grpcServer.addService(svc.definition, svc.implementation as UntypedServiceImplementation);
  let port: number;
  let tlsListener: TlsListener | undefined;
  try {
    if (opts.tls) {
      // chikai terminates TLS (to log refused handshakes) and gives grpc-js the verified connections.
      const injector = grpcServer.createConnectionInjector(ServerCredentials.createInsecure());
      tlsListener = await listenMutualTls(opts.listen.host, opts.listen.port, opts.tls, injector,
        (client, why) => clientLog.log(client, `xds: refused a connection from ${client}: ${why}`));
      port = tlsListener.port;
    } else {
      port = await new Promise<number>((resolve, reject) => {
        grpcServer.bindAsync(`${opts.listen.host}:${opts.listen.port}`, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
      });
    }
  } catch (err) {
    builder.stop();
    throw new Error(`xDS server cannot listen on ${opts.listen.host}:${opts.listen.port}: ${(err as Error).message} (pick a free port or stop what holds it)`);
  }
  const clients = () => [...streams].map((s) => s.status());
  let admin: AdminServer | undefined;
  let adminAddress: HostPort | undefined;
  if (opts.admin) {
    admin = new AdminServer({ cache, metrics, clients, invalidResources: () => builder.invalidResources(), nodeNames: () => opts.model.current.nodes.map((n) => n.name), notReady: opts.notReady });
    try {
      const a = await admin.listen(opts.admin.host, opts.admin.port);
      adminAddress = { host: a.address, port: a.port };
    } catch (err) {
      builder.stop();
      grpcServer.forceShutdown();
      throw new Error(`xDS admin server cannot listen on ${opts.admin.host}:${opts.admin.port}: ${(err as Error).message} (pick a free port or stop what holds it)`);
    }
  }
  let closed = false;
  return {
    address: { host: opts.listen.host, port },
    adminAddress,
    cache,
    builder,
    metrics,
    clients,
    invalidResources: () => builder.invalidResources(),
    recompute: () => builder.recompute(),
    async close() {
      if (closed) return;
      closed = true;
      builder.stop();
      await tlsListener?.close();
      await shutdownGrpc(grpcServer, () => {
        for (const s of streams) s.end();
      });
      await admin?.close();
    },
  };
}
