// The emulated Kourier gateways: one Envoy per emulated node, fed by chikai's xDS server,
// bound to the node's own address. Kourier's ports by default (8080 external, 8081
// internal, 8090 probe, admin 9901, the stats listener 9000); tests pick free ones.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeInfo } from '../cluster/model.js';
import { EXTERNAL_LISTENER, INTERNAL_LISTENER, PROBE_LISTENER } from '../xds/resources.js';
import { renderBootstrap } from './bootstrap.js';
import { EnvoyProcess, PortInUseError } from './envoy-process.js';

export { PortInUseError } from './envoy-process.js';

export interface GatewayPorts {
  /** listener_8080: the `kourier` service's target port. */
  readonly external: number;
  /** listener_8081: `kourier-internal`'s. */
  readonly internal: number;
  /** listener_8090: where Knative's ingress prober checks the external routes. */
  readonly probe: number;
  /** Envoy's admin. */
  readonly admin: number;
  /** The read-only stats listener (/stats, /clusters, /ready). */
  readonly stats: number;
}

export const KOURIER_GATEWAY_PORTS: GatewayPorts = { external: 8080, internal: 8081, probe: 8090, admin: 9901, stats: 9000 };

export interface Gateway {
  readonly node: string;
  readonly address: string;
  /** `http://<node address>:<external port>`: where clients send requests. */
  readonly url: string;
  readonly internalUrl: string;
  /** `http://<node address>:<admin port>`: Envoy's admin. */
  readonly adminUrl: string;
  readonly process: EnvoyProcess;
}

export interface GatewaySet {
  readonly ports: GatewayPorts;
  readonly gateways: ReadonlyMap<string, Gateway>;
  gateway(node: string): Gateway;
  close(): Promise<void>;
}

export interface GatewaySetOptions {
  /** The Envoy binary (gateway/envoy-binary.ts resolves it). */
  readonly envoy: string;
  readonly nodes: readonly NodeInfo[];
  /** chikai's xDS server, as the gateways dial it. */
  readonly xds: { readonly host: string; readonly port: number };
  readonly ports: GatewayPorts;
  /** Where unexpected Envoy exits are reported (default: console.error). */
  readonly log?: (line: string) => void;
  readonly readyTimeoutMs?: number;
}

/** Starts one Envoy per node and waits until all serve; on any failure, none is left running. */
export async function startGateways(opts: GatewaySetOptions): Promise<GatewaySet> {
  const workDir = mkdtempSync(join(tmpdir(), 'chikai-gateways-'));
  const log = opts.log ?? ((line: string) => console.error(line));
  const { ports } = opts;
  const gateways = new Map<string, Gateway>();
  for (const node of opts.nodes) {
    const bootstrap = renderBootstrap({ node, xds: opts.xds, adminPort: ports.admin, statsPort: ports.stats });
    const envoy = EnvoyProcess.start({
      binary: opts.envoy,
      name: node.name,
      bootstrap,
      workDir,
      admin: { host: node.address, port: ports.admin },
      listeners: [EXTERNAL_LISTENER, INTERNAL_LISTENER, PROBE_LISTENER],
      onExit: (message) => log(`gateway ${node.name}: ${message}`),
    });
    gateways.set(node.name, {
      node: node.name,
      address: node.address,
      url: `http://${node.address}:${ports.external}`,
      internalUrl: `http://${node.address}:${ports.internal}`,
      adminUrl: `http://${node.address}:${ports.admin}`,
      process: envoy,
    });
  }
  const stopAll = async () => {
    await Promise.all([...gateways.values()].map((g) => g.process.stop()));
    rmSync(workDir, { recursive: true, force: true });
  };
  const results = await Promise.allSettled([...gateways.values()].map((g) => g.process.ready(opts.readyTimeoutMs)));
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
  if (failures.length > 0) {
    await stopAll();
    throw failures.find((f) => f instanceof PortInUseError) ?? failures[0];
  }
  return {
    ports,
    gateways,
    gateway(node) {
      const g = gateways.get(node);
      if (!g) throw new Error(`no gateway on node ${JSON.stringify(node)} (gateways: ${[...gateways.keys()].join(', ')})`);
      return g;
    },
    close: stopAll,
  };
}

function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/**
 * Five consecutive ports free on every address, below the ephemeral range (32768 and up on
 * Linux), where no outgoing connection's source port can take one between this check and
 * Envoy's bind. Another process can still take one meanwhile: Envoy then fails with a
 * PortInUseError and the caller picks again.
 */
export async function pickGatewayPorts(addresses: readonly string[], range: { min: number; max: number } = { min: 20_000, max: 32_000 }): Promise<GatewayPorts> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = range.min + Math.floor(Math.random() * (range.max - range.min - 5));
    const candidates = [base, base + 1, base + 2, base + 3, base + 4];
    let free = true;
    for (const host of addresses) {
      for (const port of candidates) {
        if (!(await canBind(host, port))) {
          free = false;
          break;
        }
      }
      if (!free) break;
    }
    if (free) return { external: base, internal: base + 1, probe: base + 2, admin: base + 3, stats: base + 4 };
  }
  throw new Error(`no five consecutive free ports between ${range.min} and ${range.max} on ${addresses.join(', ')}`);
}
