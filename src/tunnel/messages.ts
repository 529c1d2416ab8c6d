/**
 * The tunnel protocol's messages (docs/PROTOCOL.md §16). Like the migration's,
 * they travel as ordinary link messages: the link orders, acknowledges and
 * carries them across generation switches. A fixed little-endian header names
 * the channel and who opened it; everything after it is read from a peer and
 * checked against the message before use.
 */
import { DWCPError } from "../errors.js";

/** "DWTN", little-endian: the first four bytes of every tunnel message. */
export const TUNNEL_MAGIC = 0x4e545744;
/** Magic, type, flags, two reserved bytes, channel id. */
export const TUNNEL_HEADER = 12;
/** Most bytes of stream one DATA message carries, before and after compression. */
export const MAX_CHUNK = 1 << 20;
/** Longest OPEN label and RESET reason, bytes. */
export const MAX_TEXT = 1024;

/** Message types. */
export const TunnelMessage = {
  /** Opener → peer: a new channel; the payload is its label (UTF-8). */
  OPEN: 1,
  /** Either way: stream bytes, raw or compressed as the flags say. */
  DATA: 2,
  /** Either way: u32, stream bytes the sender of CREDIT has handed on since its last CREDIT. */
  CREDIT: 3,
  /** Either way: this direction of the stream has ended (a half-close). */
  END: 4,
  /** Either way: the channel is torn down; the payload is a code, a space and a reason. */
  RESET: 5,
} as const;
export type TunnelMessageType = (typeof TunnelMessage)[keyof typeof TunnelMessage];

/** Flag: the sender of the message opened the channel (ids are per opener). */
export const FROM_OPENER = 0x01;
/** DATA's codec, in flag bits 4–5. */
export const Codec = { none: 0, lz4: 1, zstd: 2 } as const;
export type CodecName = keyof typeof Codec;
const CODEC_SHIFT = 4;
const CODEC_MASK = 0x30;

/** A decoded tunnel message. */
export interface Decoded {
  type: TunnelMessageType;
  channel: number;
  fromOpener: boolean;
  /** DATA only. */
  codec: number;
  /** The payload: a view of the message (lent like it). */
  body: Uint8Array;
}

/** Whether a link message belongs to the tunnel protocol. */
export function isTunnelMessage(data: Uint8Array): boolean {
  return (
    data.length >= TUNNEL_HEADER &&
    (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0 === TUNNEL_MAGIC
  );
}

/** Encodes a message; `body` is copied after the header. */
export function encodeTunnel(
  type: TunnelMessageType,
  channel: number,
  fromOpener: boolean,
  body: Uint8Array = new Uint8Array(0),
  codec = 0,
): Uint8Array {
  const out = new Uint8Array(TUNNEL_HEADER + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, TUNNEL_MAGIC, true);
  v.setUint8(4, type);
  v.setUint8(5, (fromOpener ? FROM_OPENER : 0) | (codec << CODEC_SHIFT));
  v.setUint32(8, channel >>> 0, true);
  out.set(body, TUNNEL_HEADER);
  return out;
}

export function encodeCredit(channel: number, fromOpener: boolean, bytes: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, bytes >>> 0, true);
  return encodeTunnel(TunnelMessage.CREDIT, channel, fromOpener, b);
}

export function encodeText(
  type: typeof TunnelMessage.OPEN | typeof TunnelMessage.RESET,
  channel: number,
  fromOpener: boolean,
  text: string,
): Uint8Array {
  let b = new TextEncoder().encode(text);
  if (b.length > MAX_TEXT) b = b.subarray(0, MAX_TEXT);
  return encodeTunnel(type, channel, fromOpener, b);
}

/**
 * Reads a tunnel message's header and checks what can be checked without the
 * channel's state.
 * @throws DWCPError `ERR_PROTOCOL`
 */
export function decodeTunnel(data: Uint8Array): Decoded {
  if (!isTunnelMessage(data)) throw new DWCPError("ERR_PROTOCOL", "not a tunnel message");
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const type = v.getUint8(4);
  const flags = v.getUint8(5);
  const body = data.subarray(TUNNEL_HEADER);
  if (type < TunnelMessage.OPEN || type > TunnelMessage.RESET)
    throw new DWCPError("ERR_PROTOCOL", `tunnel message type ${type}`);
  if ((flags & ~(FROM_OPENER | CODEC_MASK)) !== 0 || v.getUint16(6, true) !== 0)
    throw new DWCPError("ERR_PROTOCOL", "reserved tunnel header bits set");
  const codec = (flags & CODEC_MASK) >> CODEC_SHIFT;
  if (codec !== 0 && type !== TunnelMessage.DATA)
    throw new DWCPError("ERR_PROTOCOL", "a codec on a message other than DATA");
  if (codec > Codec.zstd) throw new DWCPError("ERR_PROTOCOL", `tunnel codec ${codec}`);
  const limit =
    type === TunnelMessage.DATA
      ? MAX_CHUNK
      : type === TunnelMessage.CREDIT
        ? 4
        : type === TunnelMessage.END
          ? 0
          : MAX_TEXT;
  if (body.length > limit || (type === TunnelMessage.CREDIT && body.length !== 4))
    throw new DWCPError("ERR_PROTOCOL", `a tunnel message of type ${type} with ${body.length} payload bytes`);
  if (type === TunnelMessage.DATA && body.length === 0)
    throw new DWCPError("ERR_PROTOCOL", "an empty DATA message");
  return {
    type: type as TunnelMessageType,
    channel: v.getUint32(8, true),
    fromOpener: (flags & FROM_OPENER) !== 0,
    codec,
    body,
  };
}

/** CREDIT's byte count. */
export function creditOf(body: Uint8Array): number {
  return new DataView(body.buffer, body.byteOffset, 4).getUint32(0, true);
}

/** OPEN's label or RESET's text, decoded leniently (it is only shown). */
export function textOf(body: Uint8Array): string {
  return new TextDecoder("utf-8", { fatal: false }).decode(body);
}
