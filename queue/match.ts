// Request matching shared by the priority rules and the hooks' `when`.
import { hostName } from '../cluster/host.js';
import type { QueueEntry } from './types.js';

/** All given fields must match; an empty match matches every request. */
export interface RequestMatch {
  /** Upper-case methods, any of which matches. */
  readonly methods?: readonly string[];
  readonly pathPrefix?: string;
  /** Lower-case host without port; matches the Host header with or without a port. */
  readonly host?: string;
  /** Only in pop hooks: the entry's priority class. */
  readonly priorityClass?: string;
}

export function matches(m: RequestMatch, entry: QueueEntry, priorityClass: string | undefined): boolean {
  if (m.methods && !m.methods.includes(entry.method.toUpperCase())) return false;
  if (m.pathPrefix !== undefined && !entry.path.startsWith(m.pathPrefix)) return false;
  if (m.host !== undefined && hostName(entry.host) !== m.host) return false;
  if (m.priorityClass !== undefined && priorityClass !== m.priorityClass) return false;
  return true;
}
