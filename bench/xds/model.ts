// The xds bench's cluster: three nodes (two cloud, one edge) and M revisions with one pod
// per node each. Both xDS servers under test serve what chikai builds from it.
import { ClusterModel, revisionKey, type EndpointInfo, type NodeInfo, type RevisionInfo } from '../../cluster/model.js';
import { EXTERNAL_ROUTES, INTERNAL_ROUTES } from '../../xds/resources.js';

const NODES: NodeInfo[] = [
  { name: 'node1', region: 'cloud', zone: 'cloud-a', address: '127.0.1.1' },
  { name: 'node2', region: 'cloud', zone: 'cloud-a', address: '127.0.1.2' },
  { name: 'node3', region: 'edge', zone: 'edge-a', address: '127.0.1.3' },
];

/** Node a simulated gateway runs on: gateways are spread evenly over the three views. */
export function gatewayNode(i: number): string {
  return NODES[i % NODES.length]!.name;
}

export interface BenchModel {
  readonly model: ClusterModel;
  /** The pod whose readiness every change flips (revision 0's pod on node1). */
  readonly changedPod: string;
  readonly clusters: readonly string[];
  readonly routes: readonly string[];
}

export function benchModel(revisions: number): BenchModel {
  const revs: RevisionInfo[] = Array.from({ length: revisions }, (_, i) => ({
    namespace: 'default', service: `fn${i}`, name: `fn${i}-00001`, hosts: [], containerConcurrency: 0, timeoutSeconds: 300, protocol: 'http1',
  }));
  const endpoints: EndpointInfo[] = revs.flatMap((r, i) => NODES.map((n) => ({
    pod: `${r.name}-${n.name}`, revision: revisionKey(r.namespace, r.name), node: n.name, address: n.address, port: 20000 + (i % 40000), ready: true,
  })));
  const model = new ClusterModel({
    domain: 'cluster.local',
    externalDomains: ['example.com'],
    nodes: NODES,
    revisions: revs,
    endpoints,
    latency: { node3: { node1: { rttMs: 50, jitterMs: 0 }, node2: { rttMs: 50, jitterMs: 0 } }, node1: { node3: { rttMs: 50, jitterMs: 0 }, node2: { rttMs: 0.5, jitterMs: 0 } }, node2: { node3: { rttMs: 50, jitterMs: 0 }, node1: { rttMs: 0.5, jitterMs: 0 } } },
  });
  return { model, changedPod: endpoints[0]!.pod, clusters: revs.map((r) => revisionKey(r.namespace, r.name)), routes: [EXTERNAL_ROUTES, INTERNAL_ROUTES] };
}

/** Readiness of the changed pod after change `seq` (it starts ready; change 0 makes it unready). */
export function readyAfter(seq: number): boolean {
  return seq % 2 === 1;
}
