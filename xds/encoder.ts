// Turns built resources (Envoy JSON) into served entries: checked against their PGV rules,
// encoded once, and shared. Entries are keyed by content, so views that are equal (gateways
// on nodes that see a revision the same way) hold one entry and one encoding; an entry lives
// while some view serves it (reference counts kept by the builder through retain/release).
import { contentHash, referencesOf, type ResourceEntry } from './cache.js';
import type { ResourceTypeUrl } from './protos.js';
import { packAny, type EncodedAny, type JsonObject } from './protojson.js';
import { validateMessage, type Violation } from './validate.js';

export interface Refused {
  readonly violations: readonly Violation[];
  /** Why it cannot be sent: the rule violations, or the encoding error. */
  readonly detail: string;
}

interface Held {
  readonly entry: ResourceEntry;
  refs: number;
}

export class ResourceEncoder {
  /** By type and wildcard membership, then by content text (no key concatenation: route configurations are large). */
  private readonly held = new Map<string, Map<string, Held>>();

  /** Entries alive now (for tests and metrics). */
  get size(): number {
    let n = 0;
    for (const m of this.held.values()) n += m.size;
    return n;
  }

  private bucket(typeUrl: string, inWildcard: boolean): Map<string, Held> {
    const key = `${typeUrl}|${inWildcard}`;
    let m = this.held.get(key);
    if (!m) this.held.set(key, (m = new Map()));
    return m;
  }

  /** The entry serving this content, if one is alive: equal content, same entry. */
  find(typeUrl: ResourceTypeUrl, text: string, inWildcard: boolean): ResourceEntry | undefined {
    return this.bucket(typeUrl, inWildcard).get(text)?.entry;
  }

  /**
   * The entry for a resource: an alive one with the same content, or a new one after its
   * validation rules pass and it encodes. Not retained yet.
   */
  encode(typeUrl: ResourceTypeUrl, name: string, json: JsonObject, text: string, inWildcard: boolean): ResourceEntry | Refused {
    const found = this.find(typeUrl, text, inWildcard);
    if (found) return found;
    const violations = validateMessage(typeUrl, json);
    if (violations.length > 0) {
      return { violations, detail: violations.map((v) => `${v.field || '(message)'}: ${v.message} [${v.rule}]`).join('; ') };
    }
    let any: EncodedAny;
    try {
      any = packAny(typeUrl, json);
    } catch (err) {
      return { violations: [], detail: (err as Error).message };
    }
    return Object.freeze({
      typeUrl,
      name,
      version: contentHash(`${typeUrl}\n${text}`),
      json: deepFreeze(json),
      any,
      inWildcard,
      updatedAt: new Date(),
      text,
      needs: Object.freeze(referencesOf(typeUrl, json)),
    });
  }

  retain(entry: ResourceEntry): void {
    const bucket = this.bucket(entry.typeUrl, entry.inWildcard);
    const h = bucket.get(entry.text);
    if (h && h.entry !== entry) throw new Error(`two entries for one content of ${entry.name}`);
    if (h) h.refs += 1;
    else bucket.set(entry.text, { entry, refs: 1 });
  }

  release(entry: ResourceEntry): void {
    const bucket = this.bucket(entry.typeUrl, entry.inWildcard);
    const h = bucket.get(entry.text);
    if (!h || h.entry !== entry) return;
    h.refs -= 1;
    if (h.refs <= 0) bucket.delete(entry.text);
  }
}

export function isRefused(x: ResourceEntry | Refused): x is Refused {
  return 'violations' in x && !('typeUrl' in x);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
