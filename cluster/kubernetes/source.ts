// The Kubernetes API as the source of the cluster model. One informer (list + watch,
// resumed from the last resourceVersion, re-listed on 410 Gone) per resource:
//   Nodes → nodes; Knative Revisions → revisions; EndpointSlices of Knative's private
//   services → endpoints; the proxies' own EndpointSlices → each node's proxy address; Knative Ingresses → IngressRoutes (xDS server only).
// The model is rebuilt from the informers' caches, coalesced, after any change, so a
// re-list that deletes objects and a watch event take the same path.
import { EventEmitter } from 'node:events';
import type { Informer, KubernetesListObject, KubernetesObject, ObjectCache } from '@kubernetes/client-node';
import { ClusterModel, type ClusterState, type EndpointInfo, type NodeInfo, type RevisionInfo } from '../model.js';
import { loadKubernetesClient, type KubeConfig } from './client.js';
import { KOURIER_INGRESS_CLASS, ingressRoutesFrom, type IngressRoutes } from './ingress.js';
import { PRIVATE_SERVICE_SELECTOR, SERVICE_NAME_LABEL, asObject, mergeSliceEndpoints, nodeInfoFrom, proxyAddressesFrom, revisionInfoFrom } from './objects.js';

export interface KubernetesSourceOptions {
  readonly kubeConfig: KubeConfig;
  /** Model to keep up to date; when absent one is created from the first complete list. */
  readonly model?: ClusterModel;
  /** Watch Revisions, EndpointSlices and Ingresses of this namespace only (Nodes are cluster-wide). */
  readonly namespace?: string;
  /**
   * The proxies' Service: its EndpointSlices give each node's proxy pod address, which
   * becomes the node's address in the model (RTT probes, gateways' fallback to the proxy).
   * Absent: nodes keep their InternalIP.
   */
  readonly proxies?: { readonly namespace: string; readonly service: string };
  /** Also watch Knative Ingresses (the xDS server needs them, the proxy does not). */
  readonly readIngresses?: boolean;
  /** Only Ingresses of this class; null takes every class. Default: Kourier's. */
  readonly ingressClass?: string | null;
  /** Cluster DNS domain and external domains of a model created here. */
  readonly domain?: string;
  readonly externalDomains?: readonly string[];
  /** How long the first complete list may take before start fails. */
  readonly syncTimeoutMs?: number;
  /** Back-off between attempts after a list or watch fails. */
  readonly retry?: { readonly initialMs?: number; readonly maxMs?: number };
  /** Where problems are reported; default: console.warn. */
  readonly onWarning?: (message: string) => void;
}

export interface ResourceHealth {
  readonly resource: string;
  /** A complete list has been received at least once. */
  readonly synced: boolean;
  /** The last failure, with what to do about it; undefined after a success. */
  readonly lastError: string | undefined;
  readonly lists: number;
  readonly failures: number;
}

export interface KubernetesSourceEvents {
  /** The set of Ingresses (of the configured class) changed. */
  ingresses: [routes: readonly IngressRoutes[]];
  /** A list or watch failed; the source retries by itself. */
  warning: [message: string];
}

type Obj = KubernetesObject;
type ListFn = () => Promise<KubernetesListObject<Obj>>;

interface ResourceSpec {
  /** Short name for messages, e.g. "revisions.serving.knative.dev". */
  readonly resource: string;
  readonly path: string;
  readonly labelSelector?: string;
  readonly list: ListFn;
  /** Which ClusterRole grants it, for 403s. */
  readonly role: string;
  /** What is missing when the API answers 404. */
  readonly missing: string;
}

class WatchedResource {
  informer!: Informer<Obj> & ObjectCache<Obj>;
  synced = false;
  lastError: string | undefined;
  lists = 0;
  failures = 0;
  backoffMs: number;
  retryTimer: NodeJS.Timeout | undefined;
  constructor(readonly spec: ResourceSpec, readonly initialBackoffMs: number) {
    this.backoffMs = initialBackoffMs;
  }
}

const DEFAULT_SYNC_TIMEOUT_MS = 60_000;
/** The informer of the proxies' own EndpointSlices. */
const PROXY_SLICES = 'endpointslices.discovery.k8s.io (chikai proxies)';

/** A list result from the API, checked: CustomObjectsApi returns untyped JSON. */
function asList(v: unknown, resource: string): KubernetesListObject<Obj> {
  const o = asObject(v);
  if (!o || !Array.isArray(o['items'])) throw new Error(`${resource}: the API server answered a list without items`);
  return v as KubernetesListObject<Obj>;
}

function statusCode(err: unknown): number | undefined {
  const e = asObject(err);
  const c = e?.['code'] ?? e?.['statusCode'];
  return typeof c === 'number' ? c : undefined;
}

function networkCode(err: unknown): string | undefined {
  const e = asObject(err);
  const direct = e?.['code'];
  if (typeof direct === 'string') return direct;
  const cause = asObject(e?.['cause'])?.['code'];
  return typeof cause === 'string' ? cause : undefined;
}

function describeFailure(err: unknown, spec: ResourceSpec, server: string): string {
  const status = statusCode(err);
  const what = `${spec.resource} (${spec.path})`;
  if (status === 401) return `${what}: the API server at ${server} rejected the credentials (401): check the kubeconfig or the pod's ServiceAccount token`;
  if (status === 403) return `${what}: forbidden (403): the ServiceAccount needs get, list and watch on ${spec.resource}; apply deploy/base (ClusterRole ${spec.role})`;
  if (status === 404) return `${what}: not found (404): ${spec.missing}`;
  const net = networkCode(err);
  if (net) return `${what}: cannot reach the API server at ${server} (${net}); check the kubeconfig's server address and the network`;
  const message = err instanceof Error ? err.message : String(err);
  return `${what}: ${status ? `HTTP ${status}: ` : ''}${message}`;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class KubernetesSource extends EventEmitter<KubernetesSourceEvents> {
  private modelRef: ClusterModel | undefined;
  private readonly resources: WatchedResource[] = [];
  private readonly byName = new Map<string, WatchedResource>();
  private closed = false;
  private flushScheduled = false;
  private routes: readonly IngressRoutes[] = [];
  private syncWaiters: (() => void)[] = [];
  private readonly server: string;
  private readonly warn: (message: string) => void;

  /** Use startKubernetesSource(). */
  constructor(private readonly opts: KubernetesSourceOptions) {
    super();
    this.modelRef = opts.model;
    this.server = opts.kubeConfig.getCurrentCluster()?.server ?? '(no server)';
    this.warn = opts.onWarning ?? ((m) => console.warn(`chikai kubernetes: ${m}`));
  }

  /** The model this source writes (available once start() resolved). */
  get model(): ClusterModel {
    if (!this.modelRef) throw new Error('the Kubernetes source has not finished its first list yet; await startKubernetesSource()');
    return this.modelRef;
  }

  /** Every resource has been listed completely at least once. */
  get synced(): boolean {
    return this.resources.every((r) => r.synced);
  }

  /** Current Knative Ingresses of the configured class, sorted by key. */
  ingresses(): readonly IngressRoutes[] {
    if (!this.opts.readIngresses) throw new Error('the Kubernetes source was started without readIngresses: true, so it does not watch Knative Ingresses');
    return this.routes;
  }

  health(): ResourceHealth[] {
    return this.resources.map((r) => ({ resource: r.spec.resource, synced: r.synced, lastError: r.lastError, lists: r.lists, failures: r.failures }));
  }

  /** @internal Creates the informers and waits for the first complete list of each. */
  async start(): Promise<void> {
    const k8s = await loadKubernetesClient();
    const kc = this.opts.kubeConfig;
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const ns = this.opts.namespace;
    const nsPath = ns ? `/namespaces/${encodeURIComponent(ns)}` : '';
    const customList = (group: string, version: string, plural: string): ListFn => async () =>
      asList(ns ? await custom.listNamespacedCustomObject({ group, version, namespace: ns, plural }) : await custom.listClusterCustomObject({ group, version, plural }), `${plural}.${group}`);

    const specs: ResourceSpec[] = [
      {
        resource: 'nodes',
        path: '/api/v1/nodes',
        list: async () => asList(await core.listNode(), 'nodes'),
        role: 'chikai-proxy / chikai-xds',
        missing: 'the API server does not serve core/v1 nodes; is the kubeconfig pointing at a Kubernetes API server?',
      },
      {
        resource: 'revisions.serving.knative.dev',
        path: `/apis/serving.knative.dev/v1${nsPath}/revisions`,
        list: customList('serving.knative.dev', 'v1', 'revisions'),
        role: 'chikai-proxy / chikai-xds',
        missing: 'Knative Serving is not installed (apply serving-crds.yaml and serving-core.yaml first)',
      },
      {
        resource: 'endpointslices.discovery.k8s.io',
        path: `/apis/discovery.k8s.io/v1${nsPath}/endpointslices`,
        labelSelector: PRIVATE_SERVICE_SELECTOR,
        list: async () =>
          asList(
            ns
              ? await discovery.listNamespacedEndpointSlice({ namespace: ns, labelSelector: PRIVATE_SERVICE_SELECTOR })
              : await discovery.listEndpointSliceForAllNamespaces({ labelSelector: PRIVATE_SERVICE_SELECTOR }),
            'endpointslices',
          ),
        role: 'chikai-proxy / chikai-xds',
        missing: 'the API server does not serve discovery.k8s.io/v1 EndpointSlices (Kubernetes >= 1.21 is required)',
      },
    ];
    const proxies = this.opts.proxies;
    if (proxies) {
      const selector = `${SERVICE_NAME_LABEL}=${proxies.service}`;
      specs.push({
        resource: PROXY_SLICES,
        path: `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(proxies.namespace)}/endpointslices`,
        labelSelector: selector,
        list: async () => asList(await discovery.listNamespacedEndpointSlice({ namespace: proxies.namespace, labelSelector: selector }), 'endpointslices'),
        role: 'chikai-proxy / chikai-xds',
        missing: 'the API server does not serve discovery.k8s.io/v1 EndpointSlices (Kubernetes >= 1.21 is required)',
      });
    }
    if (this.opts.readIngresses) {
      specs.push({
        resource: 'ingresses.networking.internal.knative.dev',
        path: `/apis/networking.internal.knative.dev/v1alpha1${nsPath}/ingresses`,
        list: customList('networking.internal.knative.dev', 'v1alpha1', 'ingresses'),
        role: 'chikai-xds',
        missing: 'Knative Serving is not installed (its serving-crds.yaml defines the Ingress CRD)',
      });
    }

    const initialBackoff = this.opts.retry?.initialMs ?? 500;
    for (const spec of specs) {
      const res = new WatchedResource(spec, initialBackoff);
      const list: ListFn = async () => {
        const result = await spec.list();
        res.lists += 1;
        // The informer files the items after this promise settles; look after that.
        setImmediate(() => this.listed(res));
        return result;
      };
      res.informer = k8s.makeInformer(kc, spec.path, list, spec.labelSelector);
      const changed = (): void => {
        res.backoffMs = res.initialBackoffMs;
        this.scheduleFlush();
      };
      res.informer.on('add', changed);
      res.informer.on('update', changed);
      res.informer.on('delete', changed);
      res.informer.on('error', (err: unknown) => this.failed(res, err));
      this.resources.push(res);
      this.byName.set(spec.resource, res);
    }

    const timeoutMs = this.opts.syncTimeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS;
    const synced = new Promise<void>((resolve) => this.syncWaiters.push(resolve));
    for (const res of this.resources) void this.run(res);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const outcome = await Promise.race([synced, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      const pending = this.resources.filter((r) => !r.synced).map((r) => `  ${r.lastError ?? `${r.spec.resource}: no answer from ${this.server}`}`);
      await this.close();
      throw new Error(`the Kubernetes API did not deliver a complete list within ${timeoutMs} ms:\n${pending.join('\n')}`);
    }
  }

  private async run(res: WatchedResource): Promise<void> {
    if (this.closed) return;
    try {
      await res.informer.start();
    } catch (err) {
      this.failed(res, err);
    }
  }

  private listed(res: WatchedResource): void {
    if (this.closed) return;
    res.synced = true;
    res.lastError = undefined;
    res.backoffMs = res.initialBackoffMs;
    this.scheduleFlush();
  }

  /** A list or watch failed: report it once per attempt and try again after a back-off. */
  private failed(res: WatchedResource, err: unknown): void {
    // Stopping an informer aborts its watch, which arrives here as an error.
    if (this.closed) return;
    res.failures += 1;
    res.lastError = describeFailure(err, res.spec, this.server);
    this.warn(`${res.lastError}; retrying in ${res.backoffMs} ms`);
    this.emit('warning', res.lastError);
    if (res.retryTimer) clearTimeout(res.retryTimer);
    const delay = res.backoffMs;
    const max = this.opts.retry?.maxMs ?? 30_000;
    // Jitter keeps many proxies from hitting a recovering API server in lockstep.
    res.backoffMs = Math.min(max, Math.round(res.backoffMs * (1.6 + Math.random() * 0.4)));
    res.retryTimer = setTimeout(() => {
      res.retryTimer = undefined;
      void this.run(res);
    }, delay);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private cached(resource: string): readonly Obj[] {
    return this.byName.get(resource)?.informer.list() ?? [];
  }

  private flush(): void {
    if (this.closed || !this.synced) return;
    const proxyAt = proxyAddressesFrom(this.cached(PROXY_SLICES));
    const nodes: NodeInfo[] = this.cached('nodes')
      .map(nodeInfoFrom)
      .filter((n): n is NodeInfo => !!n)
      .map((n) => ({ ...n, address: proxyAt.get(n.name) ?? n.address }))
      .sort((a, b) => a.name.localeCompare(b.name));
    const revisions: RevisionInfo[] = this.cached('revisions.serving.knative.dev')
      .map(revisionInfoFrom)
      .filter((r): r is RevisionInfo => !!r)
      .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
    const endpoints: EndpointInfo[] = mergeSliceEndpoints(this.cached('endpointslices.discovery.k8s.io'));

    if (!this.modelRef) {
      const state: ClusterState = {
        domain: this.opts.domain ?? 'cluster.local',
        externalDomains: this.opts.externalDomains ?? [],
        nodes,
        revisions,
        endpoints,
        latency: {},
      };
      this.modelRef = new ClusterModel(state);
    } else {
      const s = this.modelRef.current.state;
      if (!sameJson(s.nodes, nodes) || !sameJson(s.revisions, revisions) || !sameJson(s.endpoints, endpoints)) {
        this.modelRef.update((prev) => ({ ...prev, nodes, revisions, endpoints }));
      }
    }

    if (this.opts.readIngresses) {
      const wanted = this.opts.ingressClass === undefined ? KOURIER_INGRESS_CLASS : this.opts.ingressClass;
      const routes = this.cached('ingresses.networking.internal.knative.dev')
        .map(ingressRoutesFrom)
        .filter((r): r is IngressRoutes => !!r && (wanted === null || r.ingressClass === wanted))
        .sort((a, b) => a.key.localeCompare(b.key));
      if (!sameJson(routes, this.routes)) {
        this.routes = routes;
        this.emit('ingresses', routes);
      }
    }

    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    for (const w of waiters) w();
  }

  /** Stop every watch and retry; the model keeps its last state. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const r of this.resources) if (r.retryTimer) clearTimeout(r.retryTimer);
    await Promise.all(this.resources.map((r) => r.informer.stop().catch(() => undefined)));
    this.removeAllListeners();
  }
}

/**
 * Fill a cluster model from the Kubernetes API. Resolves once Nodes, Revisions,
 * EndpointSlices (and Ingresses, with readIngresses) have each been listed completely;
 * from then on watches keep the model current and errors are retried with back-off.
 * Rejects, naming what failed and how to fix it, when the first list takes longer than
 * syncTimeoutMs.
 */
export async function startKubernetesSource(opts: KubernetesSourceOptions): Promise<KubernetesSource> {
  const source = new KubernetesSource(opts);
  await source.start();
  return source;
}
