// Kubernetes as a source of the cluster model: the entry points the CLI, the proxy and
// the xDS server use.
export { startKubernetesSource, KubernetesSource, type KubernetesSourceOptions, type KubernetesSourceEvents, type ResourceHealth } from './source.js';
export { loadKubeConfig, kubeConfigForServer, loadKubernetesClient, type KubeConfig, type KubeConfigSource } from './client.js';
export {
  KOURIER_INGRESS_CLASS,
  ingressRoutesFrom,
  type IngressRoutes,
  type IngressRule,
  type IngressPath,
  type IngressSplit,
  type IngressTls,
  type IngressVisibility,
} from './ingress.js';
export { nodeInfoFrom, revisionInfoFrom, sliceEndpointsFrom, mergeSliceEndpoints, PRIVATE_SERVICE_SELECTOR } from './objects.js';
