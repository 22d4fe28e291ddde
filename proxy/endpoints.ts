// Every endpoint this proxy may send to, with its connection pool. Follows the cluster
// model: pools open when an endpoint appears and close (after their requests) when it goes.
// (How many requests are at each pod is counted by PodSlots, proxy/slots.ts.)
import { Pool } from 'undici';
import type { ClusterModel, ClusterSnapshot, EndpointInfo } from '../cluster/model.js';
import { ORCA_HEADER, parseOrcaHeader } from '../cluster/orca.js';
import { NETWORK_PROBE_HEADER } from './headers.js';

export class EndpointState {
  info: EndpointInfo;
  private poolInstance: Pool | undefined;

  constructor(info: EndpointInfo, private readonly localAddress: string | undefined) {
    this.info = info;
  }

  get pod(): string { return this.info.pod; }
  get node(): string { return this.info.node; }

  /** Keep-alive pool to the endpoint, bound to this node's address so the receiver knows the sender. */
  get pool(): Pool {
    this.poolInstance ??= new Pool(`http://${this.info.address}:${this.info.port}`, {
      // Top-level localAddress: undici 7 ignores the one inside `connect`.
      localAddress: this.localAddress,
      // The revision timeout governs (see forward.ts); undici's own timers would cut long responses.
      headersTimeout: 0,
      bodyTimeout: 0,
      keepAliveTimeout: 30_000,
      pipelining: 1,
    });
    return this.poolInstance;
  }

  /**
   * The pod's in-flight count from its ORCA header, asked with a queue-proxy probe (which
   * the pod answers itself, without a slot); undefined when it does not report one.
   */
  async reportedInFlight(timeoutMs = 1000): Promise<number | undefined> {
    const res = await this.pool.request({ method: 'GET', path: '/', headers: { [NETWORK_PROBE_HEADER]: 'queue' }, signal: AbortSignal.timeout(timeoutMs) });
    await res.body.dump();
    return parseOrcaHeader(res.headers[ORCA_HEADER])?.named['in_flight'];
  }

  /** Close the pool once its requests finished. */
  close(): Promise<void> {
    const p = this.poolInstance;
    this.poolInstance = undefined;
    return p ? p.close().catch(() => undefined) : Promise.resolve();
  }

  destroy(): Promise<void> {
    const p = this.poolInstance;
    this.poolInstance = undefined;
    return p ? p.destroy().catch(() => undefined) : Promise.resolve();
  }
}

export class EndpointTable {
  private readonly byPod = new Map<string, EndpointState>();
  private readonly onChange: (s: ClusterSnapshot) => void;

  constructor(
    private readonly model: ClusterModel,
    private readonly localAddress: string | undefined,
    private readonly changed: () => void,
  ) {
    this.onChange = (s) => {
      this.sync(s);
      this.changed();
    };
    this.sync(model.current);
    model.on('change', this.onChange);
  }

  private sync(s: ClusterSnapshot): void {
    const seen = new Set<string>();
    for (const e of s.state.endpoints) {
      seen.add(e.pod);
      const cur = this.byPod.get(e.pod);
      if (!cur) {
        this.byPod.set(e.pod, new EndpointState(e, this.localAddress));
      } else if (cur.info.address !== e.address || cur.info.port !== e.port) {
        // Same pod name, new address (a restarted pod): new pool.
        void cur.close();
        this.byPod.set(e.pod, new EndpointState(e, this.localAddress));
      } else {
        cur.info = e;
      }
    }
    for (const [pod, st] of this.byPod) {
      if (!seen.has(pod)) {
        this.byPod.delete(pod);
        void st.close();
      }
    }
  }

  get(pod: string): EndpointState | undefined { return this.byPod.get(pod); }

  /** Ready endpoints of a revision in the given snapshot. */
  ready(s: ClusterSnapshot, revKey: string): EndpointState[] {
    const out: EndpointState[] = [];
    for (const e of s.endpoints(revKey)) {
      if (!e.ready) continue;
      const st = this.byPod.get(e.pod);
      if (st) out.push(st);
    }
    return out;
  }

  async close(): Promise<void> {
    this.model.off('change', this.onChange);
    await Promise.all([...this.byPod.values()].map((e) => e.destroy()));
    this.byPod.clear();
  }
}
