// Where a command's cluster model comes from: the cluster file (demo, static setups) or
// the Kubernetes API (inside a cluster). Both the proxy and the xDS server open it here.
import type { ClusterFile } from '../cluster/config.js';
import { ClusterModel } from '../cluster/model.js';
import type { IngressSource } from '../xds/cache.js';

import { DEMO_CLUSTER_FILE } from '../cluster/config.js';
import { UsageError } from './usage-error.js';

export type SourceKind = 'file' | 'kubernetes';

/** The flags every command that opens a model source takes (node:util parseArgs options). */
export const SOURCE_FLAGS = {
  cluster: { type: 'string', default: DEMO_CLUSTER_FILE },
  source: { type: 'string' },
  kubeconfig: { type: 'string' },
  namespace: { type: 'string' },
  // Kubernetes: the proxies' Service (deploy/base/proxy.yaml), whose EndpointSlices say
  // which pod address is each node's proxy.
  proxies: { type: 'string', default: 'knative-serving/chikai-proxy' },
  listen: { type: 'string' },
  admin: { type: 'string' },
} as const;

/** `--flag HOST:PORT`, or an error naming the flag and the form it takes. */
export function hostPortFlag(flag: string, v: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) > 65535) throw new SourceError(`--${flag} expects HOST:PORT, got ${JSON.stringify(v)}`);
  return { host: m[1], port: Number(m[2]) };
}

export interface ModelSource {
  readonly kind: SourceKind;
  readonly model: ClusterModel;
  /** KIngresses to route by (Kubernetes with `readIngresses`). */
  readonly ingresses: IngressSource | undefined;
  /** Why the source is not complete yet; undefined when it is. */
  notReady(): string | undefined;
  close(): Promise<void>;
}

/** `--source`: explicit, else Kubernetes inside a pod (the API server's env is set), else the file. */
export function sourceKind(flag: string | undefined): SourceKind {
  if (flag === undefined) return process.env['KUBERNETES_SERVICE_HOST'] ? 'kubernetes' : 'file';
  if (flag === 'file' || flag === 'kubernetes') return flag;
  throw new SourceError(`--source expects file or kubernetes, got ${JSON.stringify(flag)}`);
}

export class SourceError extends UsageError {
  override name = 'SourceError';
}

export interface OpenOptions {
  readonly kind: SourceKind;
  /** The cluster file: the model itself (file), or only domains and settings (kubernetes). */
  readonly file: ClusterFile;
  /** The xDS server routes by KIngresses; the proxy does not need them. */
  readonly readIngresses?: boolean;
  /** Watch one namespace only (Revisions, EndpointSlices, KIngresses). */
  readonly namespace?: string;
  readonly kubeconfig?: string;
  /** `--proxies NAMESPACE/SERVICE` (Kubernetes). */
  readonly proxies?: string;
}

/** `--proxies NAMESPACE/SERVICE`, or an error naming the flag and the form it takes. */
export function proxiesFlag(v: string): { namespace: string; service: string } {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)$/.exec(v);
  if (!m) throw new SourceError(`--proxies expects NAMESPACE/SERVICE (the proxies' Service), got ${JSON.stringify(v)}`);
  return { namespace: m[1]!, service: m[3]! };
}

export async function openModelSource(opts: OpenOptions): Promise<ModelSource> {
  if (opts.kind === 'file') {
    const model = new ClusterModel(opts.file.state);
    return { kind: 'file', model, ingresses: undefined, notReady: () => undefined, close: async () => undefined };
  }
  const { loadKubeConfig, startKubernetesSource } = await import('../cluster/kubernetes/index.js');
  let kubeConfig;
  try {
    kubeConfig = await loadKubeConfig(opts.kubeconfig ? { file: opts.kubeconfig } : {});
  } catch (err) {
    throw new SourceError(`--source kubernetes: ${(err as Error).message}`);
  }
  const source = await startKubernetesSource({
    kubeConfig,
    readIngresses: opts.readIngresses ?? false,
    namespace: opts.namespace,
    proxies: proxiesFlag(opts.proxies ?? 'knative-serving/chikai-proxy'),
    domain: opts.file.state.domain,
    externalDomains: opts.file.state.externalDomains,
  });
  const ingresses: IngressSource | undefined = opts.readIngresses
    ? {
        current: () => source.ingresses(),
        onChange(listener) {
          source.on('ingresses', listener);
          return () => source.off('ingresses', listener);
        },
      }
    : undefined;
  return {
    kind: 'kubernetes',
    model: source.model,
    ingresses,
    notReady: () => {
      const pending = source.health().filter((h) => !h.synced);
      return pending.length === 0 ? undefined : `still listing ${pending.map((h) => `${h.resource}${h.lastError ? ` (${h.lastError})` : ''}`).join(', ')}`;
    },
    close: () => source.close(),
  };
}
