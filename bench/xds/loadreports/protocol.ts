// Messages between the load-report bench and its two processes: the simulated proxies and
// the receiving xDS side.

/** `poll`: the xDS side polled every proxy's `/load` JSON (before); `lrs`: proxies push changes over LRS (now). */
export type ReportMode = 'poll' | 'lrs';

export type ProxiesCommand =
  /** Start N simulated proxies: HTTP servers serving /load (poll), or LRS reporters to `port` (lrs). */
  | { readonly kind: 'start'; readonly mode: ReportMode; readonly nodes: number; readonly port?: number };

export type ProxiesReply =
  | { readonly kind: 'started'; readonly ports: readonly number[] }
  | { readonly kind: 'error'; readonly error: string };

export type ReceiverCommand =
  | { readonly kind: 'start'; readonly mode: ReportMode; readonly nodes: number; readonly ports?: readonly number[] }
  | { readonly kind: 'counters' };

export type ReceiverReply =
  | { readonly kind: 'started'; readonly port: number }
  | { readonly kind: 'counters'; readonly reports: number; readonly bytes: number; readonly reporters: number }
  | { readonly kind: 'error'; readonly error: string };

/** How often proxies report (or are polled), as in production. */
export const INTERVAL_MS = 500;
