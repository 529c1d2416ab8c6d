/**
 * The byte-level reader and writer of the BFT wire and storage formats: fixed
 * big-endian integers and length-prefixed fields, every length checked against
 * what is left before anything is allocated, so a hostile length costs nothing.
 */
import { DWCPError } from "../../errors.js";

const textEncoder = new TextEncoder();
// fatal: a client id that is not valid UTF-8 is refused rather than silently rewritten,
// since two replicas must read the same bytes as the same string.
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** Appends fields to a growing buffer. */
export class Writer {
  #buf = new Uint8Array(256);
  #len = 0;

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
  }

  u8(v: number): this {
    this.#room(1);
    this.#buf[this.#len++] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    this.#room(2);
    this.#buf[this.#len++] = (v >>> 8) & 0xff;
    this.#buf[this.#len++] = v & 0xff;
    return this;
  }

  u32(v: number): this {
    this.#room(4);
    this.#buf[this.#len++] = (v >>> 24) & 0xff;
    this.#buf[this.#len++] = (v >>> 16) & 0xff;
    this.#buf[this.#len++] = (v >>> 8) & 0xff;
    this.#buf[this.#len++] = v & 0xff;
    return this;
  }

  /** An integer in [0, 2^53) as 8 bytes. */
  u64(v: number): this {
    return this.u32(Math.floor(v / 0x1_0000_0000)).u32(v >>> 0);
  }

  bytes(b: Uint8Array): this {
    this.#room(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    return this;
  }

  /** A UTF-8 string behind a one-byte length. */
  str8(s: string): this {
    const b = textEncoder.encode(s);
    if (b.length > 0xff) throw new DWCPError("ERR_INVALID_ARG", "string longer than 255 bytes");
    return this.u8(b.length).bytes(b);
  }

  /** A string of at most 65,535 UTF-8 bytes behind a two-byte length. */
  str16(s: string): this {
    const b = textEncoder.encode(s);
    if (b.length > 0xffff)
      throw new DWCPError("ERR_INVALID_ARG", `a string of ${b.length} bytes exceeds 65535`);
    return this.u16(b.length).bytes(b);
  }

  /** Bytes behind a four-byte length. */
  blob32(b: Uint8Array): this {
    return this.u32(b.length).bytes(b);
  }

  get length(): number {
    return this.#len;
  }

  finish(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }
}

/** Reads fields off a buffer; running past its end is `ERR_BAD_FRAME`. */
export class Reader {
  #pos = 0;
  constructor(readonly buf: Uint8Array) {}

  get pos(): number {
    return this.#pos;
  }

  get left(): number {
    return this.buf.length - this.#pos;
  }

  #need(n: number, what: string): void {
    if (n > this.left)
      throw new DWCPError("ERR_BAD_FRAME", `truncated ${what}: ${n} bytes needed, ${this.left} left`);
  }

  u8(what = "byte"): number {
    this.#need(1, what);
    return this.buf[this.#pos++]!;
  }

  u16(what = "u16"): number {
    this.#need(2, what);
    const b = this.buf;
    const p = this.#pos;
    this.#pos += 2;
    return (b[p]! << 8) | b[p + 1]!;
  }

  u32(what = "u32"): number {
    this.#need(4, what);
    const b = this.buf;
    const p = this.#pos;
    this.#pos += 4;
    return ((b[p]! << 24) >>> 0) + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);
  }

  /** An integer written by {@link Writer.u64}; above 2^53 - 1 is `ERR_BAD_FRAME`. */
  u64(what = "u64"): number {
    const hi = this.u32(what);
    const lo = this.u32(what);
    if (hi > 0x1f_ffff) throw new DWCPError("ERR_BAD_FRAME", `${what} out of range`);
    return hi * 0x1_0000_0000 + lo;
  }

  /** `n` bytes, copied (the caller may keep them after the buffer is reused). */
  bytes(n: number, what = "bytes"): Uint8Array {
    this.#need(n, what);
    const out = this.buf.slice(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  str8(what = "string"): string {
    const n = this.u8(what);
    const b = this.bytes(n, what);
    try {
      return textDecoder.decode(b);
    } catch {
      throw new DWCPError("ERR_BAD_FRAME", `${what} is not valid UTF-8`);
    }
  }

  str16(what = "string"): string {
    const b = this.bytes(this.u16(what), what);
    try {
      return textDecoder.decode(b);
    } catch {
      throw new DWCPError("ERR_BAD_FRAME", `${what} is not valid UTF-8`);
    }
  }

  /** Bytes behind a four-byte length of at most `max`. */
  blob32(max: number, what = "blob"): Uint8Array {
    const n = this.u32(what);
    if (n > max) throw new DWCPError("ERR_BAD_FRAME", `${what} of ${n} bytes exceeds ${max}`);
    return this.bytes(n, what);
  }

  /** Fails unless every byte was read: trailing bytes would make two encodings of one message. */
  end(what: string): void {
    if (this.left !== 0) throw new DWCPError("ERR_BAD_FRAME", `${this.left} trailing bytes after ${what}`);
  }
}

/** Equal contents. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Lower-case hex, for map keys and traces. */
export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}
