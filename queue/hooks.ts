// Declarative header hooks (the research system's "header modifier", configured instead of
// patched in): rules that remove, set or set-if-absent request headers, with `${…}` values
// filled in when the hook runs.
import { matches, type RequestMatch } from './match.js';
import type { HookContext, QueueEntry, QueueHook } from './types.js';

/** Variables a template may use, and what each one is. */
export const TEMPLATE_VARIABLES = {
  waitMs: 'ms since the request first joined the queue (0 at push)',
  depth: 'entries waiting (at push including this one; at pop the ones left behind)',
  revision: 'namespace/name of the revision',
  class: 'the priority class (pop hooks only)',
  method: 'the request method',
  path: 'the request path and query',
  host: 'the Host header',
  remoteAddress: "the client's address",
  now: 'the time the hook runs, ms since the epoch',
  enqueuedAt: 'when the request first joined, ms since the epoch',
  deadline: 'the deadline, ms since the epoch (empty when none)',
  remainingMs: 'ms left until the deadline (empty when none)',
} as const;

export type TemplateVariable = keyof typeof TEMPLATE_VARIABLES;

/** A header value: literal text and variables, in order. */
export type Template = readonly (string | { readonly variable: TemplateVariable })[];

export interface HeaderRule {
  readonly when?: RequestMatch;
  /** Applied in this order: remove, then set, then setIfAbsent. */
  readonly remove: readonly string[];
  readonly set: readonly (readonly [header: string, value: Template])[];
  readonly setIfAbsent: readonly (readonly [header: string, value: Template])[];
}

/** What a malformed template should have been. */
export type TemplateProblem = { readonly expected: string };

/** Parse `text` into a template, or say what was expected instead. */
export function parseTemplate(text: string, phase: 'push' | 'pop'): Template | TemplateProblem {
  const parts: (string | { variable: TemplateVariable })[] = [];
  let rest = text;
  for (;;) {
    const open = rest.indexOf('${');
    if (open < 0) break;
    const close = rest.indexOf('}', open);
    if (close < 0) return { expected: `a closing } after \${ in ${JSON.stringify(text)}` };
    const name = rest.slice(open + 2, close).trim();
    if (!(name in TEMPLATE_VARIABLES)) {
      return { expected: `only the template variables ${Object.keys(TEMPLATE_VARIABLES).map((v) => `\${${v}}`).join(', ')}; got \${${name}}` };
    }
    if (name === 'class' && phase === 'push') {
      return { expected: '${class} only in pop hooks (the class is decided after the push hooks run)' };
    }
    if (open > 0) parts.push(rest.slice(0, open));
    parts.push({ variable: name as TemplateVariable });
    rest = rest.slice(close + 1);
  }
  if (rest) parts.push(rest);
  return parts;
}

// Header values must not smuggle line breaks or other controls into the forwarded request.
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/g;

export function renderTemplate(t: Template, entry: QueueEntry, ctx: HookContext): string {
  let out = '';
  for (const part of t) out += typeof part === 'string' ? part : variableValue(part.variable, entry, ctx);
  return out.replace(CONTROL, '');
}

function variableValue(v: TemplateVariable, entry: QueueEntry, ctx: HookContext): string {
  switch (v) {
    case 'waitMs': return String(Math.max(0, Math.round(ctx.waitMs)));
    case 'depth': return String(ctx.depth);
    case 'revision': return ctx.revision;
    case 'class': return ctx.priorityClass ?? '';
    case 'method': return entry.method;
    case 'path': return entry.path;
    case 'host': return entry.host;
    case 'remoteAddress': return entry.remoteAddress;
    case 'now': return String(Math.round(ctx.now));
    case 'enqueuedAt': return entry.enqueuedAt === undefined ? '' : String(Math.round(entry.enqueuedAt));
    case 'deadline': return entry.deadline === undefined || !Number.isFinite(entry.deadline) ? '' : String(Math.round(entry.deadline));
    case 'remainingMs':
      return entry.deadline === undefined || !Number.isFinite(entry.deadline) ? '' : String(Math.max(0, Math.round(entry.deadline - ctx.now)));
  }
}

/** True when the header is present with a value (an empty list counts as absent). */
function present(headers: QueueEntry['headers'], name: string): boolean {
  const v = headers[name];
  return v !== undefined && !(Array.isArray(v) && v.length === 0);
}

/** Turn declarative rules into one hook that applies them in order. */
export function compileHeaderRules(rules: readonly HeaderRule[]): QueueHook {
  return (entry, ctx) => {
    for (const rule of rules) {
      if (rule.when && !matches(rule.when, entry, ctx.priorityClass)) continue;
      const h = entry.headers;
      for (const name of rule.remove) delete h[name];
      for (const [name, value] of rule.set) h[name] = renderTemplate(value, entry, ctx);
      for (const [name, value] of rule.setIfAbsent) if (!present(h, name)) h[name] = renderTemplate(value, entry, ctx);
    }
  };
}
