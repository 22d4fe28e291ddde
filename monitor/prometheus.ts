// A real Prometheus (Debian's package) against chikai: the scrape configuration for the
// node proxies, the xDS server and the Kourier gateways' Envoys, the rules deploy/ ships,
// and the server itself started on loopback with its storage in a temporary directory.
// `chikai monitor` (npm run monitor) and the monitoring test start it here.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { parse, stringify } from 'yaml';

export const PROMETHEUS_RULES = fileURLToPath(new URL('../../deploy/components/monitoring/rules.yaml', import.meta.url));
export const GRAFANA_DASHBOARD = fileURLToPath(new URL('../../deploy/components/monitoring/dashboards/chikai.json', import.meta.url));

const INSTALL_HINT = 'apt-get install -y prometheus (Debian ships 2.42 with promtool), or set PROMETHEUS_BIN';

function onPath(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** The prometheus binary: PROMETHEUS_BIN, else `prometheus` on PATH. */
export function prometheusBinary(): string | undefined {
  return process.env['PROMETHEUS_BIN'] ?? onPath('prometheus');
}

/** promtool, next to the prometheus binary or on PATH. */
export function promtoolBinary(): string | undefined {
  const bin = prometheusBinary();
  const beside = bin ? join(bin, '..', 'promtool') : undefined;
  return beside && existsSync(beside) ? beside : onPath('promtool');
}

/** Why Prometheus cannot run here, or undefined when it can. */
export function prometheusMissing(): string | undefined {
  const bin = prometheusBinary();
  if (!bin) return `prometheus is not installed (${INSTALL_HINT})`;
  if (!existsSync(bin)) return `PROMETHEUS_BIN=${bin} does not exist (${INSTALL_HINT})`;
  if (!promtoolBinary()) return `promtool is not installed (${INSTALL_HINT})`;
  return undefined;
}

export interface ScrapeTargets {
  /** Per node: `host:port` of its proxy's admin (/metrics). */
  readonly proxies: ReadonlyMap<string, string>;
  /** `host:port` of the xDS server's admin (/metrics). */
  readonly xds: string;
  /** Per node: `host:port` of its gateway's stats listener (/stats/prometheus). */
  readonly gateways: ReadonlyMap<string, string>;
}

/**
 * prometheus.yml for the targets. The proxies label every series with their own node, so
 * their labels are honoured (as deploy/'s ServiceMonitor does); the gateways get a `node`
 * label from their target, as deploy/'s PodMonitor gives them from the pod's node.
 */
export function scrapeConfig(targets: ScrapeTargets, o: { intervalSeconds: number; ruleFiles?: readonly string[] }): string {
  const interval = `${o.intervalSeconds}s`;
  return stringify({
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: `${Math.max(1, Math.min(10, o.intervalSeconds))}s` },
    ...(o.ruleFiles?.length ? { rule_files: [...o.ruleFiles] } : {}),
    scrape_configs: [
      {
        job_name: 'chikai-proxy',
        honor_labels: true,
        metrics_path: '/metrics',
        static_configs: [...targets.proxies].map(([node, target]) => ({ targets: [target], labels: { node } })),
      },
      {
        job_name: 'chikai-xds',
        honor_labels: true,
        metrics_path: '/metrics',
        static_configs: [{ targets: [targets.xds] }],
      },
      {
        job_name: 'kourier-gateway',
        metrics_path: '/stats/prometheus',
        static_configs: [...targets.gateways].map(([node, target]) => ({ targets: [target], labels: { node } })),
      },
    ],
  });
}

/** The recording and alerting rules of deploy/'s PrometheusRule, as a Prometheus rules file. */
export function rulesFromDeploy(path = PROMETHEUS_RULES): string {
  const doc = parse(readFileSync(path, 'utf8')) as { kind?: string; spec?: { groups?: unknown } };
  if (doc?.kind !== 'PrometheusRule' || !Array.isArray(doc.spec?.groups)) throw new Error(`${path}: expected a PrometheusRule with spec.groups`);
  return stringify({ groups: doc.spec.groups });
}

export interface PromtoolResult {
  readonly ok: boolean;
  /** What promtool said (problems, one per line). */
  readonly output: string;
}

/** `promtool check metrics` on an exposition (stdin), or `promtool check rules FILE`. */
export function promtool(args: readonly string[], input?: string): PromtoolResult {
  const bin = promtoolBinary();
  if (!bin) throw new Error(`promtool is not installed (${INSTALL_HINT})`);
  const r = spawnSync(bin, args, { input, encoding: 'utf8', timeout: 60_000 });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RunningPrometheus {
  /** `http://host:port` */
  readonly url: string;
  /** The temporary directory with the configuration, rules and storage. */
  readonly dir: string;
  stop(): Promise<void>;
}

export interface PrometheusOptions {
  readonly targets: ScrapeTargets;
  readonly intervalSeconds?: number;
  /** Load deploy/'s rules (default true). */
  readonly rules?: boolean;
  /** Where to listen; port 0 (default) picks a free one. */
  readonly listen?: { readonly host: string; readonly port: number };
  readonly log?: (line: string) => void;
}

/** Starts Prometheus on loopback and waits until it is ready; its directory goes when it stops. */
export async function startPrometheus(o: PrometheusOptions): Promise<RunningPrometheus> {
  const bin = prometheusBinary();
  if (!bin) throw new Error(`prometheus is not installed (${INSTALL_HINT})`);
  const dir = mkdtempSync(join(tmpdir(), 'chikai-prometheus-'));
  const ruleFiles: string[] = [];
  if (o.rules !== false) {
    writeFileSync(join(dir, 'chikai-rules.yml'), rulesFromDeploy());
    ruleFiles.push(join(dir, 'chikai-rules.yml'));
  }
  writeFileSync(join(dir, 'prometheus.yml'), scrapeConfig(o.targets, { intervalSeconds: o.intervalSeconds ?? 5, ruleFiles }));
  const host = o.listen?.host ?? '127.0.0.1';
  let lastError = '';
  // A port picked free can be taken before Prometheus binds it: then pick again.
  for (let attempt = 1; attempt <= (o.listen?.port ? 1 : 5); attempt++) {
    const port = o.listen?.port || (await freePort(host));
    const child: ChildProcess = spawn(bin, [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=${host}:${port}`,
      '--web.enable-lifecycle',
      '--log.level=warn',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr?.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-8000);
    });
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
    };
    const url = `http://${host}:${port}`;
    for (let i = 0; i < 300 && child.exitCode === null; i++) {
      try {
        const res = await request(`${url}/-/ready`, { headersTimeout: 1000, bodyTimeout: 1000 });
        await res.body.text();
        if (res.statusCode === 200) {
          return {
            url,
            dir,
            async stop() {
              await stop();
              rmSync(dir, { recursive: true, force: true });
            },
          };
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await stop();
    lastError = log.trim().split('\n').slice(-3).join('\n');
    if (!/address already in use/.test(log)) break;
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`prometheus did not become ready: ${lastError || 'no output'}`);
}

export interface QueryResult {
  readonly status: 'success' | 'error';
  readonly error?: string;
  readonly resultType?: string;
  /** Series (vector/matrix) or the scalar/string pair. */
  readonly result?: unknown;
}

/** One instant query through Prometheus's HTTP API. */
export async function query(prometheusUrl: string, promql: string): Promise<QueryResult> {
  const res = await request(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(promql)}`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  const body = (await res.body.json()) as { status: 'success' | 'error'; error?: string; data?: { resultType: string; result: unknown } };
  return { status: body.status, error: body.error, resultType: body.data?.resultType, result: body.data?.result };
}

/** True when a query answered with at least one series (or a scalar). */
export function hasData(r: QueryResult): boolean {
  if (r.status !== 'success') return false;
  return Array.isArray(r.result) ? r.result.length > 0 && (r.resultType !== 'scalar' && r.resultType !== 'string' ? true : r.result.length === 2) : r.result !== undefined;
}

export interface DashboardQuery {
  /** Panel title (or `variable <name>`). */
  readonly where: string;
  readonly expr: string;
}

/**
 * Every PromQL query of deploy/'s Grafana dashboard, the template variables replaced by
 * "everything" (`$node` → `.*`, as the dashboard's All does); label_values() variable
 * queries become the series selector they read.
 */
export function dashboardQueries(path = GRAFANA_DASHBOARD): DashboardQuery[] {
  const doc = JSON.parse(readFileSync(path, 'utf8')) as {
    panels?: { title?: string; targets?: { expr?: string }[] }[];
    templating?: { list?: { name?: string; type?: string; query?: unknown; allValue?: string }[] };
  };
  const variables = (doc.templating?.list ?? []).filter((v) => v.type === 'query');
  const fill = (expr: string) => variables.reduce((e, v) => e.replaceAll(`$${v.name}`, v.allValue ?? '.*'), expr);
  const queries: DashboardQuery[] = [];
  for (const v of variables) {
    const q = typeof v.query === 'string' ? v.query : String((v.query as { query?: string } | undefined)?.query ?? '');
    const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q.trim());
    if (m) queries.push({ where: `variable ${v.name}`, expr: `group by (${m[2]}) (${m[1]})` });
  }
  for (const p of doc.panels ?? []) {
    for (const t of p.targets ?? []) if (t.expr) queries.push({ where: String(p.title), expr: fill(t.expr) });
  }
  return queries;
}
