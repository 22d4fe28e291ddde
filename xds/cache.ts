// The snapshot cache: what each gateway node is served, as immutable versioned views.
//
// Every view is rebuilt from the cluster model on each model 'change' and at least every
// `recomputeMs` (measured load moves the weights). A rebuilt resource replaces the served
// one only when it really differs: an EDS assignment whose only change is locality weights
// moving by no more than `weightChangeThreshold` keeps the served version, so a quiet
// cluster causes no pushes. Every new resource is checked against the PGV rules first; a
// resource that fails is not served (the last good version of it stays), and the failure
// is kept for the admin server.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { LoadView } from '../cluster/load.js';
import type { ClusterModel } from '../cluster/model.js';
import { buildNodeResources, type BuildOptions } from './resources.js';
import type { IngressRoutes } from '../cluster/kubernetes/ingress.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, PUSH_ORDER, ROUTE_TYPE, type ResourceTypeUrl } from './protos.js';
import { packAny, type EncodedAny, type JsonObject } from './protojson.js';
import { validateMessage, type Violation } from './validate.js';

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
  /** When this content was first served in this view. */
  readonly updatedAt: Date;
  /** Canonical text of `json`, for cheap comparisons. */
  readonly text: string;
}

export interface TypeSnapshot {
  readonly typeUrl: ResourceTypeUrl;
  /** Hash over every resource's name and version. */
  readonly version: string;
  readonly resources: ReadonlyMap<string, ResourceEntry>;
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

export interface InvalidResource {
  readonly viewKey: string;
  readonly typeUrl: ResourceTypeUrl;
  readonly name: string;
  readonly error: string;
  readonly violations: readonly Violation[];
  readonly since: Date;
  /** True when an earlier good version of the resource is still being served. */
  readonly servingLastGood: boolean;
}

export interface PublishEvent {
  readonly view: ViewSnapshot;
  readonly previous: ViewSnapshot | undefined;
  /** Per type, the names whose content changed, appeared or disappeared. */
  readonly changed: ReadonlyMap<ResourceTypeUrl, ReadonlySet<string>>;
}

export interface SnapshotCacheEvents {
  publish: [event: PublishEvent];
  /** An EDS change held back because its weights moved by no more than the threshold. */
  suppressed: [viewKey: string, cluster: string];
  invalid: [resource: InvalidResource];
}

export interface SnapshotCacheOptions {
  readonly model: ClusterModel;
  readonly load: LoadView;
  readonly build: BuildOptions;
  /** Rebuild period in ms (default 1000). */
  readonly recomputeMs?: number;
  /** Largest change of any locality weight (points, weights are 1..100) that is not pushed (default 5). */
  readonly weightChangeThreshold?: number;
  /** Where routes come from in Kubernetes: the KIngresses (absent: the model's hosts). */
  readonly ingresses?: IngressSource;
}

/** The Knative Ingresses to route by, and a way to hear that they changed. */
export interface IngressSource {
  current(): readonly IngressRoutes[];
  onChange(listener: () => void): () => void;
}

export function contentHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** Version of a set of resources: a hash of their names and versions. */
export function versionOf(entries: Iterable<ResourceEntry>): string {
  const parts = [...entries].map((e) => `${e.name}@${e.version}`).sort();
  return contentHash(parts.join('\n'));
}

/** True when two assignments differ only in locality weights, each by at most `threshold`. */
export function onlySmallWeightChange(before: JsonObject, after: JsonObject, threshold: number): boolean {
  const b = before.endpoints;
  const a = after.endpoints;
  if (!Array.isArray(b) || !Array.isArray(a) || a.length !== b.length) return false;
  const strip = (x: JsonObject): string => {
    const { endpoints: _e, ...rest } = x;
    return JSON.stringify(rest);
  };
  if (strip(before) !== strip(after)) return false;
  for (let i = 0; i < a.length; i++) {
    const { load_balancing_weight: wa, ...ra } = a[i] as JsonObject;
    const { load_balancing_weight: wb, ...rb } = b[i] as JsonObject;
    if (JSON.stringify(ra) !== JSON.stringify(rb)) return false;
    if (Math.abs(Number(wa ?? 0) - Number(wb ?? 0)) > threshold) return false;
  }
  return true;
}

export class SnapshotCache extends EventEmitter<SnapshotCacheEvents> {
  private readonly views = new Map<string, ViewSnapshot>();
  private readonly invalid = new Map<string, InvalidResource>();
  private encoded = new Map<string, { any: EncodedAny; version: string }>();
  private timer: NodeJS.Timeout | undefined;
  private pending: NodeJS.Immediate | undefined;
  private readonly onModelChange = (): void => this.schedule();
  private unsubscribeIngresses: (() => void) | undefined;
  readonly recomputeMs: number;
  readonly weightChangeThreshold: number;

  constructor(private readonly opts: SnapshotCacheOptions) {
    super();
    this.setMaxListeners(0);
    this.recomputeMs = opts.recomputeMs ?? 1000;
    this.weightChangeThreshold = opts.weightChangeThreshold ?? 5;
    if (!(this.recomputeMs > 0)) throw new Error(`recomputeMs must be a positive number of milliseconds, got ${opts.recomputeMs}`);
    if (!(this.weightChangeThreshold >= 0)) throw new Error(`weightChangeThreshold must be ≥ 0 weight points, got ${opts.weightChangeThreshold}`);
  }

  start(): void {
    this.recompute();
    this.opts.model.on('change', this.onModelChange);
    this.unsubscribeIngresses = this.opts.ingresses?.onChange(this.onModelChange);
    this.timer = setInterval(() => this.recompute(), this.recomputeMs);
    this.timer.unref();
  }

  stop(): void {
    this.opts.model.off('change', this.onModelChange);
    this.unsubscribeIngresses?.();
    this.unsubscribeIngresses = undefined;
    if (this.timer) clearInterval(this.timer);
    if (this.pending) clearImmediate(this.pending);
    this.timer = undefined;
    this.pending = undefined;
  }

  /** Coalesces a burst of model changes into one rebuild. */
  private schedule(): void {
    if (this.pending) return;
    this.pending = setImmediate(() => {
      this.pending = undefined;
      this.recompute();
    });
  }

  /** The view a gateway on `node` gets: its own, or the neutral one for a missing/unknown node. */
  viewKeyFor(node: string | undefined): string {
    return node && this.opts.model.current.node(node) ? node : NEUTRAL_VIEW;
  }

  view(viewKey: string): ViewSnapshot {
    let v = this.views.get(viewKey);
    if (!v) {
      this.recompute();
      v = this.views.get(viewKey) ?? this.views.get(NEUTRAL_VIEW);
    }
    if (!v) throw new Error(`no view ${viewKey}`);
    return v;
  }

  viewKeys(): string[] {
    return [...this.views.keys()];
  }

  invalidResources(): InvalidResource[] {
    return [...this.invalid.values()];
  }

  /** Rebuilds every view and publishes the ones that changed. */
  recompute(): void {
    const snap = this.opts.model.current;
    const keys = [...snap.nodes.map((n) => n.name), NEUTRAL_VIEW];
    const ingresses = this.opts.ingresses?.current();
    const nextEncoded = new Map<string, { any: EncodedAny; version: string }>();
    const events: PublishEvent[] = [];
    for (const key of keys) {
      const gatewayNode = key === NEUTRAL_VIEW ? undefined : key;
      const built = buildNodeResources(snap, this.opts.load, gatewayNode, this.opts.build, ingresses);
      const byType: Record<ResourceTypeUrl, { name: string; json: JsonObject; inWildcard: boolean }[]> = {
        [CLUSTER_TYPE]: built.clusters.map((json) => ({ name: String(json.name), json, inWildcard: true })),
        [ENDPOINT_TYPE]: built.endpoints.map((json) => ({ name: String(json.cluster_name), json, inWildcard: true })),
        [LISTENER_TYPE]: built.listeners.map((l) => ({ name: String(l.listener.name), json: l.listener, inWildcard: l.inWildcard })),
        [ROUTE_TYPE]: built.routes.map((json) => ({ name: String(json.name), json, inWildcard: true })),
      };
      const previous = this.views.get(key);
      const types = new Map<ResourceTypeUrl, TypeSnapshot>();
      const changed = new Map<ResourceTypeUrl, Set<string>>();
      for (const typeUrl of PUSH_ORDER) {
        const prevType = previous?.types.get(typeUrl);
        const resources = new Map<string, ResourceEntry>();
        const names = new Set<string>();
        for (const { name, json, inWildcard } of byType[typeUrl]) {
          names.add(name);
          const entry = this.entryFor(key, typeUrl, name, json, inWildcard, prevType?.resources.get(name), nextEncoded);
          if (entry) resources.set(name, entry);
        }
        // Resources that failed validation and have no last good version are simply absent.
        for (const k of [...this.invalid.keys()]) {
          const inv = this.invalid.get(k);
          if (inv && inv.viewKey === key && inv.typeUrl === typeUrl && !names.has(inv.name)) this.invalid.delete(k);
        }
        const diff = new Set<string>();
        for (const [name, e] of resources) if (prevType?.resources.get(name) !== e) diff.add(name);
        for (const name of prevType?.resources.keys() ?? []) if (!resources.has(name)) diff.add(name);
        if (diff.size > 0 || !prevType) {
          types.set(typeUrl, { typeUrl, version: versionOf(resources.values()), resources });
          if (diff.size > 0) changed.set(typeUrl, diff);
        } else {
          types.set(typeUrl, prevType);
        }
      }
      if (!previous || changed.size > 0) {
        const view: ViewSnapshot = Object.freeze({ viewKey: key, gatewayNode, modelVersion: snap.version, publishedAt: new Date(), types });
        this.views.set(key, view);
        events.push({ view, previous, changed });
      }
    }
    for (const key of [...this.views.keys()]) if (!keys.includes(key)) this.views.delete(key);
    this.encoded = nextEncoded;
    for (const e of events) this.emit('publish', e);
  }

  private entryFor(
    viewKey: string,
    typeUrl: ResourceTypeUrl,
    name: string,
    json: JsonObject,
    inWildcard: boolean,
    prev: ResourceEntry | undefined,
    nextEncoded: Map<string, { any: EncodedAny; version: string }>,
  ): ResourceEntry | undefined {
    const text = JSON.stringify(json);
    const invalidKey = `${viewKey}|${typeUrl}|${name}`;
    if (prev && prev.text === text && prev.inWildcard === inWildcard) {
      this.invalid.delete(invalidKey);
      this.keepEncoded(typeUrl, prev, nextEncoded);
      return prev;
    }
    if (typeUrl === ENDPOINT_TYPE && prev && !this.invalid.has(invalidKey) && onlySmallWeightChange(prev.json, json, this.weightChangeThreshold)) {
      this.emit('suppressed', viewKey, name);
      this.keepEncoded(typeUrl, prev, nextEncoded);
      return prev;
    }
    const memoKey = `${typeUrl}\n${text}`;
    let enc = this.encoded.get(memoKey) ?? nextEncoded.get(memoKey);
    if (!enc) {
      const violations = validateMessage(typeUrl, json);
      let error: string | undefined;
      let any: EncodedAny | undefined;
      if (violations.length === 0) {
        try {
          any = packAny(typeUrl, json);
        } catch (err) {
          error = (err as Error).message;
        }
      }
      if (violations.length > 0 || !any) {
        const type = typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
        const detail = violations.length > 0 ? violations.map((v) => `${v.field || '(message)'}: ${v.message} [${v.rule}]`).join('; ') : error;
        const record: InvalidResource = {
          viewKey,
          typeUrl,
          name,
          error: `${type} ${JSON.stringify(name)} (view ${viewKey}) not sent: ${detail}`,
          violations,
          since: this.invalid.get(invalidKey)?.since ?? new Date(),
          servingLastGood: prev !== undefined,
        };
        const known = this.invalid.get(invalidKey);
        this.invalid.set(invalidKey, record);
        if (!known || known.error !== record.error) this.emit('invalid', record);
        if (prev) this.keepEncoded(typeUrl, prev, nextEncoded);
        return prev;
      }
      enc = { any, version: contentHash(memoKey) };
    }
    nextEncoded.set(memoKey, enc);
    this.invalid.delete(invalidKey);
    return Object.freeze({ typeUrl, name, version: enc.version, json: deepFreeze(json), any: enc.any, inWildcard, updatedAt: new Date(), text });
  }

  private keepEncoded(typeUrl: string, e: ResourceEntry, next: Map<string, { any: EncodedAny; version: string }>): void {
    next.set(`${typeUrl}\n${e.text}`, { any: e.any, version: e.version });
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
