// The emulated gateways' Envoy bootstrap, rendered from deploy/'s gateway bootstrap (the
// file kustomize puts in the ConfigMap): one template for Kubernetes and for this machine.
// Only what differs on one host is set here: the node identity and locality, where the
// xDS server is, and the node's own address for the admin, the stats listener and every
// upstream connection (so hops to other nodes' pods cross the emulated network from this
// node's address and pay its latency, as the proxies' hops do).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { NodeInfo } from '../cluster/model.js';
import type { JsonObject } from '../xds/protojson.js';

export const BOOTSTRAP_TEMPLATE = fileURLToPath(new URL('../../deploy/components/gateway/envoy-bootstrap.yaml', import.meta.url));

/** The cluster the template's ADS (and LRS) config points at, and the one its stats listener reads the admin through. */
const XDS_CLUSTER = 'chikai_xds';
const ADMIN_CLUSTER = 'envoy_admin';
const STATS_LISTENER = 'stats_listener';

export interface BootstrapOptions {
  readonly node: Pick<NodeInfo, 'name' | 'region' | 'zone' | 'address'>;
  /** chikai's xDS server (ADS and load reports). */
  readonly xds: { readonly host: string; readonly port: number };
  /** Envoy's admin port and the read-only stats listener's port, both on the node's address. */
  readonly adminPort: number;
  readonly statsPort: number;
  /** Template text (default: the deploy/ file). */
  readonly template?: string;
}

export class BootstrapTemplateError extends Error {
  override name = 'BootstrapTemplateError';
}

type Obj = Record<string, unknown>;

function obj(v: unknown, what: string): Obj {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new BootstrapTemplateError(`${BOOTSTRAP_TEMPLATE}: ${what}: expected a mapping`);
  return v as Obj;
}

function list(v: unknown, what: string): Obj[] {
  if (!Array.isArray(v)) throw new BootstrapTemplateError(`${BOOTSTRAP_TEMPLATE}: ${what}: expected a list`);
  return v.map((x, i) => obj(x, `${what}[${i}]`));
}

function named(items: Obj[], name: string, what: string): Obj {
  const found = items.find((x) => x['name'] === name);
  if (!found) throw new BootstrapTemplateError(`${BOOTSTRAP_TEMPLATE}: ${what}: expected an entry named ${name}`);
  return found;
}

/** The single endpoint's socket address of a STATIC/STRICT_DNS cluster. */
function clusterAddress(cluster: Obj, what: string): Obj {
  const la = obj(cluster['load_assignment'], `${what}.load_assignment`);
  const lb = list(list(la['endpoints'], `${what}.load_assignment.endpoints`)[0]?.['lb_endpoints'], `${what}.load_assignment.endpoints[0].lb_endpoints`)[0];
  return obj(obj(obj(lb?.['endpoint'], `${what} endpoint`)['address'], `${what} endpoint address`)['socket_address'], `${what} socket_address`);
}

/** The bootstrap for `node`'s gateway, as Envoy JSON (write it to a file, or pass it to -c). */
export function renderBootstrap(opts: BootstrapOptions): JsonObject {
  const doc = obj(parse(opts.template ?? readFileSync(BOOTSTRAP_TEMPLATE, 'utf8')), '(top level)');
  const { node } = opts;
  // What the DaemonSet sets with --config-yaml from the downward API.
  doc['node'] = { ...obj(doc['node'], 'node'), id: node.name, locality: { region: node.region, zone: node.zone, sub_zone: node.name } };

  const statics = obj(doc['static_resources'], 'static_resources');
  const clusters = list(statics['clusters'], 'static_resources.clusters');
  Object.assign(clusterAddress(named(clusters, XDS_CLUSTER, 'static_resources.clusters'), XDS_CLUSTER), { address: opts.xds.host, port_value: opts.xds.port });
  Object.assign(clusterAddress(named(clusters, ADMIN_CLUSTER, 'static_resources.clusters'), ADMIN_CLUSTER), { address: node.address, port_value: opts.adminPort });

  const stats = named(list(statics['listeners'], 'static_resources.listeners'), STATS_LISTENER, 'static_resources.listeners');
  stats['address'] = { socket_address: { address: node.address, port_value: opts.statsPort } };
  // Several gateways share this host: a port another process holds must fail the bind, not
  // be shared with it through SO_REUSEPORT.
  stats['enable_reuse_port'] = false;

  obj(obj(doc['admin'], 'admin')['address'], 'admin.address')['socket_address'] = { address: node.address, port_value: opts.adminPort };
  doc['cluster_manager'] = {
    ...(doc['cluster_manager'] === undefined ? {} : obj(doc['cluster_manager'], 'cluster_manager')),
    upstream_bind_config: { source_address: { address: node.address, port_value: 0 } },
  };
  return doc as JsonObject;
}
