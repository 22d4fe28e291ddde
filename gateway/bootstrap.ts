// The emulated gateways' Envoy bootstrap, rendered from deploy/'s gateway bootstrap (the
// file kustomize puts in the ConfigMap): one template for Kubernetes and for this machine.
// Only what differs on one host is set here: the node identity and locality, where the
// xDS server is, and the node's own address for the admin, the stats listener and every
// upstream connection (so hops to other nodes' pods cross the emulated network from this
// node's address and pay its latency, as the proxies' hops do).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
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
  /** Mutual TLS to the xDS server (the xds-mtls overlay's setting); plaintext when absent. */
  readonly xdsTls?: XdsTlsFiles;
}

/** Where a gateway finds its mutual TLS material for the xDS server (PEM files). */
export interface XdsTlsFiles {
  /** The CA that signed the xDS server's certificate. */
  readonly ca: string;
  /** This gateway's certificate (subject CN = its node's name) and key. */
  readonly cert: string;
  readonly key: string;
  /** The name the xDS server's certificate carries (a DNS subjectAltName), checked by the gateway. */
  readonly serverName: string;
}

/** Where the xds-mtls overlay mounts the gateway's Secret, and the xDS Service's name its certificate carries. */
export const KUBERNETES_XDS_TLS: XdsTlsFiles = {
  ca: '/etc/chikai-xds-tls/ca.crt',
  cert: '/etc/chikai-xds-tls/tls.crt',
  key: '/etc/chikai-xds-tls/tls.key',
  serverName: 'chikai-xds.chikai-system',
};

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

function readTemplate(template: string | undefined): Obj {
  return obj(parse(template ?? readFileSync(BOOTSTRAP_TEMPLATE, 'utf8')), '(top level)');
}

/**
 * Puts mutual TLS on the xDS cluster of a parsed bootstrap: the gateway presents its
 * certificate and accepts only an xDS server certificate of the CA naming `serverName`.
 * ADS and the load reports both use that cluster.
 */
function addXdsTls(doc: Obj, files: XdsTlsFiles): void {
  const clusters = list(obj(doc['static_resources'], 'static_resources')['clusters'], 'static_resources.clusters');
  named(clusters, XDS_CLUSTER, 'static_resources.clusters')['transport_socket'] = {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
      sni: files.serverName,
      common_tls_context: {
        alpn_protocols: ['h2'],
        tls_certificates: [{ certificate_chain: { filename: files.cert }, private_key: { filename: files.key } }],
        validation_context: {
          trusted_ca: { filename: files.ca },
          match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: files.serverName } }],
        },
      },
    },
  };
}

/**
 * The Kubernetes bootstrap as YAML: the template as it is, or (xdsTls) plus mutual TLS to
 * chikai-xds with the files the xds-mtls overlay mounts. That overlay ships the latter,
 * generated, so the template stays the one place the bootstrap is written.
 */
export function gatewayBootstrapYaml(xdsTls: boolean, template?: string): string {
  const doc = readTemplate(template);
  if (!xdsTls) return stringify(doc);
  addXdsTls(doc, KUBERNETES_XDS_TLS);
  return `# Generated from ../gateway/envoy-bootstrap.yaml by \`chikai gateway-bootstrap --xds-tls\`:
# edit the template and regenerate, not this file. See that file for what each part does.
${stringify(doc)}`;
}

/** The bootstrap for `node`'s gateway, as Envoy JSON (write it to a file, or pass it to -c). */
export function renderBootstrap(opts: BootstrapOptions): JsonObject {
  const doc = readTemplate(opts.template);
  if (opts.xdsTls) addXdsTls(doc, opts.xdsTls);
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
