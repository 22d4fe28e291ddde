// The `queue:` section of the cluster file. Example (every field optional):
//
//   queue:
//     ordering: priority          # fifo (default) | priority | deadline | a registered name
//     maxDepth: 10000             # waiting requests per revision; beyond it 503 + Retry-After
//     retryAfterSeconds: 1
//     priority:
//       header: chikai-priority   # null = ignore what clients claim
//       classes: [high, normal, low]   # served in this order
//       default: normal
//       rules:                    # first match wins; the header, when valid, wins over rules
//         - { method: POST, pathPrefix: /batch, class: low }
//         - { host: admin.example.com, class: high }
//     deadline:
//       timeoutHeader: chikai-timeout-ms   # ms the client is willing to wait, from arrival
//       deadlineHeader: chikai-deadline    # absolute, ms since the Unix epoch
//     hooks:
//       push: [ { remove: [x-debug] } ]
//       pop:
//         - { set: { x-chikai-queued-ms: '${waitMs}', x-chikai-depth: '${depth}' } }
//         - { when: { class: low }, setIfAbsent: { x-batch: 'yes' } }
//
// A mistake throws a ConfigError naming the source, the field (e.g. queue.hooks.pop[1].set)
// and what was expected.
import { ConfigError } from '../cluster/config.js';
import { parseTemplate, type HeaderRule, type Template } from './hooks.js';
import type { RequestMatch } from './match.js';
import { orderingNames } from './ordering.js';

export interface PriorityRule {
  readonly match: RequestMatch;
  readonly priorityClass: string;
}

export interface PriorityConfig {
  /** Request header naming the class (lower-case); null = clients cannot choose. */
  readonly header: string | null;
  /** Class names, highest priority first. */
  readonly classes: readonly string[];
  readonly default: string;
  readonly rules: readonly PriorityRule[];
}

export interface DeadlineConfig {
  /** Header carrying how many ms the client will wait, counted from when it joined; null = off. */
  readonly timeoutHeader: string | null;
  /** Header carrying an absolute deadline in ms since the Unix epoch; null = off. */
  readonly deadlineHeader: string | null;
}

export interface QueueConfig {
  readonly ordering: string;
  /** Largest number of waiting entries; a request arriving beyond it is refused at once. */
  readonly maxDepth: number;
  /** Sent as Retry-After with the 503 for a full queue. */
  readonly retryAfterSeconds: number;
  readonly priority: PriorityConfig;
  readonly deadline: DeadlineConfig;
  readonly hooks: { readonly push: readonly HeaderRule[]; readonly pop: readonly HeaderRule[] };
}

/** The Knative activator's queue depth. */
export const DEFAULT_MAX_DEPTH = 10_000;
export const PRIORITY_HEADER = 'chikai-priority';
export const TIMEOUT_HEADER = 'chikai-timeout-ms';
export const DEADLINE_HEADER = 'chikai-deadline';

export const DEFAULT_QUEUE_CONFIG: QueueConfig = {
  ordering: 'fifo',
  maxDepth: DEFAULT_MAX_DEPTH,
  retryAfterSeconds: 1,
  priority: { header: PRIORITY_HEADER, classes: ['high', 'normal', 'low'], default: 'normal', rules: [] },
  deadline: { timeoutHeader: TIMEOUT_HEADER, deadlineHeader: DEADLINE_HEADER },
  hooks: { push: [], pop: [] },
};

type Path = readonly (string | number)[];

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
// Rewriting these would break how the forwarded request is framed or carried.
const UNTOUCHABLE = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade', 'keep-alive', 'te', 'trailer']);
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const CLASS_NAME = /^[a-z0-9][a-z0-9_-]*$/;

function fieldName(path: Path): string {
  return path.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : `${acc}.${k}`), 'queue');
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

class QueueConfigReader {
  constructor(private readonly source: string) {}

  fail(path: Path, expected: string, got?: unknown): never {
    const shown = got === undefined ? '' : `, got ${JSON.stringify(got)}`;
    throw new ConfigError(this.source, fieldName(path), expected + shown);
  }

  mapping(v: unknown, path: Path, known: readonly string[]): Record<string, unknown> {
    if (!isMapping(v)) this.fail(path, `a mapping with ${known.join(', ')}`, v);
    for (const k of Object.keys(v)) if (!known.includes(k)) this.fail([...path, k], `only the fields ${known.join(', ')}`, k);
    return v;
  }

  integer(v: unknown, path: Path, dflt: number, min: number, max: number): number {
    if (v === undefined) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(path, `an integer from ${min} to ${max}`, v);
    return v;
  }

  string(v: unknown, path: Path): string {
    if (typeof v !== 'string' || v.trim() === '') this.fail(path, 'a non-empty string', v);
    return v.trim();
  }

  header(v: unknown, path: Path): string {
    const name = this.string(v, path).toLowerCase();
    if (!TOKEN.test(name)) this.fail(path, 'an HTTP header name (letters, digits and !#$%&\'*+.^_`|~-)', v);
    return name;
  }

  /** A header a hook may write: not one that frames the request. */
  writableHeader(v: unknown, path: Path): string {
    const name = this.header(v, path);
    if (UNTOUCHABLE.has(name)) this.fail(path, `a header other than ${[...UNTOUCHABLE].join(', ')} (they frame the request)`, name);
    return name;
  }

  optionalHeader(v: unknown, path: Path, dflt: string): string | null {
    if (v === undefined) return dflt;
    if (v === null || v === false) return null;
    return this.header(v, path);
  }

  className(v: unknown, path: Path, classes?: readonly string[]): string {
    const name = this.string(v, path).toLowerCase();
    if (classes && !classes.includes(name)) this.fail(path, `one of the priority classes ${classes.join(', ')}`, v);
    if (!CLASS_NAME.test(name)) this.fail(path, 'a class name (lower-case letters, digits, - and _)', v);
    return name;
  }

  match(m: Record<string, unknown>, path: Path, classes: readonly string[] | undefined): RequestMatch {
    const out: { methods?: string[]; pathPrefix?: string; host?: string; priorityClass?: string } = {};
    if (m.method !== undefined) {
      const list = Array.isArray(m.method) ? m.method : [m.method];
      if (list.length === 0) this.fail([...path, 'method'], 'a method or a non-empty list of methods', m.method);
      out.methods = list.map((x, i) => {
        const p = Array.isArray(m.method) ? [...path, 'method', i] : [...path, 'method'];
        const s = this.string(x, p).toUpperCase();
        if (!METHOD.test(s)) this.fail(p, 'an HTTP method such as GET or POST', x);
        return s;
      });
    }
    if (m.pathPrefix !== undefined) {
      const s = this.string(m.pathPrefix, [...path, 'pathPrefix']);
      if (!s.startsWith('/')) this.fail([...path, 'pathPrefix'], 'a path starting with /', m.pathPrefix);
      out.pathPrefix = s;
    }
    if (m.host !== undefined) {
      const s = this.string(m.host, [...path, 'host']).toLowerCase();
      if (/[\s/:]/.test(s) && !s.startsWith('[')) this.fail([...path, 'host'], 'a host name without scheme, port or path', m.host);
      out.host = s;
    }
    if (m.class !== undefined && classes) out.priorityClass = this.className(m.class, [...path, 'class'], classes);
    return out;
  }

  headerValues(v: unknown, path: Path, phase: 'push' | 'pop'): [string, Template][] {
    if (!isMapping(v) || Object.keys(v).length === 0) this.fail(path, 'a mapping of header name to value, e.g. { x-queued-ms: "${waitMs}" }', v);
    return Object.entries(v).map(([name, raw]) => {
      const p = [...path, name];
      const header = this.writableHeader(name, p);
      if (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean') this.fail(p, 'a header value (text, may use ${…} variables)', raw);
      const text = String(raw);
      if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(text)) this.fail(p, 'a header value without line breaks or control characters', raw);
      const t = parseTemplate(text, phase);
      if (!Array.isArray(t)) this.fail(p, (t as { expected: string }).expected);
      return [header, t as Template];
    });
  }

  hooks(v: unknown, path: Path, phase: 'push' | 'pop', classes: readonly string[]): HeaderRule[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) this.fail(path, 'a list of header rules such as { set: { header: value } }', v);
    return v.map((item, i) => {
      const p = [...path, i];
      const known = ['when', 'set', 'setIfAbsent', 'remove'];
      const r = this.mapping(item, p, known);
      if (!['set', 'setIfAbsent', 'remove'].some((k) => k in r)) this.fail(p, 'a rule with at least one of set, setIfAbsent, remove', item);
      let when: RequestMatch | undefined;
      if (r.when !== undefined) {
        const whenKnown = phase === 'pop' ? ['method', 'pathPrefix', 'host', 'class'] : ['method', 'pathPrefix', 'host'];
        when = this.match(this.mapping(r.when, [...p, 'when'], whenKnown), [...p, 'when'], phase === 'pop' ? classes : undefined);
      }
      let remove: string[] = [];
      if (r.remove !== undefined) {
        const list = Array.isArray(r.remove) ? r.remove : typeof r.remove === 'string' ? [r.remove] : this.fail([...p, 'remove'], 'a list of header names', r.remove);
        remove = list.map((h, j) => this.writableHeader(h, Array.isArray(r.remove) ? [...p, 'remove', j] : [...p, 'remove']));
      }
      return {
        when,
        remove,
        set: r.set === undefined ? [] : this.headerValues(r.set, [...p, 'set'], phase),
        setIfAbsent: r.setIfAbsent === undefined ? [] : this.headerValues(r.setIfAbsent, [...p, 'setIfAbsent'], phase),
      };
    });
  }
}

/** Parse the `queue:` section (already turned into plain JS); undefined or null = all defaults. */
export function parseQueueConfig(raw: unknown, source: string): QueueConfig {
  if (raw === undefined || raw === null) return DEFAULT_QUEUE_CONFIG;
  const r: QueueConfigReader = new QueueConfigReader(source);
  const q = r.mapping(raw, [], ['ordering', 'maxDepth', 'retryAfterSeconds', 'priority', 'deadline', 'hooks']);
  const d = DEFAULT_QUEUE_CONFIG;

  const ordering = q.ordering === undefined ? d.ordering : r.string(q.ordering, ['ordering']);
  if (!orderingNames().includes(ordering)) r.fail(['ordering'], `one of ${orderingNames().join(', ')}`, q.ordering);

  const pr: Record<string, unknown> = q.priority === undefined ? {} : r.mapping(q.priority, ['priority'], ['header', 'classes', 'default', 'rules']);
  let classes = d.priority.classes;
  if (pr.classes !== undefined) {
    const list = pr.classes;
    if (!Array.isArray(list) || list.length === 0) r.fail(['priority', 'classes'], 'a non-empty list of class names, highest first', list);
    classes = list.map((c, i) => r.className(c, ['priority', 'classes', i]));
    classes.forEach((c, i) => {
      if (classes.indexOf(c) !== i) r.fail(['priority', 'classes', i], 'each class named once', c);
    });
  }
  let dflt: string;
  if (pr.default !== undefined) dflt = r.className(pr.default, ['priority', 'default'], classes);
  else if (classes.includes(d.priority.default)) dflt = d.priority.default;
  else r.fail(['priority', 'default'], `one of the priority classes ${classes.join(', ')} (there is no class "${d.priority.default}")`);
  let rules: PriorityRule[] = [];
  if (pr.rules !== undefined) {
    const list = pr.rules;
    if (!Array.isArray(list)) r.fail(['priority', 'rules'], 'a list of rules such as { pathPrefix: /batch, class: low }', list);
    rules = list.map((item, i) => {
      const p = ['priority', 'rules', i];
      const m = r.mapping(item, p, ['method', 'pathPrefix', 'host', 'class']);
      if (m.class === undefined) r.fail([...p, 'class'], `one of the priority classes ${classes.join(', ')}`);
      const priorityClass = r.className(m.class, [...p, 'class'], classes);
      return { match: r.match({ ...m, class: undefined }, p, undefined), priorityClass };
    });
  }

  const dl: Record<string, unknown> = q.deadline === undefined ? {} : r.mapping(q.deadline, ['deadline'], ['timeoutHeader', 'deadlineHeader']);
  const hk: Record<string, unknown> = q.hooks === undefined || q.hooks === null ? {} : r.mapping(q.hooks, ['hooks'], ['push', 'pop']);

  return {
    ordering,
    maxDepth: r.integer(q.maxDepth, ['maxDepth'], d.maxDepth, 0, 10_000_000),
    retryAfterSeconds: r.integer(q.retryAfterSeconds, ['retryAfterSeconds'], d.retryAfterSeconds, 0, 86_400),
    priority: {
      header: r.optionalHeader(pr.header, ['priority', 'header'], PRIORITY_HEADER),
      classes,
      default: dflt,
      rules,
    },
    deadline: {
      timeoutHeader: r.optionalHeader(dl.timeoutHeader, ['deadline', 'timeoutHeader'], TIMEOUT_HEADER),
      deadlineHeader: r.optionalHeader(dl.deadlineHeader, ['deadline', 'deadlineHeader'], DEADLINE_HEADER),
    },
    hooks: {
      push: r.hooks(hk.push, ['hooks', 'push'], 'push', classes),
      pop: r.hooks(hk.pop, ['hooks', 'pop'], 'pop', classes),
    },
  };
}
