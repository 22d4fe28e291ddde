// The snapshot builder: reacts to model, ingress and load changes by rebuilding only what
// they touch, and hands the results to the snapshot store (xds/cache.ts).
//
// What a change rebuilds:
// - a revision's endpoints or settings: that revision's cluster (CDS) and its assignment
//   (EDS) in every view; settings and the revision set also rebuild listeners and routes;
// - a pod's measured load: the assignments of its revision, in every view;
// - RTTs or reachability measured from a node: every assignment of that node's view;
// - nodes, configured latencies or domains: everything.
// Load views that cannot say what moved (no `onChange`) are re-read every `recomputeMs`.
//
// A rebuilt resource replaces the served one only when it really differs: an EDS assignment
// whose only change is locality weights moving by no more than `weightChangeThreshold`
// keeps the served version, so a quiet cluster causes no pushes. Such a held-back change is
// pushed after all once the computed weights have stayed the same for `settleMs`: load that
// keeps moving a little causes no churn, and replicas that saw the same reports in other
// batches (and so held back different versions) end up serving the same weights. New content is checked
// against the PGV rules (once per distinct content, xds/encoder.ts); a resource that fails
// is not served (its last good version stays) and the failure is kept for the admin
// server. A cluster whose assignment has no valid version, or a listener whose route
// configuration has none, is left out too, so every published snapshot is consistent.
import { EventEmitter } from 'node:events';
import type { LoadChange, LoadView } from '../cluster/load.js';
import { revisionKey, type ClusterModel, type ClusterSnapshot } from '../cluster/model.js';
import { NEUTRAL_VIEW, InconsistentSnapshotError, TypeSnapshot, type IngressSource, type ResourceEntry, type SnapshotCache, type ViewSnapshot } from './cache.js';
import { ResourceEncoder, isRefused } from './encoder.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, PUSH_ORDER, ROUTE_TYPE, type ResourceTypeUrl } from './protos.js';
import type { JsonObject } from './protojson.js';
import { ProxyInPath } from './proxy-in-path.js';
import { buildCluster, buildGatewayListeners, buildLoadAssignment, buildSharedRouting, type BuildOptions } from './resources.js';
import type { Violation } from './validate.js';

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

export interface SnapshotBuilderEvents {
  /** An EDS change held back because its weights moved by no more than the threshold. */
  suppressed: [viewKey: string, cluster: string];
  invalid: [resource: InvalidResource];
  /** The store refused a snapshot (a bug in the builder if it ever happens: it keeps views consistent). */
  inconsistent: [error: InconsistentSnapshotError];
}

export interface SnapshotBuilderOptions {
  readonly model: ClusterModel;
  readonly load: LoadView;
  readonly build: BuildOptions;
  readonly store: SnapshotCache;
  /** Re-read period in ms for load views without change events (default 1000). */
  readonly recomputeMs?: number;
  /** Largest change of any locality weight (points, weights are 1..100) that is not pushed (default 5). */
  readonly weightChangeThreshold?: number;
  /** How long held-back weights must stay unchanged before they are pushed anyway (default 5000 ms). */
  readonly settleMs?: number;
  /** How long a gateway keeps its node's proxy in the path after its load last asked for it (default 60 s, xds/proxy-in-path.ts). */
  readonly proxyInPathHoldMs?: number;
  /** Milliseconds clock (tests). */
  readonly now?: () => number;
  /** Where routes come from in Kubernetes: the KIngresses (absent: the model's hosts). */
  readonly ingresses?: IngressSource;
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

/** What the next rebuild must redo. */
class Dirty {
  /** Everything, in every view. */
  all = false;
  /** Listeners and route configurations (the revision set or a revision's settings changed, or the ingresses). */
  routes = false;
  /** Revisions whose cluster and assignments are rebuilt in every view. */
  readonly revisions = new Set<string>();
  /** Views whose every assignment is rebuilt (load measured from their node moved). */
  readonly views = new Set<string>();

  get any(): boolean {
    return this.all || this.routes || this.revisions.size > 0 || this.views.size > 0;
  }
}

interface Built {
  readonly name: string;
  readonly json: JsonObject;
  readonly text: string;
  readonly inWildcard: boolean;
}

function built(name: string, json: JsonObject, inWildcard = true): Built {
  return { name, json, text: JSON.stringify(json), inWildcard };
}

function sameJson(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

interface RecordedInvalid extends InvalidResource {
  /** The refused content, so an unchanged one is not checked again. */
  readonly text: string;
}

function withoutText({ text: _t, ...r }: RecordedInvalid): InvalidResource {
  return r;
}

export class SnapshotBuilder extends EventEmitter<SnapshotBuilderEvents> {
  private readonly encoder = new ResourceEncoder();
  private readonly invalid = new Map<string, RecordedInvalid>();
  private dirty = new Dirty();
  private timer: NodeJS.Timeout | undefined;
  private scheduled: NodeJS.Immediate | undefined;
  private unsubscribe: (() => void)[] = [];
  private podIndex: { version: number; revisionOf: Map<string, string> } | undefined;
  /** Held-back assignments by `view|cluster`: the weights computed last and since when they are unchanged. */
  private readonly held = new Map<string, { text: string; since: number }>();
  private settleTimer: NodeJS.Timeout | undefined;
  private holdTimer: NodeJS.Timeout | undefined;
  private readonly now: () => number;
  /** Which gateways go through their node's proxy for which revisions (the one owner of that state). */
  readonly proxyInPath: ProxyInPath;
  readonly recomputeMs: number;
  readonly weightChangeThreshold: number;
  readonly settleMs: number;

  constructor(private readonly opts: SnapshotBuilderOptions) {
    super();
    this.setMaxListeners(0);
    this.recomputeMs = opts.recomputeMs ?? 1000;
    this.weightChangeThreshold = opts.weightChangeThreshold ?? 5;
    this.settleMs = opts.settleMs ?? 5000;
    this.now = opts.now ?? (() => performance.now());
    this.proxyInPath = new ProxyInPath({ holdMs: opts.proxyInPathHoldMs, now: this.now });
    if (!(this.settleMs > 0)) throw new Error(`settleMs must be a positive number of milliseconds, got ${opts.settleMs}`);
    if (!(this.recomputeMs > 0)) throw new Error(`recomputeMs must be a positive number of milliseconds, got ${opts.recomputeMs}`);
    if (!(this.weightChangeThreshold >= 0)) throw new Error(`weightChangeThreshold must be ≥ 0 weight points, got ${opts.weightChangeThreshold}`);
  }

  /** Builds every view, then follows changes. */
  start(): void {
    this.dirty.all = true;
    this.flush();
    const onModel = (snap: ClusterSnapshot, previous: ClusterSnapshot) => this.noteModelChange(snap, previous);
    this.opts.model.on('change', onModel);
    this.unsubscribe.push(() => this.opts.model.off('change', onModel));
    const offIngresses = this.opts.ingresses?.onChange(() => {
      this.dirty.routes = true;
      this.schedule();
    });
    if (offIngresses) this.unsubscribe.push(offIngresses);
    const load = this.opts.load;
    if (load.onChange) {
      this.unsubscribe.push(load.onChange((c) => this.noteLoadChange(c)));
    } else {
      this.timer = setInterval(() => this.recompute(), this.recomputeMs);
      this.timer.unref();
    }
    // Held-back weights are looked at again, so they go out once they have settled.
    this.settleTimer = setInterval(() => {
      if (this.held.size === 0) return;
      for (const key of this.held.keys()) this.dirty.revisions.add(key.slice(key.indexOf('|') + 1));
      this.schedule();
    }, this.settleMs / 2);
    this.settleTimer.unref();
    // A hold that ran out with no load change to notice it: its assignments leave the proxy.
    this.holdTimer = setInterval(() => this.leaveExpiredHolds(), Math.max(100, this.proxyInPath.holdMs / 6));
    this.holdTimer.unref();
  }

  /** Rebuilds the revisions whose proxy-in-path hold has run out. */
  leaveExpiredHolds(): void {
    const expired = this.proxyInPath.expired();
    for (const rev of expired) this.dirty.revisions.add(rev);
    if (expired.length > 0) this.schedule();
  }

  stop(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    if (this.timer) clearInterval(this.timer);
    if (this.settleTimer) clearInterval(this.settleTimer);
    if (this.scheduled) clearImmediate(this.scheduled);
    this.timer = undefined;
    this.settleTimer = undefined;
    this.scheduled = undefined;
  }

  /** Re-reads every assignment now (measured load may have moved) and applies pending changes. */
  recompute(): void {
    for (const key of this.viewKeysOf(this.opts.model.current)) this.dirty.views.add(key);
    this.flush();
  }

  invalidResources(): InvalidResource[] {
    return [...this.invalid.values()].map(withoutText);
  }

  /** Distinct encoded resources alive, over every view (equal views share them). */
  get distinctResources(): number {
    return this.encoder.size;
  }

  /** Coalesces a burst of changes into one rebuild. */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = setImmediate(() => {
      this.scheduled = undefined;
      this.flush();
    });
  }

  private noteModelChange(snap: ClusterSnapshot, previous: ClusterSnapshot): void {
    const s = snap.state;
    const p = previous.state;
    const d = this.dirty;
    if (!sameJson(s.nodes, p.nodes) || !sameJson(s.latency, p.latency) || s.domain !== p.domain || !sameJson(s.externalDomains, p.externalDomains)) {
      d.all = true;
    } else {
      if (s.revisions !== p.revisions) {
        const before = new Map(p.revisions.map((r) => [revisionKey(r.namespace, r.name), r]));
        for (const r of s.revisions) {
          const key = revisionKey(r.namespace, r.name);
          const old = before.get(key);
          before.delete(key);
          if (!old || !sameJson(old, r)) {
            d.revisions.add(key);
            d.routes = true;
          }
        }
        // Whatever is left was removed.
        for (const key of before.keys()) {
          d.revisions.add(key);
          d.routes = true;
        }
      }
      if (s.endpoints !== p.endpoints) {
        for (const key of new Set([...s.revisions, ...p.revisions].map((r) => revisionKey(r.namespace, r.name)))) {
          if (d.revisions.has(key)) continue;
          const now = snap.endpoints(key);
          const then = previous.endpoints(key);
          if (now.length !== then.length || now.some((e, i) => e !== then[i] && !sameJson(e, then[i]))) d.revisions.add(key);
        }
      }
    }
    if (d.any) this.schedule();
  }

  private noteLoadChange(change: LoadChange): void {
    const snap = this.opts.model.current;
    if (this.podIndex?.version !== snap.version) {
      this.podIndex = { version: snap.version, revisionOf: new Map(snap.state.endpoints.map((e) => [e.pod, e.revision])) };
    }
    for (const pod of change.pods) {
      const rev = this.podIndex.revisionOf.get(pod);
      if (rev) this.dirty.revisions.add(rev);
    }
    for (const rev of change.revisions ?? []) if (snap.revision(rev)) this.dirty.revisions.add(rev);
    for (const node of change.fromNodes) if (snap.node(node)) this.dirty.views.add(node);
    if (this.dirty.any) this.schedule();
  }

  private viewKeysOf(snap: ClusterSnapshot): string[] {
    return [...snap.nodes.map((n) => n.name), NEUTRAL_VIEW];
  }

  /** Applies every pending change now. */
  flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    const d = this.dirty;
    if (!d.any) return;
    this.dirty = new Dirty();
    const snap = this.opts.model.current;
    const keys = this.viewKeysOf(snap);
    const revisions = new Map(snap.revisions.map((r) => [revisionKey(r.namespace, r.name), r]));
    // View-independent parts are built once per flush; each view then resolves them to entries.
    const clusterJson = new Map<string, Built>();
    const clusterOf = (key: string): Built | undefined => {
      const rev = revisions.get(key);
      if (!rev) return undefined;
      let b = clusterJson.get(key);
      if (!b) clusterJson.set(key, (b = built(key, buildCluster(rev, this.opts.build))));
      return b;
    };
    // Route configurations and api_listeners are the same for every gateway; Kourier's
    // listeners are bound per gateway node.
    let routing: { apiListeners: Built[]; routes: Built[] } | undefined;
    if (d.all || d.routes) {
      const r = buildSharedRouting(snap, this.opts.ingresses?.current());
      routing = {
        apiListeners: r.apiListeners.map((l) => built(String(l.listener.name), l.listener, l.inWildcard)),
        routes: r.routes.map((json) => built(String(json.name), json)),
      };
    }
    this.proxyInPath.retain(revisions, new Set(keys));
    for (const key of keys) {
      const previous = this.opts.store.peek(key);
      const fresh = !previous || d.all;
      const gatewayNode = key === NEUTRAL_VIEW ? undefined : key;
      const inPath = (name: string) => (wanted: boolean) => gatewayNode !== undefined && this.proxyInPath.decide(gatewayNode, name, wanted);
      const eds = fresh || d.views.has(key) ? [...revisions.keys()] : [...d.revisions];
      const cds = fresh ? [...revisions.keys()] : [...d.revisions];
      if (!fresh && d.views.has(key)) {
        // A cluster left out for want of a valid assignment comes back with it.
        const served = previous.types.get(CLUSTER_TYPE)?.resources;
        for (const name of revisions.keys()) if (!served?.has(name) && !d.revisions.has(name)) cds.push(name);
      }
      const plan = new Map<ResourceTypeUrl, { put: ResourceEntry[]; remove: string[] }>(PUSH_ORDER.map((t) => [t, { put: [], remove: [] }]));
      const resolve = (type: ResourceTypeUrl, b: Built) => {
        const prev = previous?.types.get(type)?.resources.get(b.name);
        const e = this.entryFor(key, type, b, prev);
        if (e) plan.get(type)!.put.push(e);
        else this.forgetServed(plan, type, b.name, previous);
      };
      for (const name of eds) {
        const rev = revisions.get(name);
        if (rev) resolve(ENDPOINT_TYPE, built(name, buildLoadAssignment(snap, this.opts.load, rev, gatewayNode, this.opts.build, inPath(name))));
        else this.forget(plan, ENDPOINT_TYPE, name, key, previous);
      }
      for (const name of cds) {
        const b = clusterOf(name);
        if (b) resolve(CLUSTER_TYPE, b);
        else this.forget(plan, CLUSTER_TYPE, name, key, previous);
      }
      if (routing) {
        const listeners = [...buildGatewayListeners(gatewayNode, this.opts.build).map((l) => built(String(l.listener.name), l.listener, l.inWildcard)), ...routing.apiListeners];
        for (const [type, list] of [[LISTENER_TYPE, listeners], [ROUTE_TYPE, routing.routes]] as const) {
          const names = new Set(list.map((b) => b.name));
          for (const b of list) resolve(type, b);
          for (const name of previous?.types.get(type)?.resources.keys() ?? []) if (!names.has(name)) this.forget(plan, type, name, key, previous);
        }
      }
      if (fresh && previous) {
        // Everything was rebuilt: whatever the previous snapshot has beyond it is gone.
        for (const type of [CLUSTER_TYPE, ENDPOINT_TYPE] as const) {
          for (const name of previous.types.get(type)?.resources.keys() ?? []) if (!revisions.has(name)) this.forget(plan, type, name, key, previous);
        }
      }
      this.publish(key, gatewayNode, snap.version, previous, plan);
    }
    for (const key of this.opts.store.viewKeys()) {
      if (keys.includes(key)) continue;
      const gone = this.opts.store.peek(key);
      this.opts.store.remove(key);
      for (const ts of gone?.types.values() ?? []) for (const e of ts.resources.values()) this.encoder.release(e);
      for (const [k, r] of this.invalid) if (r.viewKey === key) this.invalid.delete(k);
      for (const k of this.held.keys()) if (k.startsWith(`${key}|`)) this.held.delete(k);
    }
  }

  /** A resource left the model: not served any more, and no longer reported invalid. */
  private forget(plan: Map<ResourceTypeUrl, { put: ResourceEntry[]; remove: string[] }>, type: ResourceTypeUrl, name: string, viewKey: string, previous: ViewSnapshot | undefined): void {
    this.invalid.delete(`${viewKey}|${type}|${name}`);
    if (type === ENDPOINT_TYPE) this.held.delete(`${viewKey}|${name}`);
    this.forgetServed(plan, type, name, previous);
  }

  private forgetServed(plan: Map<ResourceTypeUrl, { put: ResourceEntry[]; remove: string[] }>, type: ResourceTypeUrl, name: string, previous: ViewSnapshot | undefined): void {
    if (previous?.types.get(type)?.resources.has(name)) plan.get(type)!.remove.push(name);
  }

  /** The entry to serve for a rebuilt resource: the served one, a shared one, a new one, or none. */
  private entryFor(viewKey: string, type: ResourceTypeUrl, b: Built, prev: ResourceEntry | undefined): ResourceEntry | undefined {
    const invalidKey = `${viewKey}|${type}|${b.name}`;
    const heldKey = `${viewKey}|${b.name}`;
    if (prev && prev.text === b.text && prev.inWildcard === b.inWildcard) {
      this.invalid.delete(invalidKey);
      if (type === ENDPOINT_TYPE) this.held.delete(heldKey);
      return prev;
    }
    const known = this.invalid.get(invalidKey);
    if (type === ENDPOINT_TYPE && prev && !known && onlySmallWeightChange(prev.json, b.json, this.weightChangeThreshold)) {
      const h = this.held.get(heldKey);
      const now = this.now();
      if (!h || h.text !== b.text) this.held.set(heldKey, { text: b.text, since: now });
      if (!h || h.text !== b.text || now - h.since < this.settleMs) {
        this.emit('suppressed', viewKey, b.name);
        return prev;
      }
    }
    if (type === ENDPOINT_TYPE) this.held.delete(heldKey);
    // Refused before with this very content: not checked again.
    if (known && known.text === b.text) return prev;
    const r = this.encoder.encode(type, b.name, b.json, b.text, b.inWildcard);
    if (isRefused(r)) {
      const typeName = type.slice(type.lastIndexOf('.') + 1);
      const record: RecordedInvalid = {
        viewKey,
        typeUrl: type,
        name: b.name,
        error: `${typeName} ${JSON.stringify(b.name)} (view ${viewKey}) not sent: ${r.detail}`,
        violations: r.violations,
        since: known?.since ?? new Date(),
        servingLastGood: prev !== undefined,
        text: b.text,
      };
      this.invalid.set(invalidKey, record);
      if (!known || known.error !== record.error) this.emit('invalid', withoutText(record));
      return prev;
    }
    this.invalid.delete(invalidKey);
    return r;
  }

  /** Applies a view's plan, keeps it consistent, and publishes it. */
  private publish(
    viewKey: string,
    gatewayNode: string | undefined,
    modelVersion: number,
    previous: ViewSnapshot | undefined,
    plan: Map<ResourceTypeUrl, { put: ResourceEntry[]; remove: string[] }>,
  ): void {
    const types = new Map<ResourceTypeUrl, TypeSnapshot>();
    for (const type of PUSH_ORDER) {
      const { put, remove } = plan.get(type)!;
      const before = previous?.types.get(type);
      types.set(type, before ? before.with(put, remove) : TypeSnapshot.of(type, put));
    }
    // A cluster whose assignment has no valid version, or a listener whose route
    // configuration has none, would stay warming in Envoy: leave it out until it has.
    for (const [from, to, what] of [[CLUSTER_TYPE, ENDPOINT_TYPE, 'ClusterLoadAssignment'], [LISTENER_TYPE, ROUTE_TYPE, 'RouteConfiguration']] as const) {
      const have = types.get(to)!.resources;
      const orphans = [...types.get(from)!.resources.values()].filter((e) => e.needs.some((n) => !have.has(n)));
      if (orphans.length === 0) continue;
      types.set(from, types.get(from)!.with([], orphans.map((e) => e.name)));
      for (const e of orphans) {
        const invalidKey = `${viewKey}|${from}|${e.name}`;
        if (this.invalid.has(invalidKey)) continue;
        const typeName = from.slice(from.lastIndexOf('.') + 1);
        const missing = e.needs.filter((n) => !have.has(n));
        const record: RecordedInvalid = {
          viewKey, typeUrl: from, name: e.name, violations: [], since: new Date(), servingLastGood: false, text: '',
          error: `${typeName} ${JSON.stringify(e.name)} (view ${viewKey}) not sent: its ${what} ${missing.map((n) => JSON.stringify(n)).join(', ')} has no valid version`,
        };
        this.invalid.set(invalidKey, record);
        this.emit('invalid', withoutText(record));
      }
    }
    if (previous && PUSH_ORDER.every((t) => types.get(t) === previous.types.get(t))) return;
    const next: ViewSnapshot = { viewKey, gatewayNode, modelVersion, publishedAt: new Date(), types };
    try {
      this.opts.store.publish(next);
    } catch (err) {
      if (err instanceof InconsistentSnapshotError) {
        this.emit('inconsistent', err);
        return;
      }
      throw err;
    }
    // Reference counts follow what the view serves now.
    for (const type of PUSH_ORDER) {
      const now = types.get(type)!;
      const before = previous?.types.get(type);
      if (now === before) continue;
      for (const name of now.changedSince(before)) {
        const n = now.resources.get(name);
        const b = before?.resources.get(name);
        if (n === b) continue;
        if (n) this.encoder.retain(n);
        if (b) this.encoder.release(b);
      }
    }
  }
}
