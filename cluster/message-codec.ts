// One protobuf message type as a gRPC method's (de)serializer, encoded with protobufjs: the
// xDS and LRS services (Envoy's protos) and the emulated greeter (its own proto) share it.
import type protobuf from 'protobufjs';

export interface MessageCodec<T> {
  serialize(m: T): Buffer;
  deserialize(b: Buffer): T;
}

export function messageCodec<T extends object>(type: protobuf.Type, decode: protobuf.IConversionOptions): MessageCodec<T> {
  return {
    serialize: (m) => Buffer.from(type.encode(type.fromObject(m as Record<string, unknown>)).finish()),
    deserialize: (b) => type.toObject(type.decode(b), decode) as T,
  };
}
