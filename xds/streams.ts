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
//
// Incremental: a stream hears only its own view's publishes, and only the names that
// changed; it remembers the type snapshot it last sent (shared with the store, not copied)
// and what changed since. SotW CDS and LDS responses are complete (omission = deletion);
// SotW EDS and RDS responses carry only the resources that changed for this client, which
// the protocol allows for those types (Envoy updates the named resources and keeps the rest).
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type { PublishEvent, ResourceEntry, SnapshotCache, TypeSnapshot } from './cache.js';
import { contentHash } from './cache.js';
import { encodeDeltaResponse, encodeSotwResponse, sharedNonce, wildcardEntries, type EncodedMessage } from './encoded-response.js';
import { peerHost } from './log-limit.js';
import { REFUSED_STATUS, nodeRefusal } from './mtls.js';
import type { XdsMetrics } from './metrics.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, PUSH_ORDER, TYPE_SHORT_NAME, isResourceTypeUrl, type ResourceTypeUrl } from './protos.js';
import type { SubscriptionPool } from './subscriptions.js';
import type { DeltaDiscoveryRequest, ErrorDetail, IncomingDiscoveryRequest, NodeIdentity } from './wire.js';
import type { WriteBudget } from './write-budget.js';

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
  /** Rate-limited per client machine (xds/log-limit.ts). */
  readonly log: (client: string, line: string) => void;
  /** Bounds the response bytes waiting to be sent over all streams. */
  readonly writes: WriteBudget;
  /** SotW subscriptions shared between streams that name the same resources. */
  readonly subscriptions: SubscriptionPool;
  nextStreamId(): string;
  /** The stream now belongs to `to` (from `from`, undefined when it just identified itself). */
  viewChanged(stream: AnyAdsStream, from: string | undefined, to: string): void;
}

/** LDS and CDS may be wildcard subscriptions (an empty first request means "everything"); their SotW responses are complete. */
function wildcardCapable(type: string): boolean {
  return type === LISTENER_TYPE || type === CLUSTER_TYPE;
}

interface TypeState {
  requested: boolean;
  subscribed: ReadonlySet<string>;
  /** SotW: digest of the names the subscription was made from (held in the subscription pool). */
  namesDigest?: string;
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
  /** The type snapshot whose content (for this client's subscription) the client was last sent. */
  base?: TypeSnapshot;
  /** Bumped on every subscription change; SotW sends the whole selection after one. */
  subscriptionSeq: number;
  sentSubscriptionSeq: number;
  /** Names changed in the view since `base` (or newly subscribed), to look at on the next response. */
  pending: Set<string>;
  /** Look at every name on the next response (first response, view switch, wildcard change). */
  rescan: boolean;
  /** Names that must be sent again even if unchanged (EDS after its cluster changed). */
  force: Set<string>;
  /** Delta: what the client has, by name. */
  sentVersions: Map<string, string>;
  /** Delta: subscribed names already reported as absent. */
  toldMissing: Set<string>;
  /** SotW: the newest snapshot whose shared nonce this stream used (a nonce never repeats on a stream). */
  sharedNonceTs: number;
}

function newTypeState(): TypeState {
  return {
    requested: false, subscribed: new Set(), wildcard: false, legacyWildcard: false, awaiting: false,
    responses: 0, stale: 0, subscriptionSeq: 0, sentSubscriptionSeq: -1, pending: new Set(), rescan: true,
    force: new Set(), sentVersions: new Map(), toldMissing: new Set(), sharedNonceTs: 0,
  };
}

type AnyRequest = IncomingDiscoveryRequest | DeltaDiscoveryRequest;

/** What both stream kinds share: identity, per-type state, view tracking, ACK/NACK bookkeeping. */
abstract class AdsStream<Req extends AnyRequest> {
  readonly id: string;
  readonly connectedAt = new Date();
  readonly peer: string;
  /** The client machine (peer without its port): the key of its rate-limited log lines. */
  protected readonly clientHost: string;
  protected node: NodeIdentity | undefined;
  protected viewKey: string | undefined;
  protected readonly types = new Map<ResourceTypeUrl, TypeState>();
  private nonceSeq = 0;
  private closed = false;
  abstract readonly protocol: 'sotw' | 'delta';

  constructor(
    protected readonly call: ServerDuplexStream<Req, EncodedMessage>,
    protected readonly ctx: StreamContext,
    private readonly onClose: (s: AdsStream<Req>) => void,
    /** With mutual TLS: the node the client's certificate names, the only one it may ask for. */
    private readonly certified?: { readonly node: string | undefined },
  ) {
    this.id = ctx.nextStreamId();
    this.peer = call.getPeer();
    this.clientHost = peerHost(this.peer);
    call.on('data', (req: Req) => {
      try {
        this.handle(req);
      } catch (err) {
        this.ctx.log(this.clientHost, `xds: stream ${this.id} (${this.describeNode()}): ${(err as Error).stack ?? err}`);
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
    this.ctx.writes.forget(this);
    for (const st of this.types.values()) this.ctx.subscriptions.release(st.namesDigest);
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

  /** False when the stream was refused: its certificate does not name the node it claims. */
  protected identify(node: NodeIdentity | undefined): boolean {
    if (this.closed) return false;
    if (this.node || (!node && !this.certified)) return true;
    if (this.certified) {
      const why = node ? nodeRefusal(this.certified.node, node.id, node.locality?.sub_zone || undefined) : 'its first request carries no node identity';
      if (why || !node) {
        this.ctx.log(this.clientHost, `xds: refused ADS stream ${this.id} from ${this.clientHost}: ${why}`);
        this.call.emit('error', { code: REFUSED_STATUS, details: `chikai-xds: ${why}` });
        this.close(false);
        return false;
      }
    }
    this.node = node;
    this.viewKey = this.ctx.cache.viewKeyFor(this.gatewayNode);
    this.ctx.viewChanged(this as unknown as AnyAdsStream, undefined, this.viewKey);
    return true;
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
      this.ctx.log(this.clientHost, `xds: ${short} version ${record.version} NACKed by ${this.describeNode()} (stream ${this.id}): ${record.error}; keeping its last good version ${st.ackedVersion ?? '(none)'}`);
    } else {
      st.nacked = undefined;
      st.ackedVersion = versionInfo ?? st.sentVersion;
      st.ackedAt = new Date().toISOString();
      this.ctx.metrics.acks.inc({ type: short });
      if (st.sentAt !== undefined) this.ctx.metrics.ackSeconds.observe({ type: short }, (performance.now() - st.sentAt) / 1000);
    }
    return true;
  }

  protected write(type: ResourceTypeUrl, st: TypeState, res: EncodedMessage, nonce: string, version: string): void {
    st.lastNonce = nonce;
    st.awaiting = true;
    st.sentVersion = version;
    st.sentAt = performance.now();
    st.sentAtIso = new Date().toISOString();
    st.responses += 1;
    this.ctx.metrics.responses.inc({ type: TYPE_SHORT_NAME[type], protocol: this.protocol });
    this.ctx.writes.submit(this, res.encoded.length, (done) => {
      if (this.closed) return done();
      this.call.write(res, done);
    });
  }

  /** Its view published: note the names that changed, then send what the client lacks, in push order. */
  onPublish(event: PublishEvent): void {
    if (!this.node) return;
    for (const [type, names] of event.changed) {
      const st = this.types.get(type);
      if (!st || st.rescan) continue;
      for (const name of names) if (st.wildcard || st.subscribed.has(name)) st.pending.add(name);
    }
    for (const type of PUSH_ORDER) this.respond(type);
  }

  /** The views changed (a node joined or left): move to the right one and compare everything there. */
  reviewView(): void {
    if (!this.node) return;
    const key = this.ctx.cache.viewKeyFor(this.gatewayNode);
    if (key === this.viewKey) return;
    const from = this.viewKey;
    this.viewKey = key;
    this.ctx.viewChanged(this as unknown as AnyAdsStream, from, key);
    for (const st of this.types.values()) st.rescan = true;
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

  protected interested(st: TypeState, e: ResourceEntry): boolean {
    return (st.wildcard && e.inWildcard) || st.subscribed.has(e.name);
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
    this.ctx.log(this.clientHost, `xds: ${this.describeNode()} asked for type ${JSON.stringify((typeUrl ?? '').slice(0, 200))}, which chikai does not serve (it serves ${PUSH_ORDER.join(', ')}); ignored`);
    return undefined;
  }
}

/** True when `names` (a request's resource_names, '*' aside) are exactly `set`. */
function sameNames(set: ReadonlySet<string>, names: readonly string[]): boolean {
  let n = 0;
  for (const name of names) {
    if (name === '*') continue;
    if (!set.has(name)) return false;
    n += 1;
  }
  // Duplicates in the request would make n larger than the set; count distinct then.
  return n === set.size || new Set(names.filter((x) => x !== '*')).size === set.size;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

/** State of the world ADS. */
export class SotwStream extends AdsStream<IncomingDiscoveryRequest> {
  readonly protocol = 'sotw' as const;

  protected handle(req: IncomingDiscoveryRequest): void {
    if (!this.identify(req.node)) return;
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
    const count = req.namesCount;
    if (!st.requested) st.legacyWildcard = count === 0 && wildcardCapable(type);
    if (count > 0 && !req.namesHasWildcard) st.legacyWildcard = false;
    const wildcard = req.namesHasWildcard || (st.legacyWildcard && count === 0);
    // An ACK repeats the subscription: the names are decoded and compared only when they
    // were sent differently, and a different order of the same names is no change.
    if (!st.requested || wildcard !== st.wildcard || req.namesDigest !== st.namesDigest) {
      // Names another stream sent the same way are already a shared set: no decoding.
      const known = this.ctx.subscriptions.peek(req.namesDigest);
      const changed = !st.requested || wildcard !== st.wildcard || (known ? !sameSet(st.subscribed, known) : !sameNames(st.subscribed, req.resourceNames()));
      const next = this.ctx.subscriptions.acquire(req.namesDigest, () => req.resourceNames());
      this.ctx.subscriptions.release(st.namesDigest);
      st.namesDigest = req.namesDigest;
      st.subscribed = next;
      st.wildcard = wildcard;
      if (changed) st.subscriptionSeq += 1;
    }
    st.requested = true;
    this.respond(type);
  }

  /** Everything this client selects in `ts`; `complete` when that is the snapshot's whole wildcard set (shared bytes). */
  private selection(st: TypeState, ts: TypeSnapshot): { entries: ResourceEntry[]; complete: boolean } {
    if (st.wildcard && st.subscribed.size === 0) return { entries: wildcardEntries(ts), complete: true };
    const entries: ResourceEntry[] = [];
    let all = true;
    for (const e of ts.resources.values()) {
      if (this.interested(st, e)) entries.push(e);
      else if (e.inWildcard) all = false;
    }
    return { entries, complete: all && entries.every((e) => e.inWildcard) };
  }

  protected respond(type: ResourceTypeUrl): void {
    const st = this.types.get(type);
    if (!st || !st.requested || st.awaiting) return;
    const ts = this.typeSnapshot(type);
    if (!ts) return;
    const version = ts.version;
    if (st.base === undefined && st.clientVersion !== undefined && st.clientVersion === version) {
      // Reconnected with the current content: nothing to send, it counts as ACKed.
      st.base = ts;
      st.sentSubscriptionSeq = st.subscriptionSeq;
      st.sentVersion = version;
      st.ackedVersion = version;
      st.ackedAt = new Date().toISOString();
      st.pending.clear();
      st.rescan = false;
      return;
    }
    const base = st.base;
    const whole = base === undefined || st.rescan || st.sentSubscriptionSeq !== st.subscriptionSeq;
    // Names this client has at another version than `ts` holds (or must get again).
    const moved = (name: string): boolean => {
      if (st.force.has(name)) return true;
      const now = ts.resources.get(name);
      const then = base?.resources.get(name);
      if (now === then) return false;
      return (now !== undefined && this.interested(st, now)) || (then !== undefined && this.interested(st, then));
    };
    let send: ResourceEntry[] | undefined;
    let complete = false;
    if (whole) {
      if (base !== undefined && st.rescan && st.sentSubscriptionSeq === st.subscriptionSeq) {
        // Same subscription, another view (or a rescan): only what differs, as usual below.
        const changed = [...new Set([...ts.resources.keys(), ...base.resources.keys(), ...st.force])].filter(moved);
        if (changed.length > 0) ({ entries: send, complete } = wildcardCapable(type) ? this.selection(st, ts) : { entries: changed.flatMap((n) => ts.resources.get(n) ?? []), complete: false });
      } else {
        ({ entries: send, complete } = this.selection(st, ts));
      }
    } else {
      const changed = [...st.pending, ...st.force].filter(moved);
      if (changed.length > 0) {
        // CDS and LDS responses are complete; EDS and RDS carry what changed.
        if (wildcardCapable(type)) ({ entries: send, complete } = this.selection(st, ts));
        else send = [...new Set(changed)].flatMap((n) => ts.resources.get(n) ?? []);
      }
    }
    const previous = base;
    st.base = ts;
    st.pending.clear();
    st.rescan = false;
    st.sentSubscriptionSeq = st.subscriptionSeq;
    st.force.clear();
    if (send === undefined || (send.length === 0 && !whole)) return;
    // The first response from a snapshot uses its shared nonce, so equal responses are one message.
    let nonce: string;
    if (ts.id > st.sharedNonceTs) {
      nonce = sharedNonce(ts);
      st.sharedNonceTs = ts.id;
    } else {
      nonce = this.nextNonce();
    }
    const header = { version_info: version, type_url: type, nonce, control_plane: { identifier: 'chikai' } };
    this.write(type, st, encodeSotwResponse(header, complete ? { complete: ts } : send), nonce, version);
    if (type === CLUSTER_TYPE && previous) {
      this.forceEndpointsFor(send.filter((e) => {
        const then = previous.resources.get(e.name);
        return then !== undefined && then.version !== e.version;
      }).map((e) => e.name));
    }
  }
}

/** Incremental ADS. */
export class DeltaStream extends AdsStream<DeltaDiscoveryRequest> {
  readonly protocol = 'delta' as const;

  protected handle(req: DeltaDiscoveryRequest): void {
    if (!this.identify(req.node)) return;
    const type = this.checkType(req.type_url);
    if (!type) return;
    const st = this.state(type);
    const subscribe = req.resource_names_subscribe ?? [];
    if (!st.requested) {
      st.requested = true;
      st.wildcard = (subscribe.length === 0 && wildcardCapable(type)) || subscribe.includes('*');
      for (const [name, version] of Object.entries(req.initial_resource_versions ?? {})) st.sentVersions.set(name, version);
      st.rescan = true;
    }
    if (req.response_nonce) this.acknowledge(type, st, req.response_nonce, undefined, req.error_detail);
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    // Delta subscriptions are the stream's own (never pooled); a request that changes one gets a new set.
    const subscribed = subscribe.length > 0 || unsubscribe.length > 0 ? new Set(st.subscribed) : undefined;
    for (const name of subscribe) {
      if (name === '*') {
        if (!st.wildcard) st.rescan = true;
        st.wildcard = true;
      } else {
        subscribed!.add(name);
        st.pending.add(name);
      }
    }
    for (const name of unsubscribe) {
      if (name === '*') {
        if (st.wildcard) st.rescan = true;
        st.wildcard = false;
        continue;
      }
      subscribed!.delete(name);
      st.sentVersions.delete(name);
      st.toldMissing.delete(name);
      st.force.delete(name);
    }
    if (subscribed) st.subscribed = subscribed;
    this.respond(type);
  }

  protected respond(type: ResourceTypeUrl): void {
    const st = this.types.get(type);
    if (!st || !st.requested || st.awaiting) return;
    const ts = this.typeSnapshot(type);
    const resources = ts?.resources ?? new Map<string, ResourceEntry>();
    const candidates = st.rescan
      ? new Set([...resources.keys(), ...st.sentVersions.keys(), ...st.subscribed, ...st.force])
      : new Set([...st.pending, ...st.force]);
    const updates: ResourceEntry[] = [];
    const removed: string[] = [];
    for (const name of candidates) {
      const e = resources.get(name);
      if (e && this.interested(st, e)) {
        if (st.sentVersions.get(name) !== e.version || st.force.has(name)) updates.push(e);
      } else if (st.sentVersions.has(name)) {
        removed.push(name);
      } else if (!e && st.subscribed.has(name) && !st.toldMissing.has(name)) {
        // A name asked for that does not exist is reported once, so the client stops waiting.
        removed.push(name);
      }
    }
    st.pending.clear();
    st.rescan = false;
    st.base = ts;
    if (updates.length === 0 && removed.length === 0) {
      st.force.clear();
      return;
    }
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
    const nonce = this.nextNonce();
    this.write(type, st, encodeDeltaResponse({ system_version_info: version, type_url: type, removed_resources: removed, nonce, control_plane: { identifier: 'chikai' } }, updates), nonce, version);
    if (changedClusters.length > 0) this.forceEndpointsFor(changedClusters);
  }
}

export type AnyAdsStream = SotwStream | DeltaStream;
