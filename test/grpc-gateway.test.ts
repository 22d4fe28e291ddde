// gRPC through the real Envoy gateways (Kourier-shaped, fed by chikai's xDS server) and
// through the stack's proxies on the activator's 8013: unary, server streaming and
// bidirectional calls with a real grpc-js client, the greeter's health check, and a call to
// an h2c revision at zero, which the gateway sends to node3's proxy over HTTP/2 and the
// proxy holds until a pod is up.
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { parseClusterFile } from '../cluster/config.js';
import { greeterClient, healthCheck, healthClient, sayHello, SERVING, type GreeterClient, type HelloReply } from '../cluster/emulated/greeter.js';
import { startEmulatedStack, type EmulatedStack } from '../bin/stack.js';
import { poll } from './fixtures/load.js';
import { request } from 'undici';

const GREETER_HOST = 'greeter.default.svc.cluster.local';
const LATER_HOST = 'greeter-later.default.svc.cluster.local';

const file = parseClusterFile([
  'nodes:',
  '  - { name: node1, region: cloud, zone: cloud-a, address: 127.0.1.1 }',
  '  - { name: node3, region: edge, zone: edge-a, address: 127.0.1.3 }',
  'latency:',
  '  - { between: [node3, node1], rttMs: 20, jitterMs: 0 }',
  'revisions:',
  '  - { namespace: default, service: greeter, name: greeter-00001, protocol: h2c, timeoutSeconds: 60 }',
  '  - { namespace: default, service: greeter-later, name: greeter-later-00001, protocol: h2c, timeoutSeconds: 60 }',
  'pods:',
  '  - { revision: default/greeter-00001, node: node1 }',
  '  - { revision: default/greeter-00001, node: node3 }',
  'proxy: { policy: chikai }',
].join('\n'), 'grpc-gateway-test.yaml');

let stack: EmulatedStack;
const logs: string[] = [];
t.before(async () => {
  stack = await startEmulatedStack({
    file, proxyPort: 0, adminPort: 0, drainSeconds: 0, seed: 5,
    xds: { listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, log: (l) => logs.push(l) },
    gateways: { ports: 'free', log: (l) => logs.push(l) },
  });
});
t.teardown(async () => {
  await stack?.close();
  if (logs.length) t.comment(`xDS server and gateway log:\n${logs.join('\n')}`);
});

const hostPort = (url: string) => new URL(url).host;

function replies(stream: grpc.ClientReadableStream<HelloReply>): Promise<HelloReply[]> {
  const out: HelloReply[] = [];
  return new Promise((resolve, reject) => {
    stream.on('data', (r: HelloReply) => out.push(r));
    stream.on('error', reject);
    stream.on('end', () => resolve(out));
  });
}

async function exercise(t: Test, client: GreeterClient, where: string): Promise<void> {
  const unary = await sayHello(client, { name: where });
  t.match(unary.message, new RegExp(`^Konnichiwa ${where} from greeter-00001-node[13]-`), `unary through ${where}`);
  const streamed = await replies(client.sayHellos({ name: 's', count: 3, delayMs: 2 }));
  t.equal(streamed.length, 3, `server streaming through ${where}: every message, then OK in the trailers`);
  const chat = client.chat();
  const answers = replies(chat);
  chat.write({ name: 'a' });
  chat.write({ name: 'b' });
  chat.end();
  t.same((await answers).map((r) => r.message.split(' ')[1]), ['a', 'b'], `bidirectional through ${where}`);
}

t.test('gRPC through node3\'s Envoy gateway and through node3\'s proxy on 8013', async (t) => {
  for (const [where, target] of [['gateway', hostPort(stack.gatewayUrl('node3'))], ['proxy-8013', `127.0.1.3:${stack.h2cPort}`], ['proxy-8012', hostPort(stack.proxyUrl('node3'))]] as const) {
    const client = greeterClient(target, GREETER_HOST);
    const health = healthClient(target, GREETER_HOST);
    t.teardown(() => { client.close(); health.close(); });
    t.equal((await healthCheck(health)).status, SERVING, `grpc.health.v1 SERVING through ${where}`);
    await exercise(t, client, where);
  }
});

t.test('an h2c revision at zero: Envoy sends the call to node3\'s proxy over HTTP/2, which holds it until a pod is up', async (t) => {
  const clusters = await (await request(`${stack.gatewayAdminUrl('node3')}/clusters`)).body.text();
  t.match(clusters, new RegExp(`^default/greeter-later-00001::127\\.0\\.1\\.3:${stack.proxyPort}::`, 'm'), 'Envoy\'s host for the revision: node3\'s proxy');
  const client = greeterClient(hostPort(stack.gatewayUrl('node3')), LATER_HOST);
  t.teardown(() => client.close());
  const call = sayHello(client, { name: 'patient' });
  const metrics = async () => (await request(`${stack.adminUrl('node3')}/metrics`)).body.text();
  await poll('the call to wait at node3\'s proxy', async () => (/^chikai_requests_buffered\{[^}]*revision="default\/greeter-later-00001"[^}]*\} 1$/m.test(await metrics()) ? true : undefined), 200, 50);
  const pod = await stack.cluster.addGrpcPod({ revision: 'default/greeter-later-00001', node: 'node1' });
  t.equal((await call).message, `Konnichiwa patient from ${pod.name} in node1`, 'served by the pod that came up');
});
