// The systems the paper bench compares, each on a fresh emulated stack:
// - through the gateways (one real Envoy per node, users send to their node's gateway):
//   `knative` (stock Kourier config, gateway → activator subset → pod), `faast` (gateway →
//   its node's activator with FaaSt's weights), `chikai` (chikai's xDS server: weights at
//   the gateway, pods directly, and the node proxy in the path from half of what the node's
//   pods serve on)
//   and `oracle` (a fixed locality split at the gateway);
// - proxy only (users send to their node's proxy): every proxy policy and the oracle.
import { startEmulatedStack, type EmulatedStack } from '../../bin/stack.js';
import type { ClusterFile } from '../../cluster/config.js';
import { PortInUseError, pickGatewayPorts, startGateways, type GatewaySet } from '../../gateway/gateways.js';
import { FixedXdsServer, type GatewayConfig } from './fixed-xds.js';
import { fixedSplitConfigs, kourierConfigs, localProxyConfigs, type GatewaySetting } from './gateway-config.js';
import { CLOUD, EDGE } from './cluster.js';
import { StaticSplitPolicy, edgeShareSplit } from './oracle.js';

export type Path = 'gateway' | 'proxy';
export const PATHS: readonly Path[] = ['gateway', 'proxy'];

/** Policies of the proxy-only rows (requests straight to the node proxies). */
export const PROXY_POLICIES = ['knative', 'round-robin', 'local-only', 'faast', 'peak-ewma', 'chikai', 'oracle'] as const;
/** Systems through the Envoy gateways. */
export const GATEWAY_POLICIES = ['knative', 'faast', 'chikai', 'oracle'] as const;

export interface SystemId {
  readonly path: Path;
  readonly policy: string;
}

export const systemLabel = (s: SystemId) => `${s.path}/${s.policy}`;

export interface RunningSystem {
  readonly id: SystemId;
  readonly stack: EmulatedStack;
  /** Where the users on `node` send their requests: its gateway, or its proxy. */
  entryUrl(node: string): string;
  /** The oracle: from now on the edge sends `share` of its requests to the cloud; resolves once in force. */
  setEdgeShare(share: number): Promise<void>;
  close(): Promise<void>;
}

export interface SystemOptions {
  readonly file: ClusterFile;
  readonly seed: number;
  /** The Envoy binary (gateway systems). */
  readonly envoy: string;
  readonly log: (line: string) => void;
}

const STACK = { proxyPort: 0, adminPort: 0, drainSeconds: 0 } as const;

/** Envoy gateways on every node fed by a FixedXdsServer serving `configs(ports)`. */
async function fixedGateways(stack: EmulatedStack, o: SystemOptions, configs: (s: GatewaySetting) => Map<string, GatewayConfig>): Promise<{ server: FixedXdsServer; gateways: GatewaySet; setting: GatewaySetting }> {
  const nodes = stack.model.current.nodes;
  for (let attempt = 1; ; attempt++) {
    const ports = await pickGatewayPorts(nodes.map((n) => n.address));
    const setting: GatewaySetting = { proxyPort: stack.proxyPort, ports };
    const server = await FixedXdsServer.start();
    server.set(configs(setting));
    try {
      const gateways = await startGateways({ envoy: o.envoy, nodes, xds: server.address, ports, log: o.log });
      try {
        await server.synced(nodes.map((n) => n.name));
      } catch (err) {
        await gateways.close();
        throw err;
      }
      return { server, gateways, setting };
    } catch (err) {
      await server.close();
      // Picked ports can be taken by another process before Envoy binds them: pick again.
      if (!(err instanceof PortInUseError) || attempt >= 5) throw err;
    }
  }
}

export async function startSystem(id: SystemId, o: SystemOptions): Promise<RunningSystem> {
  const base = { file: o.file, seed: o.seed, ...STACK };
  if (id.path === 'proxy') {
    const splits = new Map<string, StaticSplitPolicy>();
    const stack = await startEmulatedStack(id.policy === 'oracle'
      ? { ...base, policyFor: (node) => { const p = new StaticSplitPolicy({ [node]: 1 }); splits.set(node, p); return p; } }
      : { ...base, policy: id.policy });
    return {
      id,
      stack,
      entryUrl: (node) => stack.proxyUrl(node),
      async setEdgeShare(share) {
        if (id.policy !== 'oracle') throw new Error(`${systemLabel(id)} has no fixed split`);
        for (const [node, p] of splits) p.setSplit(edgeShareSplit(node, EDGE, CLOUD, share));
      },
      close: () => stack.close(),
    };
  }
  if (id.policy === 'chikai') {
    const stack = await startEmulatedStack({
      ...base,
      policy: 'chikai',
      xds: { listen: { host: '127.0.0.1', port: 0 }, log: (l) => o.log(`  chikai xds: ${l}`) },
      gateways: { envoy: o.envoy, ports: 'free', log: o.log },
    });
    return {
      id,
      stack,
      entryUrl: (node) => stack.gatewayUrl(node),
      setEdgeShare: () => Promise.reject(new Error(`${systemLabel(id)} has no fixed split`)),
      close: () => stack.close(),
    };
  }
  // The fixed configurations: the proxies run Knative's activator balancing behind stock
  // Kourier, FaaSt's weights behind FaaSt's gateways; the oracle's gateways go to the pods.
  const proxyPolicy = id.policy === 'knative' ? 'knative' : id.policy === 'faast' ? 'faast' : 'round-robin';
  if (!['knative', 'faast', 'oracle'].includes(id.policy)) throw new Error(`no gateway system ${JSON.stringify(id.policy)}: expected one of ${GATEWAY_POLICIES.join(', ')}`);
  const stack = await startEmulatedStack({ ...base, policy: proxyPolicy });
  let fixed: { server: FixedXdsServer; gateways: GatewaySet; setting: GatewaySetting };
  try {
    const snap = () => stack.model.current;
    fixed = await fixedGateways(stack, o, (s) =>
      id.policy === 'knative' ? kourierConfigs(snap(), s)
      : id.policy === 'faast' ? localProxyConfigs(snap(), s)
      : fixedSplitConfigs(snap(), s, (n) => edgeShareSplit(n, EDGE, CLOUD, 0)));
  } catch (err) {
    await stack.close();
    throw err;
  }
  const nodes = stack.model.current.nodes.map((n) => n.name);
  return {
    id,
    stack,
    entryUrl: (node) => fixed.gateways.gateway(node).url,
    async setEdgeShare(share) {
      if (id.policy !== 'oracle') throw new Error(`${systemLabel(id)} has no fixed split`);
      fixed.server.set(fixedSplitConfigs(stack.model.current, fixed.setting, (n) => edgeShareSplit(n, EDGE, CLOUD, share)));
      await fixed.server.synced(nodes);
    },
    async close() {
      await fixed.gateways.close();
      await fixed.server.close();
      await stack.close();
    },
  };
}
