// The peer for the cold-start bench: a proxy that holds requests at zero the way Knative's
// activator does. Like chikai's proxy it buffers, and reports to the autoscaler over the
// same stat websocket (proxy/autoscaler.ts). Unlike it, a pod the endpoints call ready is
// used only after the activator's own probe of that pod succeeded: an HTTP GET with
// `K-Network-Probe: queue` on a new connection (its prober does not keep connections),
// given up after 300 ms (revision_backends.go's probeTimeout) and tried again 200 ms later.
// Over a link where a new connection plus one request take longer than 300 ms the probe
// never succeeds and the request waits until its client gives up (knative/serving#14202).
//
// Deliberately left out: the ClusterIP fallback (its probe has the same timeout) and the
// throttler's capacity accounting (one pod, no containerConcurrency here).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import type { ClusterModel, EndpointInfo } from '../../cluster/model.js';
import type { AutoscalerReporter } from '../../proxy/autoscaler.js';

export const ACTIVATOR_PROBE_TIMEOUT_MS = 300;
const ACTIVATOR_PROBE_RETRY_MS = 200;

export interface ActivatorLikeOptions {
  readonly model: ClusterModel;
  /** Where it listens (a node's hidden address; the emulated network exposes it). */
  readonly host: string;
  /** Its node's address: probes and requests to pods leave from here. */
  readonly localAddress: string;
  readonly reporter: AutoscalerReporter;
}

export class ActivatorLikeProxy {
  private readonly server: http.Server;
  private readonly agent: Agent;
  /** Pods whose probe succeeded. */
  private readonly healthy = new Set<string>();
  /** Pods being probed. */
  private readonly probing = new Set<string>();
  private readonly waiters = new Set<() => void>();
  private closed = false;
  private readonly onModel = () => this.probeNewEndpoints();
  /** Probes sent, and those that timed out. */
  readonly counts = { probes: 0, probeTimeouts: 0 };

  constructor(private readonly opts: ActivatorLikeOptions) {
    this.agent = new Agent({ localAddress: opts.localAddress });
    this.server = http.createServer((req, res) => void this.handle(req, res));
    opts.model.on('change', this.onModel);
  }

  async listen(): Promise<{ host: string; port: number }> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, this.opts.host, () => resolve());
    });
    return { host: this.opts.host, port: (this.server.address() as AddressInfo).port };
  }

  private usable(revisionKey: string): EndpointInfo | undefined {
    return this.opts.model.current.readyEndpoints(revisionKey).find((e) => this.healthy.has(e.pod));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const revision = this.opts.model.current.revisionForHost((req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase());
    if (!revision) {
      res.writeHead(404).end('unknown host\n');
      return;
    }
    const key = `${revision.namespace}/${revision.name}`;
    const ended = this.opts.reporter.requestStarted(key);
    const gone = new AbortController();
    res.on('close', () => gone.abort());
    try {
      let pod = this.usable(key);
      if (!pod) this.opts.reporter.coldStart(key);
      while (!pod && !gone.signal.aborted && !this.closed) {
        await new Promise<void>((resolve) => {
          this.waiters.add(resolve);
          gone.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        pod = this.usable(key);
      }
      if (!pod) return;
      const upstream = await request(`http://${pod.address}:${pod.port}${req.url ?? '/'}`, { method: 'GET', headers: { host: req.headers.host ?? '' }, dispatcher: this.agent, signal: gone.signal });
      res.writeHead(upstream.statusCode, { 'content-type': String(upstream.headers['content-type'] ?? 'text/plain') });
      for await (const chunk of upstream.body) res.write(chunk);
      res.end();
    } catch {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    } finally {
      ended();
    }
  }

  /** Every ready endpoint not yet probed gets a probe loop until it answers 200 in time. */
  private probeNewEndpoints(): void {
    const ready = new Set(this.opts.model.current.state.endpoints.filter((e) => e.ready).map((e) => e.pod));
    for (const pod of [...this.healthy]) if (!ready.has(pod)) this.healthy.delete(pod);
    for (const e of this.opts.model.current.state.endpoints) {
      if (!e.ready || this.healthy.has(e.pod) || this.probing.has(e.pod)) continue;
      this.probing.add(e.pod);
      void this.probeLoop(e);
    }
  }

  private async probeLoop(e: EndpointInfo): Promise<void> {
    const stillReady = () => !this.closed && this.opts.model.current.state.endpoints.some((x) => x.pod === e.pod && x.ready);
    while (stillReady()) {
      if (await this.probe(e)) {
        this.healthy.add(e.pod);
        for (const w of [...this.waiters]) w();
        this.waiters.clear();
        break;
      }
      await new Promise((r) => setTimeout(r, ACTIVATOR_PROBE_RETRY_MS));
    }
    this.probing.delete(e.pod);
  }

  private probe(e: EndpointInfo): Promise<boolean> {
    this.counts.probes += 1;
    return new Promise((resolve) => {
      const req = http.get({
        host: e.address, port: e.port, path: '/healthz', agent: false, localAddress: this.opts.localAddress,
        headers: { 'k-network-probe': 'queue', 'user-agent': 'Knative-Activator-Probe' },
      }, (res) => {
        res.resume();
        clearTimeout(timer);
        resolve(res.statusCode === 200);
      });
      // The whole probe, connection included, has 300 ms.
      const timer = setTimeout(() => {
        this.counts.probeTimeouts += 1;
        req.destroy();
        resolve(false);
      }, ACTIVATOR_PROBE_TIMEOUT_MS);
      req.on('error', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.opts.model.off('change', this.onModel);
    for (const w of this.waiters) w();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.agent.close();
  }
}
