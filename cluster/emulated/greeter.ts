// The greeter's gRPC service definitions (greeter.proto, encoded with protobufjs), shared
// by the emulated gRPC pods and the clients that call them (tests, `chikai grpc-call`).
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { messageCodec } from '../message-codec.js';

export interface HelloRequest {
  readonly name: string;
  readonly count?: number;
  readonly delayMs?: number;
}

export interface HelloReply {
  readonly message: string;
  readonly pod: string;
}

export interface HealthCheckRequest {
  readonly service: string;
}

/** grpc.health.v1 HealthCheckResponse.ServingStatus. */
export const SERVING = 1;

export interface HealthCheckResponse {
  readonly status: number;
}

const root = new protobuf.Root().loadSync(fileURLToPath(new URL('../../../cluster/emulated/greeter.proto', import.meta.url)), { keepCase: false });

const codec = <T extends object>(name: string) => messageCodec<T>(root.lookupType(name), { defaults: true, enums: Number });

function method<Req extends object, Res extends object>(path: string, req: string, res: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Req, Res> {
  const q = codec<Req>(req);
  const r = codec<Res>(res);
  return { path, requestStream, responseStream, requestSerialize: q.serialize, requestDeserialize: q.deserialize, responseSerialize: r.serialize, responseDeserialize: r.deserialize };
}

export const GREETER_SERVICE = 'chikai.greeter.v1.Greeter';
const REQ = 'chikai.greeter.v1.HelloRequest';
const REPLY = 'chikai.greeter.v1.HelloReply';

export const greeterService = {
  sayHello: method<HelloRequest, HelloReply>(`/${GREETER_SERVICE}/SayHello`, REQ, REPLY, false, false),
  sayHellos: method<HelloRequest, HelloReply>(`/${GREETER_SERVICE}/SayHellos`, REQ, REPLY, false, true),
  chat: method<HelloRequest, HelloReply>(`/${GREETER_SERVICE}/Chat`, REQ, REPLY, true, true),
} satisfies grpc.ServiceDefinition;

export const healthService = {
  check: method<HealthCheckRequest, HealthCheckResponse>('/grpc.health.v1.Health/Check', 'chikai.greeter.v1.HealthCheckRequest', 'chikai.greeter.v1.HealthCheckResponse', false, false),
} satisfies grpc.ServiceDefinition;

/** A typed greeter client; `authority` is the Host chikai routes by (e.g. greeter.default.svc.cluster.local). */
export interface GreeterClient extends grpc.Client {
  sayHello(req: HelloRequest, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: HelloReply) => void): grpc.ClientUnaryCall;
  sayHellos(req: HelloRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<HelloReply>;
  chat(options?: grpc.CallOptions): grpc.ClientDuplexStream<HelloRequest, HelloReply>;
}

export interface HealthClient extends grpc.Client {
  check(req: HealthCheckRequest, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: HealthCheckResponse) => void): grpc.ClientUnaryCall;
}

const GreeterCtor = grpc.makeGenericClientConstructor(greeterService, 'Greeter');
const HealthCtor = grpc.makeGenericClientConstructor(healthService, 'Health');

function channelOptions(authority: string): grpc.ChannelOptions {
  return { 'grpc.default_authority': authority };
}

export function greeterClient(address: string, authority: string): GreeterClient {
  return new GreeterCtor(address, grpc.credentials.createInsecure(), channelOptions(authority)) as unknown as GreeterClient;
}

export function healthClient(address: string, authority: string): HealthClient {
  return new HealthCtor(address, grpc.credentials.createInsecure(), channelOptions(authority)) as unknown as HealthClient;
}

/** A unary SayHello as a promise. */
export function sayHello(client: GreeterClient, req: HelloRequest, options: grpc.CallOptions = {}): Promise<HelloReply> {
  return new Promise((resolve, reject) => client.sayHello(req, options, (err, res) => (err ? reject(err) : resolve(res!))));
}

export function healthCheck(client: HealthClient, service = ''): Promise<HealthCheckResponse> {
  return new Promise((resolve, reject) => client.check({ service }, {}, (err, res) => (err ? reject(err) : resolve(res!))));
}
