// Access to @kubernetes/client-node. It is loaded on first use, not at import time: the
// emulated cluster and the CLI's other commands must keep working where the Kubernetes
// client cannot load, and the failure then names the fix.
import type * as KubernetesClient from '@kubernetes/client-node';

export type KubernetesClientModule = typeof KubernetesClient;
export type KubeConfig = KubernetesClient.KubeConfig;

let loaded: Promise<KubernetesClientModule> | undefined;

export function loadKubernetesClient(): Promise<KubernetesClientModule> {
  loaded ??= import('@kubernetes/client-node').catch((err: unknown) => {
    loaded = undefined;
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(
      `cannot load @kubernetes/client-node on Node.js ${process.version} (${why}). ` +
        'Its 2.x releases need Node.js >= 22.19 (they bundle undici 8); on Node.js 20 pin "@kubernetes/client-node" to "~1.4.0" in package.json.',
    );
  });
  return loaded;
}

export interface KubeConfigSource {
  /** A kubeconfig file; default: $KUBECONFIG, ~/.kube/config, or the pod's ServiceAccount. */
  readonly file?: string;
  /** Context to use instead of the file's current-context. */
  readonly context?: string;
}

/**
 * The kubeconfig the way kubectl finds it; inside a pod, the ServiceAccount token and the
 * cluster CA mounted by Kubernetes.
 */
export async function loadKubeConfig(source: KubeConfigSource = {}): Promise<KubeConfig> {
  const k8s = await loadKubernetesClient();
  const kc = new k8s.KubeConfig();
  if (source.file) kc.loadFromFile(source.file);
  else kc.loadFromDefault();
  if (source.context) {
    if (!kc.getContextObject(source.context)) {
      throw new Error(`kubeconfig has no context ${JSON.stringify(source.context)} (contexts: ${kc.getContexts().map((c) => c.name).join(', ') || 'none'})`);
    }
    kc.setCurrentContext(source.context);
  }
  if (!kc.getCurrentCluster()) {
    throw new Error('no Kubernetes cluster configured: set KUBECONFIG, pass a kubeconfig file, or run inside a pod with a ServiceAccount');
  }
  return kc;
}

/** A kubeconfig for one API server URL (tests, `kubectl proxy`); plain http is allowed. */
export async function kubeConfigForServer(server: string, token?: string): Promise<KubeConfig> {
  const k8s = await loadKubernetesClient();
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    // The client refuses http:// unless TLS verification is explicitly off.
    clusters: [{ name: 'chikai', server, skipTLSVerify: server.startsWith('http:') }],
    users: [{ name: 'chikai', ...(token ? { token } : {}) }],
    contexts: [{ name: 'chikai', cluster: 'chikai', user: 'chikai' }],
    currentContext: 'chikai',
  });
  return kc;
}
