// The gateway configurations of the systems chikai is compared with, as Envoy resources
// for bench/paper/fixed-xds.ts. Listeners and routes are chikai's Kourier-shaped ones
// (xds/resources.ts: listener_8080/8081/8090, external_services/internal_services, a
// virtual host per host, the Knative-Serving-* headers appended, websocket upgrades); only
// the clusters differ, and they are STATIC with their endpoints inline, as net-kourier's:
// - `kourierConfigs`: stock Kourier with the activator in the path. One snapshot for every
//   gateway: each revision's cluster lists the revision's public endpoints, which Knative's
//   serverless service sets to a subset of the activators (port 8012), in one locality
//   without weights, round robin.
// - `localProxyConfigs`: FaaSt's setup, Kourier and the activator as DaemonSets with
//   `internalTrafficPolicy: Local`: every gateway sends to its own node's activator.
// - `fixedSplitConfigs`: the oracle's static split as locality weights over the pods.
import { createHash } from 'node:crypto';
import { configuredLoadView } from '../../cluster/load.js';
import { revisionKey, type ClusterSnapshot, type NodeInfo, type RevisionInfo } from '../../cluster/model.js';
import type { GatewayPorts } from '../../gateway/gateways.js';
import type { JsonObject } from '../../xds/protojson.js';
import { buildNodeResources, localityOf, upstreamProtocolOptions } from '../../xds/resources.js';
import type { GatewayConfig } from './fixed-xds.js';
import type { Split } from './oracle.js';

export interface GatewaySetting {
  /** Port of every node's proxy (the activator's 8012). */
  readonly proxyPort: number;
  /** The listeners' ports (the emulated gateways bind their node's address). */
  readonly ports: Pick<GatewayPorts, 'external' | 'internal' | 'probe'>;
}

interface HostPort {
  readonly address: string;
  readonly port: number;
}

interface StaticLocality {
  readonly node?: NodeInfo;
  readonly weight?: number;
  readonly endpoints: readonly HostPort[];
}

/**
 * A STATIC cluster with inline endpoints, as net-kourier builds them (5 s connect timeout,
 * round robin, HTTP/2 upstream for h2c revisions). Locality weights only when given.
 */
function staticCluster(rev: RevisionInfo, localities: readonly StaticLocality[]): JsonObject {
  const name = revisionKey(rev.namespace, rev.name);
  const weighted = localities.some((l) => l.weight !== undefined);
  return {
    name,
    type: 'STATIC',
    connect_timeout: '5s',
    lb_policy: 'ROUND_ROBIN',
    ...(weighted ? { common_lb_config: { locality_weighted_lb_config: {} } } : {}),
    load_assignment: {
      cluster_name: name,
      endpoints: localities.map((l) => ({
        ...(l.node ? { locality: localityOf(l.node, l.node.name) } : {}),
        ...(l.weight !== undefined ? { load_balancing_weight: l.weight } : {}),
        lb_endpoints: l.endpoints.map((e) => ({ endpoint: { address: { socket_address: { address: e.address, port_value: e.port } } } })),
      })),
    },
    ...upstreamProtocolOptions(rev),
  };
}

/** chikai's Kourier-shaped listeners and routes for one gateway node (its clusters are replaced). */
function listenersAndRoutes(snap: ClusterSnapshot, node: string, s: GatewaySetting): Pick<GatewayConfig, 'listeners' | 'routes'> {
  const built = buildNodeResources(snap, configuredLoadView(() => snap), node, {
    proxyPort: s.proxyPort,
    externalPort: s.ports.external,
    internalPort: s.ports.internal,
    probePort: s.ports.probe,
    listenerAddress: (n) => (n && snap.node(n)?.address) || '0.0.0.0',
  });
  return { listeners: built.listeners.filter((l) => l.inWildcard).map((l) => l.listener), routes: built.routes };
}

function perNode(snap: ClusterSnapshot, s: GatewaySetting, clustersOf: (node: NodeInfo) => JsonObject[]): Map<string, GatewayConfig> {
  return new Map(snap.nodes.map((n) => [n.name, { clusters: clustersOf(n), endpoints: [], ...listenersAndRoutes(snap, n.name, s) }]));
}

/**
 * Knative's settings behind the activator count (KPA `computeNumActivators`): a revision's
 * total concurrency target per pod (container-concurrency-target-default 100 for
 * containerConcurrency 0), the target burst capacity (-1: the activator always in the
 * path) and one activator's capacity (activator-capacity 100).
 */
const KNATIVE_ACTIVATOR_SETTINGS = { totalValuePerPod: 100, targetBurstCapacity: -1, activatorCapacity: 100, minActivators: 2 } as const;

/** How many activators Knative puts behind a revision: max(2, ⌈(ready pods × total + TBC if > 0) / activator capacity⌉). */
export function activatorCount(readyPods: number, k = KNATIVE_ACTIVATOR_SETTINGS): number {
  const cover = readyPods * k.totalValuePerPod + Math.max(0, k.targetBurstCapacity);
  return Math.max(k.minActivators, Math.ceil(cover / k.activatorCapacity));
}

/**
 * The revision's activators: all of them when it needs as many as there are, else a subset
 * stable per revision (rendezvous hashing on the revision and the activator's address; Knative
 * uses its own consistent-hash ring, which this cluster never exercises: 3 nodes, ≥ 3 needed).
 */
function activatorSubset(revKey: string, activators: readonly NodeInfo[], count: number): NodeInfo[] {
  if (count >= activators.length) return [...activators];
  const score = (n: NodeInfo) => createHash('sha256').update(`${revKey}\n${n.address}`).digest('hex');
  return [...activators].sort((a, b) => score(a).localeCompare(score(b))).slice(0, count);
}

/** Stock Kourier, activator path: the same clusters for every gateway (every node runs an activator). */
export function kourierConfigs(snap: ClusterSnapshot, s: GatewaySetting): Map<string, GatewayConfig> {
  const clusters = snap.revisions.map((rev) => {
    const key = revisionKey(rev.namespace, rev.name);
    const activators = activatorSubset(key, snap.nodes, activatorCount(snap.readyEndpoints(key).length));
    return staticCluster(rev, [{ endpoints: activators.map((a) => ({ address: a.address, port: s.proxyPort })) }]);
  });
  return perNode(snap, s, () => clusters);
}

/** FaaSt's gateways: each sends every revision to its own node's activator (chikai proxy running the `faast` policy). */
export function localProxyConfigs(snap: ClusterSnapshot, s: GatewaySetting): Map<string, GatewayConfig> {
  return perNode(snap, s, (n) => snap.revisions.map((rev) => staticCluster(rev, [{ endpoints: [{ address: n.address, port: s.proxyPort }] }])));
}

/**
 * The oracle at the gateways: each gateway splits its requests over the nodes' pods by the
 * fixed shares `splitOf(its node)` (locality weights 1–100; a node with no share is left out).
 */
export function fixedSplitConfigs(snap: ClusterSnapshot, s: GatewaySetting, splitOf: (node: string) => Split): Map<string, GatewayConfig> {
  return perNode(snap, s, (gw) => {
    const split = splitOf(gw.name);
    const total = Object.values(split).reduce((a, b) => a + Math.max(0, b), 0);
    return snap.revisions.map((rev) => {
      const key = revisionKey(rev.namespace, rev.name);
      const localities: StaticLocality[] = [];
      for (const node of snap.nodes) {
        const weight = total > 0 ? Math.round((100 * Math.max(0, split[node.name] ?? 0)) / total) : 0;
        const endpoints = snap.readyEndpoints(key).filter((e) => e.node === node.name).map((e) => ({ address: e.address, port: e.port }));
        if (weight >= 1 && endpoints.length > 0) localities.push({ node, weight, endpoints });
      }
      if (localities.length === 0) throw new Error(`oracle split ${JSON.stringify(split)} for gateway ${gw.name} leaves ${key} no ready pod`);
      return staticCluster(rev, localities);
    });
  });
}
