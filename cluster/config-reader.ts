// The one reader for configuration: typed getters over a parsed YAML document (or a plain
// value) that report a mistake as file:line, the field's full path and what was expected.
// The cluster file and its `queue:` section (owned by queue/) both read through it.
import { LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly field: string,
    readonly expected: string,
    readonly line?: number,
  ) {
    super(`${file}${line ? `:${line}` : ''}: ${field}: expected ${expected}`);
    this.name = 'ConfigError';
  }
}

export type ConfigPath = readonly (string | number)[];

/** `['revisions', 0, 'name']` → `revisions[0].name`. */
export function fieldName(path: ConfigPath): string {
  return path.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${k}` : k), '') || '(top level)';
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

interface Source {
  readonly file: string;
  readonly root: unknown;
  readonly doc?: Document;
  readonly lines?: LineCounter;
}

export class ConfigReader {
  private constructor(
    private readonly source: Source,
    /** Where this reader is rooted; field names in errors are always full paths. */
    private readonly base: ConfigPath,
  ) {}

  /** Parse YAML text; a syntax error is a ConfigError with its line. */
  static fromYaml(text: string, file: string): ConfigReader {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      throw new ConfigError(file, '(syntax)', `valid YAML (${e.message.split('\n')[0]})`, lines.linePos(e.pos[0]).line);
    }
    return new ConfigReader({ file, root: doc.toJS() as unknown, doc, lines }, []);
  }

  /** A plain value (configuration built in code): errors name the field but no line. */
  static fromValue(value: unknown, file: string, base: ConfigPath = []): ConfigReader {
    let root: unknown = value;
    for (let i = base.length - 1; i >= 0; i--) root = { [base[i]!]: root };
    return new ConfigReader({ file, root }, base);
  }

  get file(): string {
    return this.source.file;
  }

  /** A reader rooted at `path` below this one. */
  section(path: ConfigPath): ConfigReader {
    return new ConfigReader(this.source, [...this.base, ...path]);
  }

  get(path: ConfigPath = []): unknown {
    let cur = this.source.root;
    for (const k of [...this.base, ...path]) {
      if (cur === null || typeof cur !== 'object') return undefined;
      cur = (cur as Record<string | number, unknown>)[k];
    }
    return cur;
  }

  fail(path: ConfigPath, expected: string, got?: unknown): never {
    const full = [...this.base, ...path];
    let line: number | undefined;
    const { doc, lines } = this.source;
    if (doc && lines) {
      // The field itself, else the closest parent that exists (a missing field's mapping).
      for (let n = full.length; n >= 0 && line === undefined; n--) {
        const node = doc.getIn(full.slice(0, n), true) as YamlNode | undefined;
        const offset = node?.range?.[0];
        if (offset !== undefined) line = lines.linePos(offset).line;
      }
    }
    const shown = got === undefined ? '' : `, got ${JSON.stringify(got)}`;
    throw new ConfigError(this.source.file, fieldName(full), expected + shown, line);
  }

  /** A non-empty string (trimmed); `dflt` when absent. */
  string(path: ConfigPath, dflt?: string): string {
    const v = this.get(path);
    if (v === undefined && dflt !== undefined) return dflt;
    if (typeof v !== 'string' || v.trim() === '') this.fail(path, 'a non-empty string', v);
    return v.trim();
  }

  number(path: ConfigPath, dflt: number | undefined, min: number, max = Number.MAX_SAFE_INTEGER, integer = false): number {
    const v = this.get(path);
    if (v === undefined && dflt !== undefined) return dflt;
    const what = `${integer ? 'an integer' : 'a number'} from ${min} to ${max}`;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) this.fail(path, what, v);
    return v;
  }

  integer(path: ConfigPath, dflt: number | undefined, min: number, max: number): number {
    return this.number(path, dflt, min, max, true);
  }

  boolean(path: ConfigPath, dflt: boolean): boolean {
    const v = this.get(path);
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') this.fail(path, 'true or false', v);
    return v;
  }

  /** A list; absent is an empty list unless `required`. */
  list(path: ConfigPath, required: boolean, expected = 'a list'): unknown[] {
    const v = this.get(path);
    if (v === undefined && !required) return [];
    if (!Array.isArray(v)) this.fail(path, expected, v);
    return v;
  }

  /**
   * A mapping whose keys are all in `known` (a misspelt field is a mistake, not ignored);
   * absent is undefined unless `required`.
   */
  mapping(path: ConfigPath, known: readonly string[] | undefined, required = true): Record<string, unknown> | undefined {
    const v = this.get(path);
    if (v === undefined && !required) return undefined;
    if (!isMapping(v)) return this.fail(path, known ? `a mapping with ${known.join(', ')}` : 'a mapping', v);
    if (known) for (const k of Object.keys(v)) if (!known.includes(k)) this.fail([...path, k], `only the fields ${known.join(', ')}`, k);
    return v;
  }
}
