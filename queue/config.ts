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
// A mistake throws a ConfigError naming the file, the line (when read from the cluster
// file), the field (e.g. queue.hooks.pop[1].set) and what was expected.
import { ConfigReader, type ConfigPath } from '../cluster/config-reader.js';
import { hostName } from '../cluster/host.js';
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

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
// Rewriting these would break how the forwarded request is framed or carried.
const UNTOUCHABLE = new Set(['content-length', 'transfer-encoding', 'connection', 'upgrade', 'keep-alive', 'te', 'trailer']);
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const CLASS_NAME = /^[a-z0-9][a-z0-9_-]*$/;
const RULE_FIELDS = ['when', 'set', 'setIfAbsent', 'remove'];

/** The queue's own field kinds, on top of the shared reader. */
class QueueFields {
  constructor(readonly r: ConfigReader) {}

  header(path: ConfigPath, name: unknown = this.r.get(path)): string {
    if (typeof name !== 'string' || name.trim() === '') this.r.fail(path, 'a non-empty string', name);
    const h = name.trim().toLowerCase();
    if (!TOKEN.test(h)) this.r.fail(path, 'an HTTP header name (letters, digits and !#$%&\'*+.^_`|~-)', name);
    return h;
  }

  /** A header a hook may write: not one that frames the request. */
  writableHeader(path: ConfigPath, name?: unknown): string {
    const h = this.header(path, name);
    if (UNTOUCHABLE.has(h)) this.r.fail(path, `a header other than ${[...UNTOUCHABLE].join(', ')} (they frame the request)`, h);
    return h;
  }

  optionalHeader(path: ConfigPath, dflt: string): string | null {
    const v = this.r.get(path);
    if (v === undefined) return dflt;
    if (v === null || v === false) return null;
    return this.header(path);
  }

  className(path: ConfigPath, classes?: readonly string[]): string {
    const raw = this.r.get(path);
    const name = this.r.string(path).toLowerCase();
    if (classes && !classes.includes(name)) this.r.fail(path, `one of the priority classes ${classes.join(', ')}`, raw);
    if (!CLASS_NAME.test(name)) this.r.fail(path, 'a class name (lower-case letters, digits, - and _)', raw);
    return name;
  }

  /** method / pathPrefix / host (and class, when `classes` is given) at `path`. */
  match(path: ConfigPath, classes: readonly string[] | undefined): RequestMatch {
    const m = this.r.mapping(path, undefined)!;
    const out: { methods?: string[]; pathPrefix?: string; host?: string; priorityClass?: string } = {};
    if (m.method !== undefined) {
      const list = Array.isArray(m.method);
      if (list && (m.method as unknown[]).length === 0) this.r.fail([...path, 'method'], 'a method or a non-empty list of methods', m.method);
      const paths: ConfigPath[] = list ? (m.method as unknown[]).map((_, i) => [...path, 'method', i]) : [[...path, 'method']];
      out.methods = paths.map((p) => {
        const s = this.r.string(p).toUpperCase();
        if (!METHOD.test(s)) this.r.fail(p, 'an HTTP method such as GET or POST', this.r.get(p));
        return s;
      });
    }
    if (m.pathPrefix !== undefined) {
      const s = this.r.string([...path, 'pathPrefix']);
      if (!s.startsWith('/')) this.r.fail([...path, 'pathPrefix'], 'a path starting with /', m.pathPrefix);
      out.pathPrefix = s;
    }
    if (m.host !== undefined) {
      const s = this.r.string([...path, 'host']);
      const h = hostName(s);
      if (!h || /[\s/:]/.test(s.startsWith('[') ? '' : s)) this.r.fail([...path, 'host'], 'a host name without scheme, port or path', m.host);
      out.host = h;
    }
    if (m.class !== undefined && classes) out.priorityClass = this.className([...path, 'class'], classes);
    return out;
  }

  headerValues(path: ConfigPath, phase: 'push' | 'pop'): [string, Template][] {
    const v = this.r.get(path);
    if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.keys(v).length === 0) {
      this.r.fail(path, 'a mapping of header name to value, e.g. { x-queued-ms: "${waitMs}" }', v);
    }
    return Object.entries(v as Record<string, unknown>).map(([name, raw]) => {
      const p = [...path, name];
      const header = this.writableHeader(p, name);
      if (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean') this.r.fail(p, 'a header value (text, may use ${…} variables)', raw);
      const text = String(raw);
      if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(text)) this.r.fail(p, 'a header value without line breaks or control characters', raw);
      const t = parseTemplate(text, phase);
      if (!Array.isArray(t)) this.r.fail(p, (t as { expected: string }).expected);
      return [header, t as Template];
    });
  }

  hooks(path: ConfigPath, phase: 'push' | 'pop', classes: readonly string[]): HeaderRule[] {
    if (this.r.get(path) === null) return [];
    return this.r.list(path, false, 'a list of header rules such as { set: { header: value } }').map((item, i) => {
      const p = [...path, i];
      const r = this.r.mapping(p, RULE_FIELDS)!;
      if (!['set', 'setIfAbsent', 'remove'].some((k) => k in r)) this.r.fail(p, 'a rule with at least one of set, setIfAbsent, remove', item);
      let when: RequestMatch | undefined;
      if (r.when !== undefined) {
        this.r.mapping([...p, 'when'], phase === 'pop' ? ['method', 'pathPrefix', 'host', 'class'] : ['method', 'pathPrefix', 'host']);
        when = this.match([...p, 'when'], phase === 'pop' ? classes : undefined);
      }
      let remove: string[] = [];
      if (r.remove !== undefined) {
        if (typeof r.remove === 'string') remove = [this.writableHeader([...p, 'remove'])];
        else remove = this.r.list([...p, 'remove'], true, 'a list of header names').map((_, j) => this.writableHeader([...p, 'remove', j]));
      }
      return {
        when,
        remove,
        set: r.set === undefined ? [] : this.headerValues([...p, 'set'], phase),
        setIfAbsent: r.setIfAbsent === undefined ? [] : this.headerValues([...p, 'setIfAbsent'], phase),
      };
    });
  }
}

/** Read the `queue:` section at `r` (absent or null = all defaults). */
export function readQueueConfig(r: ConfigReader): QueueConfig {
  if (r.get() === undefined || r.get() === null) return DEFAULT_QUEUE_CONFIG;
  const f = new QueueFields(r);
  const q = r.mapping([], ['ordering', 'maxDepth', 'retryAfterSeconds', 'priority', 'deadline', 'hooks'])!;
  const d = DEFAULT_QUEUE_CONFIG;

  const ordering = r.string(['ordering'], d.ordering);
  if (!orderingNames().includes(ordering)) r.fail(['ordering'], `one of ${orderingNames().join(', ')}`, q.ordering);

  r.mapping(['priority'], ['header', 'classes', 'default', 'rules'], false);
  let classes = d.priority.classes;
  if (r.get(['priority', 'classes']) !== undefined) {
    const list = r.get(['priority', 'classes']);
    if (!Array.isArray(list) || list.length === 0) r.fail(['priority', 'classes'], 'a non-empty list of class names, highest first', list);
    classes = list.map((_, i) => f.className(['priority', 'classes', i]));
    classes.forEach((c, i) => {
      if (classes.indexOf(c) !== i) r.fail(['priority', 'classes', i], 'each class named once', c);
    });
  }
  let dflt: string;
  if (r.get(['priority', 'default']) !== undefined) dflt = f.className(['priority', 'default'], classes);
  else if (classes.includes(d.priority.default)) dflt = d.priority.default;
  else r.fail(['priority', 'default'], `one of the priority classes ${classes.join(', ')} (there is no class "${d.priority.default}")`);
  const rules: PriorityRule[] = r.list(['priority', 'rules'], false, 'a list of rules such as { pathPrefix: /batch, class: low }').map((_, i) => {
    const p = ['priority', 'rules', i];
    const m = r.mapping(p, ['method', 'pathPrefix', 'host', 'class'])!;
    if (m.class === undefined) r.fail([...p, 'class'], `one of the priority classes ${classes.join(', ')}`);
    return { match: f.match(p, undefined), priorityClass: f.className([...p, 'class'], classes) };
  });

  r.mapping(['deadline'], ['timeoutHeader', 'deadlineHeader'], false);
  if (r.get(['hooks']) !== null) r.mapping(['hooks'], ['push', 'pop'], false);

  return {
    ordering,
    maxDepth: r.integer(['maxDepth'], d.maxDepth, 0, 10_000_000),
    retryAfterSeconds: r.integer(['retryAfterSeconds'], d.retryAfterSeconds, 0, 86_400),
    priority: {
      header: f.optionalHeader(['priority', 'header'], PRIORITY_HEADER),
      classes,
      default: dflt,
      rules,
    },
    deadline: {
      timeoutHeader: f.optionalHeader(['deadline', 'timeoutHeader'], TIMEOUT_HEADER),
      deadlineHeader: f.optionalHeader(['deadline', 'deadlineHeader'], DEADLINE_HEADER),
    },
    hooks: {
      push: f.hooks(['hooks', 'push'], 'push', classes),
      pop: f.hooks(['hooks', 'pop'], 'pop', classes),
    },
  };
}

/** Parse a `queue:` section given as a plain value (built in code); `source` names it in errors. */
export function parseQueueConfig(raw: unknown, source: string): QueueConfig {
  return readQueueConfig(ConfigReader.fromValue(raw, source, ['queue']));
}
