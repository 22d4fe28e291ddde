// ADS streams: state of the world (StreamAggregatedResources) and incremental
// (DeltaAggregatedResources), one object per gRPC stream.
//
// Protocol discipline, per client and type:
// - every response carries a fresh nonce; at most one response per type is outstanding, the
//   next goes out when the client ACKs or NACKs it (as go-control-plane does);
// - a request echoing an older nonce is stale and ignored (Delta: its ACK/NACK part only;
//   subscription changes are not tied to a response and still apply);
// - a NACK keeps the client's last good version; the refused content is never sent again,
//   only a different one is;
// - content identical to what the client has is not sent, which also covers a client that
//   reconnects with its last version (SotW version_info / Delta initial_resource_versions);
// - after a CDS response that changed clusters, their EDS is sent again (Envoy keeps an
//   updated cluster warming until it gets its assignment);
// - on a new view the types go out in the order CDS → EDS → LDS → RDS.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { ResourceEntry, SnapshotCache, TypeSnapshot } from './cache.js';
import { contentHash, versionOf } from './cache.js';
import type { XdsMetrics } from './metrics.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, PUSH_ORDER, TYPE_SHORT_NAME, isResourceTypeUrl, type ResourceTypeUrl } from './protos.js';
import type {
  DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, ErrorDetail, NodeIdentity,
} from './wire.js';

export interface NackRecord {
  readonly nonce: string;
  /** Version the client refused. */
  readonly version: string;
  readonly error: string;
  readonly code: number | undefined;
  readonly at: string;
}

export interface TypeStatus {
  readonly subscribed: readonly string[];
  readonly wildcard: boolean;
  readonly sent_version?: string;
  readonly sent_nonce?: string;
  readonly sent_at?: string;
  readonly awaiting_ack: boolean;
  readonly acked_version?: string;
  readonly acked_at?: string;
  /** Set while the latest response of this type stands NACKed. */
  readonly nacked?: NackRecord;
  /** The most recent NACK, kept after a later ACK for inspection. */
  readonly last_nack?: NackRecord;
  readonly responses: number;
  readonly stale_nonces_ignored: number;
  /** Resources the client has, by name (Delta only). */
  readonly resource_versions?: Readonly<Record<string, string>>;
}

export interface ClientStatus {
  readonly stream: string;
  readonly protocol: 'sotw' | 'delta';
  readonly peer: string;
  readonly connected_at: string;
  readonly node_id: string;
  readonly node_cluster: string;
  readonly locality: { readonly region: string; readonly zone: string; readonly sub_zone: string };
  readonly user_agent: string;
  /** The view served: the gateway's node, or "(neutral)" for a missing or unknown sub_zone. */
  readonly view: string;
  readonly types: Readonly<Record<string, TypeStatus>>;
}

export interface StreamContext {
  readonly cache: SnapshotCache;
  readonly metrics: XdsMetrics;
  readonly log: (line: string) => void;
  nextStreamId(): string;
}

/** LDS and CDS may be wildcard subscriptions (an empty first request means "everything"). */
function wildcardCapable(type: string): boolean {
  return type === LISTENER_TYPE || type === CLUSTER_TYPE;
}

interface TypeState {
  requested: boolean;
  subscribed: Set<string>;
  wildcard: boolean;
  /** SotW: wildcard because the first request named nothing; ends when names are given. */
  legacyWildcard: boolean;
  lastNonce?: string;
  awaiting: boolean;
  sentVersion?: string;
  sentAt?: number;
  sentAtIso?: string;
  ackedVersion?: string;
  ackedAt?: string;
  nacked?: NackRecord;
  lastNack?: NackRecord;
  responses: number;
  stale: number;
  /** SotW: version the client said it has when it (re)subscribed without a nonce. */
  clientVersion?: string;
  /** SotW: content and subscription of the last response, to skip identical ones. */
  sentContentKey?: string;
  sentSubscriptionKey?: string;
  /** Names and versions last sent (SotW: the last response; Delta: what the client has). */
  sentVersions: Map<string, string>;
  /** Names that must be sent again even if unchanged (EDS after its cluster changed). */
  force: Set<string>;
  /** Delta: subscribed names already reported as absent. */
  toldMissing: Set<string>;
}

function newTypeState(): TypeState {
  return {
    requested: false, subscribed: new Set(), wildcard: false, legacyWildcard: false, awaiting: false,
    responses: 0, stale: 0, sentVersions: new Map(), force: new Set(), toldMissing: new Set(),
  };
}

type AnyRequest = DiscoveryRequest | DeltaDiscoveryRequest;
type AnyResponse = DiscoveryResponse | DeltaDiscoveryResponse;

/** What both stream kinds share: identity, per-type state, view tracking, ACK/NACK bookkeeping. */
abstract class AdsStream<Req extends AnyRequest, Res extends AnyResponse> {
  readonly id: string;
  readonly connectedAt = new Date();
  readonly peer: string;
  protected node: NodeIdentity | undefined;
  protected viewKey: string | undefined;
  protected readonly types = new Map<ResourceTypeUrl, TypeState>();
  private nonceSeq = 0;
  private closed = false;
  abstract readonly protocol: 'sotw' | 'delta';

  constructor(
    protected readonly call: ServerDuplexStream<Req, Res>,
    protected readonly ctx: StreamContext,
    private readonly onClose: (s: AdsStream<Req, Res>) => void,
  ) {
    this.id = ctx.nextStreamId();
    this.peer = call.getPeer();
    call.on('data', (req: Req) => {
      try {
        this.handle(req);
      } catch (err) {
        this.ctx.log(`xds: stream ${this.id} (${this.describeNode()}): ${(err as Error).stack ?? err}`);
      }
    });
    call.on('end', () => this.close(true));
    call.on('error', () => this.close(false));
    call.on('close', () => this.close(false));
  }

  get gatewayNode(): string | undefined {
    return this.node?.locality?.sub_zone || undefined;
  }

  get currentView(): string | undefined {
    return this.viewKey;
  }

  /** Ends the stream from the server side (shutdown). */
  end(): void {
    this.close(true);
  }

  private close(endCall: boolean): void {
    if (this.closed) return;
    this.closed = true;
    if (endCall) {
      try {
        this.call.end();
      } catch {
        // already closed
      }
    }
    this.onClose(this);
  }

  protected describeNode(): string {
    return `node ${this.node?.id ?? '?'} sub_zone ${this.gatewayNode ?? '(none)'}`;
  }

  protected state(type: ResourceTypeUrl): TypeState {
    let st = this.types.get(type);
    if (!st) {
      st = newTypeState();
      this.types.set(type, st);
    }
    return st;
  }

  protected identify(node: NodeIdentity | undefined): void {
    if (this.node || !node) return;
    this.node = node;
    this.viewKey = this.ctx.cache.viewKeyFor(this.gatewayNode);
  }

  protected nextNonce(): string {
    this.nonceSeq += 1;
    return `${this.id}-${this.nonceSeq}`;
  }

  /** Handles the ACK/NACK part of a request; false when the nonce is stale. */
  protected acknowledge(type: ResourceTypeUrl, st: TypeState, nonce: string, versionInfo: string | undefined, error: ErrorDetail | undefined): boolean {
    const short = TYPE_SHORT_NAME[type];
    if (nonce !== st.lastNonce) {
      st.stale += 1;
      this.ctx.metrics.staleNonces.inc({ type: short });
      return false;
    }
    if (!st.awaiting) return true;
    st.awaiting = false;
    if (error) {
      const record: NackRecord = { nonce, version: st.sentVersion ?? '', error: error.message ?? '', code: error.code, at: new Date().toISOString() };
      st.nacked = record;
      st.lastNack = record;
      this.ctx.metrics.nacks.inc({ type: short, node: this.gatewayNode ?? '' });
      this.ctx.log(`xds: ${short} version ${record.version} NACKed by ${this.describeNode()} (stream ${this.id}): ${record.error}; keeping its last good version ${st.ackedVersion ?? '(none)'}`);
    } else {
      st.nacked = undefined;
      st.ackedVersion = versionInfo ?? st.sentVersion;
      st.ackedAt = new Date().toISOString();
      this.ctx.metrics.acks.inc({ type: short });
      if (st.sentAt !== undefined) this.ctx.metrics.ackSeconds.observe({ type: short }, (performance.now() - st.sentAt) / 1000);
    }
    return true;
  }

  protected write(type: ResourceTypeUrl, st: TypeState, res: Res, version: string): void {
    st.lastNonce = res.nonce;
    st.awaiting = true;
    st.sentVersion = version;
    st.sentAt = performance.now();
    st.sentAtIso = new Date().toISOString();
    st.responses += 1;
    this.ctx.metrics.responses.inc({ type: TYPE_SHORT_NAME[type], protocol: this.protocol });
    this.call.write(res);
  }

  /** The view changed (or the model's node list did): send what changed, in push order. */
  onPublish(): void {
    if (!this.node) return;
    this.viewKey = this.ctx.cache.viewKeyFor(this.gatewayNode);
    for (const type of PUSH_ORDER) this.respond(type);
  }

  protected typeSnapshot(type: ResourceTypeUrl): TypeSnapshot | undefined {
    if (this.viewKey === undefined) return undefined;
    return this.ctx.cache.view(this.viewKey).types.get(type);
  }

  /** After clusters changed, their assignments go out again. */
  protected forceEndpointsFor(changedClusters: Iterable<string>): void {
    const eds = this.types.get(ENDPOINT_TYPE);
    if (!eds) return;
    for (const name of changedClusters) if (eds.wildcard || eds.subscribed.has(name)) eds.force.add(name);
    if (eds.force.size > 0) this.respond(ENDPOINT_TYPE);
  }

  protected abstract handle(req: Req): void;
  protected abstract respond(type: ResourceTypeUrl): void;

  status(): ClientStatus {
    const types: Record<string, TypeStatus> = {};
    for (const [type, st] of this.types) {
      types[TYPE_SHORT_NAME[type]] = {
        subscribed: [...st.subscribed].sort(),
        wildcard: st.wildcard,
        sent_version: st.sentVersion,
        sent_nonce: st.lastNonce,
        sent_at: st.sentAtIso,
        awaiting_ack: st.awaiting,
        acked_version: st.ackedVersion,
        acked_at: st.ackedAt,
        nacked: st.nacked,
        last_nack: st.lastNack,
        responses: st.responses,
        stale_nonces_ignored: st.stale,
        ...(this.protocol === 'delta' ? { resource_versions: Object.fromEntries([...st.sentVersions].sort()) } : {}),
      };
    }
    return {
      stream: this.id,
      protocol: this.protocol,
      peer: this.peer,
      connected_at: this.connectedAt.toISOString(),
      node_id: this.node?.id ?? '',
      node_cluster: this.node?.cluster ?? '',
      locality: { region: this.node?.locality?.region ?? '', zone: this.node?.locality?.zone ?? '', sub_zone: this.node?.locality?.sub_zone ?? '' },
      user_agent: [this.node?.user_agent_name, this.node?.user_agent_version].filter(Boolean).join(' '),
      view: this.viewKey ?? '',
      types,
    };
  }

  /** Per type short name: whether the latest response stands NACKed. */
  nackedTypes(): string[] {
    return [...this.types].filter(([, st]) => st.nacked).map(([t]) => TYPE_SHORT_NAME[t]);
  }

  /** Version the client ACKed for a type, if any. */
  ackedVersion(type: ResourceTypeUrl): string | undefined {
    return this.types.get(type)?.ackedVersion;
  }

  /** True when every type this client asked for has its current content ACKed. */
  upToDate(): boolean {
    return [...this.types.values()].every((st) => !st.awaiting && !st.nacked);
  }

  protected checkType(typeUrl: string | undefined): ResourceTypeUrl | undefined {
    if (typeUrl && isResourceTypeUrl(typeUrl)) return typeUrl;
    this.ctx.log(`xds: ${this.describeNode()} asked for type ${JSON.stringify((typeUrl ?? '').slice(0, 200))}, which chikai does not serve (it serves ${PUSH_ORDER.join(', ')}); ignored`);
    return undefined;
  }
}

/** State of the world ADS. */
export class SotwStream extends AdsStream<DiscoveryRequest, DiscoveryResponse> {
  readonly protocol = 'sotw' as const;

  protected handle(req: DiscoveryRequest): void {
    this.identify(req.node);
    const type = this.checkType(req.type_url);
    if (!type) return;
    const st = this.state(type);
    if (req.response_nonce) {
      if (!this.acknowledge(type, st, req.response_nonce, req.version_info, req.error_detail)) return;
    } else {
      // A first request on this stream; its version_info is what the client already has
      // (from an earlier stream), so identical content need not be sent again.
      st.clientVersion = req.version_info || undefined;
    }
    const names = req.resource_names ?? [];
    if (!st.requested) st.legacyWildcard = names.length === 0 && wildcardCapable(type);
    if (names.length > 0 && !names.includes('*')) st.legacyWildcard = false;
    st.wildcard = names.includes('*') || (st.legacyWildcard && names.length === 0);
    st.subscribed = new Set(names.filter((n) => n !== '*'));
    st.requested = true;
    this.respond(type);
  }

  private selection(type: ResourceTypeUrl, st: TypeState): ResourceEntry[] {
    const ts = this.typeSnapshot(type);
    if (!ts) return [];
    const out: ResourceEntry[] = [];
    for (const [name, e] of ts.resources) if ((st.wildcard && e.inWildcard) || st.subscribed.has(name)) out.push(e);
    return out;
  }

  protected respond(type: ResourceTypeUrl): void {
    const st = this.types.get(type);
    if (!st || !st.requested || st.awaiting) return;
    const selected = this.selection(type, st);
    const version = versionOf(selected);
    const subscriptionKey = `${st.wildcard ? '*' : ''}|${[...st.subscribed].sort().join(',')}`;
    if (st.sentContentKey === undefined && st.clientVersion !== undefined && st.clientVersion === version) {
      // Reconnected with the current content: nothing to send, it counts as ACKed.
      st.sentContentKey = version;
      st.sentSubscriptionKey = subscriptionKey;
      st.sentVersion = version;
      st.ackedVersion = version;
      st.ackedAt = new Date().toISOString();
      st.sentVersions = new Map(selected.map((e) => [e.name, e.version]));
      return;
    }
    const forced = selected.some((e) => st.force.has(e.name));
    if (version === st.sentContentKey && subscriptionKey === st.sentSubscriptionKey && !forced) return;
    const previous = st.sentVersions;
    st.sentContentKey = version;
    st.sentSubscriptionKey = subscriptionKey;
    st.sentVersions = new Map(selected.map((e) => [e.name, e.version]));
    st.force.clear();
    this.write(type, st, { version_info: version, resources: selected.map((e) => e.any), type_url: type, nonce: this.nextNonce(), control_plane: { identifier: 'chikai' } }, version);
    if (type === CLUSTER_TYPE) this.forceEndpointsFor(selected.filter((e) => previous.has(e.name) && previous.get(e.name) !== e.version).map((e) => e.name));
  }
}

/** Incremental ADS. */
export class DeltaStream extends AdsStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse> {
  readonly protocol = 'delta' as const;

  protected handle(req: DeltaDiscoveryRequest): void {
    this.identify(req.node);
    const type = this.checkType(req.type_url);
    if (!type) return;
    const st = this.state(type);
    const subscribe = req.resource_names_subscribe ?? [];
    if (!st.requested) {
      st.requested = true;
      st.wildcard = (subscribe.length === 0 && wildcardCapable(type)) || subscribe.includes('*');
      for (const [name, version] of Object.entries(req.initial_resource_versions ?? {})) st.sentVersions.set(name, version);
    }
    if (req.response_nonce) this.acknowledge(type, st, req.response_nonce, undefined, req.error_detail);
    for (const name of subscribe) {
      if (name === '*') st.wildcard = true;
      else st.subscribed.add(name);
    }
    for (const name of req.resource_names_unsubscribe ?? []) {
      if (name === '*') {
        st.wildcard = false;
        continue;
      }
      st.subscribed.delete(name);
      st.sentVersions.delete(name);
      st.toldMissing.delete(name);
      st.force.delete(name);
    }
    this.respond(type);
  }

  protected respond(type: ResourceTypeUrl): void {
    const st = this.types.get(type);
    if (!st || !st.requested || st.awaiting) return;
    const ts = this.typeSnapshot(type);
    const resources = ts?.resources ?? new Map<string, ResourceEntry>();
    const interested = (e: ResourceEntry) => (st.wildcard && e.inWildcard) || st.subscribed.has(e.name);
    const updates: ResourceEntry[] = [];
    for (const e of resources.values()) {
      if (interested(e) && (st.sentVersions.get(e.name) !== e.version || st.force.has(e.name))) updates.push(e);
    }
    const removed: string[] = [];
    for (const name of st.sentVersions.keys()) {
      const e = resources.get(name);
      if (!e || !interested(e)) removed.push(name);
    }
    // A name asked for that does not exist is reported once, so the client stops waiting.
    for (const name of st.subscribed) {
      if (!resources.has(name) && !st.sentVersions.has(name) && !st.toldMissing.has(name)) removed.push(name);
    }
    if (updates.length === 0 && removed.length === 0) return;
    const changedClusters = type === CLUSTER_TYPE ? updates.filter((e) => st.sentVersions.has(e.name)).map((e) => e.name) : [];
    for (const e of updates) {
      st.sentVersions.set(e.name, e.version);
      st.toldMissing.delete(e.name);
    }
    for (const name of removed) {
      st.sentVersions.delete(name);
      if (st.subscribed.has(name)) st.toldMissing.add(name);
    }
    st.force.clear();
    const version = ts?.version ?? contentHash('');
    this.write(type, st, {
      system_version_info: version,
      resources: updates.map((e) => ({ name: e.name, version: e.version, resource: e.any })),
      type_url: type,
      removed_resources: removed,
      nonce: this.nextNonce(),
      control_plane: { identifier: 'chikai' },
    }, version);
    if (changedClusters.length > 0) this.forceEndpointsFor(changedClusters);
  }
}

export type AnyAdsStream = SotwStream | DeltaStream;
