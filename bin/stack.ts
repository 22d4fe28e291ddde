// The emulated stack: the emulated cluster (pods behind user-space latency) plus one chikai
// node proxy per node, all in this process, and on request chikai's xDS server and one real
// Envoy gateway per node (Kourier-shaped, fed by that server; Envoy runs as a child process).
// The demo, the benches and the tests start it here, and only here.
import type { AddressInfo } from 'node:net';
import { loadClusterFile, DEMO_CLUSTER_FILE, type ClusterFile } from '../cluster/config.js';
import { ClusterModel } from '../cluster/model.js';
import { startEmulatedCluster, type EmulatedCluster } from '../cluster/emulated/cluster.js';
import type { Exposure } from '../cluster/emulated/network.js';
import { EmulatedAutoscaler } from '../cluster/emulated/autoscaler.js';
import { AutoscalerReporter } from '../proxy/autoscaler.js';
import { NodeProxy } from '../proxy/server.js';
import { createPolicy, type Policy } from '../proxy/policy/index.js';
import { LoadReporter } from '../proxy/load-reporter.js';
import type { HostPort, XdsServer } from '../xds/server.js';
import type { IngressSource } from '../xds/cache.js';
import { startXdsServerWithLoadReports } from '../xds/load-reports.js';
import { ensureEnvoy } from '../gateway/envoy-binary.js';
import type { MapTargets } from '../map/server.js';
import { KOURIER_GATEWAY_PORTS, PortInUseError, pickGatewayPorts, startGateways, type GatewayPorts, type GatewaySet } from '../gateway/gateways.js';

export interface StackOptions {
  /** The cluster file (default: the embedded demo cluster). */
  readonly file?: ClusterFile;
  /** Policy for every proxy (default: the file's `proxy.policy`). */
  readonly policy?: string;
  /** A policy object per node instead of a name (benches: the oracle's fixed split). */
  readonly policyFor?: (node: string) => Policy;
  /** Proxy port on every node address; 0 picks free ports (tests). Default: the file's. */
  readonly proxyPort?: number;
  /** h2c port (the activator's 8013) on every node address; 0 picks free ports. Default: the file's. */
  readonly h2cPort?: number;
  /** Admin port on every node address; 0 picks free ports. Default: the file's. */
  readonly adminPort?: number;
  readonly drainSeconds?: number;
  /** Seed for the network's jitter and the pods' service times. */
  readonly seed?: number;
  /** Charge TCP's handshake on new connections through the emulated network (cold-start bench). */
  readonly tcpHandshake?: boolean;
  /**
   * The emulated Knative autoscaler, which runs when the file scales revisions
   * (`autoscaler.revisions`): where it listens (default: the file's, or a free port when
   * `proxyPort` is 0), or false for none. Every proxy reports to it over the stat websocket.
   */
  readonly autoscaler?: { readonly listen?: HostPort; readonly log?: (line: string) => void } | false;
  /** Also run the xDS server (the Kourier gateways' control plane) on these addresses. */
  readonly xds?: {
    readonly listen: HostPort;
    readonly admin?: HostPort;
    readonly log?: (line: string) => void;
    /** Route by these Knative Ingresses instead of the model's hosts (as in Kubernetes). */
    readonly ingresses?: IngressSource;
  };
  /**
   * Also run one Envoy gateway per node, fed by the xDS server (started on 127.0.0.1 with
   * free ports when `xds` is not given).
   */
  readonly gateways?: {
    /** The Envoy binary; default: gateway/envoy-binary.ts resolves (and installs) it. */
    readonly envoy?: string;
    /** Ports at every node address; 'free' picks free ones (tests). Default: Kourier's. */
    readonly ports?: GatewayPorts | 'free';
    /** Unexpected Envoy exits, with their log's tail (default: console.error). */
    readonly log?: (line: string) => void;
  };
}

export interface EmulatedStack {
  readonly file: ClusterFile;
  readonly model: ClusterModel;
  readonly cluster: EmulatedCluster;
  readonly proxies: ReadonlyMap<string, NodeProxy>;
  /** The emulated Knative autoscaler, when the file scales revisions. */
  readonly autoscaler: EmulatedAutoscaler | undefined;
  /** The xDS server, when asked for; it weighs localities with the proxies' and gateways' load reports. */
  readonly xds: XdsServer | undefined;
  /** The Envoy gateways, when asked for. */
  readonly gateways: GatewaySet | undefined;
  /** Port every node's proxy is reachable on, at the node's address. */
  readonly proxyPort: number;
  /** Port of every node's proxy's h2c listener (the activator's 8013), at the node's address. */
  readonly h2cPort: number;
  /** `http://<node address>:<proxy port>` of a node's proxy. */
  proxyUrl(node: string): string;
  /** `http://<node address>:<admin port>` of a node's proxy admin server. */
  adminUrl(node: string): string;
  /** `http://<node address>:<external port>` of a node's gateway (listener_8080). */
  gatewayUrl(node: string): string;
  /** `http://<node address>:<admin port>` of a node's gateway Envoy admin. */
  gatewayAdminUrl(node: string): string;
  /** Stops the xDS server (the gateways keep their last configuration). */
  stopXds(): Promise<void>;
  /** Starts it again on the same addresses and ports. */
  startXds(): Promise<XdsServer>;
  close(): Promise<void>;
}

/**
 * Exposes every node's proxy at `<node address>:<port>`, one port for all nodes. With port 0
 * the first node picks a free one; another node may already use that number on its own
 * address (an outgoing connection's source port), so then the whole set is tried again.
 */
async function exposeOnEveryNode(cluster: EmulatedCluster, proxies: ReadonlyMap<string, NodeProxy>, wanted: number, listener: (p: NodeProxy) => AddressInfo): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const done: Exposure[] = [];
    let port = wanted;
    try {
      for (const [node, proxy] of proxies) {
        const at = listener(proxy);
        const e = await cluster.expose(node, port, { host: at.address, port: at.port });
        done.push(e);
        port = e.port;
      }
      return port;
    } catch (err) {
      await Promise.all(done.map((e) => e.close(0)));
      if (wanted !== 0 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 10) throw err;
    }
  }
}

export async function startEmulatedStack(opts: StackOptions = {}): Promise<EmulatedStack> {
  const file = opts.file ?? loadClusterFile(DEMO_CLUSTER_FILE);
  const model = new ClusterModel(file.state);
  const cluster = await startEmulatedCluster({ model, pods: file.pods, seed: opts.seed, tcpHandshake: opts.tcpHandshake });
  const proxies = new Map<string, NodeProxy>();
  const statReporters: AutoscalerReporter[] = [];
  let autoscaler: EmulatedAutoscaler | undefined;
  // Every proxy listens on its node's hidden address and is reached through the emulated
  // network on the node address, so proxy-to-proxy traffic (RTT probes, failover) pays the
  // inter-node latency. All nodes use one port, as a DaemonSet would.
  let proxyPort = opts.proxyPort ?? file.proxy.port;
  let h2cPort = opts.h2cPort ?? (opts.proxyPort === 0 ? 0 : file.proxy.h2cPort);
  try {
    let autoscalerUrl: string | undefined;
    if (opts.autoscaler !== false && file.autoscaler.revisions.length > 0) {
      const listen = opts.autoscaler?.listen ?? (opts.proxyPort === 0 ? { host: file.autoscaler.listen.host, port: 0 } : file.autoscaler.listen);
      autoscaler = new EmulatedAutoscaler({ cluster, settings: file.autoscaler, maxPods: file.maxPods, listen, log: opts.autoscaler?.log });
      const a = await autoscaler.start();
      autoscalerUrl = `ws://${a.host === '0.0.0.0' ? '127.0.0.1' : a.host}:${a.port}`;
    }
    for (const node of model.current.nodes) {
      // Each proxy reports from its node's address: that is how the autoscaler knows where demand is.
      const reporter = autoscalerUrl ? new AutoscalerReporter({ url: autoscalerUrl, podName: `chikai-proxy-${node.name}`, localAddress: node.address }) : undefined;
      if (reporter) {
        statReporters.push(reporter);
        reporter.start();
      }
      const proxy = new NodeProxy({
        model,
        node: node.name,
        listen: { host: cluster.hiddenHost(node.name), port: 0 },
        h2cListen: { host: cluster.hiddenHost(node.name), port: 0 },
        admin: { host: node.address, port: opts.adminPort ?? file.proxy.adminPort },
        peerPort: proxyPort === 0 ? undefined : proxyPort,
        policy: opts.policyFor ? opts.policyFor(node.name) : createPolicy(opts.policy ?? file.proxy.policy),
        queue: file.queue,
        drainSeconds: opts.drainSeconds ?? file.proxy.drainSeconds,
        maxBodyBytes: file.proxy.maxBodyBytes,
        headersTimeoutMs: file.proxy.headersTimeoutSeconds * 1000,
        maxIdleConnectionsPerClient: file.proxy.maxIdleConnectionsPerClient,
        localAddress: node.address,
        concurrency: reporter,
      });
      proxies.set(node.name, proxy);
      await proxy.start();
    }
    proxyPort = await exposeOnEveryNode(cluster, proxies, proxyPort, (p) => p.address);
    h2cPort = await exposeOnEveryNode(cluster, proxies, h2cPort, (p) => p.h2cAddress!);
    // With a port picked at start, the probes learn it now.
    for (const p of proxies.values()) p.setPeerPort(proxyPort);
  } catch (err) {
    await Promise.all([...proxies.values()].map((p) => p.close()));
    await Promise.all(statReporters.map((r) => r.close()));
    await autoscaler?.close();
    await cluster.close();
    throw err;
  }
  const closeProxiesAndCluster = async () => {
    await Promise.all([...proxies.values()].map((p) => p.close()));
    await Promise.all(statReporters.map((r) => r.close()));
    await autoscaler?.close();
    await cluster.close();
  };
  const xdsSettings = opts.xds ?? (opts.gateways ? { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } } : undefined);
  let xdsListen = xdsSettings?.listen;
  let xdsAdmin = xdsSettings?.admin;
  let gatewayPorts: GatewayPorts | undefined;
  const startXds = async (): Promise<XdsServer> => {
    if (!xdsListen) throw new Error('this stack runs no xDS server');
    const ports = gatewayPorts;
    // The proxies and the gateways report their load to it over LRS, as in Kubernetes.
    const server = await startXdsServerWithLoadReports({
      model,
      listen: xdsListen,
      admin: xdsAdmin,
      proxyPort,
      log: xdsSettings?.log,
      ingresses: xdsSettings?.ingresses,
      // Every gateway binds its own node's address: the emulated nodes share this host.
      ...(ports ? { gatewayPorts: { external: ports.external, internal: ports.internal, probe: ports.probe }, gatewayListenerAddress: (node: string | undefined) => (node && model.current.node(node)?.address) || '0.0.0.0' } : {}),
    });
    // A restart comes back where the gateways look for it.
    xdsListen = { host: xdsListen.host, port: server.address.port };
    if (xdsAdmin && server.adminAddress) xdsAdmin = { host: xdsAdmin.host, port: server.adminAddress.port };
    return server;
  };
  let xds: XdsServer | undefined;
  let gateways: GatewaySet | undefined;
  const reporters: LoadReporter[] = [];
  try {
    if (opts.gateways) {
      const log = opts.gateways.log;
      const envoy = opts.gateways.envoy ?? (await ensureEnvoy({ log: (l) => (log ?? console.error)(l) })).path;
      const wanted = opts.gateways.ports ?? KOURIER_GATEWAY_PORTS;
      const nodes = model.current.nodes;
      for (let attempt = 1; ; attempt++) {
        gatewayPorts = wanted === 'free' ? await pickGatewayPorts(nodes.map((n) => n.address)) : wanted;
        xds = await startXds();
        const dial = xds.address.host === '0.0.0.0' ? '127.0.0.1' : xds.address.host;
        try {
          gateways = await startGateways({ envoy, nodes, xds: { host: dial, port: xds.address.port }, ports: gatewayPorts, log });
          break;
        } catch (err) {
          await xds.close();
          xds = undefined;
          // Picked ports can be taken by another process before Envoy binds them: pick again.
          if (!(err instanceof PortInUseError) || wanted !== 'free' || attempt >= 5) throw err;
        }
      }
    } else if (xdsSettings) {
      xds = await startXds();
    }
    if (xds) {
      // Every proxy reports what it measures to the xDS server; a restarted server comes
      // back on the same port, where they reconnect.
      const server = { host: xds.address.host === '0.0.0.0' ? '127.0.0.1' : xds.address.host, port: xds.address.port };
      for (const [node, proxy] of proxies) {
        const r = new LoadReporter({ node, model, load: proxy.reportedLoad, servers: [server], log: xdsSettings?.log });
        reporters.push(r);
        await r.start();
      }
    }
  } catch (err) {
    for (const r of reporters) r.close();
    await gateways?.close();
    await xds?.close();
    await closeProxiesAndCluster();
    throw err;
  }
  const gatewayOf = (node: string) => {
    if (!gateways) throw new Error('this stack runs no gateways (startEmulatedStack({ gateways: {} }))');
    return gateways.gateway(node);
  };
  return {
    file,
    model,
    cluster,
    proxies,
    autoscaler,
    get xds() {
      return xds;
    },
    gateways,
    proxyPort,
    h2cPort,
    proxyUrl(node: string): string {
      const n = model.current.node(node);
      if (!n || !proxies.has(node)) throw new Error(`no proxy on node ${node}`);
      return `http://${n.address}:${proxyPort}`;
    },
    adminUrl(node: string): string {
      const a = proxies.get(node)?.adminAddress;
      if (!a) throw new Error(`no proxy admin on node ${node}`);
      return `http://${a.address}:${a.port}`;
    },
    gatewayUrl: (node) => gatewayOf(node).url,
    gatewayAdminUrl: (node) => gatewayOf(node).adminUrl,
    async stopXds(): Promise<void> {
      const s = xds;
      xds = undefined;
      await s?.close();
    },
    async startXds(): Promise<XdsServer> {
      if (xds) return xds;
      xds = await startXds();
      return xds;
    },
    async close(): Promise<void> {
      for (const r of reporters) r.close();
      await gateways?.close();
      await xds?.close();
      await closeProxiesAndCluster();
    },
  };
}

/** Where the traffic map (map/server.ts) reads a running stack: every gateway, proxy and the xDS admin. */
export function stackMapTargets(stack: EmulatedStack): MapTargets {
  const admin = stack.xds?.adminAddress;
  if (!admin || !stack.gateways) throw new Error('the traffic map needs a stack with the xDS server (with its admin) and the gateways');
  return {
    nodes: stack.model.current.nodes.map((n) => ({ name: n.name, region: n.region, zone: n.zone, address: n.address })),
    xdsAdmin: `http://${admin.host === '0.0.0.0' ? '127.0.0.1' : admin.host}:${admin.port}`,
    gatewayAdmin: (node) => (stack.gateways?.gateways.has(node) ? stack.gatewayAdminUrl(node) : undefined),
    proxyAdmin: (node) => (stack.proxies.has(node) ? stack.adminUrl(node) : undefined),
  };
}
