// An emulated pod of an h2c revision: a real gRPC server (@grpc/grpc-js) speaking HTTP/2
// without TLS, serving the greeter (greeter.proto: unary, server streaming, bidirectional)
// and the standard health-checking service (grpc.health.v1.Health/Check → SERVING).
// Delays run on the pod's clock.
import * as grpc from '@grpc/grpc-js';
import { systemClock, type Clock, type Timer } from '../clock.js';
import { GREETER_SERVICE, SERVING, greeterService, healthService, type HelloReply, type HelloRequest } from './greeter.js';

export interface EmulatedGrpcPodOptions {
  readonly name: string;
  readonly node: string;
  readonly revision: string;
  readonly host?: string;
  readonly clock?: Clock;
}

export class EmulatedGrpcPod {
  readonly name: string;
  readonly node: string;
  readonly revision: string;
  /** Calls answered (every streamed reply counts once per call). */
  served = 0;
  private readonly host: string;
  private readonly clock: Clock;
  private readonly server = new grpc.Server();
  private readonly timers = new Set<Timer>();
  private boundPort = 0;
  private dead = false;

  constructor(o: EmulatedGrpcPodOptions) {
    this.name = o.name;
    this.node = o.node;
    this.revision = o.revision;
    this.host = o.host ?? '127.0.0.1';
    this.clock = o.clock ?? systemClock;
    this.server.addService(greeterService, {
      sayHello: (call: grpc.ServerUnaryCall<HelloRequest, HelloReply>, cb: grpc.sendUnaryData<HelloReply>) => {
        this.later(call.request.delayMs ?? 0, () => {
          this.served++;
          cb(null, this.reply(call.request.name));
        });
      },
      sayHellos: (call: grpc.ServerWritableStream<HelloRequest, HelloReply>) => {
        const count = Math.max(0, call.request.count ?? 1);
        let sent = 0;
        const next = () => {
          if (call.cancelled) return;
          if (sent === count) {
            this.served++;
            call.end();
            return;
          }
          call.write(this.reply(`${call.request.name} #${++sent}`));
          this.later(call.request.delayMs ?? 0, next);
        };
        next();
      },
      chat: (call: grpc.ServerDuplexStream<HelloRequest, HelloReply>) => {
        call.on('data', (req: HelloRequest) => call.write(this.reply(req.name)));
        call.on('end', () => {
          this.served++;
          call.end();
        });
        call.on('error', () => undefined);
      },
    });
    this.server.addService(healthService, {
      check: (call: grpc.ServerUnaryCall<{ service: string }, { status: number }>, cb: grpc.sendUnaryData<{ status: number }>) => {
        const service = call.request.service;
        if (service === '' || service === GREETER_SERVICE) cb(null, { status: SERVING });
        else cb({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
      },
    });
  }

  private reply(name: string): HelloReply {
    return { message: `Konnichiwa ${name} from ${this.name} in ${this.node}`, pod: this.name };
  }

  private later(ms: number, fn: () => void): void {
    if (ms <= 0) return fn();
    const t = this.clock.after(ms, () => {
      this.timers.delete(t);
      if (!this.dead) fn();
    });
    this.timers.add(t);
  }

  async start(): Promise<number> {
    this.boundPort = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${this.host}:0`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
    return this.boundPort;
  }

  get address(): { host: string; port: number } {
    return { host: this.host, port: this.boundPort };
  }

  get isReady(): boolean {
    return !this.dead;
  }

  /** A dead pod: every connection and call cut at once. */
  kill(): void {
    if (this.dead) return;
    this.dead = true;
    for (const t of this.timers) t.cancel();
    this.timers.clear();
    this.server.forceShutdown();
  }

  /** Stop taking calls; open ones get up to `graceMs`. */
  async close(graceMs = 1000): Promise<void> {
    if (this.dead) return;
    const timer = setTimeout(() => this.kill(), graceMs);
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    clearTimeout(timer);
    this.kill();
  }
}
