// Messages between the xds bench and chikai's xDS server process.

export type ServerCommand =
  | { readonly kind: 'start'; readonly revisions: number }
  /** Flip the readiness of the bench model's changed pod (see readyAfter). */
  | { readonly kind: 'change'; readonly seq: number };

export type ServerReply =
  | { readonly kind: 'started'; readonly port: number }
  | { readonly kind: 'changed' }
  | { readonly kind: 'error'; readonly error: string };
