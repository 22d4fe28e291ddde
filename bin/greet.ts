// `chikai greet`: a gRPC call to the demo's greeter (an h2c revision) through a gateway or
// a node proxy, with a real gRPC client, and its health check. grpcurl's job for the demo,
// without needing grpcurl.
import { parseArgs } from 'node:util';
import { greeterClient, healthCheck, healthClient, sayHello, SERVING } from '../cluster/emulated/greeter.js';
import { UsageError } from './usage-error.js';

export class GreetUsageError extends UsageError {
  override readonly name = 'GreetUsageError';
}

export async function greetCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { authority: { type: 'string' }, name: { type: 'string' }, count: { type: 'string' } },
  });
  const target = positionals[0];
  if (!target || positionals.length > 1) throw new GreetUsageError('greet expects one HOST:PORT (a gateway\'s 8080 or a proxy\'s 8012/8013)');
  const authority = values.authority ?? 'greeter.default.svc.cluster.local';
  const count = Number(values.count ?? 1);
  if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new GreetUsageError('--count expects an integer from 1 to 10000');
  const health = healthClient(target, authority);
  const greeter = greeterClient(target, authority);
  try {
    const status = (await healthCheck(health)).status;
    console.log(`grpc.health.v1.Health/Check: ${status === SERVING ? 'SERVING' : `status ${status}`}`);
    // One connection, `count` calls: each is balanced on its own.
    const pods = new Map<string, number>();
    for (let i = 0; i < count; i++) {
      const reply = await sayHello(greeter, { name: values.name ?? 'chikai' });
      if (i === 0) console.log(reply.message);
      pods.set(reply.pod, (pods.get(reply.pod) ?? 0) + 1);
    }
    if (count > 1) for (const [pod, n] of [...pods].sort()) console.log(`  ${pod}: ${n} calls`);
  } finally {
    health.close();
    greeter.close();
  }
}
