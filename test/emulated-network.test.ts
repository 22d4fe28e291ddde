// The emulated network injects the configured inter-node latency in user space. Real
// sockets throughout: a client bound to one node's address talks to a server exposed on
// another node, and the round trips are measured with performance.now().
import t, { type Test } from 'tap';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { ClusterModel, type ClusterState } from '../cluster/model.js';
import { EmulatedNetwork, type Exposure } from '../cluster/emulated/network.js';

function state(latency: ClusterState['latency']): ClusterState {
  return {
    domain: 'cluster.local',
    externalDomains: [],
    nodes: [
      { name: 'node1', region: 'cloud', zone: 'a', address: '127.0.1.1' },
      { name: 'node2', region: 'cloud', zone: 'a', address: '127.0.1.2' },
      { name: 'node3', region: 'edge', zone: 'e', address: '127.0.1.3' },
    ],
    revisions: [],
    endpoints: [],
    latency,
  };
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

/** A line-echo TCP server on a hidden address; records when each line arrived. */
async function echoServer(host: string): Promise<{ server: net.Server; port: number; arrivals: { sentAt: number; at: number }[] }> {
  const arrivals: { sentAt: number; at: number }[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.setNoDelay(true);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const sentAt = Number(line.split(' ')[1]);
        if (Number.isFinite(sentAt)) arrivals.push({ sentAt, at: performance.now() });
        s.write(line + '\n');
      }
    });
    s.on('end', () => s.end());
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return { server, port: (server.address() as net.AddressInfo).port, arrivals };
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

/** Ping-pong `n` lines over one connection; returns the round trips in ms. */
async function pingPong(s: net.Socket, n: number): Promise<number[]> {
  const rtts: number[] = [];
  let buf = '';
  let waiting: ((line: string) => void) | undefined;
  s.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    const nl = buf.indexOf('\n');
    if (nl >= 0 && waiting) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const w = waiting;
      waiting = undefined;
      w(line);
    }
  });
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const got = new Promise<string>((r) => (waiting = r));
    s.write(`ping ${t0}\n`);
    await got;
    rtts.push(performance.now() - t0);
  }
  return rtts;
}

t.test('injected RTT matches the configured matrix (median within 2 ms)', async (t) => {
  const model = new ClusterModel(PAPER);
  const network = new EmulatedNetwork(model, { seed: 42 });
  const { backend, exposed } = await echoOnNode1(t, network);
  t.equal(exposed.host, '127.0.1.1');

  // Run the four pairs at once on separate connections; they do not disturb each other.
  const cases: { label: string; from?: string; expect: number }[] = [
    { label: 'node3 -> node1 (50 ± 10 ms)', from: '127.0.1.3', expect: 50 },
    { label: 'node2 -> node1 (0.5 ms)', from: '127.0.1.2', expect: 0.5 },
    { label: 'node1 -> node1 (same node)', from: '127.0.1.1', expect: 0 },
    { label: 'external 127.0.0.1 -> node1', from: '127.0.0.1', expect: 0 },
  ];
  const results = await Promise.all(
    cases.map(async (c) => {
      const s = await connect(exposed.port, exposed.host, c.from);
      const rtts = await pingPong(s, 120);
      s.destroy();
      return rtts;
    }),
  );
  cases.forEach((c, i) => {
    const rtts = results[i]!;
    const med = median(rtts);
    t.comment(`${c.label}: median RTT ${med.toFixed(2)} ms over ${rtts.length} samples (p25 ${quantile(rtts, 0.25).toFixed(2)}, p75 ${quantile(rtts, 0.75).toFixed(2)})`);
    t.ok(rtts.length >= 100, `${c.label}: ≥ 100 samples`);
    if (c.expect === 0) t.ok(med < 2, `${c.label}: not delayed (median ${med.toFixed(2)} < 2 ms)`);
    else t.ok(Math.abs(med - c.expect) <= 2, `${c.label}: median ${med.toFixed(2)} ms within 2 ms of ${c.expect}`);
  });
});

t.test('both directions are delayed: one way node3 -> node1 is ~25 ms at the receiver', async (t) => {
  const model = new ClusterModel(PAPER);
  const network = new EmulatedNetwork(model, { seed: 7 });
  const { backend, exposed } = await echoOnNode1(t, network);
  const s = await connect(exposed.port, exposed.host, '127.0.1.3');
  const rtts = await pingPong(s, 100);
  s.destroy();
  const up = backend.arrivals.map((a) => a.at - a.sentAt);
  const medUp = median(up);
  const medRtt = median(rtts);
  const medDown = medRtt - medUp;
  t.comment(`node3 -> node1 one way at the receiver: median ${medUp.toFixed(2)} ms; back (RTT - one way): ${medDown.toFixed(2)} ms`);
  t.ok(Math.abs(medUp - 25) <= 2, `request direction ~25 ms (${medUp.toFixed(2)})`);
  t.ok(Math.abs(medDown - 25) <= 2, `response direction ~25 ms (${medDown.toFixed(2)})`);
});

t.test('jitter: the RTT spread reflects jitterMs', async (t) => {
  const model = new ClusterModel(
    state({
      node3: { node1: { rttMs: 30, jitterMs: 10 } },
      node2: { node1: { rttMs: 30, jitterMs: 0 } },
    }),
  );
  const network = new EmulatedNetwork(model, { seed: 3 });
  const { backend, exposed } = await echoOnNode1(t, network);
  const [jittery, steady] = await Promise.all(
    ['127.0.1.3', '127.0.1.2'].map(async (from) => {
      const s = await connect(exposed.port, exposed.host, from);
      const r = await pingPong(s, 120);
      s.destroy();
      return r;
    }),
  );
  const iqr = (xs: number[]) => quantile(xs, 0.75) - quantile(xs, 0.25);
  const sd = (xs: number[]) => {
    const m = xs.reduce((a, b) => a + b, 0) / xs.length;
    return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
  };
  t.comment(`jitter 10 ms: median ${median(jittery!).toFixed(2)}, IQR ${iqr(jittery!).toFixed(2)}, sd ${sd(jittery!).toFixed(2)} ms`);
  t.comment(`jitter 0 ms: median ${median(steady!).toFixed(2)}, IQR ${iqr(steady!).toFixed(2)}, sd ${sd(steady!).toFixed(2)} ms`);
  // Normal RTT with σ = 10 ms has IQR ≈ 13.5 ms.
  t.ok(iqr(jittery!) > 7, 'IQR clearly above 0 with 10 ms jitter');
  t.ok(iqr(steady!) < 2, 'IQR about 0 without jitter');
  t.ok(Math.abs(median(steady!) - 30) <= 2, 'steady link still at its RTT');
});

t.test('model changes apply to the next chunk', async (t) => {
  const model = new ClusterModel(state({ node3: { node1: { rttMs: 40, jitterMs: 0 } } }));
  const network = new EmulatedNetwork(model);
  const { backend, exposed } = await echoOnNode1(t, network);
  const s = await connect(exposed.port, exposed.host, '127.0.1.3');
  const before = median(await pingPong(s, 10));
  model.update((st) => ({ ...st, latency: { node3: { node1: { rttMs: 10, jitterMs: 0 } } } }));
  const after = median(await pingPong(s, 10));
  s.destroy();
  t.comment(`RTT 40 -> 10 ms on a live connection: ${before.toFixed(2)} -> ${after.toFixed(2)} ms`);
  t.ok(Math.abs(before - 40) <= 2);
  t.ok(Math.abs(after - 10) <= 2);
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

t.test('a dark node hangs connections; healing restores service', async (t) => {
  const model = new ClusterModel(PAPER);
  const network = new EmulatedNetwork(model);
  const { backend, exposed } = await echoOnNode1(t, network);

  const tryPing = async (from: string, waitMs: number): Promise<'answered' | 'silent' | 'failed'> => {
    const s = net.connect({ host: exposed.host, port: exposed.port, localAddress: from });
    try {
      return await new Promise((resolve) => {
        const timer = setTimeout(() => resolve('silent'), waitMs);
        s.on('data', () => {
          clearTimeout(timer);
          resolve('answered');
        });
        s.on('error', () => {
          clearTimeout(timer);
          resolve('failed');
        });
        s.on('close', () => {
          clearTimeout(timer);
          resolve('failed');
        });
        s.write('ping 0\n');
      });
    } finally {
      s.destroy();
    }
  };

  t.equal(await tryPing('127.0.1.3', 500), 'answered', 'healthy before');
  network.setNodeDark('node1', true);
  t.equal(await tryPing('127.0.1.3', 400), 'silent', 'to a dark node: accepted, no answer, no reset');
  t.equal(await tryPing('127.0.0.1', 400), 'silent', 'external traffic to a dark node hangs too');
  network.setNodeDark('node1', false);
  network.setNodeDark('node3', true);
  t.equal(await tryPing('127.0.1.3', 400), 'silent', 'from a dark node: no answer');
  t.equal(await tryPing('127.0.1.2', 500), 'answered', 'other nodes unaffected');
  network.setNodeDark('node3', false);
  t.equal(await tryPing('127.0.1.3', 500), 'answered', 'healed: new connections work');
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
