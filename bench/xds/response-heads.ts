// The heads of state-of-the-world DiscoveryResponses (version, type URL, nonce, how many
// resources) read from a gRPC response body chunk by chunk, as HTTP/2 delivers it. The
// resources' bytes are counted and skipped where they lie: no message is reassembled, so
// a 2.5 MB response costs a simulated gateway a few field headers, not a copy of 2.5 MB and
// the garbage it leaves.
//
// gRPC frames each message as a 1-byte compressed flag, a 4-byte big-endian length, then
// the message. Within it, fields are read with protobufjs's Reader; an item cut by a chunk
// boundary (the frame prefix, a field's tag and length, a head string) is kept and finished
// with the next chunk's first bytes.
import protobuf from 'protobufjs';
import { envoyProtos } from '../../xds/protos.js';

export interface ResponseHead {
  readonly version_info: string;
  readonly type_url: string;
  readonly nonce: string;
  /** Resources in the response (occurrences of `resources`, left undecoded). */
  readonly resources: number;
  /** The message's length in bytes (without the gRPC frame prefix). */
  readonly bytes: number;
}

/** A body that is not a stream of uncompressed DiscoveryResponses. */
export class ResponseStreamError extends Error {}

const PREFIX_BYTES = 5;
const EMPTY = Buffer.alloc(0);

interface FieldIds {
  readonly version: number;
  readonly resources: number;
  readonly type: number;
  readonly nonce: number;
}

let ids: FieldIds | undefined;

function fieldIds(): FieldIds {
  if (ids) return ids;
  const f = envoyProtos().type('envoy.service.discovery.v3.DiscoveryResponse').fields;
  ids = { version: f.version_info!.id, resources: f.resources!.id, type: f.type_url!.id, nonce: f.nonce!.id };
  return ids;
}

/** readItem's answer when the bytes at hand end inside the item: it needs the next chunk. */
const INCOMPLETE = 0;

export class ResponseHeadReader {
  private readonly ids = fieldIds();
  /** The start of an item cut by the end of the last chunk. */
  private carry: Buffer = EMPTY;
  /** Bytes of the current message not read yet; -1 between messages. */
  private messageLeft = -1;
  private messageBytes = 0;
  /** Bytes of the current field's value still to skip. */
  private skipLeft = 0;
  private version = '';
  private type = '';
  private nonce = '';
  private resources = 0;

  constructor(private readonly onHead: (head: ResponseHead) => void) {}

  /** Reads one chunk of the body; calls onHead for every message it completes. Throws ResponseStreamError on a malformed body. */
  push(chunk: Buffer): void {
    let pos = 0;
    if (this.carry.length > 0) {
      pos = this.finishCarry(chunk);
      if (pos < 0) return;
    }
    const reader = protobuf.Reader.create(chunk);
    while (pos < chunk.length) {
      if (this.skipLeft > 0) {
        const n = Math.min(this.skipLeft, chunk.length - pos);
        pos += n;
        this.skipLeft -= n;
        this.messageLeft -= n;
        this.completeIfDone();
        continue;
      }
      const n = this.readItem(reader, chunk, pos);
      if (n === INCOMPLETE) {
        this.carry = Buffer.from(chunk.subarray(pos));
        return;
      }
      pos += n;
    }
  }

  /** The body ended: throws if it ended inside a message. */
  end(): void {
    if (this.messageLeft >= 0 || this.carry.length > 0) {
      throw new ResponseStreamError(`the response body ended inside a message (${this.messageLeft >= 0 ? `${this.messageLeft} of its ${this.messageBytes} bytes missing` : 'in its gRPC frame prefix'})`);
    }
  }

  /**
   * Completes the item the carry holds with as few of `chunk`'s first bytes as it needs;
   * returns where the rest of `chunk` starts, or -1 when `chunk` ended before the item did.
   */
  private finishCarry(chunk: Buffer): number {
    const carried = this.carry.length;
    for (let take = Math.min(chunk.length, 64); ; take = Math.min(chunk.length, take * 4)) {
      const joined = Buffer.concat([this.carry, chunk.subarray(0, take)]);
      const n = this.readItem(protobuf.Reader.create(joined), joined, 0);
      if (n !== INCOMPLETE) {
        this.carry = EMPTY;
        return n - carried;
      }
      if (take === chunk.length) {
        this.carry = joined;
        return -1;
      }
    }
  }

  /** Reads the item at `pos`: a frame prefix or a field's head. Returns the bytes it took, or INCOMPLETE. */
  private readItem(reader: protobuf.Reader, buf: Buffer, pos: number): number {
    if (this.messageLeft < 0) {
      if (buf.length - pos < PREFIX_BYTES) return INCOMPLETE;
      if (buf[pos] !== 0) throw new ResponseStreamError(`a compressed gRPC message (flag ${buf[pos]}): the gateway asked for none`);
      this.messageLeft = this.messageBytes = buf.readUInt32BE(pos + 1);
      this.completeIfDone();
      return PREFIX_BYTES;
    }
    const available = Math.min(buf.length - pos, this.messageLeft);
    reader.pos = pos;
    reader.len = pos + available;
    try {
      const tag = reader.uint32();
      const field = tag >>> 3;
      const wireType = tag & 7;
      const { version, resources, type, nonce } = this.ids;
      if (wireType === 2) {
        const length = reader.uint32();
        const start = reader.pos;
        if (length > this.messageLeft - (start - pos)) throw new ResponseStreamError(`field ${field} (${length} bytes) runs past the end of its ${this.messageBytes}-byte message`);
        if (field === version || field === type || field === nonce) {
          // (Reader.string() would cut a string the chunk ends inside of, not throw.)
          if (start + length > reader.len) return INCOMPLETE;
          const value = buf.toString('utf8', start, (reader.pos = start + length));
          if (field === version) this.version = value;
          else if (field === type) this.type = value;
          else this.nonce = value;
        } else {
          // A resource, or any other field: its bytes are skipped as they come.
          if (field === resources) this.resources += 1;
          this.skipLeft = length;
        }
      } else {
        reader.skipType(wireType);
      }
    } catch (err) {
      if (err instanceof ResponseStreamError) throw err;
      if (!(err instanceof RangeError)) throw new ResponseStreamError(`not a DiscoveryResponse: ${(err as Error).message}`);
      if (available === this.messageLeft) throw new ResponseStreamError(`a field runs past the end of its ${this.messageBytes}-byte message`);
      return INCOMPLETE;
    }
    const taken = reader.pos - pos;
    this.messageLeft -= taken;
    this.completeIfDone();
    return taken;
  }

  private completeIfDone(): void {
    if (this.messageLeft !== 0 || this.skipLeft !== 0) return;
    const head: ResponseHead = { version_info: this.version, type_url: this.type, nonce: this.nonce, resources: this.resources, bytes: this.messageBytes };
    this.messageLeft = -1;
    this.version = this.type = this.nonce = '';
    this.resources = 0;
    this.onHead(head);
  }
}
