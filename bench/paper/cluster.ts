// The paper's cluster as a cluster file: node1 and node2 in the cloud, node3 at the edge,
// one pod per node of a function that needs 3–5 ms, the edge pod smaller.
import { parseClusterFile, type ClusterFile } from '../../cluster/config.js';

export interface PaperCluster {
  /** Edge ↔ cloud round trip and its jitter (standard deviation), ms. */
  readonly rttMs: number;
  readonly jitterMs: number;
  /** Requests the edge pod serves in parallel. */
  readonly edgeCapacity: number;
  /** Requests each cloud pod serves in parallel. */
  readonly cloudCapacity: number;
}

export const EDGE = 'node3';
export const CLOUD = ['node1', 'node2'] as const;
export const HOST = 'hello.default.svc.cluster.local';
/** Mean service time of the function (uniform 3–5 ms). */
export const SERVICE_MS = { min: 3, max: 5 };

export function paperClusterFile(c: PaperCluster): ClusterFile {
  const st = `serviceTimeMs: { min: ${SERVICE_MS.min}, max: ${SERVICE_MS.max} }`;
  const yaml = `
nodes:
  - { name: node1, region: cloud, zone: cloud-a, address: 127.0.1.1 }
  - { name: node2, region: cloud, zone: cloud-a, address: 127.0.1.2 }
  - { name: node3, region: edge, zone: edge-a, address: 127.0.1.3 }
latency:
  - { between: [node3, node1], rttMs: ${c.rttMs}, jitterMs: ${c.jitterMs} }
  - { between: [node3, node2], rttMs: ${c.rttMs}, jitterMs: ${c.jitterMs} }
  - { between: [node1, node2], rttMs: 0.5, jitterMs: 0 }
revisions:
  - { namespace: default, service: hello, name: hello-00001, containerConcurrency: 0, timeoutSeconds: 300 }
pods:
  - { revision: default/hello-00001, node: node1, ${st}, capacity: ${c.cloudCapacity} }
  - { revision: default/hello-00001, node: node2, ${st}, capacity: ${c.cloudCapacity} }
  - { revision: default/hello-00001, node: node3, ${st}, capacity: ${c.edgeCapacity} }
`;
  return parseClusterFile(yaml, `paper cluster (rtt ${c.rttMs} ms)`);
}
