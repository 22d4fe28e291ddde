// The load generator's child process: runs autocannon for the bench, apart from the
// process under test, so the sender never waits for CPU the proxies and pods are using
// (and the other way round). Started by LoadGenerator (client.ts); one request at a time.
//
// Open-loop load with autocannon: autocannon's rate limit is per connection and per
// second, and a connection sends its next request only after the previous answer. So every
// connection here sends one request per second (`connectionRate: 1`); a user sending 10
// requests/s is 10 such connections. An answer slower than 1 s delays that connection's
// next send until it arrives (the only closed-loop effect; the number of such answers is
// visible in the latencies), and a request unanswered after the timeout (1.5 s in the
// paper scenario) is an error and its connection is replaced. The timeout is longer than
// the 1 s between sends on purpose: autocannon's timeout timer is armed at each send and
// not cleared by the answer, so with a timeout equal to the send period it races the next
// send and reports idle connections as timed out. autocannon starts all connections of
// one run at once, so the connections of a target are split into `phases` runs started
// evenly over the first second; otherwise every connection would fire in the same
// millisecond.
import type { IncomingHttpHeaders } from 'node:http';
import autocannon from 'autocannon';
import type { ClosedLoopTarget, LoadTarget, TargetResult, WorkerReply, WorkerRequest } from './protocol.js';

class Tally {
  offered = 0;
  completed = 0;
  errors = 0;
  timeouts = 0;
  latencies: number[] = [];
  first = Infinity;
  last = 0;

  constructor(readonly name: string) {}

  response(status: number, ms: number): void {
    const now = performance.now();
    this.last = now;
    if (status >= 200 && status < 300) {
      this.completed++;
      this.latencies.push(ms);
    } else {
      this.errors++;
      this.errorKinds[`HTTP ${status}`] = (this.errorKinds[`HTTP ${status}`] ?? 0) + 1;
    }
  }

  readonly errorKinds: Record<string, number> = {};
  readonly servedBy: Record<string, number> = {};

  served(status: number, by: string | string[] | undefined): void {
    if (status < 200 || status >= 300) return;
    const key = Array.isArray(by) ? by.join(',') : by ?? '';
    this.servedBy[key] = (this.servedBy[key] ?? 0) + 1;
  }

  error(err: Error): void {
    this.last = performance.now();
    this.errors++;
    if (/timed out/.test(err.message)) this.timeouts++;
    const kind = (err as NodeJS.ErrnoException).code ?? err.message;
    this.errorKinds[kind] = (this.errorKinds[kind] ?? 0) + 1;
  }

  result(): TargetResult {
    return {
      name: this.name,
      offered: this.offered,
      completed: this.completed,
      errors: this.errors,
      timeouts: this.timeouts,
      errorKinds: this.errorKinds,
      servedBy: this.servedBy,
      latenciesMs: Float64Array.from(this.latencies),
      seconds: this.first === Infinity ? 0 : Math.max(0, this.last - this.first) / 1000,
    };
  }
}

type Instance = autocannon.Instance;

/** Run one autocannon instance to its end, feeding the tally; `planned` lets it stop at once when every request is accounted for. */
function runInstance(opts: autocannon.Options, tally: Tally, planned?: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    let instance: Instance;
    const account = () => {
      if (planned !== undefined && ++seen >= planned) instance.stop();
    };
    tally.first = Math.min(tally.first, performance.now());
    instance = autocannon({ ...opts, skipAggregateResult: true, sampleInt: 100 } as autocannon.Options, (err) => (err ? reject(err) : resolve()));
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      tally.response(status, ms);
      account();
    });
    instance.on('reqError', (err: Error) => {
      tally.error(err);
      account();
    });
  });
}

/** autocannon's per-response hook (it passes the headers as an object) counting who served. */
function countBy(tally: Tally, header: string): (status: number, body: string, context: object, headers: IncomingHttpHeaders | undefined) => void {
  return (status, _body, _context, headers) => tally.served(status, headers?.[header]);
}

async function openLoop(target: LoadTarget): Promise<TargetResult> {
  const tally = new Tally(target.name);
  const phases = Math.max(1, Math.min(target.phases, target.connections));
  const runs: Promise<void>[] = [];
  for (let k = 0; k < phases; k++) {
    const connections = Math.floor(target.connections / phases) + (k < target.connections % phases ? 1 : 0);
    const planned = connections * target.requestsPerConnection;
    tally.offered += planned;
    runs.push(new Promise<void>((r) => setTimeout(r, (k * 1000) / phases)).then(() =>
      runInstance({
        url: target.url,
        headers: target.host ? { host: target.host } : undefined,
        connections,
        connectionRate: 1,
        amount: planned,
        timeout: target.timeoutSeconds,
        ...(target.countHeader ? { requests: [{ method: 'GET', onResponse: countBy(tally, target.countHeader) }] } : {}),
      }, tally, planned)));
  }
  await Promise.all(runs);
  return tally.result();
}

async function closedLoop(target: ClosedLoopTarget): Promise<TargetResult> {
  const tally = new Tally(target.name);
  let sent = 0;
  const opts: autocannon.Options = {
    url: target.url,
    headers: target.host ? { host: target.host } : undefined,
    connections: target.connections,
    duration: target.seconds,
    timeout: 10,
    ...(target.overallRate ? { overallRate: target.overallRate } : {}),
  };
  const done = runInstance(opts, tally);
  await done;
  sent = tally.completed + tally.errors;
  tally.offered = sent;
  return tally.result();
}

process.on('message', (msg: WorkerRequest) => {
  const work = msg.kind === 'open'
    ? Promise.all(msg.targets.map(openLoop))
    : Promise.all(msg.targets.map(closedLoop));
  work.then(
    (results) => process.send!({ id: msg.id, ok: true, results } satisfies WorkerReply),
    (err: Error) => process.send!({ id: msg.id, ok: false, error: err.stack ?? String(err) } satisfies WorkerReply),
  );
});
process.on('disconnect', () => process.exit(0));
