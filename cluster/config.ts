// The cluster file: the first source of the cluster model (the demo, the benches and
// static setups read it). A mistake stops the process before it listens, with an error
// naming the file, the line, the field and what was expected.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isIPv4 } from 'node:net';
import { readQueueConfig, type QueueConfig } from '../queue/config.js';
import { ConfigError, ConfigReader, type ConfigPath } from './config-reader.js';
import type { ClusterState, EndpointInfo, LinkLatency, NodeInfo, RevisionInfo } from './model.js';
import { revisionKey } from './model.js';

export { ConfigError } from './config-reader.js';

/** The demo's cluster: the research paper's three nodes (two cloud, one edge). */
export const DEMO_CLUSTER_FILE = fileURLToPath(new URL('../../cluster/demo-cluster.yaml', import.meta.url));

/** An emulated pod (demo, benches, tests): where it runs and how it behaves. */
export interface PodSpec {
  readonly name?: string;
  readonly revision: string;
  readonly node: string;
  readonly serviceTimeMs?: { readonly min: number; readonly max: number };
  readonly capacity?: number;
}

export interface ProxySettings {
  /** HTTP port of every node proxy (the Knative activator's, 8012; h2c accepted too). */
  readonly port: number;
  /** h2c port of every node proxy (the activator's 8013; HTTP/1.1 accepted too). */
  readonly h2cPort: number;
  readonly adminPort: number;
  readonly policy: string;
  /** How long a proxy keeps serving after SIGTERM before it stops accepting. */
  readonly drainSeconds: number;
  /** Largest request body accepted, in bytes (0 = no limit). */
  readonly maxBodyBytes: number;
  /** Time a client has to send its complete request headers (slowloris bound). */
  readonly headersTimeoutSeconds: number;
  /**
   * Idle connections one client address may hold on the traffic port (0 = no cap). The
   * default 2048 is above what a gateway (Envoy: 1024 connections per upstream cluster)
   * holds idle to its node's proxy, and bounds one client to ~70 MB of proxy memory.
   */
  readonly maxIdleConnectionsPerClient: number;
}

export interface XdsSettings {
  readonly listen: { readonly host: string; readonly port: number };
  readonly admin: { readonly host: string; readonly port: number };
}

/** A revision the emulated autoscaler scales between zero and one pod, and the pod it starts. */
export interface ScaledRevision {
  readonly revision: string;
  readonly serviceTimeMs?: { readonly min: number; readonly max: number };
  readonly capacity?: number;
}

/**
 * The emulated Knative autoscaler (cluster/emulated/autoscaler.ts). Times follow Knative's
 * config-autoscaler: `stable-window` (default 60 s) and `scale-to-zero-grace-period`
 * (default 30 s), both at least 6 s in Knative; the emulation accepts shorter ones (a stable
 * window of at least 1 s, the proxies' reporting period).
 */
export interface AutoscalerSettings {
  /** Where the stat websocket listens (Knative's autoscaler: port 8080). */
  readonly listen: { readonly host: string; readonly port: number };
  readonly stableWindowSeconds: number;
  readonly scaleToZeroGracePeriodSeconds: number;
  /** From the scale-up decision to a container that answers. */
  readonly coldStartSeconds: number;
  /** The readiness probe's periodSeconds: 0 is Knative's default (queue-proxy polls every 50 ms). */
  readonly readinessPeriodSeconds: number;
  readonly revisions: readonly ScaledRevision[];
}

export interface ClusterFile {
  readonly file: string;
  readonly state: ClusterState;
  readonly pods: readonly PodSpec[];
  /** Pods each node can hold (`nodes[].maxPods`); a node not listed has no limit. */
  readonly maxPods: Readonly<Record<string, number>>;
  readonly autoscaler: AutoscalerSettings;
  readonly proxy: ProxySettings;
  readonly xds: XdsSettings;
  /** The `queue:` section, read by queue/ (it owns that schema). */
  readonly queue: QueueConfig;
}

export const DEFAULT_PROXY: ProxySettings = { port: 8012, h2cPort: 8013, adminPort: 9090, policy: 'chikai', drainSeconds: 45, maxBodyBytes: 0, headersTimeoutSeconds: 15, maxIdleConnectionsPerClient: 2048 };
export const DEFAULT_XDS: XdsSettings = { listen: { host: '127.0.0.1', port: 18000 }, admin: { host: '127.0.0.1', port: 18080 } };
/** Knative's defaults (config-autoscaler), a 1 s cold start, nothing scaled. */
export const DEFAULT_AUTOSCALER: AutoscalerSettings = {
  listen: { host: '127.0.0.1', port: 8080 },
  stableWindowSeconds: 60,
  scaleToZeroGracePeriodSeconds: 30,
  coldStartSeconds: 1,
  readinessPeriodSeconds: 0,
  revisions: [],
};

const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export function loadClusterFile(file: string): ClusterFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, '(file)', `a readable cluster file (${(err as Error).message})`);
  }
  return parseClusterFile(text, file);
}

export function parseClusterFile(text: string, file: string): ClusterFile {
  const r = ConfigReader.fromYaml(text, file);
  const top = r.get();
  if (top === null || typeof top !== 'object' || Array.isArray(top)) throw new ConfigError(file, '(top level)', 'a mapping with nodes, latency, revisions and pods or endpoints');
  const known = new Set(['domain', 'externalDomains', 'nodes', 'latency', 'revisions', 'endpoints', 'pods', 'proxy', 'queue', 'xds', 'autoscaler']);
  for (const k of Object.keys(top)) if (!known.has(k)) r.fail([k], `one of the top-level fields ${[...known].join(', ')}`, k);

  const domain = r.string(['domain'], 'cluster.local');
  const externalDomains = r.list(['externalDomains'], false).map((_, i) => r.string(['externalDomains', i]).toLowerCase());

  const maxPods: Record<string, number> = {};
  const nodes: NodeInfo[] = r.list(['nodes'], true).map((_, i) => {
    r.mapping(['nodes', i], ['name', 'region', 'zone', 'address', 'maxPods']);
    const name = r.string(['nodes', i, 'name']);
    if (!NAME.test(name)) r.fail(['nodes', i, 'name'], 'a Kubernetes node name (lower-case letters, digits, - and .)', name);
    const address = r.string(['nodes', i, 'address']);
    if (!isIPv4(address)) r.fail(['nodes', i, 'address'], 'an IPv4 address (emulated nodes use 127.0.1.N)', address);
    if (r.get(['nodes', i, 'maxPods']) !== undefined) maxPods[name] = r.integer(['nodes', i, 'maxPods'], undefined, 0, 10_000);
    return { name, address, region: r.string(['nodes', i, 'region'], 'default'), zone: r.string(['nodes', i, 'zone'], 'default') };
  });
  if (nodes.length === 0) r.fail(['nodes'], 'at least one node');
  const nodeNames = new Set<string>();
  nodes.forEach((n, i) => {
    if (nodeNames.has(n.name)) r.fail(['nodes', i, 'name'], 'a node name used once', n.name);
    nodeNames.add(n.name);
  });
  const nodeField = (path: ConfigPath): string => {
    const n = r.string(path);
    if (!nodeNames.has(n)) r.fail(path, `one of the nodes (${[...nodeNames].join(', ')})`, n);
    return n;
  };

  const latency: Record<string, Record<string, LinkLatency>> = {};
  r.list(['latency'], false).forEach((_, i) => {
    r.mapping(['latency', i], ['between', 'rttMs', 'jitterMs']);
    const between = r.list(['latency', i, 'between'], true);
    if (between.length !== 2) r.fail(['latency', i, 'between'], 'two node names, e.g. [node1, node3]', between);
    const a = nodeField(['latency', i, 'between', 0]);
    const b = nodeField(['latency', i, 'between', 1]);
    const link = { rttMs: r.number(['latency', i, 'rttMs'], undefined, 0, 60_000), jitterMs: r.number(['latency', i, 'jitterMs'], 0, 0, 60_000) };
    (latency[a] ??= {})[b] = link;
    (latency[b] ??= {})[a] = link;
  });

  const revisions: RevisionInfo[] = r.list(['revisions'], true).map((_, i) => {
    const p = (f: string): ConfigPath => ['revisions', i, f];
    r.mapping(['revisions', i], ['namespace', 'service', 'name', 'hosts', 'containerConcurrency', 'timeoutSeconds', 'responseStartTimeoutSeconds', 'idleTimeoutSeconds', 'protocol']);
    const protocol = r.string(p('protocol'), 'http1');
    if (protocol !== 'http1' && protocol !== 'h2c') return r.fail(p('protocol'), 'http1 or h2c', protocol);
    const timeoutSeconds = r.number(p('timeoutSeconds'), 300, 0.001, 600);
    // Knative's validation: neither may exceed timeoutSeconds.
    const optional = (f: string, min: number) => (r.get(p(f)) === undefined ? {} : { [f]: r.number(p(f), undefined, min, timeoutSeconds) });
    return {
      namespace: r.string(p('namespace'), 'default'),
      service: r.string(p('service')),
      name: r.string(p('name')),
      hosts: r.list(p('hosts'), false).map((_, j) => r.string(['revisions', i, 'hosts', j]).toLowerCase()),
      containerConcurrency: r.number(p('containerConcurrency'), 0, 0, 1000, true),
      timeoutSeconds,
      ...optional('responseStartTimeoutSeconds', 0),
      ...optional('idleTimeoutSeconds', 0),
      protocol,
    };
  });
  const revKeys = new Set(revisions.map((x) => revisionKey(x.namespace, x.name)));
  const revisionField = (path: ConfigPath): string => {
    const k = r.string(path);
    if (!revKeys.has(k)) r.fail(path, `a revision as <namespace>/<name> (${[...revKeys].join(', ')})`, k);
    return k;
  };

  const endpoints: EndpointInfo[] = r.list(['endpoints'], false).map((_, i) => {
    const p = (f: string): ConfigPath => ['endpoints', i, f];
    r.mapping(['endpoints', i], ['pod', 'revision', 'node', 'address', 'port', 'ready']);
    const address = r.string(p('address'));
    if (!isIPv4(address)) r.fail(p('address'), 'an IPv4 address', address);
    return {
      pod: r.string(p('pod')),
      revision: revisionField(p('revision')),
      node: nodeField(p('node')),
      address,
      port: r.number(p('port'), undefined, 1, 65535, true),
      ready: r.boolean(p('ready'), true),
    };
  });

  const pods: PodSpec[] = r.list(['pods'], false).map((_, i) => {
    const p = (f: string): ConfigPath => ['pods', i, f];
    r.mapping(['pods', i], ['name', 'revision', 'node', 'serviceTimeMs', 'capacity']);
    const st = r.mapping(p('serviceTimeMs'), ['min', 'max'], false);
    const serviceTimeMs = st
      ? { min: r.number(['pods', i, 'serviceTimeMs', 'min'], undefined, 0, 600_000), max: r.number(['pods', i, 'serviceTimeMs', 'max'], undefined, 0, 600_000) }
      : undefined;
    if (serviceTimeMs && serviceTimeMs.max < serviceTimeMs.min) r.fail(['pods', i, 'serviceTimeMs', 'max'], `a number ≥ min (${serviceTimeMs.min})`, serviceTimeMs.max);
    const name = r.get(p('name')) === undefined ? undefined : r.string(p('name'));
    return { name, revision: revisionField(p('revision')), node: nodeField(p('node')), serviceTimeMs, capacity: r.number(p('capacity'), 1, 1, 10_000, true) };
  });
  const podsOn = new Map<string, number>();
  pods.forEach((pod, i) => {
    const n = (podsOn.get(pod.node) ?? 0) + 1;
    podsOn.set(pod.node, n);
    const room = maxPods[pod.node];
    if (room !== undefined && n > room) r.fail(['pods', i, 'node'], `a node with room for the pod (${pod.node} has maxPods ${room})`, pod.node);
  });

  r.mapping(['proxy'], ['port', 'h2cPort', 'adminPort', 'policy', 'drainSeconds', 'maxBodyBytes', 'headersTimeoutSeconds', 'maxIdleConnectionsPerClient'], false);
  const proxy: ProxySettings = {
    port: r.number(['proxy', 'port'], DEFAULT_PROXY.port, 1, 65535, true),
    h2cPort: r.number(['proxy', 'h2cPort'], DEFAULT_PROXY.h2cPort, 1, 65535, true),
    adminPort: r.number(['proxy', 'adminPort'], DEFAULT_PROXY.adminPort, 1, 65535, true),
    policy: r.string(['proxy', 'policy'], DEFAULT_PROXY.policy),
    drainSeconds: r.number(['proxy', 'drainSeconds'], DEFAULT_PROXY.drainSeconds, 0, 3600),
    maxBodyBytes: r.number(['proxy', 'maxBodyBytes'], DEFAULT_PROXY.maxBodyBytes, 0, Number.MAX_SAFE_INTEGER, true),
    headersTimeoutSeconds: r.number(['proxy', 'headersTimeoutSeconds'], DEFAULT_PROXY.headersTimeoutSeconds, 1, 600),
    maxIdleConnectionsPerClient: r.number(['proxy', 'maxIdleConnectionsPerClient'], DEFAULT_PROXY.maxIdleConnectionsPerClient, 0, 1_000_000, true),
  };

  const hostPort = (path: ConfigPath, dflt: { host: string; port: number }): { host: string; port: number } => {
    const v = r.get(path);
    if (v === undefined) return dflt;
    const m = typeof v === 'string' ? /^(\d+\.\d+\.\d+\.\d+):(\d{1,5})$/.exec(v) : null;
    if (!m || Number(m[2]) > 65535) return r.fail(path, 'host:port, e.g. 127.0.0.1:18000', v);
    return { host: m[1], port: Number(m[2]) };
  };
  r.mapping(['xds'], ['listen', 'admin'], false);
  const xds: XdsSettings = { listen: hostPort(['xds', 'listen'], DEFAULT_XDS.listen), admin: hostPort(['xds', 'admin'], DEFAULT_XDS.admin) };

  const a = (f: string): ConfigPath => ['autoscaler', f];
  r.mapping(['autoscaler'], ['listen', 'stableWindowSeconds', 'scaleToZeroGracePeriodSeconds', 'coldStartSeconds', 'readinessPeriodSeconds', 'revisions'], false);
  const scaled: ScaledRevision[] = r.list(a('revisions'), false).map((_, i) => {
    const p = (f: string): ConfigPath => ['autoscaler', 'revisions', i, f];
    r.mapping(['autoscaler', 'revisions', i], ['revision', 'serviceTimeMs', 'capacity']);
    const revision = revisionField(p('revision'));
    const withPods = pods.findIndex((pod) => pod.revision === revision);
    if (withPods >= 0) r.fail(p('revision'), `a revision at zero: one without entries under pods: (pods[${withPods}] is one of ${revision})`, revision);
    const st = r.mapping(p('serviceTimeMs'), ['min', 'max'], false);
    const serviceTimeMs = st
      ? { min: r.number(['autoscaler', 'revisions', i, 'serviceTimeMs', 'min'], undefined, 0, 600_000), max: r.number(['autoscaler', 'revisions', i, 'serviceTimeMs', 'max'], undefined, 0, 600_000) }
      : undefined;
    if (serviceTimeMs && serviceTimeMs.max < serviceTimeMs.min) r.fail(['autoscaler', 'revisions', i, 'serviceTimeMs', 'max'], `a number ≥ min (${serviceTimeMs.min})`, serviceTimeMs.max);
    return { revision, serviceTimeMs, capacity: r.number(p('capacity'), 1, 1, 10_000, true) };
  });
  scaled.forEach((s, i) => {
    if (scaled.findIndex((o) => o.revision === s.revision) !== i) r.fail(['autoscaler', 'revisions', i, 'revision'], 'a revision listed once', s.revision);
  });
  const autoscaler: AutoscalerSettings = {
    listen: hostPort(a('listen'), DEFAULT_AUTOSCALER.listen),
    // The proxies report every second: a shorter window would see gaps in steady demand.
    stableWindowSeconds: r.number(a('stableWindowSeconds'), DEFAULT_AUTOSCALER.stableWindowSeconds, 1, 3600),
    scaleToZeroGracePeriodSeconds: r.number(a('scaleToZeroGracePeriodSeconds'), DEFAULT_AUTOSCALER.scaleToZeroGracePeriodSeconds, 0, 3600),
    coldStartSeconds: r.number(a('coldStartSeconds'), DEFAULT_AUTOSCALER.coldStartSeconds, 0, 600),
    readinessPeriodSeconds: r.integer(a('readinessPeriodSeconds'), DEFAULT_AUTOSCALER.readinessPeriodSeconds, 0, 3600),
    revisions: scaled,
  };

  return {
    file,
    state: { domain, externalDomains, nodes, revisions, endpoints, latency },
    pods,
    maxPods,
    autoscaler,
    proxy,
    xds,
    queue: readQueueConfig(r.section(['queue'])),
  };
}
