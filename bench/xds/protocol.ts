// Messages between the xds bench and the xDS server's child process.

export type ServerCommand =
  | { readonly kind: 'start'; readonly revisions: number }
  /** Flip the readiness of one endpoint (revision 0's pod on node1). */
  | { readonly kind: 'change'; readonly seq: number }
  | { readonly kind: 'stats' };

export interface ServerStats {
  /** User + system CPU since the process started, ms. */
  readonly cpuMs: number;
  readonly rssMb: number;
  readonly heapUsedMb: number;
}

export type ServerReply =
  | { readonly kind: 'started'; readonly port: number; readonly clusters: readonly string[]; readonly routes: readonly string[] }
  | { readonly kind: 'changed' }
  | ({ readonly kind: 'stats' } & ServerStats)
  | { readonly kind: 'error'; readonly error: string };
