// Polls every node proxy's `/load` report (admin port) and keeps a ReportedLoadView up to
// date, so the xDS server weighs localities with the RTTs and pod loads the proxies measure.
// A proxy that does not answer is reported once when it stops and once when it is back.
import { Agent, request } from 'undici';
import { ReportedLoadView, parseLoadReport } from '../cluster/load-report.js';
import { configuredLoadView, type LoadView } from '../cluster/load.js';
import type { ClusterModel } from '../cluster/model.js';
import { startXdsServer, type XdsServer, type XdsServerOptions } from './server.js';

export interface LoadPollerOptions {
  readonly model: ClusterModel;
  /** Base URL of a node proxy's admin server, e.g. `http://10.0.0.3:9090`. */
  readonly adminUrl: (node: string) => string | undefined;
  /** Used until a node's report arrives, and after it goes stale. */
  readonly fallback: LoadView;
  /** Poll period (default 500 ms: weights are recomputed every second). */
  readonly intervalMs?: number;
  readonly log?: (line: string) => void;
}

export class LoadPoller {
  readonly view: ReportedLoadView;
  private timer: NodeJS.Timeout | undefined;
  private readonly failing = new Map<string, string>();
  private readonly inFlight = new Set<string>();
  private readonly agent = new Agent({ keepAliveTimeout: 10_000, connections: 2 });
  private readonly intervalMs: number;

  constructor(private readonly opts: LoadPollerOptions) {
    this.intervalMs = opts.intervalMs ?? 500;
    // Reports older than a few periods no longer count.
    this.view = new ReportedLoadView(opts.fallback, Math.max(2000, this.intervalMs * 4));
  }

  start(): void {
    if (this.timer) return;
    void this.pollAll();
    this.timer = setInterval(() => void this.pollAll(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.agent.close();
  }

  /** One round over every node; resolves when all answered or failed. */
  async pollAll(): Promise<void> {
    await Promise.all(this.opts.model.current.nodes.map((n) => this.poll(n.name)));
  }

  private async poll(node: string): Promise<void> {
    const base = this.opts.adminUrl(node);
    if (!base || this.inFlight.has(node)) return;
    this.inFlight.add(node);
    const url = `${base}/load`;
    try {
      const res = await request(url, { dispatcher: this.agent, headersTimeout: 1000, bodyTimeout: 1000 });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`answered ${res.statusCode}`);
      const report = parseLoadReport(JSON.parse(text), url);
      if (report.node !== node) throw new Error(`reports for node ${report.node}, expected ${node}`);
      this.view.update(report);
      if (this.failing.delete(node)) this.opts.log?.(`xds: load reports from ${node}'s proxy (${url}) are back`);
    } catch (err) {
      const why = (err as Error).message;
      if (!this.failing.has(node)) {
        this.opts.log?.(`xds: no load report from ${node}'s proxy at ${url} (${why}); weights from ${node} use the configured latency until it answers`);
      }
      this.failing.set(node, why);
    } finally {
      this.inFlight.delete(node);
    }
  }
}

/**
 * The xDS server weighing localities with the node proxies' load reports and the gateways'
 * (LRS): the poller starts first, and closing the server stops it too.
 */
export async function startXdsServerWithLoadReports(
  opts: Omit<XdsServerOptions, 'load'> & { readonly adminUrl: (node: string) => string | undefined },
): Promise<XdsServer> {
  const poller = new LoadPoller({ model: opts.model, adminUrl: opts.adminUrl, fallback: configuredLoadView(() => opts.model.current), log: opts.log });
  poller.start();
  let server: XdsServer;
  try {
    // The gateways' own load reports (LRS) join the proxies' in the same view.
    server = await startXdsServer({ ...opts, load: poller.view, gatewayLoad: (report) => poller.view.update(report) });
  } catch (err) {
    await poller.stop();
    throw err;
  }
  // The server is a plain object whose methods close over its state: spreading keeps them.
  return {
    ...server,
    async close() {
      await server.close();
      await poller.stop();
    },
  };
}
