// Readers for the two text formats the traffic map scrapes: Prometheus's exposition format
// (the proxies' and the xDS server's /metrics) and Envoy's admin /clusters text
// (`<cluster>::<host>::<stat>::<value>`, one line per host statistic).

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A sample line's label set `{a="x",b="y"}`, with the format's escapes (\\, \", \n). */
function parseLabels(text: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    while (text[i] === ',' || text[i] === ' ') i++;
    if (i >= text.length) break;
    const eq = text.indexOf('=', i);
    if (eq < 0 || text[eq + 1] !== '"') throw new Error(`metrics line ${line}: expected name="value" in the labels, got ${JSON.stringify(text.slice(i))}`);
    const name = text.slice(i, eq).trim();
    let value = '';
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === '\\') {
        j++;
        value += text[j] === 'n' ? '\n' : text[j];
      } else value += text[j];
    }
    if (j >= text.length) throw new Error(`metrics line ${line}: label ${name} has no closing quote`);
    labels[name] = value;
    i = j + 1;
  }
  return labels;
}

/** Every sample of a Prometheus text exposition; comments and blank lines are skipped. */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].trim();
    if (line === '' || line.startsWith('#')) continue;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    let name: string;
    let labels: Record<string, string> = {};
    let rest: string;
    if (brace >= 0 && (space < 0 || brace < space)) {
      const close = line.lastIndexOf('}');
      if (close < brace) throw new Error(`metrics line ${n + 1}: unclosed label set`);
      name = line.slice(0, brace);
      labels = parseLabels(line.slice(brace + 1, close), n + 1);
      rest = line.slice(close + 1).trim();
    } else {
      if (space < 0) throw new Error(`metrics line ${n + 1}: expected "name value", got ${JSON.stringify(line)}`);
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const raw = rest.split(/\s+/)[0];
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (raw === undefined || raw === '' || (Number.isNaN(value) && raw !== 'NaN')) throw new Error(`metrics line ${n + 1}: ${name} has no number value (${JSON.stringify(rest)})`);
    samples.push({ name, labels, value });
  }
  return samples;
}

export interface EnvoyHostStats {
  readonly cluster: string;
  /** `address:port` as Envoy prints it. */
  readonly host: string;
  /** Numeric per-host statistics (rq_total, rq_active, rq_success, cx_active…). */
  readonly stats: Readonly<Record<string, number>>;
  /** Text attributes (sub_zone, zone, region, health_flags, hostname…). */
  readonly attributes: Readonly<Record<string, string>>;
}

const HOST = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d+$/;

/** Envoy's admin `/clusters` text, one entry per (cluster, host); cluster-wide lines are skipped. */
export function parseEnvoyClusters(text: string): EnvoyHostStats[] {
  const byKey = new Map<string, { cluster: string; host: string; stats: Record<string, number>; attributes: Record<string, string> }>();
  for (const line of text.split('\n')) {
    const parts = line.split('::');
    if (parts.length !== 4 || !HOST.test(parts[1])) continue;
    const [cluster, host, key, raw] = parts;
    const id = `${cluster}\u0000${host}`;
    let h = byKey.get(id);
    if (!h) byKey.set(id, (h = { cluster, host, stats: {}, attributes: {} }));
    const n = Number(raw);
    if (raw.trim() !== '' && Number.isFinite(n) && /^-?[\d.]+$/.test(raw.trim())) h.stats[key] = n;
    else h.attributes[key] = raw;
  }
  return [...byKey.values()];
}
