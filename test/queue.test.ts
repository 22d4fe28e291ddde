import t from 'tap';
import { setImmediate as tick } from 'node:timers/promises';
import {
  RequestQueue,
  parseQueueConfig,
  registerOrdering,
  QueueFullError,
  QueueDeadlineError,
  QueueClearedError,
  type QueueEntry,
  type WaitOutcome,
} from '../queue/index.js';
import { ManualClock } from './fixtures/clock.js';
import { parseClusterFile } from '../cluster/config.js';

let counter = 0;
function entry(over: Partial<QueueEntry> = {}): QueueEntry {
  counter++;
  return {
    method: 'GET',
    path: `/r${counter}`,
    host: 'hello.default.example.com',
    headers: { 'user-agent': 'test' },
    remoteAddress: '127.0.0.1',
    ...over,
  };
}

/** Queue the entries in array order; returns the labels in the order they got their turn. */
function line(q: RequestQueue, entries: [label: string, e: QueueEntry][]): { served: string[]; failed: Map<string, Error> } {
  const served: string[] = [];
  const failed = new Map<string, Error>();
  for (const [label, e] of entries) {
    q.wait(e, new AbortController().signal).then(
      () => served.push(label),
      (err: Error) => failed.set(label, err),
    );
  }
  return { served, failed };
}

async function drain(q: RequestQueue): Promise<void> {
  while (q.next()) { /* hand out every turn */ }
  await tick();
}

t.test('fifo (the default) serves in arrival order, one turn per next()', async (t) => {
  const q = new RequestQueue(parseQueueConfig(undefined, 'test.yaml'));
  t.equal(q.ordering.name, 'fifo');
  const r = line(q, ['a', 'b', 'c', 'd'].map((l) => [l, entry()]));
  t.equal(q.depth, 4);
  t.equal(q.next(), true);
  await tick();
  t.same(r.served, ['a'], 'one next() is one turn');
  t.equal(q.depth, 3);
  await drain(q);
  t.same(r.served, ['a', 'b', 'c', 'd']);
  t.equal(q.depth, 0);
  t.equal(q.next(), false, 'nobody left');
});

t.test('priority: class from the chikai-priority header, fifo inside a class', async (t) => {
  const q = new RequestQueue(parseQueueConfig({ ordering: 'priority' }, 'test.yaml'));
  const r = line(q, [
    ['low1', entry({ headers: { 'chikai-priority': 'low' } })],
    ['plain', entry()],
    ['high1', entry({ headers: { 'chikai-priority': 'high' } })],
    ['bogus', entry({ headers: { 'chikai-priority': 'urgent!!' } })],
    ['low2', entry({ headers: { 'chikai-priority': 'LOW' } })],
    ['high2', entry({ headers: { 'chikai-priority': ' high ' } })],
  ]);
  await drain(q);
  t.same(r.served, ['high1', 'high2', 'plain', 'bogus', 'low1', 'low2'], 'unknown values fall back to the default class (normal)');
});

t.test('priority: rules by method, path prefix and host; first match wins', async (t) => {
  const config = parseQueueConfig(
    {
      ordering: 'priority',
      priority: {
        header: null,
        rules: [
          { method: ['POST', 'put'], pathPrefix: '/batch', class: 'low' },
          { host: 'admin.example.com', class: 'high' },
          { pathPrefix: '/batch', class: 'high' },
        ],
      },
    },
    'test.yaml',
  );
  const q = new RequestQueue(config);
  const batchPost = entry({ method: 'POST', path: '/batch/1' });
  const r = line(q, [
    ['batch-post', batchPost],
    ['normal', entry({ path: '/x' })],
    ['batch-get', entry({ method: 'GET', path: '/batch/2' })],
    ['admin-with-port', entry({ host: 'Admin.Example.com:8080' })],
    ['claims-high', entry({ headers: { 'chikai-priority': 'high' } })],
    ['admin-post-batch', entry({ method: 'POST', path: '/batch/3', host: 'admin.example.com' })],
  ]);
  t.equal(batchPost.priorityClass, 'low', 'the chosen class is written on the entry');
  await drain(q);
  t.same(r.served, ['batch-get', 'admin-with-port', 'normal', 'claims-high', 'batch-post', 'admin-post-batch'], 'header ignored when priority.header is null');
});

t.test('priority: a valid header wins over the rules when the header is trusted', async (t) => {
  const q = new RequestQueue(parseQueueConfig({ ordering: 'priority', priority: { rules: [{ pathPrefix: '/', class: 'low' }] } }, 'test.yaml'));
  const r = line(q, [
    ['rule-low', entry()],
    ['header-high', entry({ headers: { 'chikai-priority': 'high' } })],
  ]);
  await drain(q);
  t.same(r.served, ['header-high', 'rule-low']);
});

t.test('deadline: earliest deadline first; headers shorten a deadline, entries without one go last', async (t) => {
  const clock = new ManualClock();
  const q = new RequestQueue(parseQueueConfig({ ordering: 'deadline' }, 'test.yaml'), { clock });
  const now = clock.now();
  const viaHeader = entry({ deadline: now + 60_000, headers: { 'chikai-timeout-ms': '20000' } });
  const r = line(q, [
    ['none', entry()],
    ['+50s', entry({ deadline: now + 50_000 })],
    ['+10s', entry({ deadline: now + 10_000 })],
    ['header+20s', viaHeader],
    ['abs+30s', entry({ deadline: now + 60_000, headers: { 'chikai-deadline': String(now + 30_000) } })],
    ['header-cannot-extend', entry({ deadline: now + 40_000, headers: { 'chikai-timeout-ms': '999999' } })],
  ]);
  t.equal(viaHeader.deadline, now + 20_000, 'the effective deadline is written on the entry');
  await drain(q);
  t.same(r.served, ['+10s', 'header+20s', 'abs+30s', 'header-cannot-extend', '+50s', 'none']);
});

t.test('custom orderings plug in by name and by object', async (t) => {
  // Shortest path first: a made-up discipline that only a user ordering could express.
  registerOrdering('test-short-path', () => ({ name: 'test-short-path', rank: (e) => e.path.length }));
  t.throws(() => registerOrdering('fifo', () => ({ name: 'x', rank: () => 0 })), /already registered/);
  const byName = new RequestQueue(parseQueueConfig({ ordering: 'test-short-path' }, 'test.yaml'));
  const r1 = line(byName, [['long', entry({ path: '/aaaaaaa' })], ['short', entry({ path: '/a' })], ['mid', entry({ path: '/aaa' })]]);
  await drain(byName);
  t.same(r1.served, ['short', 'mid', 'long']);

  const byObject = new RequestQueue(undefined, { ordering: { name: 'writes-last', rank: (e) => (e.method === 'GET' ? 0 : 1) } });
  const r2 = line(byObject, [['post', entry({ method: 'POST' })], ['get', entry()]]);
  await drain(byObject);
  t.same(r2.served, ['get', 'post']);
});

t.test('push hooks rewrite headers on arrival, before the ordering looks at them', async (t) => {
  const config = parseQueueConfig(
    {
      ordering: 'priority',
      hooks: {
        push: [
          { remove: ['x-debug'], set: { 'X-Chikai-Queued': 'yes', 'x-depth-at-push': '${depth}' } },
          { when: { pathPrefix: '/reports' }, setIfAbsent: { 'chikai-priority': 'low' } },
        ],
      },
    },
    'test.yaml',
  );
  const q = new RequestQueue(config, { revision: 'default/hello-00001' });
  const report = entry({ path: '/reports/1', headers: { 'x-debug': '1' } });
  const reportHigh = entry({ path: '/reports/2', headers: { 'chikai-priority': 'high' } });
  const other = entry({ path: '/api' });
  const r = line(q, [['report', report], ['report-high', reportHigh], ['other', other]]);
  t.same(report.headers, { 'x-chikai-queued': 'yes', 'x-depth-at-push': '1', 'chikai-priority': 'low' }, 'applied when the request joined');
  t.equal(reportHigh.headers['chikai-priority'], 'high', 'setIfAbsent keeps a value already there');
  t.equal(other.headers['x-depth-at-push'], '3');
  t.notOk('chikai-priority' in other.headers, '`when` limits a rule to matching requests');
  await drain(q);
  t.same(r.served, ['report-high', 'other', 'report'], 'the class the push hook set decided the order');
});

t.test('pop hooks fill templates when the turn is given; code hooks run after them', async (t) => {
  const clock = new ManualClock(1_000_000);
  const seen: string[] = [];
  const config = parseQueueConfig(
    {
      ordering: 'priority',
      hooks: {
        pop: [
          { set: { 'x-chikai-wait-ms': '${waitMs}', 'x-chikai-behind': '${depth}', 'x-chikai-revision': 'rev=${revision}' } },
          { when: { class: 'low' }, set: { 'x-chikai-class': '${class} via ${method} ${path}' } },
          { remove: ['authorization-debug'] },
        ],
      },
    },
    'test.yaml',
  );
  const q = new RequestQueue(config, {
    revision: 'default/hello-00001',
    clock,
    hooks: { pop: [(e, ctx) => seen.push(`${ctx.phase}:${ctx.priorityClass}:${e.headers['x-chikai-wait-ms']}`)] },
  });
  const a = entry({ headers: { 'authorization-debug': 'x' } });
  const b = entry({ method: 'POST', path: '/slow', headers: { 'chikai-priority': 'low' } });
  line(q, [['a', a], ['b', b]]);
  t.equal(a.headers['x-chikai-wait-ms'], undefined, 'nothing set before the turn');
  clock.advance(250);
  q.next();
  t.same(a.headers, { 'x-chikai-wait-ms': '250', 'x-chikai-behind': '1', 'x-chikai-revision': 'rev=default/hello-00001' });
  clock.advance(1000);
  q.next();
  t.equal(b.headers['x-chikai-wait-ms'], '1250');
  t.equal(b.headers['x-chikai-behind'], '0');
  t.equal(b.headers['x-chikai-class'], 'low via POST /slow');
  t.same(seen, ['pop:normal:250', 'pop:low:1250']);
});

t.test('a pop hook that throws fails its request and the turn passes on', async (t) => {
  const q = new RequestQueue(undefined, {
    hooks: { pop: [(e) => { if (e.path === '/bad') throw new Error('boom'); }] },
  });
  const r = line(q, [['bad', entry({ path: '/bad' })], ['good', entry()]]);
  t.equal(q.next(), true);
  await tick();
  t.same(r.served, ['good']);
  t.match(r.failed.get('bad')?.message, /pop hook failed: boom/);
});

t.test('queue full: rejected at once with retryAfterSeconds, depth stays at the bound', async (t) => {
  const outcomes: WaitOutcome[] = [];
  const q = new RequestQueue(parseQueueConfig({ maxDepth: 3, retryAfterSeconds: 7 }, 'test.yaml'), {
    observer: { onWaited: (_s, o) => outcomes.push(o) },
  });
  line(q, [['a', entry()], ['b', entry()], ['c', entry()]]);
  const err = await q.wait(entry(), new AbortController().signal).then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof QueueFullError, 'QueueFullError');
  t.equal((err as QueueFullError).retryAfterSeconds, 7);
  t.equal(q.depth, 3);
  t.same(outcomes, ['full']);
  q.next();
  await t.resolves(async () => {
    const p = q.wait(entry(), new AbortController().signal);
    t.equal(q.depth, 3, 'room again after a turn was handed out');
    q.clear('test over');
    await p.catch(() => undefined);
  });
  const zero = new RequestQueue(parseQueueConfig({ maxDepth: 0 }, 'test.yaml'));
  await t.rejects(zero.wait(entry(), new AbortController().signal), QueueFullError, 'maxDepth 0 queues nothing');
});

t.test('a deadline passing while queued rejects the request and removes it, not before', async (t) => {
  const outcomes: WaitOutcome[] = [];
  const clock = new ManualClock();
  const q = new RequestQueue(undefined, { clock, observer: { onWaited: (_s, o) => outcomes.push(o) } });
  const stays = entry();
  const r = line(q, [['stays', stays]]);
  const started = clock.now();
  const settled: [string, unknown][] = [];
  const record = (label: string) => (e: unknown) => void settled.push([label, e]);
  q.wait(entry({ deadline: started + 40 }), new AbortController().signal).then(record('short?'), record('short'));
  q.wait(entry({ deadline: started + 60_000, headers: { 'chikai-timeout-ms': '60' } }), new AbortController().signal).then(record('header?'), record('header'));
  t.equal(q.depth, 3);
  await clock.tick(39);
  t.same(settled, [], 'nothing expires before its deadline');
  await clock.tick(1);
  t.same(settled.map(([l]) => l), ['short'], 'the 40 ms deadline passed, the 60 ms one not yet');
  t.ok(settled[0]![1] instanceof QueueDeadlineError);
  await clock.tick(20);
  t.same(settled.map(([l]) => l), ['short', 'header'], 'chikai-timeout-ms sets the deadline');
  t.ok(settled[1]![1] instanceof QueueDeadlineError);
  t.equal(q.depth, 1, 'expired requests left the queue');
  t.same(outcomes, ['deadline', 'deadline']);
  t.equal(q.next(), true);
  t.equal(q.next(), false);
  await tick();
  t.same(r.served, ['stays']);
  await t.rejects(q.wait(entry({ deadline: clock.now() - 1 }), new AbortController().signal), QueueDeadlineError, 'already late: refused');
  t.equal(q.depth, 0);
  t.equal(clock.timers, 0, 'no deadline timer left armed');
});

t.test('next() skips a request whose deadline passed before its timer fired', async (t) => {
  // now() is past the deadline while the timer has not run yet (a busy event loop).
  const clock = new ManualClock();
  let now = clock.now();
  const q = new RequestQueue(undefined, { clock: { now: () => now, after: (ms, fn) => clock.after(ms, fn) } });
  const late = q.wait(entry({ deadline: now + 60_000 }), new AbortController().signal);
  const r = line(q, [['on-time', entry()]]);
  now += 61_000;
  t.equal(q.next(), true);
  await t.rejects(late, QueueDeadlineError);
  await tick();
  t.same(r.served, ['on-time'], 'the turn went to a request that can use it');
  q.clear('done');
});

t.test('a request whose client went away leaves at once and never gets a turn', async (t) => {
  const depths: number[] = [];
  const outcomes: WaitOutcome[] = [];
  const q = new RequestQueue(undefined, {
    revision: 'default/hello-00001',
    observer: { onDepth: (d, rev) => depths.push(d) && t.equal(rev, 'default/hello-00001'), onWaited: (_s, o) => outcomes.push(o) },
  });
  const before = line(q, [['a', entry()], ['b', entry()]]);
  const client = new AbortController();
  const gone = entry();
  const waiting = q.wait(gone, client.signal);
  const after = line(q, [['c', entry()]]);
  t.equal(q.depth, 4);
  client.abort(new Error('client closed the connection'));
  t.equal(q.depth, 3, 'depth drops in the same tick');
  t.notOk(q.isWaiting(gone));
  const err = await waiting.then(() => undefined, (e: unknown) => e as Error);
  t.equal(err?.name, 'AbortError');
  t.match((err?.cause as Error)?.message, /client closed/);
  t.equal(depths.at(-1), 3);
  t.same(outcomes, ['abandoned']);
  t.ok(q.next());
  t.ok(q.next());
  t.ok(q.next());
  t.notOk(q.next(), 'the abandoned request was never handed a turn');
  await tick();
  t.same([...before.served, ...after.served], ['a', 'b', 'c']);
  const already = new AbortController();
  already.abort();
  await t.rejects(q.wait(entry(), already.signal), { name: 'AbortError' }, 'an already aborted signal never joins');
  t.equal(q.depth, 0);
});

t.test('a request that waits again keeps its place and skips the bound', async (t) => {
  const q = new RequestQueue(parseQueueConfig({ maxDepth: 2 }, 'test.yaml'));
  const first = entry();
  const order: string[] = [];
  q.wait(first, new AbortController().signal).then(() => order.push('first'));
  q.next();
  await tick();
  const later = entry();
  q.wait(later, new AbortController().signal).then(() => order.push('later'));
  q.wait(entry(), new AbortController().signal).then(() => order.push('third'));
  // The slot it was given was taken after all (or the proxy retries it): it queues again.
  q.wait(first, new AbortController().signal).then(() => order.push('first-again'));
  t.equal(q.depth, 3, 'admitted although the bound is 2');
  await drain(q);
  t.same(order, ['first', 'first-again', 'later', 'third']);
});

t.test('clear() rejects every waiter with the reason; observer sees the depth', async (t) => {
  const depths: number[] = [];
  const q = new RequestQueue(undefined, { observer: { onDepth: (d) => depths.push(d) } });
  const waits = [q.wait(entry(), new AbortController().signal), q.wait(entry(), new AbortController().signal)];
  t.equal(q.oldestWaitMs >= 0, true);
  q.clear('the proxy is shutting down');
  for (const w of waits) await t.rejects(w, new QueueClearedError('the proxy is shutting down'));
  t.equal(q.depth, 0);
  t.same(depths, [1, 2, 0]);
});

t.test('oldestWaitMs follows the longest waiter whatever the ordering', async (t) => {
  const clock = new ManualClock(5_000);
  const q = new RequestQueue(parseQueueConfig({ ordering: 'priority' }, 'test.yaml'), { clock });
  t.equal(q.oldestWaitMs, 0);
  line(q, [['old-low', entry({ headers: { 'chikai-priority': 'low' } })]]);
  clock.advance(100);
  line(q, [['new-high', entry({ headers: { 'chikai-priority': 'high' } })]]);
  clock.advance(50);
  t.equal(q.oldestWaitMs, 150);
  q.next(); // serves new-high
  t.equal(q.oldestWaitMs, 150, 'the low one still waits');
  q.next();
  t.equal(q.oldestWaitMs, 0);
});

t.test('observer gets time queued per outcome', async (t) => {
  const clock = new ManualClock(0);
  const waited: [number, WaitOutcome][] = [];
  const q = new RequestQueue(undefined, { clock, observer: { onWaited: (s, o) => waited.push([s, o]) } });
  line(q, [['a', entry()]]);
  clock.advance(1500);
  q.next();
  t.same(waited, [[1.5, 'served']]);
});

t.test('config: defaults', async (t) => {
  const c = parseQueueConfig(undefined, 'cluster.yaml');
  t.equal(c.ordering, 'fifo');
  t.equal(c.maxDepth, 10000);
  t.equal(c.retryAfterSeconds, 1);
  t.equal(c.priority.header, 'chikai-priority');
  t.same(c.priority.classes, ['high', 'normal', 'low']);
  t.same(parseQueueConfig({}, 'cluster.yaml'), c);
});

t.test('config: mistakes name the source, the field and what was expected', async (t) => {
  const cases: [unknown, RegExp][] = [
    ['fifo', /^cluster\.yaml: queue: expected a mapping/],
    [{ ordering: 'lifo' }, /cluster\.yaml: queue\.ordering: expected one of fifo, priority, deadline.*got "lifo"/],
    [{ maxDepth: -1 }, /cluster\.yaml: queue\.maxDepth: expected an integer from 0 to/],
    [{ retryAfterSeconds: 1.5 }, /queue\.retryAfterSeconds: expected an integer/],
    [{ maxdepth: 5 }, /queue\.maxdepth: expected only the fields ordering, maxDepth/],
    [{ priority: { rules: [{ pathPrefix: '/a', class: 'urgent' }] } }, /queue\.priority\.rules\[0\]\.class: expected one of the priority classes high, normal, low/],
    [{ priority: { rules: [{ pathPrefix: 'a', class: 'low' }] } }, /queue\.priority\.rules\[0\]\.pathPrefix: expected a path starting with \//],
    [{ priority: { classes: ['gold', 'silver'] } }, /queue\.priority\.default: expected one of the priority classes gold, silver/],
    [{ priority: { header: 'bad header' } }, /queue\.priority\.header: expected an HTTP header name/],
    [{ hooks: { pop: [{ set: { a: 'x' } }, { set: { b: '${nope}' } }] } }, /cluster\.yaml: queue\.hooks\.pop\[1\]\.set\.b: expected only the template variables .*got \$\{nope\}/],
    [{ hooks: { pop: [{ set: { a: 'x' } }, { set: 'x-a: 1' }] } }, /queue\.hooks\.pop\[1\]\.set: expected a mapping of header name to value/],
    [{ hooks: { pop: [{ sett: { a: 'x' } }] } }, /queue\.hooks\.pop\[0\]\.sett: expected only the fields when, set, setIfAbsent, remove/],
    [{ hooks: { pop: [{ when: { host: 'a' } }] } }, /queue\.hooks\.pop\[0\]: expected a rule with at least one of set, setIfAbsent, remove/],
    [{ hooks: { push: [{ set: { a: '${class}' } }] } }, /queue\.hooks\.push\[0\]\.set\.a: expected \$\{class\} only in pop hooks/],
    [{ hooks: { push: [{ remove: ['content-length'] }] } }, /queue\.hooks\.push\[0\]\.remove\[0\]: expected a header other than content-length/],
    [{ hooks: { pop: [{ set: { a: 'x\r\ny: z' } }] } }, /queue\.hooks\.pop\[0\]\.set\.a: expected a header value without line breaks/],
    [{ hooks: { pop: [{ set: { a: '${waitMs' } }] } }, /queue\.hooks\.pop\[0\]\.set\.a: expected a closing \}/],
    [{ hooks: { pop: [{ when: { class: 'gold' }, set: { a: 'b' } }] } }, /queue\.hooks\.pop\[0\]\.when\.class: expected one of the priority classes/],
    [{ hooks: { pop: { set: { a: 'b' } } } }, /queue\.hooks\.pop: expected a list of header rules/],
  ];
  for (const [raw, message] of cases) {
    t.throws(() => parseQueueConfig(raw, 'cluster.yaml'), { name: 'ConfigError', message }, JSON.stringify(raw));
  }
});

t.test('config: a mistake in the cluster file\'s queue section names file:line and the field', async (t) => {
  const yaml = [
    'nodes: [{ name: node1, address: 127.0.1.1 }]',
    'revisions: [{ service: hello, name: hello-00001 }]',
    'queue:',
    '  ordering: priority',
    '  hooks:',
    '    pop:',
    '      - { set: { a: x } }',
    '      - { set: { b: "${nope}" } }',
  ].join('\n');
  t.throws(() => parseClusterFile(yaml, 'my.yaml'), { name: 'ConfigError', message: /^my\.yaml:8: queue\.hooks\.pop\[1\]\.set\.b: expected only the template variables/ });
  t.throws(() => parseClusterFile(yaml.replace('ordering: priority', 'ordering: lifo'), 'my.yaml'), { message: /^my\.yaml:4: queue\.ordering: expected one of fifo, priority, deadline/ });
  t.throws(() => parseClusterFile(yaml.replace('  ordering: priority', '  maxdepth: 3'), 'my.yaml'), { message: /^my\.yaml:4: queue\.maxdepth: expected only the fields ordering, maxDepth/ });
  const ok = parseClusterFile(yaml.replace('${nope}', '${waitMs}'), 'my.yaml');
  t.equal(ok.queue.ordering, 'priority', 'the file carries the parsed queue settings');
  t.equal(ok.queue.hooks.pop.length, 2);
});
