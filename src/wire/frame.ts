/**
 * Frames: a fixed 32-byte little-endian header, then the payload
 * (docs/PROTOCOL.md §3).
 *
 * ```
 *  0  u8   type        1 DATA, 2 CONTROL (session); 3–8 AMST stream frames (§12)
 *  1  u8   flags       bit 0 END (last frame of its message), bit 1 BATCH; others: send 0, ignore
 *  2  u16  stream id
 *  4  u32  payload length
 *  8  u64  message id
 * 16  u64  offset      byte offset of this payload within its message
 * 24  u8   codec id    0 = none
 * 25  u8×3 reserved    send 0, ignore
 * 28  u32  CRC-32C     over header bytes 0..27, continued over the payload
 * ```
 */
import { timingSafeEqual } from "node:crypto";
import { DWCPError } from "../errors.js";
import { crc32c } from "../hash/index.js";
import { type FrameMac, TAG_SIZE } from "./integrity.js";

export const HEADER_SIZE = 32;

export const FrameType = {
  DATA: 1,
  CONTROL: 2,
  /** AMST: a chunk of the striped byte stream (offset = its position in that stream). */
  SEGMENT: 3,
  /** AMST: cumulative acknowledgement (offset = bytes delivered in order). */
  SEGMENT_ACK: 4,
  /** AMST: stream open / join request and its answer. */
  STREAM_OPEN: 5,
  /** AMST: end of the striped stream (offset = its total length). */
  STREAM_FIN: 6,
  /** AMST: the sender takes this stream out of the bundle (autotune, not a failure). */
  STREAM_RETIRE: 7,
  /** AMST: the bundle is torn down (abort). */
  STREAM_RESET: 8,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

/** Frame types a session accepts; anything else on a session is malformed. */
export const SESSION_FRAME_TYPES: ReadonlySet<number> = new Set([FrameType.DATA, FrameType.CONTROL]);

/**
 * Frame flags. `BATCH` (with `END`): the payload is several whole small messages,
 * each a u32 LE length then its bytes, with consecutive ids from the frame's
 * message id (docs/PROTOCOL.md §7).
 */
export const FrameFlags = { END: 1, BATCH: 2 } as const;

export interface FrameHeader {
  type: FrameTypeValue;
  flags: number;
  streamId: number;
  length: number;
  /** Message id; below 2^53 in practice, carried as a u64. */
  messageId: number;
  offset: number;
  codecId: number;
}

export interface Frame extends FrameHeader {
  /** The payload, contiguous. Empty when `parts` is set. */
  payload: Uint8Array;
  /**
   * A DATA payload that arrived across several chunks, as views into them (no
   * copy). Control payloads are always contiguous.
   */
  parts?: Uint8Array[];
}

function setU64(v: DataView, at: number, x: number): void {
  v.setUint32(at, x >>> 0, true);
  v.setUint32(at + 4, Math.floor(x / 0x1_0000_0000), true);
}

function getU64(v: DataView, at: number): number {
  const hi = v.getUint32(at + 4, true);
  // Above 2^53 the value cannot be exact; no legitimate sender gets there.
  if (hi >= 0x20_0000) throw new DWCPError("ERR_BAD_FRAME", "u64 field above 2^53");
  return hi * 0x1_0000_0000 + v.getUint32(at, true);
}

/**
 * Encodes a header for `payload` (the CRC covers both). Returns a fresh 32-byte
 * array; the payload is not copied, so header and payload go out as two chunks.
 */
export function encodeHeader(h: Omit<FrameHeader, "length">, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  const v = new DataView(out.buffer);
  v.setUint8(0, h.type);
  v.setUint8(1, h.flags);
  v.setUint16(2, h.streamId, true);
  v.setUint32(4, payload.length, true);
  setU64(v, 8, h.messageId);
  setU64(v, 16, h.offset);
  v.setUint8(24, h.codecId);
  v.setUint32(28, crc32c(payload, crc32c(out.subarray(0, 28))), true);
  return out;
}

/** Like {@link encodeHeader} for a payload given as several parts (not joined). */
export function encodeHeaderParts(
  h: Omit<FrameHeader, "length">,
  parts: readonly Uint8Array[],
  length: number,
): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  const v = new DataView(out.buffer);
  v.setUint8(0, h.type);
  v.setUint8(1, h.flags);
  v.setUint16(2, h.streamId, true);
  v.setUint32(4, length, true);
  setU64(v, 8, h.messageId);
  setU64(v, 16, h.offset);
  v.setUint8(24, h.codecId);
  let crc = crc32c(out.subarray(0, 28));
  for (const p of parts) crc = crc32c(p, crc);
  v.setUint32(28, crc, true);
  return out;
}

/**
 * Header and tag of a frame whose payload ends in a MAC tag (`integrity: "mac"`):
 * the header's length counts the tag, the tag covers header bytes 0–27 and the
 * payload, and the CRC covers the payload and the tag. Sent as header, the
 * payload parts, then the tag.
 */
export function encodeSealed(
  h: Omit<FrameHeader, "length">,
  parts: readonly Uint8Array[],
  length: number,
  mac: FrameMac,
): { header: Uint8Array; tag: Uint8Array } {
  const header = new Uint8Array(HEADER_SIZE);
  const v = new DataView(header.buffer);
  v.setUint8(0, h.type);
  v.setUint8(1, h.flags);
  v.setUint16(2, h.streamId, true);
  v.setUint32(4, length + TAG_SIZE, true);
  setU64(v, 8, h.messageId);
  setU64(v, 16, h.offset);
  v.setUint8(24, h.codecId);
  const tag = mac.tag(header.subarray(0, 28), parts);
  let crc = crc32c(header.subarray(0, 28));
  for (const p of parts) crc = crc32c(p, crc);
  v.setUint32(28, crc32c(tag, crc), true);
  return { header, tag };
}

/** Header and payload in one buffer (tests, fuzzing, small control frames). */
export function encodeFrame(h: Omit<FrameHeader, "length">, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  out.set(encodeHeader(h, payload), 0);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** Parses and validates a header; the payload length is checked against `maxLength`. */
export function decodeHeader(
  b: Uint8Array,
  maxLength: number,
  types: ReadonlySet<number> = SESSION_FRAME_TYPES,
): FrameHeader {
  const v = new DataView(b.buffer, b.byteOffset, HEADER_SIZE);
  const type = v.getUint8(0) as FrameTypeValue;
  if (!types.has(type)) {
    throw new DWCPError("ERR_BAD_FRAME", `unknown frame type ${type}`);
  }
  const length = v.getUint32(4, true);
  if (length > maxLength) {
    throw new DWCPError(
      "ERR_FRAME_TOO_LARGE",
      `frame payload of ${length} bytes exceeds the limit of ${maxLength}`,
    );
  }
  return {
    type,
    flags: v.getUint8(1),
    streamId: v.getUint16(2, true),
    length,
    messageId: getU64(v, 8),
    offset: getU64(v, 16),
    codecId: v.getUint8(24),
  };
}

/** Decoder statistics, for tests and metrics. */
export interface DecoderStats {
  frames: number;
  bytes: number;
  /** Largest single allocation the decoder made (control payloads that spanned chunks). */
  largestAllocation: number;
}

/**
 * Streaming frame decoder: feed it chunks as they arrive (any split), take
 * complete, checksum-verified frames out.
 *
 * Memory is bounded by the limit in force: a header's length is checked
 * before any payload byte is buffered, so an oversize length costs nothing.
 * Payloads are returned as views into the pushed chunks, never copied, except
 * control payloads that span chunks (small; joined for the protobuf decoder).
 */
export class FrameDecoder {
  /** Largest payload accepted; may be raised after negotiation. */
  maxLength: number;
  readonly stats: DecoderStats = { frames: 0, bytes: 0, largestAllocation: 0 };
  private readonly headerBuf = new Uint8Array(HEADER_SIZE);
  private headerFill = 0;
  private header: FrameHeader | null = null;
  /** Views of the current payload when it spans chunks, and their running CRC. */
  private parts: Uint8Array[] | null = null;
  private partsCrc = 0;
  private payloadFill = 0;
  private chunk: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private failed: DWCPError | null = null;
  /**
   * Set once a session with `integrity: "mac"` is established: every later frame
   * must end in a valid tag (checked after its CRC), which is stripped.
   */
  mac: FrameMac | undefined;

  /**
   * @param types frame types this layer accepts (a session's by default); any
   *   other type fails the stream with `ERR_BAD_FRAME`
   */
  constructor(
    maxLength: number,
    private readonly types: ReadonlySet<number> = SESSION_FRAME_TYPES,
  ) {
    this.maxLength = maxLength;
  }

  /** The oldest view the decoder still holds into a pushed chunk (a partial payload), if any. */
  get held(): Uint8Array | undefined {
    return this.parts?.[0];
  }

  /** Bytes held for a partial frame. */
  get buffered(): number {
    return this.headerFill + this.payloadFill + (this.chunk.length - this.pos);
  }

  /**
   * Hands back the bytes pushed but not decoded (for a connection that stops
   * framing after its setup) and empties the decoder. Only between frames.
   */
  takeBuffered(): Uint8Array[] {
    if (this.header || this.headerFill > 0 || this.parts)
      throw new Error("FrameDecoder.takeBuffered in the middle of a frame");
    const rest = this.chunk.subarray(this.pos);
    this.chunk = new Uint8Array(0);
    this.pos = 0;
    return rest.length > 0 ? [rest] : [];
  }

  /** Adds a chunk; call {@link next} until it returns null before pushing more. */
  push(chunk: Uint8Array): void {
    if (this.pos < this.chunk.length)
      throw new Error("FrameDecoder.push before the previous chunk was drained");
    this.chunk = chunk;
    this.pos = 0;
  }

  /**
   * The next complete frame, or null when more bytes are needed.
   * @throws DWCPError (`ERR_BAD_FRAME`, `ERR_FRAME_TOO_LARGE`, `ERR_CHECKSUM`); the
   *   decoder stays failed afterwards, since the stream can no longer be trusted
   */
  next(): Frame | null {
    if (this.failed) throw this.failed;
    try {
      return this.step();
    } catch (err) {
      this.failed = err as DWCPError;
      this.chunk = new Uint8Array(0);
      this.pos = 0;
      this.parts = null;
      throw err;
    }
  }

  private step(): Frame | null {
    const c = this.chunk;
    if (!this.header) {
      if (this.headerFill === 0 && c.length - this.pos >= HEADER_SIZE) {
        this.header = decodeHeader(c.subarray(this.pos, this.pos + HEADER_SIZE), this.maxLength, this.types);
        this.headerBuf.set(c.subarray(this.pos, this.pos + HEADER_SIZE));
        this.pos += HEADER_SIZE;
      } else {
        const n = Math.min(HEADER_SIZE - this.headerFill, c.length - this.pos);
        this.headerBuf.set(c.subarray(this.pos, this.pos + n), this.headerFill);
        this.headerFill += n;
        this.pos += n;
        if (this.headerFill < HEADER_SIZE) return null;
        this.header = decodeHeader(this.headerBuf, this.maxLength, this.types);
      }
      this.headerFill = 0;
    }
    const h = this.header;
    const headerCrc = () => crc32c(this.headerBuf.subarray(0, 28));
    let payload: Uint8Array;
    let parts: Uint8Array[] | undefined;
    let crc: number;
    if (this.parts === null && c.length - this.pos >= h.length) {
      // Control payloads are copied: they are small, and what is decoded from them
      // (protobuf bytes fields) may keep views that must not point into a
      // transport's reused read buffers.
      payload =
        h.type === FrameType.CONTROL
          ? c.slice(this.pos, this.pos + h.length)
          : c.subarray(this.pos, this.pos + h.length);
      this.pos += h.length;
      crc = crc32c(payload, headerCrc());
    } else {
      if (this.parts === null) {
        this.parts = [];
        this.partsCrc = headerCrc();
        this.payloadFill = 0;
      }
      // Safe to hold: h.length was checked against maxLength in decodeHeader,
      // and the views keep at most that many bytes (plus the chunks' edges) alive.
      const n = Math.min(h.length - this.payloadFill, c.length - this.pos);
      const piece = c.subarray(this.pos, this.pos + n);
      this.parts.push(piece);
      this.partsCrc = crc32c(piece, this.partsCrc);
      this.payloadFill += n;
      this.pos += n;
      if (this.payloadFill < h.length) return null;
      crc = this.partsCrc;
      parts = this.parts;
      this.parts = null;
      this.payloadFill = 0;
      if (h.type === FrameType.CONTROL) {
        payload = Buffer.concat(parts, h.length);
        parts = undefined;
        if (h.length > this.stats.largestAllocation) this.stats.largestAllocation = h.length;
      } else {
        payload = EMPTY;
      }
    }
    this.header = null;
    const expected = new DataView(this.headerBuf.buffer).getUint32(28, true);
    if (crc !== expected) {
      throw new DWCPError(
        "ERR_CHECKSUM",
        `frame checksum mismatch (message ${h.messageId}, offset ${h.offset})`,
      );
    }
    this.stats.frames++;
    this.stats.bytes += HEADER_SIZE + h.length;
    if (this.mac) return this.open(h, payload, parts);
    return parts ? { ...h, payload, parts } : { ...h, payload };
  }

  /** Checks and strips the tag that ends an authenticated frame. */
  private open(h: FrameHeader, payload: Uint8Array, parts: Uint8Array[] | undefined): Frame {
    if (h.length < TAG_SIZE) throw new DWCPError("ERR_AUTH_FAILED", "frame too short for its MAC tag");
    const length = h.length - TAG_SIZE;
    let body: Uint8Array[];
    let tag: Uint8Array;
    if (!parts) {
      tag = payload.subarray(length);
      payload = payload.subarray(0, length);
      body = [payload];
    } else {
      // The tag may straddle the last chunks: keep the parts before it, copy it out.
      body = [];
      tag = new Uint8Array(TAG_SIZE);
      let at = 0;
      for (const p of parts) {
        const keep = Math.max(0, Math.min(p.length, length - at));
        if (keep > 0) body.push(keep === p.length ? p : p.subarray(0, keep));
        if (keep < p.length) tag.set(p.subarray(keep), at + keep - length);
        at += p.length;
      }
      parts = body;
    }
    const expected = this.mac!.tag(this.headerBuf.subarray(0, 28), body);
    if (tag.length !== TAG_SIZE || !timingSafeEqual(tag, expected)) {
      throw new DWCPError(
        "ERR_AUTH_FAILED",
        `frame authentication failed (message ${h.messageId}, offset ${h.offset})`,
      );
    }
    return parts ? { ...h, length, payload, parts } : { ...h, length, payload };
  }
}

const EMPTY = new Uint8Array(0);
