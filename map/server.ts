// The traffic map's server: scrapes the running system once a second (every gateway's
// Envoy admin, what the xDS server serves every gateway, every node proxy's /metrics),
// turns each scrape into the map (map/model.ts), and serves the page (map/page.html), the
// current map as JSON (/map.json) and every new map as server-sent events (/events).
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { advance, type MapNode, type MapState, type Scrape, type Scraped, type TrafficMap } from './model.js';

export const MAP_PAGE = fileURLToPath(new URL('../../map/page.html', import.meta.url));

export interface MapTargets {
  readonly nodes: readonly MapNode[];
  /** `http://host:port` of the xDS server's admin. */
  readonly xdsAdmin: string;
  /** `http://host:port` of a node's gateway Envoy admin (or its stats listener). */
  gatewayAdmin(node: string): string | undefined;
  /** `http://host:port` of a node's proxy admin. */
  proxyAdmin(node: string): string | undefined;
}

export interface TrafficMapOptions {
  readonly targets: MapTargets;
  /** Time between scrapes (default 1000 ms). */
  readonly intervalMs?: number;
}

async function fetchText(url: string, timeoutMs: number): Promise<Scraped> {
  try {
    const res = await request(url, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    const text = await res.body.text();
    if (res.statusCode !== 200) return { error: `${url} answered ${res.statusCode}` };
    return { text };
  } catch (err) {
    return { error: `${url}: ${(err as Error).message}` };
  }
}

/** One scrape of every target, in parallel. */
export async function scrapeTargets(targets: MapTargets, timeoutMs: number, at = Date.now()): Promise<Scrape> {
  const envoyClusters: Record<string, Scraped> = {};
  const served: Record<string, Scraped> = {};
  const proxyMetrics: Record<string, Scraped> = {};
  await Promise.all(targets.nodes.flatMap((n) => {
    const gw = targets.gatewayAdmin(n.name);
    const px = targets.proxyAdmin(n.name);
    return [
      (async () => { envoyClusters[n.name] = gw ? await fetchText(`${gw}/clusters`, timeoutMs) : { error: 'no gateway admin address' }; })(),
      (async () => { served[n.name] = await fetchText(`${targets.xdsAdmin}/clusters?node=${encodeURIComponent(n.name)}&format=json`, timeoutMs); })(),
      (async () => { proxyMetrics[n.name] = px ? await fetchText(`${px}/metrics`, timeoutMs) : { error: 'no proxy admin address' }; })(),
    ];
  }));
  return { at, nodes: targets.nodes, envoyClusters, served, proxyMetrics };
}

export class TrafficMapServer {
  private readonly server: Server;
  private readonly clients = new Set<ServerResponse>();
  private readonly intervalMs: number;
  private state: MapState | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private scraping: Promise<void> | undefined;

  constructor(private readonly opts: TrafficMapOptions) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.server = createServer((req, res) => this.route(req, res));
  }

  /** The latest map (undefined before the first scrape finished). */
  get current(): TrafficMap | undefined {
    return this.state?.map;
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    this.server.listen(port, host);
    await once(this.server, 'listening'); // rejects with the bind error
    this.running = true;
    this.tick();
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await this.scraping;
    for (const c of this.clients) c.end();
    this.clients.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Scrape, publish, and schedule the next scrape one interval after this one started. */
  private tick(): void {
    if (!this.running) return;
    const started = Date.now();
    this.scraping = (async () => {
      const scrape = await scrapeTargets(this.opts.targets, Math.max(500, this.intervalMs), started);
      this.state = advance(this.state, scrape);
      const frame = `event: map\ndata: ${JSON.stringify(this.state.map)}\n\n`;
      for (const c of this.clients) c.write(frame);
    })();
    this.scraping.finally(() => {
      if (this.running) this.timer = setTimeout(() => this.tick(), Math.max(0, started + this.intervalMs - Date.now()));
    }).catch(() => undefined);
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://map');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
      res.end('the traffic map answers GET only\n');
      return;
    }
    switch (url.pathname) {
      case '/':
      case '/map': {
        // Read per request, so the page can be edited while the demo runs.
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
        res.end(readFileSync(MAP_PAGE));
        return;
      }
      case '/map.json':
        if (!this.state) {
          res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '1' });
          res.end('the first scrape has not finished yet\n');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(this.state.map, null, 2) + '\n');
        return;
      case '/events':
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        res.write('retry: 1000\n\n');
        if (this.state) res.write(`event: map\ndata: ${JSON.stringify(this.state.map)}\n\n`);
        this.clients.add(res);
        req.on('close', () => this.clients.delete(res));
        return;
      case '/healthz':
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('ok\n');
        return;
      default:
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`no such page ${url.pathname}: the map is at /, its data at /map.json and /events (server-sent events)\n`);
    }
  }
}
