// Envoy as a reference forwarder: the gateways' Envoy 1.37 (gateway/envoy-binary.ts) with a
// static bootstrap that forwards every request to the backend, one worker
// (`--concurrency 1`, as the gateways run), in its own process, always stopped.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvoyProcess, PortInUseError } from '../../gateway/envoy-process.js';
import { HCM_TYPE, ROUTER_TYPE } from '../../xds/protos.js';
import type { JsonObject } from '../../xds/protojson.js';
import { freePort } from './nginx.js';

const LISTENER = 'forward';

function bootstrap(port: number, adminPort: number, backendPort: number): JsonObject {
  const socket = (p: number): JsonObject => ({ socket_address: { address: '127.0.0.1', port_value: p } });
  return {
    admin: { address: socket(adminPort) },
    static_resources: {
      listeners: [{
        name: LISTENER,
        address: socket(port),
        filter_chains: [{
          filters: [{
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': HCM_TYPE,
              stat_prefix: LISTENER,
              route_config: { virtual_hosts: [{ name: 'backend', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'backend', timeout: '0s' } }] }] },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } }],
            },
          }],
        }],
      }],
      clusters: [{
        name: 'backend',
        type: 'STATIC',
        connect_timeout: '1s',
        load_assignment: { cluster_name: 'backend', endpoints: [{ lb_endpoints: [{ endpoint: { address: socket(backendPort) } }] }] },
      }],
    },
  };
}

export interface RunningEnvoy {
  readonly port: number;
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export async function startEnvoyForwarder(binary: string, backendPort: number): Promise<RunningEnvoy> {
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'chikai-bench-envoy-'));
    const [port, adminPort] = [await freePort(), await freePort()];
    const envoy = EnvoyProcess.start({ binary, name: 'forwarder', bootstrap: bootstrap(port, adminPort, backendPort), workDir: dir, admin: { host: '127.0.0.1', port: adminPort }, listeners: [LISTENER], logLevel: 'warning' });
    const stop = async () => {
      await envoy.stop();
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      await envoy.ready();
      return { port, pid: envoy.pid, stop };
    } catch (err) {
      await stop();
      // A free port picked here can be taken before Envoy binds it: pick again.
      if (!(err instanceof PortInUseError) || attempt >= 5) throw err;
    }
  }
}
