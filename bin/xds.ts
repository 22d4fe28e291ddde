// `chikai xds`: the xDS server for the Kourier gateways on its own, as deploy/ runs it. It
// takes the model from the cluster file or the Kubernetes API and the measured load from the
// node proxies, which report it over LRS on the same port as ADS.
import { parseArgs } from 'node:util';
import { loadClusterFile } from '../cluster/config.js';
import { startXdsServerWithLoadReports } from '../xds/load-reports.js';
import { readMutualTls, tlsDirFiles, type MutualTls } from '../xds/mtls.js';
import { SOURCE_FLAGS, SourceError, hostPortFlag, openModelSource, sourceKind } from './sources.js';

function port(flag: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new SourceError(`--${flag} expects a port number 1–65535, got ${JSON.stringify(v)}`);
  return n;
}

export async function xdsCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      ...SOURCE_FLAGS,
      'proxy-port': { type: 'string' },
      'tls-dir': { type: 'string' },
    },
  });
  const kind = sourceKind(values.source);
  const file = loadClusterFile(values.cluster);
  const inCluster = kind === 'kubernetes';
  const listen = values.listen ? hostPortFlag('listen', values.listen) : inCluster ? { host: '0.0.0.0', port: 18000 } : file.xds.listen;
  const admin = values.admin ? hostPortFlag('admin', values.admin) : inCluster ? { host: '0.0.0.0', port: 18080 } : file.xds.admin;
  // The node proxies: where a revision with no ready pod is sent.
  const proxyPort = port('proxy-port', values['proxy-port'], inCluster ? 8012 : file.proxy.port);

  // Mutual TLS on the ADS port: ca.crt (the clients' CA), tls.crt and tls.key (this server's).
  let tls: MutualTls | undefined;
  try {
    tls = values['tls-dir'] ? readMutualTls(tlsDirFiles(values['tls-dir'])) : undefined;
  } catch (err) {
    throw new SourceError(`--tls-dir: ${(err as Error).message}`);
  }
  const source = await openModelSource({ kind, file, readIngresses: inCluster, namespace: values.namespace, kubeconfig: values.kubeconfig, proxies: values.proxies });
  const log = (line: string) => console.warn(line);
  const server = await startXdsServerWithLoadReports({
    model: source.model,
    listen,
    admin,
    proxyPort,
    ingresses: source.ingresses,
    notReady: () => source.notReady(),
    log,
    tls,
  }).catch(async (err: unknown) => {
    await source.close();
    throw err;
  });
  console.log(`chikai xDS server (${kind} source): ADS${tls ? ' (mutual TLS)' : ''} on ${listen.host}:${server.address.port}, admin on ${admin.host}:${server.adminAddress?.port}`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: closing the ADS streams`);
    void (async () => {
      await server.close();
      await source.close();
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
