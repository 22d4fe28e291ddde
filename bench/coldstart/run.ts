// `npm run bench -- --scenario coldstart [--latencies 50,70,100] [--quick]`: scale from zero
// across a slow link, chikai against a proxy that holds requests the way Knative's
// activator does (bench/coldstart/activator.ts), in the same run on the same cluster.
//
// Two nodes: the edge node3, where the request comes from and where the pod starts, and the
// cloud node1 (full, maxPods 0), where Knative's single activator runs. "X ms between nodes"
// is #14202's setup: `tc netem delay X ms` on every node, so a round trip between them is
// 2X. New connections pay TCP's handshake. chikai: the request enters node3's proxy, which
// holds it and wakes a pod on node3. Activator: the request goes from node3 to the activator
// on node1, which wakes the revision (its stat comes from node1, which has no room, so the
// pod lands on node3 too), waits for the endpoint and for its own 300 ms-bounded probe of
// the pod, then forwards. A request unanswered after GIVE_UP_MS counts as failed.
import { Agent, request } from 'undici';
import { parseClusterFile, type ClusterFile } from '../../cluster/config.js';
import { startEmulatedStack, type EmulatedStack } from '../../bin/stack.js';
import { AutoscalerReporter } from '../../proxy/autoscaler.js';
import { num, pct, ratio, table } from '../report/markdown.js';
import type { ScenarioContext, ScenarioOutput } from '../scenario.js';
import { percentile, round, sorted } from '../stats.js';
import { ACTIVATOR_PROBE_TIMEOUT_MS, ActivatorLikeProxy } from './activator.js';

const COLD_START_S = 1;
const GIVE_UP_MS = 10_000;
const HOST = 'sleepy.default.svc.cluster.local';
const REV = 'default/sleepy-00001';
const SYSTEMS = ['chikai', 'activator'] as const;
type System = (typeof SYSTEMS)[number];

interface Row {
  readonly system: System;
  readonly delay_ms: number;
  readonly rtt_ms: number;
  readonly trials: number;
  readonly succeeded: number;
  readonly success_rate: number;
  /** Time to first byte of the successful cold starts. */
  readonly ttfb_median_ms: number | null;
  readonly ttfb_max_ms: number | null;
  /** Cold start + one round trip to the pod: the issue's yardstick. */
  readonly bound_ms: number;
}

function clusterFile(delayMs: number): ClusterFile {
  return parseClusterFile([
    'nodes:',
    '  - { name: node1, region: cloud, zone: cloud-a, address: 127.0.1.1, maxPods: 0 }',
    '  - { name: node3, region: edge, zone: edge-a, address: 127.0.1.3 }',
    'latency:',
    `  - { between: [node3, node1], rttMs: ${2 * delayMs}, jitterMs: 2 }`,
    'revisions:',
    '  - { namespace: default, service: sleepy, name: sleepy-00001, containerConcurrency: 0, timeoutSeconds: 300 }',
    'autoscaler:',
    '  stableWindowSeconds: 1',
    '  scaleToZeroGracePeriodSeconds: 0',
    `  coldStartSeconds: ${COLD_START_S}`,
    '  revisions: [{ revision: default/sleepy-00001, serviceTimeMs: { min: 1, max: 2 }, capacity: 10 }]',
    'proxy: { policy: chikai }',
  ].join('\n'), 'coldstart-bench.yaml');
}

/** One request from node3 on a new connection: ms to the response headers, or undefined when it failed or took too long. */
async function coldRequest(url: string): Promise<number | undefined> {
  const agent = new Agent({ localAddress: '127.0.1.3' });
  const t0 = performance.now();
  try {
    const res = await request(url, { headers: { host: HOST }, dispatcher: agent, signal: AbortSignal.timeout(GIVE_UP_MS) });
    const ms = performance.now() - t0;
    await res.body.text();
    return res.statusCode === 200 ? ms : undefined;
  } catch {
    return undefined;
  } finally {
    await agent.destroy();
  }
}

async function atZero(stack: EmulatedStack): Promise<void> {
  const deadline = performance.now() + 30_000;
  while (stack.cluster.pods.length > 0 || stack.autoscaler?.status(REV).phase !== 'zero') {
    if (performance.now() > deadline) throw new Error('the revision did not go back to zero within 30 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function runColdstart(ctx: ScenarioContext): Promise<ScenarioOutput> {
  const delays = ctx.args.latencies ?? [50, 70, 100];
  const trials = ctx.args.quick ? 2 : 5;
  const rows: Row[] = [];
  for (const delay of delays) {
    const stack = await startEmulatedStack({ file: clusterFile(delay), proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 41, tcpHandshake: true });
    if (!stack.autoscaler) throw new Error('the cold-start cluster scales sleepy: the stack should run the autoscaler');
    const reporter = new AutoscalerReporter({ url: `ws://127.0.0.1:${stack.autoscaler.address.port}`, podName: 'activator-node1', localAddress: '127.0.1.1', onWarning: (m) => ctx.log(`activator: ${m}`) });
    reporter.start();
    const activator = new ActivatorLikeProxy({ model: stack.model, host: stack.cluster.hiddenHost('node1'), localAddress: '127.0.1.1', reporter });
    const exposed = await stack.cluster.expose('node1', 0, await activator.listen());
    const urls: Record<System, string> = { chikai: stack.proxyUrl('node3'), activator: `http://127.0.1.1:${exposed.port}` };
    const ttfb: Record<System, (number | undefined)[]> = { chikai: [], activator: [] };
    try {
      // Alternate, so both see the same machine at the same moments.
      for (let i = 0; i < trials; i++) {
        for (const system of SYSTEMS) {
          const ms = await coldRequest(urls[system]);
          ttfb[system].push(ms);
          ctx.log(`coldstart: ${delay} ms (RTT ${2 * delay}), ${system}, trial ${i + 1}/${trials}: ${ms === undefined ? `no answer within ${GIVE_UP_MS} ms` : `${ms.toFixed(0)} ms`}`);
          await atZero(stack);
        }
      }
    } finally {
      await activator.close();
      await reporter.close();
      await stack.close();
    }
    ctx.log(`coldstart: activator probes at ${delay} ms: ${activator.counts.probes}, timed out (${ACTIVATOR_PROBE_TIMEOUT_MS} ms): ${activator.counts.probeTimeouts}`);
    for (const system of SYSTEMS) {
      const ok = ttfb[system].filter((x): x is number => x !== undefined);
      const asc = sorted(ok);
      rows.push({
        system,
        delay_ms: delay,
        rtt_ms: 2 * delay,
        trials,
        succeeded: ok.length,
        success_rate: ok.length / trials,
        ttfb_median_ms: ok.length ? round(percentile(asc, 50), 1) : null,
        ttfb_max_ms: ok.length ? round(asc[asc.length - 1]!, 1) : null,
        bound_ms: COLD_START_S * 1000 + 2 * delay,
      });
    }
  }
  const byKey = (s: System, d: number) => rows.find((r) => r.system === s && r.delay_ms === d);
  const markdown =
    `## Scale from zero across a slow link (${trials} cold starts per cell, cold start ${COLD_START_S * 1000} ms, give up after ${GIVE_UP_MS / 1000} s)\n\n` +
    'The request comes from the edge node, the pod starts there; the activator runs in the cloud and probes the pod with a 300 ms timeout. ' +
    '"between nodes" is `netem delay` on every node, as in knative/serving#14202: the round trip is twice that.\n\n' +
    table(
      ['between nodes', 'RTT', 'system', 'succeeded', 'TTFB median ms', 'TTFB max ms', 'cold start + RTT, ms', 'median vs chikai'],
      rows.map((r) => [`${r.delay_ms} ms`, `${r.rtt_ms} ms`, r.system, `${r.succeeded}/${r.trials} (${pct(r.success_rate)})`, num(r.ttfb_median_ms, 0), num(r.ttfb_max_ms, 0), r.bound_ms, ratio(r.ttfb_median_ms, byKey('chikai', r.delay_ms)?.ttfb_median_ms)]),
      ['l', 'l', 'l'],
    );
  return { rows, markdown, charts: {} };
}
