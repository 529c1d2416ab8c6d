// Hostile page and codec frames, built field by field (no encoder involved), for
// the native hardening tests and the fuzz seed generator. Everything here is
// what a peer may put on the wire; nothing is checked.
import { xxhash32 } from "hash-wasm";
import { crc32c, xxh3_64 } from "../../src/hash/index.js";

/** The header fields of a page frame (docs/PROTOCOL.md §14), all free to lie. */
export interface PageFrameFields {
  codec?: number;
  pageSize?: number;
  count: number;
  dictId?: number;
  imageId?: number;
  version?: number;
  baseVersion?: number;
  /** The u64 first-page field, whole (high half included). */
  firstPage?: bigint;
  refCount?: number;
  /** Defaults to the payload's length. */
  payloadLength?: number;
  /** Defaults to the payload's length for codec 0. */
  rawLength?: number;
  baseDigest?: bigint;
  /** XXH3-64 of each FULL/DELTA/SPARSE page after decoding. */
  hashes?: readonly bigint[];
  /** The number of hashes the header claims. @default hashes.length */
  hashCount?: number;
  payload: Uint8Array;
}

/** A page frame with these fields and a correct CRC-32C (so only the fields are wrong). */
export function pageFrame(f: PageFrameFields): Uint8Array {
  const hashes = f.hashes ?? [];
  const frame = new Uint8Array(72 + hashes.length * 8 + f.payload.length);
  const v = new DataView(frame.buffer);
  v.setUint32(0, 0x47505744, true);
  v.setUint8(4, 1);
  v.setUint8(5, f.codec ?? 0);
  v.setUint32(8, f.pageSize ?? 4096, true);
  v.setUint32(12, f.count, true);
  v.setUint32(16, f.dictId ?? 0, true);
  v.setUint32(20, f.imageId ?? 1, true);
  v.setUint32(24, f.version ?? 2, true);
  v.setUint32(28, f.baseVersion ?? 0, true);
  v.setBigUint64(32, f.firstPage ?? 0n, true);
  v.setUint32(40, f.refCount ?? 0, true);
  v.setUint32(44, f.payloadLength ?? f.payload.length, true);
  v.setUint32(48, f.rawLength ?? f.payload.length, true);
  v.setUint32(52, f.hashCount ?? hashes.length, true);
  v.setBigUint64(56, f.baseDigest ?? 0n, true);
  for (const [i, h] of hashes.entries()) v.setBigUint64(72 + 8 * i, h, true);
  frame.set(f.payload, 72 + hashes.length * 8);
  return withCrc(frame);
}

/** Writes a page frame's CRC-32C again (after a header field was changed). */
export function withCrc(frame: Uint8Array): Uint8Array {
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  v.setUint32(64, crc32c(frame.subarray(68), crc32c(frame.subarray(0, 64))), true);
  return frame;
}

/** One FULL page of `page`'s bytes, uncompressed: map [3] then the page. */
export function fullPageFrame(page: Uint8Array, o: Partial<PageFrameFields> = {}): Uint8Array {
  const payload = new Uint8Array(1 + page.length);
  payload[0] = 3;
  payload.set(page, 1);
  return pageFrame({ count: 1, pageSize: page.length, hashes: [xxh3_64(page)], payload, ...o });
}

/** XXH3-64 over the XXH3-64s of `pages` baseline pages: a page frame's baseline digest. */
export function baselineDigest(pageHashes: BigUint64Array): bigint {
  return xxh3_64(new Uint8Array(pageHashes.buffer, pageHashes.byteOffset, pageHashes.byteLength));
}

/**
 * A zstd frame of `blocks` RLE blocks of `blockSize` bytes of `byte` (4 bytes each
 * on the wire), declaring `contentSize`: what it really decodes to is blocks ×
 * blockSize, whatever it declares. RFC 8878 §3.1.1: single segment, 8-byte
 * content size, no checksum, no dictionary.
 */
export function zstdRleFrame(
  contentSize: bigint,
  blocks: number,
  blockSize = 128 * 1024,
  byte = 0,
): Uint8Array {
  const out = new Uint8Array(4 + 1 + 8 + blocks * 4);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0xfd2fb528, true);
  out[4] = 0xe0; // FCS flag 3 (8 bytes), single segment
  v.setBigUint64(5, contentSize, true);
  for (let i = 0; i < blocks; i++) {
    const last = i === blocks - 1 ? 1 : 0;
    const h = (blockSize << 3) | (1 << 1) | last; // type 1: RLE
    const at = 13 + 4 * i;
    out[at] = h & 0xff;
    out[at + 1] = (h >>> 8) & 0xff;
    out[at + 2] = (h >>> 16) & 0xff;
    out[at + 3] = byte;
  }
  return out;
}

/** A zstd frame of one raw block carrying `data`, declaring `contentSize`. */
export function zstdRawFrame(contentSize: bigint, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(13 + 3 + data.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0xfd2fb528, true);
  out[4] = 0xe0;
  v.setBigUint64(5, contentSize, true);
  const h = (data.length << 3) | 1; // type 0: raw, last
  out[13] = h & 0xff;
  out[14] = (h >>> 8) & 0xff;
  out[15] = (h >>> 16) & 0xff;
  out.set(data, 16);
  return out;
}

/**
 * An LZ4 frame (`lz4` with a content size, as DWCP writes them) with its declared
 * content size replaced by `size` and the descriptor checksum recomputed, so the
 * header is well-formed and lies.
 */
export async function lz4WithDeclaredSize(frame: Uint8Array, size: bigint): Promise<Uint8Array> {
  const out = new Uint8Array(frame);
  if ((out[4]! & 0x08) === 0) throw new Error("the frame has no content size field");
  new DataView(out.buffer).setBigUint64(6, size, true);
  const hc = Number.parseInt(await xxhash32(out.subarray(4, 14), 0), 16);
  out[14] = (hc >>> 8) & 0xff;
  return out;
}

/**
 * An LZ4 frame without a content size: the 7-byte descriptor (independent 4 MiB
 * blocks) and the blocks of an LZ4 frame `withSize` that has one.
 */
export async function lz4WithoutSize(withSize: Uint8Array): Promise<Uint8Array> {
  const out = new Uint8Array(withSize.length - 8);
  out.set(withSize.subarray(0, 6), 0);
  out[4] = withSize[4]! & ~0x08;
  const hc = Number.parseInt(await xxhash32(out.subarray(4, 6), 0), 16);
  out[6] = (hc >>> 8) & 0xff;
  out.set(withSize.subarray(15), 7);
  return out;
}
