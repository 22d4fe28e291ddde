// The admin HTTP server: inspect what each gateway is served, the way one inspects Envoy.
//   /config_dump?node=<name>   Envoy's ConfigDump JSON (clusters, endpoint configs, listeners, routes)
//   /clusters?node=<name>      Envoy's /clusters text (host, weight, locality, priority, health);
//                              &format=json for Envoy's JSON form
//   /clients                   connected gateways, ACKed versions, NACKs
//   /invalid_resources         resources refused by their PGV rules
//   /metrics                   Prometheus
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { InvalidResource } from './builder.js';
import { NEUTRAL_VIEW, type ResourceEntry, type SnapshotCache, type ViewSnapshot } from './cache.js';
import type { XdsMetrics } from './metrics.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from './protos.js';
import type { JsonObject } from './protojson.js';
import type { ClientStatus } from './streams.js';

export interface AdminSources {
  readonly cache: SnapshotCache;
  readonly metrics: XdsMetrics;
  clients(): ClientStatus[];
  /** Resources the builder refused (PGV rules, or a missing dependency). */
  invalidResources(): InvalidResource[];
  /** Node names of the model, for error messages. */
  nodeNames(): string[];
  /** Why the server is not ready to serve gateways yet; undefined when it is. */
  notReady?(): string | undefined;
}

/** Envoy's default overprovisioning factor (1.4): a priority or locality at ≥ 71.4 % health counts as whole. */
const OVERPROVISIONING = 1.4;

export interface HostRow {
  readonly cluster: string;
  readonly address: string;
  readonly port: number;
  readonly region: string;
  readonly zone: string;
  readonly sub_zone: string;
  readonly priority: number;
  /** The locality's load_balancing_weight. */
  readonly locality_weight: number;
  /** The endpoint's own weight (always 1 here). */
  readonly weight: number;
  readonly health: 'HEALTHY' | 'UNHEALTHY';
  /** 'pod' or 'proxy' (the node's chikai proxy, for a revision with no ready pod). */
  readonly kind: string;
  readonly pod: string;
  /** Fraction of the cluster's requests this host gets, as Envoy splits them (panic routing off). */
  readonly expected_share: number;
}

function asObject(v: unknown): JsonObject {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as JsonObject) : {};
}

function asArray(v: unknown): JsonObject[] {
  return Array.isArray(v) ? (v as JsonObject[]) : [];
}

/** Every host of every cluster in one view, with the share of traffic Envoy would give it. */
export function hostRows(view: ViewSnapshot): HostRow[] {
  const rows: HostRow[] = [];
  for (const e of view.types.get(ENDPOINT_TYPE)?.resources.values() ?? []) {
    const cluster = String(e.json.cluster_name);
    const localities = asArray(e.json.endpoints).map((l) => {
      const hosts = asArray(l.lb_endpoints).map((h) => {
        const sa = asObject(asObject(asObject(h.endpoint).address).socket_address);
        const meta = asObject(asObject(asObject(h.metadata).filter_metadata).chikai);
        return {
          address: String(sa.address ?? ''),
          port: Number(sa.port_value ?? 0),
          health: (h.health_status === 'UNHEALTHY' ? 'UNHEALTHY' : 'HEALTHY') as HostRow['health'],
          kind: String(meta.kind ?? ''),
          pod: String(meta.pod ?? ''),
          weight: Number(h.load_balancing_weight ?? 1),
        };
      });
      const healthy = hosts.filter((h) => h.health === 'HEALTHY').length;
      return { l, hosts, healthy, priority: Number(l.priority ?? 0), weight: Number(l.load_balancing_weight ?? 0) };
    });
    // Priority load: each priority takes up to its overprovisioned health, in order.
    const priorities = [...new Set(localities.map((x) => x.priority))].sort((a, b) => a - b);
    const health = new Map(priorities.map((p) => {
      const ls = localities.filter((x) => x.priority === p);
      const total = ls.reduce((s, x) => s + x.hosts.length, 0);
      const ok = ls.reduce((s, x) => s + x.healthy, 0);
      return [p, total === 0 ? 0 : Math.min(1, (OVERPROVISIONING * ok) / total)];
    }));
    const totalHealth = Math.min(1, [...health.values()].reduce((a, b) => a + b, 0));
    const load = new Map<number, number>();
    let left = 1;
    for (const p of priorities) {
      const take = totalHealth === 0 ? 0 : Math.min(left, (health.get(p) ?? 0) / totalHealth);
      load.set(p, take);
      left -= take;
    }
    for (const p of priorities) {
      const ls = localities.filter((x) => x.priority === p);
      const eff = ls.map((x) => x.weight * (x.hosts.length === 0 ? 0 : Math.min(1, (OVERPROVISIONING * x.healthy) / x.hosts.length)));
      const sum = eff.reduce((a, b) => a + b, 0);
      ls.forEach((x, i) => {
        const localityShare = sum === 0 ? 0 : ((load.get(p) ?? 0) * eff[i]) / sum;
        const loc = asObject(x.l.locality);
        for (const h of x.hosts) {
          rows.push({
            cluster,
            address: h.address,
            port: h.port,
            region: String(loc.region ?? ''),
            zone: String(loc.zone ?? ''),
            sub_zone: String(loc.sub_zone ?? ''),
            priority: p,
            locality_weight: x.weight,
            weight: h.weight,
            health: h.health,
            kind: h.kind,
            pod: h.pod,
            expected_share: h.health === 'HEALTHY' && x.healthy > 0 ? localityShare / x.healthy : 0,
          });
        }
      });
    }
  }
  return rows;
}

/** Envoy's /clusters text, plus `locality_weight`, `expected_share` and `pod` lines. */
export function clustersText(view: ViewSnapshot): string {
  const lines: string[] = [];
  const rows = hostRows(view);
  for (const c of view.types.get(CLUSTER_TYPE)?.resources.values() ?? []) {
    const name = c.name;
    lines.push(`${name}::observability_name::${name}`);
    lines.push(`${name}::added_via_api::true`);
    for (const r of rows.filter((x) => x.cluster === name)) {
      const h = `${name}::${r.address}:${r.port}`;
      lines.push(
        `${h}::health_flags::${r.health === 'HEALTHY' ? 'healthy' : '/failed_eds_health'}`,
        `${h}::weight::${r.weight}`,
        `${h}::region::${r.region}`,
        `${h}::zone::${r.zone}`,
        `${h}::sub_zone::${r.sub_zone}`,
        `${h}::canary::false`,
        `${h}::priority::${r.priority}`,
        `${h}::locality_weight::${r.locality_weight}`,
        `${h}::expected_share::${(r.expected_share * 100).toFixed(1)}%`,
        `${h}::${r.kind === 'proxy' ? 'proxy' : 'pod'}::${r.kind === 'proxy' ? r.sub_zone : r.pod}`,
      );
    }
  }
  return lines.join('\n') + (lines.length ? '\n' : '');
}

/** Envoy's /clusters?format=json shape, with chikai's extra fields per host. */
export function clustersJson(view: ViewSnapshot): JsonObject {
  const rows = hostRows(view);
  return {
    cluster_statuses: [...(view.types.get(CLUSTER_TYPE)?.resources.values() ?? [])].map((c) => ({
      name: c.name,
      observability_name: c.name,
      added_via_api: true,
      host_statuses: rows.filter((r) => r.cluster === c.name).map((r) => ({
        address: { socket_address: { address: r.address, port_value: r.port } },
        health_status: { eds_health_status: r.health },
        weight: r.weight,
        locality: { region: r.region, zone: r.zone, sub_zone: r.sub_zone },
        priority: r.priority,
        locality_weight: r.locality_weight,
        expected_share: Number(r.expected_share.toFixed(4)),
        kind: r.kind,
        pod: r.pod,
      })),
    })),
  };
}

function withType(e: ResourceEntry): JsonObject {
  return { '@type': e.typeUrl, ...e.json };
}

/** The view in the JSON shape of Envoy's `/config_dump?include_eds`. */
export function configDump(view: ViewSnapshot): JsonObject {
  const entries = (type: string) => [...(view.types.get(type as typeof CLUSTER_TYPE)?.resources.values() ?? [])];
  const version = (type: string) => view.types.get(type as typeof CLUSTER_TYPE)?.version ?? '';
  const at = (e: ResourceEntry) => e.updatedAt.toISOString();
  return {
    configs: [
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump',
        version_info: version(CLUSTER_TYPE),
        dynamic_active_clusters: entries(CLUSTER_TYPE).map((e) => ({ version_info: version(CLUSTER_TYPE), cluster: withType(e), last_updated: at(e) })),
      },
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.EndpointsConfigDump',
        dynamic_endpoint_configs: entries(ENDPOINT_TYPE).map((e) => ({ version_info: version(ENDPOINT_TYPE), endpoint_config: withType(e), last_updated: at(e) })),
      },
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump',
        version_info: version(LISTENER_TYPE),
        dynamic_listeners: entries(LISTENER_TYPE).map((e) => ({
          name: e.name,
          active_state: { version_info: version(LISTENER_TYPE), listener: withType(e), last_updated: at(e) },
        })),
      },
      {
        '@type': 'type.googleapis.com/envoy.admin.v3.RoutesConfigDump',
        dynamic_route_configs: entries(ROUTE_TYPE).map((e) => ({ version_info: version(ROUTE_TYPE), route_config: withType(e), last_updated: at(e) })),
      },
    ],
  };
}

function invalidJson(list: InvalidResource[]): JsonObject[] {
  return list.map((r) => ({
    view: r.viewKey,
    type_url: r.typeUrl,
    name: r.name,
    error: r.error,
    violations: r.violations.map((v) => ({ field: v.field, rule: v.rule, message: v.message })),
    since: r.since.toISOString(),
    serving_last_good: r.servingLastGood,
  }));
}

const INDEX = `chikai xDS admin
  /config_dump?node=<node>          Envoy ConfigDump JSON of what that node's gateway is served (incl. endpoint configs)
  /clusters?node=<node>[&format=json] hosts per cluster: weight, locality, priority, health, locality_weight, expected_share
  /clients                          connected gateways, ACKed versions, NACKs
  /invalid_resources                resources refused by their PGV validation rules
  /metrics                          Prometheus metrics
  /healthz, /readyz                 liveness; readiness (503 until the model source has synced)
A node the model does not know gets the neutral view (as a gateway with that sub_zone would).
`;

export class AdminServer {
  private readonly server: Server;

  constructor(private readonly sources: AdminSources) {
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`internal error: ${(err as Error).message}\n`);
      });
    });
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private viewFor(url: URL, res: ServerResponse): ViewSnapshot | undefined {
    const node = url.searchParams.get('node');
    if (!node) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`${url.pathname} needs ?node=<gateway node name> (nodes: ${this.sources.nodeNames().join(', ')})\n`);
      return undefined;
    }
    const key = this.sources.cache.viewKeyFor(node);
    if (key === NEUTRAL_VIEW) res.setHeader('x-chikai-view', NEUTRAL_VIEW);
    return this.sources.cache.view(key);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('the admin server answers GET only\n');
      return;
    }
    const json = (body: unknown) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body, null, 2) + '\n');
    };
    switch (url.pathname) {
      case '/':
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(INDEX);
        return;
      case '/config_dump': {
        const view = this.viewFor(url, res);
        if (view) json(configDump(view));
        return;
      }
      case '/clusters': {
        const view = this.viewFor(url, res);
        if (!view) return;
        if (url.searchParams.get('format') === 'json') json(clustersJson(view));
        else {
          res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
          res.end(clustersText(view));
        }
        return;
      }
      case '/clients':
        json({ clients: this.sources.clients() });
        return;
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('ok\n');
        return;
      case '/readyz': {
        const why = this.sources.notReady?.();
        res.writeHead(why ? 503 : 200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(why ? `not ready: ${why}\n` : 'ready\n');
        return;
      }
      case '/invalid_resources':
        json({ invalid_resources: invalidJson(this.sources.invalidResources()) });
        return;
      case '/metrics': {
        const body = await this.sources.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.sources.metrics.registry.contentType });
        res.end(body);
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`no such admin page ${url.pathname}\n\n${INDEX}`);
    }
  }
}
