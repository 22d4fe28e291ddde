// The emulated cluster: pods and the latency-injecting network, assembled from the
// cluster model. The demo (`npm start`), the benches and the tests all start it here.
//
// Every pod listens on its node's hidden address (127.0.2.N) and is exposed through the
// network's relay on the node address (127.0.1.N); that public address and port go into
// the model as the pod's endpoint. Node proxies are exposed the same way with `expose`.
import type { ClusterModel, EndpointInfo } from '../model.js';
import type { Clock } from '../clock.js';
import type { PodSpec } from '../config.js';
import { EmulatedNetwork, hiddenAddress, seededRandom, type Exposure, type HostPort } from './network.js';
import { EmulatedPod } from './pod.js';

/** A pod to emulate: revision `ns/rev`, node, optional name, service time and capacity. */
export type EmulatedPodSpec = PodSpec;

export interface EmulatedClusterOptions {
  readonly model: ClusterModel;
  readonly pods: readonly EmulatedPodSpec[];
  /** Seed for jitter, service times and generated pod names (reproducible runs). */
  readonly seed?: number;
  /** Bytes a relay holds per direction before pausing the sender (default 1 MiB). */
  readonly maxPendingBytes?: number;
  /** Time for the network's delays and the pods' service times. */
  readonly clock?: Clock;
}

export interface EmulatedCluster {
  readonly model: ClusterModel;
  readonly network: EmulatedNetwork;
  /** Pods running now, in start order. */
  readonly pods: readonly EmulatedPod[];
  pod(name: string): EmulatedPod | undefined;
  /** Start a pod, expose it on its node and add its endpoint to the model. */
  addPod(spec: EmulatedPodSpec): Promise<EmulatedPod>;
  /** The endpoint leaves the model first, then the pod drains (up to `graceMs`) and closes. */
  removePod(name: string, graceMs?: number): Promise<void>;
  /** Expose a hidden backend (e.g. a node proxy) on `node`'s address through the network. */
  expose(node: string, publicPort: number, target: HostPort): Promise<Exposure>;
  /** The hidden address services on `node` should listen on (127.0.2.N). */
  hiddenHost(node: string): string;
  close(): Promise<void>;
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

interface Running {
  readonly pod: EmulatedPod;
  readonly exposure: Exposure;
}

export async function startEmulatedCluster(options: EmulatedClusterOptions): Promise<EmulatedCluster> {
  const { model } = options;
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  const rand = seededRandom(seed ^ 0x5bd1e995);
  const network = new EmulatedNetwork(model, { seed, maxPendingBytes: options.maxPendingBytes, clock: options.clock });
  const running = new Map<string, Running>();
  /** Names taken, including pods still starting. */
  const names = new Set<string>();
  const exposures = new Set<Exposure>();
  let closed = false;

  const hiddenHost = (node: string): string => {
    const info = model.current.node(node);
    if (!info) throw new Error(`emulated cluster: unknown node ${JSON.stringify(node)}`);
    return hiddenAddress(info);
  };

  const podName = (spec: EmulatedPodSpec): string => {
    if (spec.name) return spec.name;
    const rev = spec.revision.includes('/') ? spec.revision.slice(spec.revision.indexOf('/') + 1) : spec.revision;
    for (;;) {
      let suffix = '';
      for (let i = 0; i < 5; i++) suffix += LETTERS[Math.floor(rand() * LETTERS.length)];
      const name = `${rev}-${spec.node}-${suffix}`;
      if (!names.has(name)) return name;
    }
  };

  /** Start and expose a pod; the caller writes its endpoint. */
  const launch = async (spec: EmulatedPodSpec): Promise<{ run: Running; endpoint: EndpointInfo }> => {
    if (closed) throw new Error('emulated cluster is closed');
    const node = model.current.node(spec.node);
    if (!node) throw new Error(`emulated pod: unknown node ${JSON.stringify(spec.node)}`);
    if (!spec.revision.includes('/')) throw new Error(`emulated pod: revision must be <namespace>/<revision>, got ${JSON.stringify(spec.revision)}`);
    const name = podName(spec);
    if (names.has(name)) throw new Error(`emulated pod ${name} already exists`);
    names.add(name);
    const pod = new EmulatedPod({
      name,
      node: spec.node,
      revision: spec.revision,
      host: hiddenAddress(node),
      serviceTimeMs: spec.serviceTimeMs,
      capacity: spec.capacity,
      random: seededRandom(Math.floor(rand() * 2 ** 32)),
      clock: options.clock,
    });
    let exposure: Exposure;
    try {
      const port = await pod.start();
      exposure = await network.expose(spec.node, 0, { host: pod.address.host, port });
    } catch (err) {
      pod.kill();
      names.delete(name);
      throw err;
    }
    const run = { pod, exposure };
    running.set(name, run);
    const endpoint: EndpointInfo = { pod: name, revision: spec.revision, node: spec.node, address: node.address, port: exposure.port, ready: true };
    return { run, endpoint };
  };

  const cluster: EmulatedCluster = {
    model,
    network,
    get pods() {
      return [...running.values()].map((r) => r.pod);
    },
    pod: (name) => running.get(name)?.pod,
    async addPod(spec) {
      const { run, endpoint } = await launch(spec);
      model.addEndpoint(endpoint);
      return run.pod;
    },
    async removePod(name, graceMs = 1000) {
      const run = running.get(name);
      if (!run) throw new Error(`emulated cluster: no pod ${JSON.stringify(name)}`);
      model.removeEndpoint(name);
      running.delete(name);
      await run.pod.close(graceMs);
      // Bytes already on their way through the relay still arrive (up to the grace).
      await run.exposure.close(graceMs);
      names.delete(name);
    },
    async expose(node, publicPort, target) {
      const e = await network.expose(node, publicPort, target);
      exposures.add(e);
      return e;
    },
    hiddenHost,
    async close() {
      if (closed) return;
      closed = true;
      await network.close();
      await Promise.all([...running.values()].map((r) => r.pod.close(0)));
      running.clear();
      exposures.clear();
    },
  };

  try {
    const started = await Promise.all(options.pods.map((spec) => launch(spec)));
    const fresh = new Set(started.map((s) => s.endpoint.pod));
    model.update((s) => ({ ...s, endpoints: [...s.endpoints.filter((e) => !fresh.has(e.pod)), ...started.map((x) => x.endpoint)] }));
  } catch (err) {
    await cluster.close();
    throw err;
  }
  return cluster;
}
