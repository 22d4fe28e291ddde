// The shared model of the cluster: nodes, revisions, endpoints and the latency between
// nodes. Both halves of chikai (the node proxy and the xDS server) read it; its sources
// (a YAML file, the Kubernetes API, the emulated cluster) write it.
//
// Readers get immutable snapshots: a request or an xDS push works on one consistent
// view, and a change produces a new snapshot plus a 'change' event.
import { EventEmitter } from 'node:events';

export interface NodeInfo {
  readonly name: string;
  readonly region: string;
  readonly zone: string;
  /** Address the node's chikai proxy listens on (emulated: 127.0.1.N; Kubernetes: the proxy pod's IP, the node's InternalIP until that pod is known). */
  readonly address: string;
}

export interface RevisionInfo {
  readonly namespace: string;
  /** Knative service the revision belongs to. */
  readonly service: string;
  /** Revision name, e.g. hello-00001. */
  readonly name: string;
  /** Extra host names (external domains) that route to this revision. */
  readonly hosts: readonly string[];
  /** Knative containerConcurrency: 0 means unlimited. */
  readonly containerConcurrency: number;
  /** Knative's request timeout: the whole request, unconditionally. */
  readonly timeoutSeconds: number;
  /**
   * Knative's: no response byte by then → 504. 0 = no separate timer (timeoutSeconds
   * governs); unset = Knative's defaulting (300 when that is less than timeoutSeconds).
   */
  readonly responseStartTimeoutSeconds?: number;
  /** Knative's: no response byte for this long → 504 before the first, the stream cut after (unset or 0: off). */
  readonly idleTimeoutSeconds?: number;
  /** 'h2c' when the revision's port is named h2c (HTTP/2 upstream). */
  readonly protocol: 'http1' | 'h2c';
}

export interface EndpointInfo {
  /** Pod name. */
  readonly pod: string;
  /** Revision key, `<namespace>/<revision>`. */
  readonly revision: string;
  readonly node: string;
  readonly address: string;
  readonly port: number;
  readonly ready: boolean;
}

/** Configured (not measured) round trip between two nodes, in milliseconds. */
export interface LinkLatency {
  readonly rttMs: number;
  /** Standard deviation of the normal jitter on the round trip. */
  readonly jitterMs: number;
}

export interface ClusterState {
  /** Cluster DNS domain, `cluster.local` by default. */
  readonly domain: string;
  /** External domain suffixes, e.g. `example.com` routes `hello.default.example.com`. */
  readonly externalDomains: readonly string[];
  readonly nodes: readonly NodeInfo[];
  readonly revisions: readonly RevisionInfo[];
  readonly endpoints: readonly EndpointInfo[];
  /** latency[from][to]; missing pairs are same-node (0) or unknown. */
  readonly latency: Readonly<Record<string, Readonly<Record<string, LinkLatency>>>>;
}

/** Knative's default responseStartTimeoutSeconds (config-defaults revision-response-start-timeout-seconds). */
export const DEFAULT_RESPONSE_START_TIMEOUT_SECONDS = 300;

/**
 * The response-start timeout in effect, never past timeoutSeconds: the revision's, else
 * what Knative's defaulting gives it (300 s when less than timeoutSeconds, else none).
 */
export function responseStartTimeoutSeconds(r: RevisionInfo): number {
  const set = r.responseStartTimeoutSeconds ?? (DEFAULT_RESPONSE_START_TIMEOUT_SECONDS < r.timeoutSeconds ? DEFAULT_RESPONSE_START_TIMEOUT_SECONDS : 0);
  return set > 0 ? Math.min(set, r.timeoutSeconds) : r.timeoutSeconds;
}

export function revisionKey(namespace: string, revision: string): string {
  return `${namespace}/${revision}`;
}

/** An immutable view of the cluster with the indexes readers need. */
export class ClusterSnapshot {
  readonly version: number;
  readonly state: ClusterState;
  private readonly nodesByName: Map<string, NodeInfo>;
  private readonly revisionsByKey: Map<string, RevisionInfo>;
  private readonly revisionsByHost: Map<string, RevisionInfo>;
  private readonly endpointsByRevision: Map<string, readonly EndpointInfo[]>;
  private readonly nodesByAddress: Map<string, NodeInfo>;

  constructor(state: ClusterState, version: number) {
    this.version = version;
    this.state = deepFreeze(state);
    this.nodesByName = new Map(state.nodes.map((n) => [n.name, n]));
    this.nodesByAddress = new Map(state.nodes.map((n) => [n.address, n]));
    this.revisionsByKey = new Map(state.revisions.map((r) => [revisionKey(r.namespace, r.name), r]));
    this.revisionsByHost = new Map();
    for (const r of state.revisions) {
      for (const h of hostsOf(r, state.domain, state.externalDomains)) this.revisionsByHost.set(h, r);
    }
    const byRev = new Map<string, EndpointInfo[]>();
    for (const e of state.endpoints) {
      const list = byRev.get(e.revision) ?? [];
      list.push(e);
      byRev.set(e.revision, list);
    }
    this.endpointsByRevision = byRev;
  }

  get nodes(): readonly NodeInfo[] { return this.state.nodes; }
  get revisions(): readonly RevisionInfo[] { return this.state.revisions; }

  node(name: string): NodeInfo | undefined { return this.nodesByName.get(name); }
  nodeByAddress(address: string): NodeInfo | undefined { return this.nodesByAddress.get(address); }
  revision(key: string): RevisionInfo | undefined { return this.revisionsByKey.get(key); }

  /** Revision served for a Host header value (lower-cased, port already removed). */
  revisionForHost(host: string): RevisionInfo | undefined { return this.revisionsByHost.get(host); }

  /** Every endpoint of a revision, ready or not. */
  endpoints(revKey: string): readonly EndpointInfo[] { return this.endpointsByRevision.get(revKey) ?? []; }

  readyEndpoints(revKey: string): EndpointInfo[] { return this.endpoints(revKey).filter((e) => e.ready); }

  /** Whether the revision has a ready pod (false: it is at zero, or its pods are starting). */
  hasReadyEndpoint(revKey: string): boolean { return this.endpoints(revKey).some((e) => e.ready); }

  /** Configured latency between two nodes (0 inside a node). */
  link(from: string, to: string): LinkLatency {
    if (from === to) return { rttMs: 0, jitterMs: 0 };
    return this.state.latency[from]?.[to] ?? this.state.latency[to]?.[from] ?? { rttMs: 0, jitterMs: 0 };
  }
}

/** Host names a revision answers to, the way Knative's cluster-local and external domains do. */
export function hostsOf(r: RevisionInfo, domain: string, externalDomains: readonly string[]): string[] {
  const base = `${r.service}.${r.namespace}`;
  const hosts = [base, `${base}.svc`, `${base}.svc.${domain}`, ...externalDomains.map((d) => `${base}.${d}`), ...r.hosts];
  return hosts.map((h) => h.toLowerCase());
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}

export interface ClusterModelEvents {
  change: [snapshot: ClusterSnapshot, previous: ClusterSnapshot];
}

/**
 * The live model: holds the current snapshot and tells listeners when it changes.
 * Writers replace whole parts (all endpoints of a revision, the node list, …); readers
 * keep whatever snapshot they started with.
 */
export class ClusterModel extends EventEmitter<ClusterModelEvents> {
  private snap: ClusterSnapshot;

  constructor(initial: ClusterState) {
    super();
    this.setMaxListeners(0);
    this.snap = new ClusterSnapshot(initial, 1);
  }

  get current(): ClusterSnapshot { return this.snap; }

  /** Replace the state with what `fn` returns (given the current state). */
  update(fn: (s: ClusterState) => ClusterState): ClusterSnapshot {
    const previous = this.snap;
    this.snap = new ClusterSnapshot(fn(previous.state), previous.version + 1);
    this.emit('change', this.snap, previous);
    return this.snap;
  }

  /** Replace every endpoint of one revision. */
  setEndpoints(revKey: string, endpoints: readonly EndpointInfo[]): ClusterSnapshot {
    return this.update((s) => ({
      ...s,
      endpoints: [...s.endpoints.filter((e) => e.revision !== revKey), ...endpoints.map((e) => ({ ...e, revision: revKey }))],
    }));
  }

  /** Set one pod's readiness; unknown pods are ignored. */
  setReady(pod: string, ready: boolean): ClusterSnapshot {
    return this.update((s) => ({
      ...s,
      endpoints: s.endpoints.map((e) => (e.pod === pod ? { ...e, ready } : e)),
    }));
  }

  addEndpoint(e: EndpointInfo): ClusterSnapshot {
    return this.update((s) => ({ ...s, endpoints: [...s.endpoints.filter((x) => x.pod !== e.pod), e] }));
  }

  removeEndpoint(pod: string): ClusterSnapshot {
    return this.update((s) => ({ ...s, endpoints: s.endpoints.filter((e) => e.pod !== pod) }));
  }
}
