// The traffic map's model, computed from what the running system reports about itself:
// each gateway's Envoy admin /clusters (per-host rq_total / rq_active: gateway → pod),
// what the xDS server serves each gateway (/clusters?node=…&format=json: which host is
// which pod on which node, locality weights and priorities), and each node proxy's
// /metrics (requests per serving node, in flight, queue depth, measured RTTs). Pure
// functions: a scrape in, the map out; rates and endpoint events come from the difference
// to the previous scrape.
import { parseEnvoyClusters, parsePrometheusText, type EnvoyHostStats, type Sample } from './exposition.js';

export interface MapNode {
  readonly name: string;
  readonly region: string;
  readonly zone: string;
  readonly address: string;
}

/** One target's answer: its body, or why there is none. */
export type Scraped = { readonly text: string } | { readonly error: string };

export interface Scrape {
  /** Milliseconds since the epoch when the scrape started. */
  readonly at: number;
  readonly nodes: readonly MapNode[];
  /** Per node: its gateway's Envoy admin /clusters text. */
  readonly envoyClusters: Readonly<Record<string, Scraped>>;
  /** Per node: what the xDS server serves that node's gateway (/clusters?node=…&format=json). */
  readonly served: Readonly<Record<string, Scraped>>;
  /** Per node: its proxy's /metrics. */
  readonly proxyMetrics: Readonly<Record<string, Scraped>>;
}

export type Via = 'gateway' | 'proxy';
export type EndpointKind = 'pod' | 'proxy';

export interface Flow {
  /** Node whose gateway or proxy sent the requests. */
  readonly from: string;
  readonly via: Via;
  /** Node of the endpoint that got them. */
  readonly to: string;
  /** A pod, or (a revision with no ready pod) the node's proxy. */
  readonly toKind: EndpointKind;
  /** `<namespace>/<revision>`, the gateway's cluster name. */
  readonly revision: string;
  /** Requests sent so far (Envoy's rq_total summed over the hosts; the proxy's chikai_requests_total over codes). */
  readonly total: number;
  /** Requests per second since the previous scrape; null on the first. */
  readonly ratePerSecond: number | null;
  /** Requests in progress now (gateways: Envoy's rq_active). */
  readonly active: number | null;
}

export interface Link {
  readonly from: string;
  readonly to: string;
  /** Round trip measured by `from`'s proxy, ms. */
  readonly rttMs: number | null;
  readonly reachable: boolean | null;
}

export interface PodView {
  readonly pod: string;
  readonly node: string;
  readonly revision: string;
  readonly ready: boolean;
  /** Requests the gateways have in progress at this pod (Envoy's rq_active over every gateway). */
  readonly inFlightFromGateways: number;
  /** Requests the node proxies have at this pod (chikai_pod_requests_in_flight over every proxy). */
  readonly inFlightFromProxies: number;
}

export interface ProxyQueue {
  readonly node: string;
  readonly revision: string;
  /** Requests waiting in the proxy for a ready pod or a free slot (chikai_requests_buffered). */
  readonly queued: number;
  /** Requests the proxy has at pods (chikai_requests_in_flight). */
  readonly inFlight: number;
}

export interface LocalityWeight {
  readonly node: string;
  readonly priority: number;
  /** load_balancing_weight served for the locality. */
  readonly weight: number;
  /** Share of the cluster's requests Envoy gives it (priorities, health, weights), 0..1. */
  readonly share: number;
  readonly kind: EndpointKind;
}

export interface GatewayWeights {
  readonly gateway: string;
  readonly revision: string;
  readonly localities: readonly LocalityWeight[];
}

export interface EndpointEvent {
  readonly at: number;
  readonly revision: string;
  readonly change: 'added' | 'removed' | 'ready' | 'not ready';
  readonly kind: EndpointKind;
  /** Pod name, or `proxy` for a node's proxy standing in for a revision with no ready pod. */
  readonly endpoint: string;
  readonly node: string;
}

export interface NodeView extends MapNode {
  /** Why the gateway's admin or the xDS view could not be read, when it could not. */
  readonly gatewayError: string | null;
  readonly proxyError: string | null;
}

export interface TrafficMap {
  /** Scrapes so far, 1 for the first. */
  readonly seq: number;
  readonly at: number;
  readonly nodes: readonly NodeView[];
  readonly links: readonly Link[];
  readonly flows: readonly Flow[];
  readonly pods: readonly PodView[];
  readonly queues: readonly ProxyQueue[];
  readonly weights: readonly GatewayWeights[];
  /** Newest first, at most EVENT_HISTORY. */
  readonly events: readonly EndpointEvent[];
}

/** What the next scrape is compared with. */
export interface MapState {
  readonly map: TrafficMap;
  /** Counter values by series key, to turn counts into rates. */
  readonly counters: ReadonlyMap<string, number>;
  /** Endpoints served, by key, with readiness. */
  readonly endpoints: ReadonlyMap<string, ServedEndpoint>;
}

export const EVENT_HISTORY = 50;

interface ServedHost {
  readonly cluster: string;
  readonly hostPort: string;
  readonly node: string;
  readonly priority: number;
  readonly localityWeight: number;
  readonly share: number;
  readonly healthy: boolean;
  readonly kind: EndpointKind;
  readonly pod: string;
}

interface ServedEndpoint {
  readonly revision: string;
  readonly kind: EndpointKind;
  readonly endpoint: string;
  readonly node: string;
  readonly ready: boolean;
}

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** The xDS admin's `/clusters?format=json` for one gateway: every host with its node, kind and weight. */
export function parseServedClusters(text: string): ServedHost[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error('the xDS admin /clusters answer is not JSON');
  }
  if (!Array.isArray(obj(doc)['cluster_statuses'])) throw new Error('the xDS admin /clusters answer has no cluster_statuses list');
  const hosts: ServedHost[] = [];
  for (const c of list(obj(doc)['cluster_statuses'])) {
    const cluster = String(obj(c)['name'] ?? '');
    for (const h of list(obj(c)['host_statuses'])) {
      const sa = obj(obj(obj(h)['address'])['socket_address']);
      const kind = obj(h)['kind'] === 'proxy' ? 'proxy' : 'pod';
      const node = String(obj(obj(h)['locality'])['sub_zone'] ?? '');
      hosts.push({
        cluster,
        hostPort: `${String(sa['address'] ?? '')}:${Number(sa['port_value'] ?? 0)}`,
        node,
        priority: Number(obj(h)['priority'] ?? 0),
        localityWeight: Number(obj(h)['locality_weight'] ?? 0),
        share: Number(obj(h)['expected_share'] ?? 0),
        healthy: obj(obj(h)['health_status'])['eds_health_status'] !== 'UNHEALTHY',
        kind,
        pod: kind === 'proxy' ? 'proxy' : String(obj(h)['pod'] ?? ''),
      });
    }
  }
  return hosts;
}

function textOf(s: Scraped | undefined): string | undefined {
  return s && 'text' in s ? s.text : undefined;
}

function errorOf(s: Scraped | undefined, what: string): string | null {
  if (!s) return `${what}: not scraped`;
  return 'error' in s ? `${what}: ${s.error}` : null;
}

/** Per-second increase of a counter since the previous scrape; a counter that went down restarted from 0. */
function rate(prev: number | undefined, now: number, seconds: number | null): number | null {
  if (prev === undefined || seconds === null || seconds <= 0) return null;
  return (now >= prev ? now - prev : now) / seconds;
}

const sum = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : a + b);

/** Reads a scrape; a target that answered garbage counts as an error, the rest of the map stands. */
function read<T>(s: Scraped | undefined, parse: (text: string) => T): { value: T | undefined; error: string | undefined } {
  const text = textOf(s);
  if (text === undefined) return { value: undefined, error: undefined };
  try {
    return { value: parse(text), error: undefined };
  } catch (err) {
    return { value: undefined, error: (err as Error).message };
  }
}

/** The map after `scrape`, given the state after the previous one (undefined for the first). */
export function advance(prev: MapState | undefined, scrape: Scrape): MapState {
  const seconds = prev ? (scrape.at - prev.map.at) / 1000 : null;
  const counters = new Map<string, number>();
  const nodeNames = scrape.nodes.map((n) => n.name);
  const known = new Set(nodeNames);

  // What the xDS server serves each gateway, and what each gateway's Envoy counted.
  const served = new Map<string, ServedHost[]>();
  const envoy = new Map<string, EnvoyHostStats[]>();
  const gatewayErrors = new Map<string, string>();
  for (const node of nodeNames) {
    const s = read(scrape.served[node], parseServedClusters);
    if (s.value) served.set(node, s.value);
    const e = read(scrape.envoyClusters[node], parseEnvoyClusters);
    if (e.value) envoy.set(node, e.value);
    const why = [errorOf(scrape.envoyClusters[node], 'Envoy admin'), e.error && `Envoy admin: ${e.error}`, errorOf(scrape.served[node], 'xDS view'), s.error && `xDS view: ${s.error}`].filter(Boolean);
    if (why.length) gatewayErrors.set(node, why.join('; '));
  }

  // Every host served to any gateway, by cluster and address: which pod or proxy on which node.
  const hostIndex = new Map<string, ServedHost>();
  for (const hosts of served.values()) for (const h of hosts) hostIndex.set(`${h.cluster}\u0000${h.hostPort}`, h);
  const revisions = new Set([...hostIndex.values()].map((h) => h.cluster));

  const flows = new Map<string, { from: string; via: Via; to: string; toKind: EndpointKind; revision: string; total: number; ratePerSecond: number | null; active: number | null }>();
  const addFlow = (f: Omit<Flow, 'total' | 'ratePerSecond' | 'active'>, total: number, r: number | null, active: number | null) => {
    const key = `${f.via}|${f.from}|${f.revision}|${f.to}|${f.toKind}`;
    const cur = flows.get(key);
    if (cur) {
      cur.total += total;
      cur.ratePerSecond = sum(cur.ratePerSecond, r);
      cur.active = sum(cur.active, active);
    } else flows.set(key, { ...f, total, ratePerSecond: r, active });
  };
  const podActive = new Map<string, number>();
  const podFromProxies = new Map<string, number>();

  for (const [gateway, hosts] of envoy) {
    for (const h of hosts) {
      const servedHost = hostIndex.get(`${h.cluster}\u0000${h.host}`);
      // Only the revisions' clusters (not Envoy's own static ones like the xDS cluster).
      if (!servedHost && !(revisions.size === 0 && h.cluster.includes('/'))) continue;
      const to = servedHost?.node ?? h.attributes['sub_zone'] ?? '';
      if (!known.has(to)) continue;
      const total = h.stats['rq_total'] ?? 0;
      const key = `gw|${gateway}|${h.cluster}|${h.host}`;
      counters.set(key, total);
      const active = h.stats['rq_active'] ?? 0;
      addFlow({ from: gateway, via: 'gateway', to, toKind: servedHost?.kind ?? 'pod', revision: h.cluster }, total, rate(prev?.counters.get(key), total, seconds), active);
      if (servedHost?.kind === 'pod') {
        const podKey = `${h.cluster}\u0000${servedHost.pod}`;
        podActive.set(podKey, (podActive.get(podKey) ?? 0) + active);
      }
    }
  }

  // The proxies: requests per serving node, in flight and queued per revision, measured RTTs.
  const links: Link[] = [];
  const queues: ProxyQueue[] = [];
  const proxyErrors = new Map<string, string>();
  for (const node of nodeNames) {
    const m = read(scrape.proxyMetrics[node], parsePrometheusText);
    const why = errorOf(scrape.proxyMetrics[node], 'proxy metrics') ?? (m.error ? `proxy metrics: ${m.error}` : null);
    if (why) proxyErrors.set(node, why);
    const samples: Sample[] = m.value ?? [];
    const perTarget = new Map<string, number>();
    const queue = new Map<string, { queued: number; inFlight: number }>();
    const rtt = new Map<string, number>();
    const reachable = new Map<string, boolean>();
    for (const s of samples) {
      const l = s.labels;
      if (s.name === 'chikai_requests_total' && l['revision'] && l['target_node'] && known.has(l['target_node'])) {
        const key = `${l['revision']}\u0000${l['target_node']}`;
        perTarget.set(key, (perTarget.get(key) ?? 0) + s.value);
      } else if ((s.name === 'chikai_requests_buffered' || s.name === 'chikai_requests_in_flight') && l['revision']) {
        const q = queue.get(l['revision']) ?? { queued: 0, inFlight: 0 };
        if (s.name === 'chikai_requests_buffered') q.queued += s.value;
        else q.inFlight += s.value;
        queue.set(l['revision'], q);
      } else if (s.name === 'chikai_pod_requests_in_flight' && l['revision'] && l['pod']) {
        const podKey = `${l['revision']}\u0000${l['pod']}`;
        podFromProxies.set(podKey, (podFromProxies.get(podKey) ?? 0) + s.value);
      } else if (s.name === 'chikai_node_rtt_seconds' && l['to'] && (l['from'] ?? node) === node) {
        rtt.set(l['to'], s.value * 1000);
      } else if (s.name === 'chikai_node_reachable' && l['to'] && (l['from'] ?? node) === node) {
        reachable.set(l['to'], s.value === 1);
      }
    }
    for (const [key, total] of perTarget) {
      const [revision, to] = key.split('\u0000');
      const counterKey = `px|${node}|${key}`;
      counters.set(counterKey, total);
      addFlow({ from: node, via: 'proxy', to, toKind: 'pod', revision }, total, rate(prev?.counters.get(counterKey), total, seconds), null);
    }
    for (const [revision, q] of queue) queues.push({ node, revision, ...q });
    for (const to of nodeNames) {
      if (to === node || !m.value) continue;
      links.push({ from: node, to, rttMs: rtt.get(to) ?? null, reachable: reachable.get(to) ?? null });
    }
  }

  // Endpoints served (the union of every gateway's view) and what changed since last time.
  const endpoints = new Map<string, ServedEndpoint>();
  for (const h of hostIndex.values()) {
    const key = `${h.cluster}\u0000${h.kind}\u0000${h.pod}\u0000${h.node}`;
    const e = endpoints.get(key);
    endpoints.set(key, { revision: h.cluster, kind: h.kind, endpoint: h.pod, node: h.node, ready: (e?.ready ?? false) || h.healthy });
  }
  const events: EndpointEvent[] = [];
  // With no view read this time, endpoints are unknown rather than gone.
  const endpointsKnown = served.size > 0;
  const current = endpointsKnown ? endpoints : new Map(prev?.endpoints ?? []);
  if (prev && endpointsKnown) {
    const ev = (e: ServedEndpoint, change: EndpointEvent['change']) => events.push({ at: scrape.at, revision: e.revision, change, kind: e.kind, endpoint: e.endpoint, node: e.node });
    for (const [key, e] of endpoints) {
      const before = prev.endpoints.get(key);
      if (!before) ev(e, 'added');
      else if (before.ready !== e.ready) ev(e, e.ready ? 'ready' : 'not ready');
    }
    for (const [key, e] of prev.endpoints) if (!endpoints.has(key)) ev(e, 'removed');
  }

  const pods: PodView[] = [...current.values()]
    .filter((e) => e.kind === 'pod')
    .map((e) => {
      const key = `${e.revision}\u0000${e.endpoint}`;
      return { pod: e.endpoint, node: e.node, revision: e.revision, ready: e.ready, inFlightFromGateways: podActive.get(key) ?? 0, inFlightFromProxies: podFromProxies.get(key) ?? 0 };
    })
    .sort((a, b) => a.node.localeCompare(b.node) || a.revision.localeCompare(b.revision) || a.pod.localeCompare(b.pod));

  const weights: GatewayWeights[] = [];
  for (const [gateway, hosts] of served) {
    const byCluster = new Map<string, Map<string, LocalityWeight>>();
    for (const h of hosts) {
      const ls = byCluster.get(h.cluster) ?? new Map<string, LocalityWeight>();
      byCluster.set(h.cluster, ls);
      // A node can hold two localities of one cluster: its proxy (in the path under load) and its pods.
      const key = `${h.kind}\u0000${h.node}`;
      const cur = ls.get(key);
      ls.set(key, { node: h.node, priority: h.priority, weight: h.localityWeight, share: (cur?.share ?? 0) + h.share, kind: h.kind });
    }
    for (const [revision, ls] of byCluster) {
      weights.push({ gateway, revision, localities: [...ls.values()].sort((a, b) => a.priority - b.priority || b.weight - a.weight || a.node.localeCompare(b.node)) });
    }
  }

  const order = (n: string) => nodeNames.indexOf(n);
  const map: TrafficMap = {
    seq: (prev?.map.seq ?? 0) + 1,
    at: scrape.at,
    nodes: scrape.nodes.map((n) => ({ ...n, gatewayError: gatewayErrors.get(n.name) ?? null, proxyError: proxyErrors.get(n.name) ?? null })),
    links,
    flows: [...flows.values()].sort((a, b) => order(a.from) - order(b.from) || a.via.localeCompare(b.via) || a.revision.localeCompare(b.revision) || order(a.to) - order(b.to)),
    pods,
    queues: queues.sort((a, b) => order(a.node) - order(b.node) || a.revision.localeCompare(b.revision)),
    weights: weights.sort((a, b) => order(a.gateway) - order(b.gateway) || a.revision.localeCompare(b.revision)),
    events: [...events, ...(prev?.map.events ?? [])].slice(0, EVENT_HISTORY),
  };
  return { map, counters, endpoints: current };
}
