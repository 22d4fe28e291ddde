// The emulated network injects the configured inter-node latency in user space. Real
// sockets throughout: a client bound to one node's address talks to a server exposed on
// another node. When bytes are delivered is decided on the network's clock, so the tests
// move a manual clock and watch the relay's counters; how close the injected RTT comes to
// the configured one in real time is bench output (`npm run bench -- --scenario emulation`).
import t, { type Test } from 'tap';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { ClusterModel, type ClusterState } from '../cluster/model.js';
import { clusterState } from './fixtures/cluster-state.js';
import { EmulatedNetwork, type Exposure } from '../cluster/emulated/network.js';
import { ManualClock } from './fixtures/clock.js';
import { until } from './support.js';

function state(latency: ClusterState['latency']): ClusterState {
  return clusterState({ latency, revisions: [] });
}

const PAPER = state({
  node3: { node1: { rttMs: 50, jitterMs: 10 }, node2: { rttMs: 50, jitterMs: 10 } },
  node1: { node2: { rttMs: 0.5, jitterMs: 0 } },
});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

/** A line-echo TCP server on a hidden address; counts the lines it got. */
async function echoServer(host: string): Promise<{ server: net.Server; port: number; lines: string[] }> {
  const lines: string[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.setNoDelay(true);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines.push(line);
        s.write(line + '\n');
      }
    });
    s.on('end', () => s.end());
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return { server, port: (server.address() as net.AddressInfo).port, lines };
}

/** An echo server on node1's hidden address, exposed at node1 through `network`; both stop with the test. */
async function echoOnNode1(t: Test, network: EmulatedNetwork): Promise<{ backend: Awaited<ReturnType<typeof echoServer>>; exposed: Exposure }> {
  const backend = await echoServer('127.0.2.1');
  const exposed = await network.expose('node1', 0, { host: '127.0.2.1', port: backend.port });
  t.teardown(async () => {
    await network.close();
    backend.server.close();
  });
  return { backend, exposed };
}

async function connect(port: number, host: string, localAddress?: string): Promise<net.Socket> {
  return await new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything a socket receives, as text. */
function received(s: net.Socket): { text: string } {
  const r = { text: '' };
  s.on('data', (d: Buffer) => (r.text += d.toString('latin1')));
  return r;
}

const STEADY = state({
  node3: { node1: { rttMs: 50, jitterMs: 0 }, node2: { rttMs: 50, jitterMs: 0 } },
  node1: { node2: { rttMs: 0.5, jitterMs: 0 } },
});

t.test('a chunk from node3 to node1 is held for the one-way delay (rtt/2) on the network\'s clock, both ways', async (t) => {
  const clock = new ManualClock();
  const network = new EmulatedNetwork(new ClusterModel(STEADY), { clock });
  const { backend, exposed } = await echoOnNode1(t, network);
  t.equal(exposed.host, '127.0.1.1');
  const s = await connect(exposed.port, exposed.host, '127.0.1.3');
  t.teardown(() => s.destroy());
  const got = received(s);
  s.write('ping\n');
  await until('the relay to hold the chunk', () => network.stats().queuedBytes === 5);
  clock.advance(24);
  t.equal(network.stats().bytes, 0, 'at 24 ms the request has not reached node1');
  clock.advance(1);
  t.equal(network.stats().bytes, 5, 'at 25 ms it has');
  await until('the echo to come back into the relay', () => backend.lines.length === 1 && network.stats().queuedBytes === 5);
  clock.advance(24);
  t.equal(network.stats().bytes, 5, 'the answer is held too');
  clock.advance(1);
  t.equal(network.stats().bytes, 10, 'and delivered at 50 ms: the configured round trip');
  await until('the client to read the echo', () => got.text === 'ping\n');
  t.pass('echo received');
});

t.test('no delay inside a node or from outside the cluster', async (t) => {
  const clock = new ManualClock();
  const network = new EmulatedNetwork(new ClusterModel(STEADY), { clock });
  const { exposed } = await echoOnNode1(t, network);
  for (const from of ['127.0.1.1', '127.0.0.1']) {
    const s = await connect(exposed.port, exposed.host, from);
    const got = received(s);
    s.write(`from ${from}\n`);
    // The clock never moves: only an undelayed relay can answer.
    await until(`the echo for ${from}`, () => got.text === `from ${from}\n`);
    t.pass(`${from === '127.0.1.1' ? 'same node' : 'a client that is no node'}: answered without the clock moving`);
    s.destroy();
  }
  t.equal(network.stats().queuedBytes, 0);
});

t.test('jitter: one-way delays are normal around rtt/2 with σ = jitter/√2, never negative, and seeded', async (t) => {
  const model = new ClusterModel(state({ node3: { node1: { rttMs: 30, jitterMs: 10 } }, node2: { node1: { rttMs: 30, jitterMs: 0 } } }));
  const a = new EmulatedNetwork(model, { seed: 3 });
  const b = new EmulatedNetwork(model, { seed: 3 });
  const jittery = Array.from({ length: 4000 }, () => a.sampleOneWayMs('node3', 'node1'));
  const steady = Array.from({ length: 100 }, () => a.sampleOneWayMs('node2', 'node1'));
  t.same(Array.from({ length: 4000 }, () => b.sampleOneWayMs('node3', 'node1')), jittery, 'the same seed gives the same delays');
  t.ok(Math.abs(median(jittery) - 15) < 0.5, `median ${median(jittery).toFixed(2)} ≈ 15 ms`);
  const iqr = quantile(jittery, 0.75) - quantile(jittery, 0.25);
  t.ok(Math.abs(iqr - 1.349 * (10 / Math.SQRT2)) < 1, `IQR ${iqr.toFixed(2)} ≈ 1.349 σ = 9.54 ms`);
  t.same([...new Set(steady)], [15], 'no jitter: exactly rtt/2');
  const wide = new EmulatedNetwork(new ClusterModel(state({ node3: { node1: { rttMs: 2, jitterMs: 20 } } })), { seed: 4 });
  t.ok(Array.from({ length: 1000 }, () => wide.sampleOneWayMs('node3', 'node1')).every((d) => d >= 0), 'a delay is never negative');
  t.equal(a.sampleOneWayMs('node1', 'node1'), 0, 'same node');
  t.equal(a.sampleOneWayMs(undefined, 'node1'), 0, 'from outside the cluster');
  await Promise.all([a.close(), b.close(), wide.close()]);
});

t.test('model changes apply to the next chunk; order is kept across the change', async (t) => {
  const clock = new ManualClock();
  const model = new ClusterModel(state({ node3: { node1: { rttMs: 40, jitterMs: 0 } } }));
  const network = new EmulatedNetwork(model, { clock });
  const { backend, exposed } = await echoOnNode1(t, network);
  const s = await connect(exposed.port, exposed.host, '127.0.1.3');
  t.teardown(() => s.destroy());
  s.write('a\n');
  await until('the relay to hold the first chunk', () => network.stats().queuedBytes === 2);
  model.update((st) => ({ ...st, latency: { node3: { node1: { rttMs: 10, jitterMs: 0 } } } }));
  s.write('b\n');
  await until('the relay to hold the second chunk', () => network.stats().queuedBytes === 4);
  clock.advance(5);
  t.equal(network.stats().bytes, 0, 'the second chunk (due at 5 ms) waits behind the first (due at 20 ms)');
  clock.advance(15);
  t.equal(network.stats().bytes, 4, 'both go at 20 ms, in order');
  await until('both lines at the server', () => backend.lines.length === 2);
  t.same(backend.lines, ['a', 'b']);
  // The answers use the new latency.
  await until('the answers in the relay', () => network.stats().queuedBytes === 4);
  clock.advance(4);
  t.equal(network.stats().bytes, 4);
  clock.advance(1);
  t.equal(network.stats().bytes, 8, 'answers after the new 5 ms one way');
});

t.test('a 20 MB transfer keeps order and bytes, with bounded relay buffering', async (t) => {
  const model = new ClusterModel(PAPER);
  const maxPendingBytes = 256 * 1024;
  const network = new EmulatedNetwork(model, { maxPendingBytes });
  // Backend hashes what it receives, then answers with the hash and a 20 MB download.
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => {
      h.update(d);
      n += d.length;
    });
    s.on('end', () => {
      s.write(`${n} ${h.digest('hex')}\n`);
      s.end(pattern(20 * 1024 * 1024, 7));
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.2.1', r));
  const exposed = await network.expose('node1', 0, { host: '127.0.2.1', port: (server.address() as net.AddressInfo).port });
  t.teardown(async () => {
    await network.close();
    server.close();
  });

  const upload = pattern(20 * 1024 * 1024, 3);
  const expectHash = createHash('sha256').update(upload).digest('hex');
  const s = await connect(exposed.port, exposed.host, '127.0.1.3');
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
  const t0 = performance.now();
  s.end(upload);
  const reply = await done;
  const ms = performance.now() - t0;
  const nl = reply.indexOf(10);
  const [n, hash] = reply.subarray(0, nl).toString().split(' ');
  t.equal(Number(n), upload.length, 'every byte of the upload arrived');
  t.equal(hash, expectHash, 'upload arrived in order');
  const download = reply.subarray(nl + 1);
  t.equal(download.length, 20 * 1024 * 1024, 'every byte of the download arrived');
  t.ok(download.equals(pattern(20 * 1024 * 1024, 7)), 'download arrived in order');
  const peak = network.stats().peakPendingBytes;
  t.comment(`40 MB through a 50 ms relay in ${ms.toFixed(0)} ms; peak held per direction ${(peak / 1024).toFixed(0)} KiB (window ${maxPendingBytes / 1024} KiB)`);
  t.ok(peak <= maxPendingBytes + 256 * 1024, 'relay buffering stays bounded by its window');
});

function pattern(size: number, salt: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((Math.imul(i, 2654435761) ^ salt) >>> 0, i);
  return b;
}

t.test('half-close and resets propagate both ways', async (t) => {
  const model = new ClusterModel(PAPER);
  const network = new EmulatedNetwork(model);
  let mode: 'halfclose' | 'reset' = 'halfclose';
  const backendSockets: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    backendSockets.push(s);
    s.on('error', () => {});
    if (mode === 'halfclose') {
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString()));
      // The client has finished sending; we can still answer on the open half.
      s.on('end', () => setTimeout(() => s.end(`got ${got}`), 20));
    } else {
      s.once('data', () => s.resetAndDestroy());
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.2.1', r));
  const exposed: Exposure = await network.expose('node1', 0, { host: '127.0.2.1', port: (server.address() as net.AddressInfo).port });
  t.teardown(async () => {
    await network.close();
    server.close();
  });

  {
    const s = net.connect({ host: exposed.host, port: exposed.port, localAddress: '127.0.1.3', allowHalfOpen: true });
    let reply = '';
    s.on('data', (d: Buffer) => (reply += d.toString()));
    const ended = new Promise<void>((r) => s.on('end', () => r()));
    s.end('hello');
    await ended;
    t.equal(reply, 'got hello', 'request half-closed, response still delivered, then end');
    s.destroy();
  }
  {
    mode = 'reset';
    const s = net.connect({ host: exposed.host, port: exposed.port, localAddress: '127.0.1.3' });
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      s.on('error', (e) => resolve(e));
      s.on('close', () => resolve(undefined));
      s.write('boom');
    });
    t.equal(err?.code, 'ECONNRESET', 'a backend reset reaches the client as a reset');
  }
  {
    // Client resets: the backend's socket is destroyed too.
    mode = 'halfclose';
    const before = backendSockets.length;
    const s = await connect(exposed.port, exposed.host, '127.0.1.3');
    s.write('x');
    while (backendSockets.length === before) await new Promise((r) => setTimeout(r, 5));
    const b = backendSockets[backendSockets.length - 1]!;
    const closed = new Promise<void>((r) => b.on('close', () => r()));
    s.resetAndDestroy();
    await closed;
    t.pass('a client reset closes the backend connection');
  }
});

t.test('a dark node hangs connections (held, not reset); healing delivers what was held', async (t) => {
  const clock = new ManualClock();
  const network = new EmulatedNetwork(new ClusterModel(STEADY), { clock });
  const { backend, exposed } = await echoOnNode1(t, network);
  const open = async (from: string) => {
    const s = net.connect({ host: exposed.host, port: exposed.port, localAddress: from });
    t.teardown(() => s.destroy());
    const state = { text: '', failed: false };
    s.on('data', (d: Buffer) => (state.text += d.toString('latin1')));
    s.on('error', () => (state.failed = true));
    s.on('close', () => (state.failed = true));
    await new Promise<void>((r) => s.once('connect', () => r()));
    return { s, state };
  };

  network.setNodeDark('node1', true);
  const toDark = await open('127.0.1.3');
  toDark.s.write('to dark\n');
  const fromOutside = await open('127.0.0.1');
  fromOutside.s.write('outside\n');
  await until('both chunks to reach the relay', () => network.stats().queuedBytes === 'to dark\n'.length + 'outside\n'.length);
  await clock.tick(10_000);
  t.same(backend.lines, [], 'nothing reaches a dark node, however long it waits');
  t.notOk(toDark.state.failed || fromOutside.state.failed, 'and nobody is reset: the connections just hang');

  network.setNodeDark('node1', false);
  await until('the held lines to arrive after healing', () => backend.lines.length === 2);
  t.same(backend.lines.sort(), ['outside', 'to dark'], 'held, not lost');
  await until('the answers', () => (clock.advance(25), toDark.state.text === 'to dark\n' && fromOutside.state.text === 'outside\n'));

  network.setNodeDark('node3', true);
  const fromDark = await open('127.0.1.3');
  fromDark.s.write('from dark\n');
  const other = await open('127.0.1.2');
  other.s.write('other\n');
  await until('the other node\'s line (0.5 ms away) to arrive', () => (clock.advance(1), backend.lines.includes('other')));
  t.notOk(backend.lines.includes('from dark'), 'a dark sender\'s bytes are held too; other nodes are unaffected');
  network.setNodeDark('node3', false);
  await until('healed: the held line arrives', () => (clock.advance(25), backend.lines.includes('from dark')));
  t.pass('delivered after healing');
});

t.test('close() destroys relays and connections', async (t) => {
  const model = new ClusterModel(PAPER);
  const network = new EmulatedNetwork(model);
  const backend = await echoServer('127.0.2.1');
  const exposed = await network.expose('node1', 0, { host: '127.0.2.1', port: backend.port });
  const s = await connect(exposed.port, exposed.host, '127.0.1.3');
  const closed = new Promise<void>((r) => s.on('close', () => r()));
  s.on('error', () => {});
  t.equal(network.stats().accepted, 1);
  await network.close();
  await closed;
  t.pass('open connection closed');
  await t.rejects(connect(exposed.port, exposed.host, '127.0.1.3'), { code: 'ECONNREFUSED' }, 'no longer listening');
  backend.server.close();
  await t.rejects(network.expose('node1', 0, { host: '127.0.2.1', port: backend.port }), 'a closed network exposes nothing');
});
