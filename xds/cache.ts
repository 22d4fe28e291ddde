// The snapshot store: what each gateway view is served, as immutable versioned snapshots.
// It builds nothing itself (xds/builder.ts does, as go-control-plane keeps its snapshot
// cache apart from whatever produces snapshots); it checks that a snapshot is consistent
// before serving it, keeps the current one per view, and tells listeners what changed.
//
// Consistency, as Envoy needs it: every EDS cluster in CDS has its ClusterLoadAssignment in
// EDS (or the cluster stays warming forever), and every route configuration a listener
// names (HttpConnectionManager.rds) exists in RDS (or the listener never becomes active).
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IngressRoutes } from '../cluster/kubernetes/ingress.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, PUSH_ORDER, ROUTE_TYPE, type ResourceTypeUrl } from './protos.js';
import type { EncodedAny, JsonObject } from './protojson.js';

/** View served to gateways whose `node.locality.sub_zone` is missing or names no node of the model. */
export const NEUTRAL_VIEW = '(neutral)';

export interface ResourceEntry {
  readonly typeUrl: ResourceTypeUrl;
  readonly name: string;
  /** Content hash: equal versions mean equal bytes. */
  readonly version: string;
  /** Envoy JSON form (what /config_dump shows). */
  readonly json: JsonObject;
  readonly any: EncodedAny;
  /** False for resources served only by name (gRPC api_listeners), never to wildcard subscribers. */
  readonly inWildcard: boolean;
  /** When this content was first built. */
  readonly updatedAt: Date;
  /** Canonical text of `json`, for cheap comparisons. */
  readonly text: string;
  /** Names this resource needs in the same view: a Cluster its assignment (EDS), a Listener its route configurations (RDS). */
  readonly needs: readonly string[];
}

/** The resources a Cluster or Listener needs in the same view, read from its JSON. */
export function referencesOf(typeUrl: ResourceTypeUrl, json: JsonObject): string[] {
  if (typeUrl === CLUSTER_TYPE) {
    if (json.type !== 'EDS') return [];
    const eds = json.eds_cluster_config as JsonObject | undefined;
    const service = typeof eds?.service_name === 'string' && eds.service_name !== '' ? eds.service_name : undefined;
    return [service ?? String(json.name)];
  }
  if (typeUrl === LISTENER_TYPE) {
    const out = new Set<string>();
    const hcm = (cfg: unknown) => {
      const rds = (cfg as JsonObject | undefined)?.rds as JsonObject | undefined;
      if (typeof rds?.route_config_name === 'string') out.add(rds.route_config_name);
    };
    for (const chain of (json.filter_chains ?? []) as JsonObject[]) {
      for (const f of (chain.filters ?? []) as JsonObject[]) hcm(f.typed_config);
    }
    hcm((json.api_listener as JsonObject | undefined)?.api_listener);
    return [...out];
  }
  return [];
}

export function contentHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** 64 bits of a resource's identity (name and version), for the order-free type version. */
function entryDigest(name: string, version: string): bigint {
  return createHash('sha256').update(name).update('@').update(version).digest().readBigUInt64BE(0);
}

let typeSnapshotSeq = 0;

/**
 * One resource type of one view. Its version is the XOR of every resource's name@version
 * digest: independent of order and of how the set was reached, so two replicas holding the
 * same resources serve the same version, and a change of k resources costs k digests.
 */
export class TypeSnapshot {
  readonly id = ++typeSnapshotSeq;
  readonly version: string;

  private constructor(
    readonly typeUrl: ResourceTypeUrl,
    readonly resources: ReadonlyMap<string, ResourceEntry>,
    private readonly digest: bigint,
    /** The snapshot this one was derived from, and the names that differ from it. */
    readonly parentId: number | undefined,
    readonly changed: ReadonlySet<string>,
  ) {
    this.version = digest.toString(16).padStart(16, '0');
  }

  static of(typeUrl: ResourceTypeUrl, entries: Iterable<ResourceEntry>): TypeSnapshot {
    const resources = new Map<string, ResourceEntry>();
    let digest = 0n;
    for (const e of entries) {
      if (e.typeUrl !== typeUrl) throw new Error(`${e.name} is a ${e.typeUrl}, not a ${typeUrl}`);
      const old = resources.get(e.name);
      if (old) digest ^= entryDigest(old.name, old.version);
      resources.set(e.name, e);
      digest ^= entryDigest(e.name, e.version);
    }
    return new TypeSnapshot(typeUrl, resources, digest, undefined, new Set(resources.keys()));
  }

  /** This snapshot with some resources replaced or added (`put`) and some removed; itself when nothing differs. */
  with(put: Iterable<ResourceEntry>, remove: Iterable<string> = []): TypeSnapshot {
    let next: Map<string, ResourceEntry> | undefined;
    let digest = this.digest;
    const changed = new Set<string>();
    const edit = () => (next ??= new Map(this.resources));
    for (const e of put) {
      const old = (next ?? this.resources).get(e.name);
      if (old === e) continue;
      if (e.typeUrl !== this.typeUrl) throw new Error(`${e.name} is a ${e.typeUrl}, not a ${this.typeUrl}`);
      if (old) digest ^= entryDigest(old.name, old.version);
      digest ^= entryDigest(e.name, e.version);
      edit().set(e.name, e);
      changed.add(e.name);
    }
    for (const name of remove) {
      const old = (next ?? this.resources).get(name);
      if (!old) continue;
      digest ^= entryDigest(old.name, old.version);
      edit().delete(name);
      changed.add(name);
    }
    if (!next) return this;
    return new TypeSnapshot(this.typeUrl, next, digest, this.id, changed);
  }

  /** Names whose resource differs between `earlier` and this snapshot (both of one type). */
  changedSince(earlier: TypeSnapshot | undefined): ReadonlySet<string> {
    if (earlier === this) return new Set();
    if (!earlier) return new Set(this.resources.keys());
    if (this.parentId === earlier.id) return this.changed;
    const out = new Set<string>();
    for (const [name, e] of this.resources) if (earlier.resources.get(name) !== e) out.add(name);
    for (const name of earlier.resources.keys()) if (!this.resources.has(name)) out.add(name);
    return out;
  }
}

export interface ViewSnapshot {
  /** A node name, or NEUTRAL_VIEW. */
  readonly viewKey: string;
  /** The node traffic is weighted from; undefined for the neutral view. */
  readonly gatewayNode: string | undefined;
  /** ClusterSnapshot version it was built from. */
  readonly modelVersion: number;
  readonly publishedAt: Date;
  readonly types: ReadonlyMap<ResourceTypeUrl, TypeSnapshot>;
}

export interface PublishEvent {
  readonly view: ViewSnapshot;
  readonly previous: ViewSnapshot | undefined;
  /** Per type, the names whose content changed, appeared or disappeared. */
  readonly changed: ReadonlyMap<ResourceTypeUrl, ReadonlySet<string>>;
}

export interface SnapshotCacheEvents {
  publish: [event: PublishEvent];
  /** A view appeared or went away: gateways may now belong to another view. */
  views: [];
}

/** The Knative Ingresses to route by, and a way to hear that they changed. */
export interface IngressSource {
  current(): readonly IngressRoutes[];
  onChange(listener: () => void): () => void;
}

export class InconsistentSnapshotError extends Error {
  override name = 'InconsistentSnapshotError';

  constructor(readonly viewKey: string, readonly problems: readonly string[]) {
    super(`snapshot for view ${viewKey} refused, it is not consistent: ${problems.join('; ')}`);
  }
}

/** What makes a view inconsistent: a cluster without its assignment, a listener without its route configuration. */
export function consistencyProblems(types: ReadonlyMap<ResourceTypeUrl, TypeSnapshot>): string[] {
  const problems: string[] = [];
  const check = (from: ResourceTypeUrl, to: ResourceTypeUrl, what: string) => {
    const have = types.get(to)?.resources;
    for (const e of types.get(from)?.resources.values() ?? []) {
      for (const need of e.needs) if (!have?.has(need)) problems.push(`${what.replace('%s', JSON.stringify(e.name))} ${JSON.stringify(need)} is missing`);
    }
  };
  check(CLUSTER_TYPE, ENDPOINT_TYPE, 'EDS cluster %s: its ClusterLoadAssignment');
  check(LISTENER_TYPE, ROUTE_TYPE, 'listener %s: its RouteConfiguration');
  return problems;
}

export class SnapshotCache extends EventEmitter<SnapshotCacheEvents> {
  private readonly views = new Map<string, ViewSnapshot>();

  constructor() {
    super();
    this.setMaxListeners(0);
  }

  /** The view a gateway on `node` gets: its own, or the neutral one for a missing/unknown node. */
  viewKeyFor(node: string | undefined): string {
    return node && this.views.has(node) ? node : NEUTRAL_VIEW;
  }

  /** The current snapshot of a view (the neutral one when `viewKey` has none). */
  view(viewKey: string): ViewSnapshot {
    const v = this.views.get(viewKey) ?? this.views.get(NEUTRAL_VIEW);
    if (!v) throw new Error(`no snapshot for view ${viewKey} yet`);
    return v;
  }

  /** The current snapshot of exactly this view, if any. */
  peek(viewKey: string): ViewSnapshot | undefined {
    return this.views.get(viewKey);
  }

  viewKeys(): string[] {
    return [...this.views.keys()];
  }

  /**
   * Serves `next` as its view's snapshot, after checking it is consistent; an inconsistent
   * one is refused (InconsistentSnapshotError) and the view keeps what it had.
   */
  publish(next: ViewSnapshot): PublishEvent | undefined {
    const problems = consistencyProblems(next.types);
    if (problems.length > 0) throw new InconsistentSnapshotError(next.viewKey, problems);
    const previous = this.views.get(next.viewKey);
    const changed = new Map<ResourceTypeUrl, ReadonlySet<string>>();
    for (const type of PUSH_ORDER) {
      const now = next.types.get(type);
      const before = previous?.types.get(type);
      if (now === before) continue;
      const names = now ? now.changedSince(before) : new Set(before?.resources.keys());
      if (names.size > 0) changed.set(type, names);
    }
    if (previous && changed.size === 0) return undefined;
    const view = Object.freeze({ ...next });
    this.views.set(next.viewKey, view);
    const event: PublishEvent = { view, previous, changed };
    if (!previous) this.emit('views');
    this.emit('publish', event);
    return event;
  }

  /** Stops serving a view (its node left the model). */
  remove(viewKey: string): void {
    if (this.views.delete(viewKey)) this.emit('views');
  }
}
