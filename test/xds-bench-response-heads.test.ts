// The xds bench's simulated gateways read each DiscoveryResponse's head as its gRPC body
// streams in: whatever the chunking, they must see every message with its exact version,
// type, nonce and resource count, and refuse a body that is not a stream of responses.
import t from 'tap';
import protobuf from 'protobufjs';
import { ResponseHeadReader, ResponseStreamError, type ResponseHead } from '../bench/xds/response-heads.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE, envoyProtos } from '../xds/protos.js';

const responseType = () => envoyProtos().type('envoy.service.discovery.v3.DiscoveryResponse');

interface Spec {
  readonly version_info: string;
  readonly type_url: string;
  readonly nonce: string;
  /** Sizes of the resources' values. */
  readonly sizes: readonly number[];
}

function resource(type: string, size: number, seed: number): { type_url: string; value: Buffer } {
  // Bytes that look like tags and lengths, so a reader that lost its place would misread them.
  const value = Buffer.alloc(size);
  for (let i = 0; i < size; i++) value[i] = (i * 31 + seed * 7) & 0xff;
  return { type_url: type, value };
}

/** protobufjs's own encoding: fields in number order, so resources come between the version and the type and nonce. */
function encodeInFieldOrder(s: Spec): Uint8Array {
  const T = responseType();
  return T.encode(T.fromObject({
    version_info: s.version_info, type_url: s.type_url, nonce: s.nonce, canary: true,
    control_plane: { identifier: 'a control plane' },
    resources: s.sizes.map((n, i) => resource(s.type_url, n, i)),
  })).finish();
}

/** chikai's encoding: the head fields first, then the resources appended. */
function encodeHeadFirst(s: Spec): Uint8Array {
  const T = responseType();
  const head = T.encode(T.fromObject({ version_info: s.version_info, type_url: s.type_url, nonce: s.nonce, control_plane: { identifier: 'chikai' } })).finish();
  const body = T.encode(T.fromObject({ resources: s.sizes.map((n, i) => resource(s.type_url, n, i)) })).finish();
  return Buffer.concat([head, body]);
}

function grpcFrame(message: Uint8Array, flag = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = flag;
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

const SPECS: readonly Spec[] = [
  { version_info: 'v1', type_url: CLUSTER_TYPE, nonce: 'n1', sizes: [40, 3, 0, 200] },
  // A long version (its length takes two varint bytes) and a resource whose length does too.
  { version_info: `sha-${'9'.repeat(150)}`, type_url: ENDPOINT_TYPE, nonce: 'stream-7-12', sizes: [130, 1] },
  { version_info: '', type_url: ROUTE_TYPE, nonce: 'n3', sizes: [] },
];

function expected(specs: readonly Spec[], encode: (s: Spec) => Uint8Array): ResponseHead[] {
  return specs.map((s) => ({ version_info: s.version_info, type_url: s.type_url, nonce: s.nonce, resources: s.sizes.length, bytes: encode(s).length }));
}

/** Feeds `body` cut at `cuts` (ascending offsets) and returns the heads read. */
function read(body: Buffer, cuts: readonly number[]): ResponseHead[] {
  const heads: ResponseHead[] = [];
  const reader = new ResponseHeadReader((h) => heads.push(h));
  let from = 0;
  for (const cut of [...cuts, body.length]) {
    reader.push(body.subarray(from, cut));
    from = cut;
  }
  reader.end();
  return heads;
}

for (const [name, encode] of [['fields in number order', encodeInFieldOrder], ['head fields first', encodeHeadFirst]] as const) {
  const body = Buffer.concat(SPECS.map((s) => grpcFrame(encode(s))));
  const want = expected(SPECS, encode);

  t.test(`${name}: several messages in one chunk`, async (t) => {
    t.same(read(body, []), want);
  });

  t.test(`${name}: every split into two chunks (inside prefixes, tags, lengths, head strings and resources)`, async (t) => {
    const wrong: number[] = [];
    for (let cut = 0; cut <= body.length; cut++) {
      const got = read(body, [cut]);
      if (JSON.stringify(got) !== JSON.stringify(want)) wrong.push(cut);
    }
    t.same(wrong, [], 'no split point changes what is read');
  });

  t.test(`${name}: one byte per chunk`, async (t) => {
    t.same(read(body, Array.from({ length: body.length - 1 }, (_, i) => i + 1)), want);
  });
}

t.test('a large response in HTTP/2-sized chunks, and random chunkings', async (t) => {
  const specs: Spec[] = [
    { version_info: 'big', type_url: ROUTE_TYPE, nonce: 'n-big', sizes: [70_000, 300_000] },
    ...Array.from({ length: 50 }, (_, i) => ({ version_info: `v${i}`, type_url: ENDPOINT_TYPE, nonce: `n${i}`, sizes: Array.from({ length: i % 7 }, (_, j) => (i * 37 + j * 101) % 900) })),
  ];
  const body = Buffer.concat(specs.map((s) => grpcFrame(encodeHeadFirst(s))));
  const want = expected(specs, encodeHeadFirst);
  const every = (step: number) => Array.from({ length: Math.floor((body.length - 1) / step) }, (_, i) => (i + 1) * step);
  t.same(read(body, every(16_384)), want, '16 KiB chunks');
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let run = 0; run < 50; run++) {
    const cuts: number[] = [];
    for (let at = Math.floor(random() * 40); at < body.length; at += 1 + Math.floor(random() * (run % 2 ? 20 : 5000))) cuts.push(at);
    const got = read(body, cuts);
    if (JSON.stringify(got) !== JSON.stringify(want)) t.fail(`random chunking ${run} read ${got.length} heads, not the ${want.length} sent`);
  }
  t.same(read(body, every(16_384)).reduce((s, h) => s + h.resources, 0), specs.reduce((s, x) => s + x.sizes.length, 0), 'every resource counted');
});

t.test('an empty message is a response with an empty head', async (t) => {
  t.same(read(grpcFrame(new Uint8Array(0)), []), [{ version_info: '', type_url: '', nonce: '', resources: 0, bytes: 0 }]);
});

/** The error reading `body` fails with. */
function refusal(body: Buffer): unknown {
  try {
    read(body, []);
  } catch (err) {
    return err;
  }
  return undefined;
}

t.test('a body that is not a stream of uncompressed DiscoveryResponses is refused, naming what is wrong', async (t) => {
  const refused = (body: Buffer, why: RegExp, what: string) => {
    const err = refusal(body);
    t.type(err, ResponseStreamError, what);
    t.match((err as Error | undefined)?.message, why, what);
  };
  const message = encodeHeadFirst(SPECS[0]!);
  refused(grpcFrame(message, 1), /^a compressed gRPC message \(flag 1\): the gateway asked for none$/, 'a compressed message');
  // The frame says the message is shorter than its last resource.
  refused(grpcFrame(message.subarray(0, message.length - 10)), /^field 2 \(\d+ bytes\) runs past the end of its \d+-byte message$/, 'a resource running past its message');
  const T = responseType();
  const head = T.encode(T.fromObject({ version_info: 'v1', nonce: 'n1' })).finish();
  refused(grpcFrame(head.subarray(0, head.length - 1)), /^field 5 \(2 bytes\) runs past the end of its 7-byte message$/, 'a head string running past its message');
  refused(grpcFrame(Buffer.from([0x0a])), /^a field runs past the end of its 1-byte message$/, 'a tag without its length at the end of a message');
  refused(grpcFrame(protobuf.Writer.create().uint32((9 << 3) | 6).finish()), /^not a DiscoveryResponse: invalid wire type 6/, 'an unknown wire type');
  const body = grpcFrame(message);
  refused(body.subarray(0, body.length - 1), /^the response body ended inside a message \(1 of its \d+ bytes missing\)$/, 'the body ending inside a message');
  refused(Buffer.concat([body, body.subarray(0, 3)]), /^the response body ended inside a message \(in its gRPC frame prefix\)$/, 'the body ending inside a frame prefix');
});
