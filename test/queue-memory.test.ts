// Memory with 10000 queued requests: what the queue itself holds per waiter, and that it
// lets go of every request once it is served, abandoned or expired.
import t from 'tap';
import v8 from 'node:v8';
import vm from 'node:vm';
import { setImmediate as tick } from 'node:timers/promises';
import { RequestQueue, parseQueueConfig, type QueueEntry } from '../queue/index.js';

// tap does not pass --expose-gc; turning the flag on at run time and taking `gc` from a
// fresh context gives a real full collection, so the bounds below can be tight.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const N = 10_000;
const KB = 1024;

async function heapAfterGc(): Promise<number> {
  await tick();
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

interface Request {
  entry: QueueEntry;
  client: AbortController;
}

function requests(n: number, deadlineMs = 600_000): Request[] {
  return Array.from({ length: n }, (_, i) => ({
    entry: {
      method: 'GET',
      path: `/item/${i}`,
      host: 'hello.default.example.com',
      headers: { 'user-agent': 'bench', 'chikai-priority': i % 3 === 0 ? 'high' : 'low' },
      remoteAddress: '127.0.0.1',
      deadline: Date.now() + deadlineMs,
    },
    client: new AbortController(),
  }));
}

// One reason for every abort, so the test itself holds no stack trace per request.
const gone = new Error('client closed the connection');

/** Queue every request, then abandon the even ones and serve the rest. Returns when all settled. */
async function fillAndDrain(q: RequestQueue, rs: Request[]): Promise<void> {
  const waits = rs.map((r) => q.wait(r.entry, r.client.signal).catch((e: unknown) => e));
  for (let i = 0; i < rs.length; i += 2) rs[i].client.abort(gone);
  while (q.next()) { /* serve */ }
  await Promise.all(waits);
}

const config = parseQueueConfig(
  { ordering: 'priority', maxDepth: N, hooks: { pop: [{ set: { 'x-chikai-queued-ms': '${waitMs}' } }] } },
  'test.yaml',
);

// One full-size round first, so compiled code and Node's one-off allocations (it keeps
// several MB after its first 10000 AbortSignals, queue or not) are not counted below.
await (async () => fillAndDrain(new RequestQueue(config), requests(N)))();

t.test('10000 queued requests cost a bounded amount each, and the bound holds', async (t) => {
  const q = new RequestQueue(config, { revision: 'default/hello-00001' });

  const rs = requests(N);
  const base = await heapAfterGc();
  const waits = rs.map((r) => q.wait(r.entry, r.client.signal).catch((e: unknown) => e));
  t.equal(q.depth, N);
  const filled = await heapAfterGc();
  const perWaiter = (filled - base) / N;
  t.comment(`memory per waiting request: ${Math.round(perWaiter)} bytes`);
  // About 0.9 KB of this is Node's bookkeeping for one abort listener on the request's
  // signal, and ~0.35 KB the promise this test chains on each wait.
  t.ok(perWaiter < 2.5 * KB, `each waiting request costs ${Math.round(perWaiter)} bytes (< 2.5 KB)`);

  const refused = await q.wait(requests(1)[0].entry, new AbortController().signal).catch((e: Error) => e.name);
  t.equal(refused, 'QueueFullError', 'the 10001st is refused, so the queue cannot grow past the bound');
  q.clear('test over');
  await Promise.all(waits);
  t.equal(q.depth, 0);
});

t.test('the queue keeps no served, abandoned or expired request alive', async (t) => {
  const q = new RequestQueue(config);
  // Watch a sample of requests: once the caller drops them, nothing in the queue may hold them.
  const watched: WeakRef<object>[] = [];
  const watch = (rs: Request[]): void => {
    for (let i = 0; i < rs.length; i += 97) watched.push(new WeakRef(rs[i].entry), new WeakRef(rs[i].client.signal));
  };
  await (async () => fillAndDrain(q, requests(N)))(); // this queue's arrays at full size
  const empty = await heapAfterGc();
  await (async () => {
    const rs = requests(N);
    watch(rs);
    await fillAndDrain(q, rs);
  })();
  await (async () => {
    const rs = requests(N, 100);
    watch(rs);
    const outcomes = await Promise.all(rs.map((r) => q.wait(r.entry, r.client.signal).catch((e: Error) => e.name)));
    t.ok(outcomes.every((o) => o === 'QueueDeadlineError'), 'all expired');
  })();
  t.equal(q.depth, 0);
  const after = await heapAfterGc();
  const alive = watched.filter((w) => w.deref() !== undefined).length;
  t.equal(alive, 0, `none of the ${watched.length} watched requests is still reachable`);
  t.comment(`heap after 20000 requests went through, relative to before: ${Math.round((after - empty) / KB)} KB`);
  // Holding the 20000 requests would take over 30 MB; the few MB left are tap's own
  // bookkeeping (the same run outside tap comes back to within a few KB).
  t.ok(after - empty < 8 * 1024 * KB, 'the heap is back near where it started (< 8 MB left)');
});

t.test('filling and draining 10000 requests again and again does not grow the heap', async (t) => {
  const q = new RequestQueue(config);
  const rounds: number[] = [];
  for (let round = 0; round < 3; round++) {
    await (async () => {
      const rs = requests(N);
      await fillAndDrain(q, rs);
    })();
    t.equal(q.depth, 0);
    rounds.push(await heapAfterGc());
  }
  t.comment(`heap after each round (KB): ${rounds.map((b) => Math.round(b / KB)).join(', ')}`);
  const growth = rounds[2] - rounds[0];
  t.ok(growth < 512 * KB, `no growth across rounds (${Math.round(growth / KB)} KB)`);
});
