// Resource builders: one gateway node's view of the cluster as Envoy resources (CDS, EDS,
// LDS, RDS), written in Envoy's JSON form. Pure functions of the snapshot, the load view
// and the gateway's node; the builder (xds/builder.ts) decides what is new, the store what is sent.
//
// Kourier compatibility: clusters are named `<namespace>/<revision>`, listeners
// `listener_8080` (external), `listener_8081` (internal) and `listener_8090` (Knative's
// ingress probes, external routes), route configurations `external_services` and
// `internal_services`, one virtual host per Host with domains [host, host:*], weighted
// clusters that append the Knative headers, websocket upgrades, KIngress probe routes, and
// the `internalkourier` virtual host for the gateway's readiness check.
// Unlike Kourier, clusters are EDS over ADS with one locality per Kubernetes node, weighted
// from the gateway's node by the shared cost model.
import { atOverloadBound, localityShares, type LocalityPreference, type LocalityShare, type PodCostInput } from '../cluster/cost.js';
import { nodeOfferedUtilization, podCostInputs, type LoadView } from '../cluster/load.js';
import { hostsOf, revisionKey, type ClusterSnapshot, type EndpointInfo, type NodeInfo, type RevisionInfo } from '../cluster/model.js';
import type { IngressPath, IngressRoutes, IngressRule } from '../cluster/kubernetes/ingress.js';
import { GATEWAY_POD_METRICS } from './lrs.js';
import { PROXY_IN_PATH_FROM } from './proxy-in-path.js';
import { HCM_TYPE, HTTP_PROTOCOL_OPTIONS_TYPE, ROUTER_TYPE } from './protos.js';
import type { JsonObject } from './protojson.js';

export const EXTERNAL_LISTENER = 'listener_8080';
export const INTERNAL_LISTENER = 'listener_8081';
/** Where Knative's ingress status prober probes external rules (Kourier serves the external routes there). */
export const PROBE_LISTENER = 'listener_8090';
export const EXTERNAL_ROUTES = 'external_services';
export const INTERNAL_ROUTES = 'internal_services';
/** Host of the gateway's readiness check (`GET /ready` on the internal listener), as net-kourier names it. */
export const GATEWAY_STATUS_HOST = 'internalkourier';
/** The gateway bootstrap's static cluster for Envoy's own admin (deploy/components/gateway/envoy-bootstrap.yaml). */
export const GATEWAY_ADMIN_CLUSTER = 'envoy_admin';
/** Knative's probe header: `override` on the probe, the KIngress hash once a gateway route has tagged it. */
export const NETWORK_HASH_HEADER = 'K-Network-Hash';
export const NETWORK_HASH_OVERRIDE = 'override';

export interface BuildOptions {
  /** Port of the node-local chikai proxy, the endpoint of revisions with no ready pod. */
  readonly proxyPort: number;
  /** Ports Envoy's Kourier listeners bind (Kourier: 8080 external, 8081 internal, 8090 probe). */
  readonly externalPort?: number;
  readonly internalPort?: number;
  readonly probePort?: number;
  /**
   * Address the Kourier listeners bind on a gateway node (default 0.0.0.0, as Kourier's).
   * Emulated nodes share one host, so each gateway binds its node's own address there.
   */
  readonly listenerAddress?: (gatewayNode: string | undefined) => string;
  readonly connectTimeout?: string;
  readonly preference?: LocalityPreference;
}

/** A listener plus whether it belongs to the wildcard set (api_listeners are served by name only). */
export interface BuiltListener {
  readonly listener: JsonObject;
  readonly inWildcard: boolean;
}

/** How one locality of one cluster was placed, for inspection. */
export interface LocalityPlacement {
  readonly node: string;
  readonly weight: number;
  readonly priority: number;
  /**
   * 'pods': the revision's pods on that node; 'proxy': the node's chikai proxy (no ready pod
   * anywhere, or the gateway's own node while its load asks for it: xds/proxy-in-path.ts).
   */
  readonly kind: 'pods' | 'proxy';
  /** Expected completion time via this node from the cost model (undefined for proxies and last-resort nodes). */
  readonly costMs?: number;
}

const ADS_SOURCE: JsonObject = { ads: {}, resource_api_version: 'V3' };

/** The Envoy locality of a node: region, zone, and the node name as sub_zone. */
export function localityOf(node: NodeInfo | undefined, name: string): JsonObject {
  return { region: node?.region ?? '', zone: node?.zone ?? '', sub_zone: name };
}

export function buildCluster(rev: RevisionInfo, opts: BuildOptions): JsonObject {
  const name = revisionKey(rev.namespace, rev.name);
  const cluster: JsonObject = {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS_SOURCE },
    connect_timeout: opts.connectTimeout ?? '5s',
    lb_policy: 'ROUND_ROBIN',
    common_lb_config: {
      locality_weighted_lb_config: {},
      // Unready pods are listed as UNHEALTHY; with panic routing disabled Envoy never sends
      // them traffic, even when most of a priority is unready.
      healthy_panic_threshold: { value: 0 },
    },
    // The pods' ORCA load that Envoy passes on in its load reports (xds/lrs.ts): the
    // gateways' own traffic then moves the weights.
    lrs_report_endpoint_metrics: Object.values(GATEWAY_POD_METRICS),
  };
  return { ...cluster, ...upstreamProtocolOptions(rev) };
}

/** An h2c revision's cluster speaks HTTP/2 to its pods; nothing for HTTP/1 revisions. */
export function upstreamProtocolOptions(rev: RevisionInfo): JsonObject {
  if (rev.protocol !== 'h2c') return {};
  return {
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': HTTP_PROTOCOL_OPTIONS_TYPE,
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
  };
}

/**
 * Where one revision's traffic goes from `gatewayNode` (undefined: a gateway whose node is
 * not in the model, which gets the neutral view, as if every node were 0 ms away).
 *
 * - Ready pods: one locality per node that has them, weight and priority from
 *   `localityShares(podCostInputs(...))`, the cost model the node proxy uses too.
 *   Nodes the cost model leaves out (unreachable from the gateway's node) follow as a last
 *   priority, and so do nodes with only unready pods (their endpoints UNHEALTHY, so they
 *   show in inspection but get no traffic).
 * - Ready pods on the gateway's node offered half of what they serve or more by the
 *   gateway's own arrivals (its load reports), or holding their overload bound: the
 *   gateway's node-local chikai proxy at priority 0, the pods' placements (as if idle)
 *   behind it, for as long as `proxyInPath` says (the builder's ProxyInPath keeps it there
 *   for a hold after that was last seen; by default this function follows the load alone).
 *   Why: xds/proxy-in-path.ts.
 * - No ready pod reachable: the gateway's node-local chikai proxy at priority 0 (it buffers
 *   and wakes the revision), the other nodes' proxies at priority 1. The neutral view puts
 *   every proxy at priority 0.
 */
export function placeRevision(
  snap: ClusterSnapshot,
  load: LoadView,
  revKey: string,
  gatewayNode: string | undefined,
  pref?: LocalityPreference,
  /** Whether the gateway goes through its node's proxy, given whether its load asks for it now. */
  proxyInPath: (wanted: boolean) => boolean = (wanted) => wanted,
): { placements: LocalityPlacement[]; endpointsByNode: Map<string, EndpointInfo[]> } {
  const byNode = new Map<string, EndpointInfo[]>();
  const seen = new Set<string>();
  for (const e of snap.endpoints(revKey)) {
    // Envoy and gRPC both refuse an assignment listing one address twice.
    const addr = `${e.address}:${e.port}`;
    if (seen.has(addr)) continue;
    seen.add(addr);
    const list = byNode.get(e.node) ?? [];
    list.push(e);
    byNode.set(e.node, list);
  }
  const sender = gatewayNode ?? '';
  const inputs = podCostInputs(snap, revKey, sender, load);
  const shares: LocalityShare[] = localityShares(sender, inputs, pref);
  if (shares.length === 0) return { placements: proxyPlacements(snap, gatewayNode), endpointsByNode: byNode };
  if (gatewayNode !== undefined && inputs.some((p) => p.node === gatewayNode) && proxyInPath(proxyWanted(snap, load, revKey, gatewayNode, inputs))) {
    // Behind the proxy the pods are failover only (the proxy places every request), so they
    // are placed as if idle: load moving at the pods pushes nothing new to the gateway.
    const idle = localityShares(sender, inputs.map((p) => ({ ...p, inFlight: 0 })), pref);
    const behind = podPlacements(snap, idle, byNode).map((p) => ({ ...p, priority: p.priority + 1 }));
    return { placements: [{ node: gatewayNode, weight: 1, priority: 0, kind: 'proxy' }, ...behind], endpointsByNode: byNode };
  }
  return { placements: podPlacements(snap, shares, byNode), endpointsByNode: byNode };
}

/** The cost model's localities, then nodes it leaves out (unreachable, or only unready pods) as a last priority. */
function podPlacements(snap: ClusterSnapshot, shares: readonly LocalityShare[], byNode: ReadonlyMap<string, EndpointInfo[]>): LocalityPlacement[] {
  const placements: LocalityPlacement[] = shares.map((s) => ({ node: s.node, weight: s.weight, priority: s.priority, kind: 'pods', costMs: s.costMs }));
  const placed = new Set(shares.map((s) => s.node));
  const lastResort = Math.max(...shares.map((s) => s.priority)) + 1;
  const nodeOrder = snap.nodes.map((n) => n.name);
  const leftover = [...byNode.keys()].filter((n) => !placed.has(n)).sort((a, b) => rank(nodeOrder, a) - rank(nodeOrder, b) || a.localeCompare(b));
  for (const node of leftover) placements.push({ node, weight: 1, priority: lastResort, kind: 'pods' });
  return placements;
}

/**
 * Whether the gateway should go through its node's proxy (xds/proxy-in-path.ts): its own
 * arrivals for the revision offer its node's pods at least `PROXY_IN_PATH_FROM` of what they
 * serve, or the pods already hold their overload bound of requests (a queue the last report's
 * arrivals have not shown yet: a burst's first interval). Not every slot taken at the moment
 * of a report: pods at a third of what they serve show that often. (A ready local pod the
 * cost model priced out at its bound counts: that is the moment to hand the requests to the
 * proxy.)
 */
function proxyWanted(snap: ClusterSnapshot, load: LoadView, revKey: string, gatewayNode: string, inputs: readonly PodCostInput[]): boolean {
  if ((nodeOfferedUtilization(snap, revKey, gatewayNode, load) ?? 0) >= PROXY_IN_PATH_FROM) return true;
  let inFlight = 0;
  let slots = 0;
  for (const p of inputs) {
    if (p.node !== gatewayNode) continue;
    inFlight += p.inFlight;
    slots += Math.max(1, p.capacity);
  }
  return slots > 0 && atOverloadBound(inFlight, slots);
}

function rank(order: string[], name: string): number {
  const i = order.indexOf(name);
  return i < 0 ? order.length : i;
}

function proxyPlacements(snap: ClusterSnapshot, gatewayNode: string | undefined): LocalityPlacement[] {
  return snap.nodes.map((n) => ({
    node: n.name,
    weight: 1,
    priority: gatewayNode === undefined || n.name === gatewayNode ? 0 : 1,
    kind: 'proxy' as const,
  })).sort((a, b) => a.priority - b.priority);
}

export function buildLoadAssignment(
  snap: ClusterSnapshot,
  load: LoadView,
  rev: RevisionInfo,
  gatewayNode: string | undefined,
  opts: BuildOptions,
  proxyInPath?: (wanted: boolean) => boolean,
): JsonObject {
  const revKey = revisionKey(rev.namespace, rev.name);
  // An h2c revision goes to its pods even under load: the node proxy carries HTTP/1.
  const inPath = rev.protocol === 'http1' ? proxyInPath : () => false;
  const { placements, endpointsByNode } = placeRevision(snap, load, revKey, gatewayNode, opts.preference, inPath);
  const endpoints: JsonObject[] = [];
  for (const p of placements) {
    const node = snap.node(p.node);
    let lbEndpoints: JsonObject[];
    if (p.kind === 'proxy') {
      if (!node) continue;
      lbEndpoints = [lbEndpoint(node.address, opts.proxyPort, 'HEALTHY', { kind: 'proxy', node: node.name })];
    } else {
      lbEndpoints = (endpointsByNode.get(p.node) ?? []).map((e) => lbEndpoint(e.address, e.port, e.ready ? 'HEALTHY' : 'UNHEALTHY', { kind: 'pod', pod: e.pod }));
    }
    endpoints.push({
      locality: localityOf(node, p.node),
      lb_endpoints: lbEndpoints,
      load_balancing_weight: p.weight,
      priority: p.priority,
    });
  }
  return { cluster_name: revKey, endpoints };
}

function lbEndpoint(address: string, port: number, health: 'HEALTHY' | 'UNHEALTHY', meta: JsonObject): JsonObject {
  return {
    endpoint: { address: { socket_address: { address, port_value: port } } },
    health_status: health,
    metadata: { filter_metadata: { chikai: meta } },
  };
}

function routerFilter(): JsonObject {
  return { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } };
}

function connectionManager(statPrefix: string, routeConfigName: string): JsonObject {
  return {
    '@type': HCM_TYPE,
    stat_prefix: statPrefix,
    rds: { config_source: ADS_SOURCE, route_config_name: routeConfigName },
    http_filters: [routerFilter()],
    upgrade_configs: [{ upgrade_type: 'websocket' }],
    use_remote_address: true,
  };
}

function gatewayListener(name: string, address: string, port: number, statPrefix: string, routeConfigName: string): JsonObject {
  return {
    name,
    address: { socket_address: { address, port_value: port } },
    // On an address of its own the gateway shares its host with others: a port another
    // process holds must fail the bind (a NACK naming it), not be shared via SO_REUSEPORT.
    ...(address === '0.0.0.0' || address === '::' ? {} : { enable_reuse_port: false }),
    filter_chains: [{
      filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: connectionManager(statPrefix, routeConfigName) }],
    }],
  };
}

/** A proxyless gRPC client's listener for one host (`xds:///<host>`), routed by internal_services. */
function apiListener(host: string): JsonObject {
  const hcm = connectionManager(host, INTERNAL_ROUTES);
  delete hcm.upgrade_configs;
  delete hcm.use_remote_address;
  return { name: host, api_listener: { api_listener: hcm } };
}

/** One traffic target of a host: a revision's cluster and its share of the host's traffic. */
interface TrafficTarget {
  readonly revision: RevisionInfo;
  readonly percent: number;
}

/**
 * Hosts and where their traffic goes. The cluster model has no traffic-split percentages
 * and no visibility yet, so each host routes 100 % to the revision the model serves it with
 * (`revisionForHost`), the same answer the node proxy gives, on both gateways: without a
 * KIngress saying a host is cluster-local, every host is reachable on the external one too
 * (the demo's `curl -H 'Host: hello.default.svc.cluster.local' <node>:8080`).
 */
function hostTargets(snap: ClusterSnapshot): Map<string, TrafficTarget[]> {
  const targets = new Map<string, TrafficTarget[]>();
  const { domain, externalDomains } = snap.state;
  for (const rev of snap.revisions) {
    for (const host of hostsOf(rev, domain, externalDomains)) {
      if (targets.has(host)) continue;
      const served = snap.revisionForHost(host);
      if (served) targets.set(host, [{ revision: served, percent: 100 }]);
    }
  }
  return targets;
}

function virtualHost(host: string, targets: readonly TrafficTarget[]): JsonObject {
  const timeoutSeconds = Math.max(...targets.map((t) => t.revision.timeoutSeconds));
  return {
    name: host,
    domains: [host, `${host}:*`],
    routes: [{
      match: { prefix: '/' },
      route: {
        weighted_clusters: {
          clusters: targets.map((t) => ({
            name: revisionKey(t.revision.namespace, t.revision.name),
            weight: t.percent,
            request_headers_to_add: [
              { header: { key: 'Knative-Serving-Namespace', value: t.revision.namespace }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
              { header: { key: 'Knative-Serving-Revision', value: t.revision.name }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
            ],
          })),
        },
        timeout: `${timeoutSeconds}s`,
        upgrade_configs: [{ upgrade_type: 'websocket', enabled: true }],
      },
    }],
  };
}

/**
 * The readiness check net-kourier gives its gateways: `GET /ready` with Host
 * `internalkourier` on the internal listener, answered by the gateway's own Envoy admin
 * (200 once its first ADS round is in). Only that one exact path reaches the admin.
 */
function gatewayStatusVirtualHost(): JsonObject {
  return {
    name: GATEWAY_STATUS_HOST,
    domains: [GATEWAY_STATUS_HOST],
    routes: [{
      match: { path: '/ready', headers: [{ name: ':method', string_match: { exact: 'GET' } }] },
      route: { cluster: GATEWAY_ADMIN_CLUSTER, timeout: '5s' },
    }],
  };
}

/**
 * Knative's ingress.InsertProbe, as Kourier applies it before translating a rule: for every
 * path a copy, placed first, that matches `K-Network-Hash: override` and overwrites that
 * header with the KIngress hash on its way to the same splits. The backend (queue-proxy, or
 * chikai's proxy for a revision at zero) echoes it, which tells the prober this gateway
 * serves this version of the KIngress.
 */
function withProbePaths(paths: readonly IngressPath[], hash: string | undefined): readonly IngressPath[] {
  if (hash === undefined) return paths;
  const probes = paths.map((p) => ({
    ...p,
    headers: { ...p.headers, [NETWORK_HASH_HEADER]: NETWORK_HASH_OVERRIDE },
    appendHeaders: { ...p.appendHeaders, [NETWORK_HASH_HEADER]: hash },
  }));
  return [...probes, ...paths];
}

/**
 * A KIngress rule as one virtual host, the way Kourier translates it: a route per path
 * (prefix, exact header matches), weighted clusters for the traffic split with the
 * path's and the split's headers appended, each path's probe copy first. Splits that name
 * no revision (an ExternalName service, say) have no cluster here and are left out; a path
 * left with none is dropped, its probe copy too (the prober then sees 404 and retries).
 */
function ingressVirtualHost(snap: ClusterSnapshot, ingress: IngressRoutes, ruleIndex: number, rule: IngressRule): JsonObject | undefined {
  const headerList = (h: Readonly<Record<string, string>>) => Object.entries(h).map(([key, value]) => ({ header: { key, value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }));
  const route = (path: IngressPath): JsonObject | undefined => {
    const splits = path.splits.filter((sp) => sp.revision !== undefined && snap.revision(sp.revision) && sp.percent > 0);
    if (splits.length === 0) return undefined;
    const timeoutSeconds = Math.max(...splits.map((sp) => snap.revision(sp.revision as string)?.timeoutSeconds ?? 300));
    return {
      match: {
        prefix: path.path || '/',
        ...(Object.keys(path.headers).length > 0
          ? { headers: Object.entries(path.headers).map(([name, exact]) => ({ name, string_match: { exact } })) }
          : {}),
      },
      route: {
        weighted_clusters: {
          clusters: splits.map((sp) => ({ name: sp.revision as string, weight: sp.percent, request_headers_to_add: headerList(sp.appendHeaders) })),
        },
        timeout: `${timeoutSeconds}s`,
        upgrade_configs: [{ upgrade_type: 'websocket', enabled: true }],
        ...(path.rewriteHost ? { host_rewrite_literal: path.rewriteHost } : {}),
      },
      ...(Object.keys(path.appendHeaders).length > 0 ? { request_headers_to_add: headerList(path.appendHeaders) } : {}),
    };
  };
  const routes = withProbePaths(rule.paths, ingress.hash).map(route).filter((r): r is JsonObject => r !== undefined);
  if (routes.length === 0 || rule.hosts.length === 0) return undefined;
  const hosts = rule.hosts.map((h) => h.toLowerCase());
  return {
    name: `${ingress.key}/${ruleIndex}`,
    domains: hosts.flatMap((h) => [h, `${h}:*`]),
    routes,
  };
}

/** Virtual hosts from the KIngresses: ExternalIP rules on both route configs, ClusterLocal on the internal one. */
function ingressVirtualHosts(snap: ClusterSnapshot, ingresses: readonly IngressRoutes[]): { external: JsonObject[]; internal: JsonObject[]; hosts: string[] } {
  const external: JsonObject[] = [];
  const internal: JsonObject[] = [];
  const hosts = new Set<string>();
  // Envoy refuses a route configuration where two virtual hosts claim one domain: the first
  // KIngress (by key) keeps it.
  const claimed = { external: new Set<string>(), internal: new Set<string>([GATEWAY_STATUS_HOST]) };
  const take = (which: 'external' | 'internal', vh: JsonObject): JsonObject | undefined => {
    const domains = (vh.domains as string[]).filter((d) => !claimed[which].has(d));
    if (domains.length === 0) return undefined;
    domains.forEach((d) => claimed[which].add(d));
    return { ...vh, domains };
  };
  for (const ing of [...ingresses].sort((a, b) => a.key.localeCompare(b.key))) {
    ing.rules.forEach((rule, i) => {
      const vh = ingressVirtualHost(snap, ing, i, rule);
      if (!vh) return;
      const inner = take('internal', vh);
      if (inner) internal.push(inner);
      if (rule.visibility === 'ExternalIP') {
        const outer = take('external', vh);
        if (outer) external.push(outer);
      }
      for (const h of rule.hosts) hosts.add(h.toLowerCase());
    });
  }
  return { external, internal, hosts: [...hosts] };
}

/** What every gateway shares: the route configurations, and the hosts proxyless gRPC clients resolve. */
export interface SharedRouting {
  readonly routes: JsonObject[];
  /** One `api_listener` per host, served by name only. */
  readonly apiListeners: BuiltListener[];
}

/**
 * The route configurations and api_listeners, the same for every gateway. Routes come from
 * the KIngresses when a Kubernetes source supplies them (`ingresses`), else from the model's
 * revisions and their hosts.
 */
export function buildSharedRouting(snap: ClusterSnapshot, ingresses?: readonly IngressRoutes[]): SharedRouting {
  let externalHosts: JsonObject[];
  let internalHosts: JsonObject[];
  let apiHosts: string[];
  if (ingresses) {
    const v = ingressVirtualHosts(snap, ingresses);
    externalHosts = v.external;
    internalHosts = v.internal;
    apiHosts = v.hosts;
  } else {
    const targets = hostTargets(snap);
    internalHosts = [...targets].map(([h, t]) => virtualHost(h, t));
    externalHosts = internalHosts;
    apiHosts = [...targets.keys()];
  }
  const routes: JsonObject[] = [
    { name: EXTERNAL_ROUTES, virtual_hosts: externalHosts },
    { name: INTERNAL_ROUTES, virtual_hosts: [...internalHosts, gatewayStatusVirtualHost()] },
  ];
  return { routes, apiListeners: apiHosts.map((h) => ({ listener: apiListener(h), inWildcard: false })) };
}

/** Kourier's listeners of the gateway on `gatewayNode`, bound where its node says. */
export function buildGatewayListeners(gatewayNode: string | undefined, opts: BuildOptions): BuiltListener[] {
  const bindAddress = opts.listenerAddress?.(gatewayNode) ?? '0.0.0.0';
  return [
    { listener: gatewayListener(EXTERNAL_LISTENER, bindAddress, opts.externalPort ?? 8080, 'external', EXTERNAL_ROUTES), inWildcard: true },
    { listener: gatewayListener(INTERNAL_LISTENER, bindAddress, opts.internalPort ?? 8081, 'internal', INTERNAL_ROUTES), inWildcard: true },
    // Kourier's probe listener serves the external routes, so external rules are probed there.
    { listener: gatewayListener(PROBE_LISTENER, bindAddress, opts.probePort ?? 8090, 'probe', EXTERNAL_ROUTES), inWildcard: true },
  ];
}

export interface NodeResources {
  readonly clusters: JsonObject[];
  readonly endpoints: JsonObject[];
  readonly listeners: BuiltListener[];
  readonly routes: JsonObject[];
}

/** Everything one gateway node is served, in one piece (the builder makes the same parts piecewise). */
export function buildNodeResources(
  snap: ClusterSnapshot,
  load: LoadView,
  gatewayNode: string | undefined,
  opts: BuildOptions,
  ingresses?: readonly IngressRoutes[],
): NodeResources {
  const clusters = snap.revisions.map((r) => buildCluster(r, opts));
  const endpoints = snap.revisions.map((r) => buildLoadAssignment(snap, load, r, gatewayNode, opts));
  const shared = buildSharedRouting(snap, ingresses);
  return { clusters, endpoints, routes: shared.routes, listeners: [...buildGatewayListeners(gatewayNode, opts), ...shared.apiListeners] };
}
