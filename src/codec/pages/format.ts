/**
 * The page frame of the HDE page pipeline (docs/PROTOCOL.md §14): one
 * self-describing frame per batch of a memory or disk image's pages. The
 * layout, the page kinds and the header check live here alone, so the encoder
 * and both decoders read one description of the wire and cannot drift apart.
 *
 * Per page: zero pages are elided; a page equal to the receiver's baseline
 * page is sent as SAME; a page equal to an earlier page of this image is sent as
 * a reference (DUP, checked byte for byte, never trusted to the hash alone);
 * a changed page with a baseline is XORed against it (DELTA, or SPARSE as its
 * runs); anything else goes whole (FULL). DELTA and FULL bytes are compressed
 * together with the batch's codec. Every page carries the XXH3-64 of its final
 * contents, which the receiver checks after rebuilding it: a wrong baseline, a
 * corrupt payload or a bug can cost an error and a resend, never a wrong page.
 */
import { DWCPError } from "../../errors.js";
import { crc32c, xxh3_64 } from "../../hash/index.js";

/** The frame's magic, "DWPG". */
export const PAGE_FRAME_MAGIC = 0x47505744;
export const PAGE_FRAME_VERSION = 1;
export const PAGE_FRAME_HEADER = 72;

/**
 * The largest page size encoders write and decoders accept unless told
 * otherwise: 1 MiB (a page is the unit of deltas, not the VM's page; larger
 * pages only make deltas coarser, and each costs page-sized scratch buffers).
 */
export const MAX_PAGE_SIZE = 1 << 20;

/** Page indices are u32 on the wire (references); the u64 first-page field must stay below this. */
const MAX_PAGES = 0x1_0000_0000;

/** Codec ids inside a page frame. */
export const PageCodec = { NONE: 0, LZ4: 1, ZSTD: 2 } as const;
/** One of {@link PageCodec}'s ids. */
export type PageCodecId = (typeof PageCodec)[keyof typeof PageCodec];

/** What a page of a frame is. */
export const PageKind = { ZERO: 0, SAME: 1, DUP: 2, FULL: 3, DELTA: 4, SPARSE: 5 } as const;

/**
 * `out = a ^ b`, returning how many bytes fall in non-zero 4-byte groups: the
 * one transform of DELTA pages, applied by the encoder to make them and by the
 * decoder to undo them.
 */
export function xorInto(out: Uint8Array, a: Uint8Array, b: Uint8Array): number {
  // Word-wise when aligned (the common case: pages at page offsets).
  let nonZero = 0;
  if ((a.byteOffset | b.byteOffset | out.byteOffset) % 4 === 0 && a.length % 4 === 0) {
    const x = new Uint32Array(out.buffer, out.byteOffset, a.length >> 2);
    const y = new Uint32Array(a.buffer, a.byteOffset, a.length >> 2);
    const z = new Uint32Array(b.buffer, b.byteOffset, b.length >> 2);
    for (let i = 0; i < x.length; i++) {
      const v = (y[i]! ^ z[i]!) >>> 0;
      x[i] = v;
      if (v !== 0) nonZero++;
    }
    return nonZero * 4;
  }
  // Counted per 4-byte group, like the aligned path and the native twin.
  for (let i = 0; i < a.length; i += 4) {
    let group = 0;
    for (let k = i; k < i + 4 && k < a.length; k++) {
      const v = a[k]! ^ b[k]!;
      out[k] = v;
      group |= v;
    }
    if (group !== 0) nonZero++;
  }
  return nonZero * 4;
}

/** XXH3-64 over a batch's baseline page hashes: both sides must hold the same baseline. */
export function baselineDigest(pageHashes: BigUint64Array): bigint {
  return xxh3_64(new Uint8Array(pageHashes.buffer, pageHashes.byteOffset, pageHashes.byteLength));
}

/** CRC-32C of the header without its CRC field, continued over the rest. */
export function frameCrc(frame: Uint8Array): number {
  return crc32c(frame.subarray(68), crc32c(frame.subarray(0, 64)));
}

/** Header facts of a page frame (validated). */
export interface PageFrameInfo {
  codec: PageCodecId;
  pageSize: number;
  pageCount: number;
  dictId: number;
  imageId: number;
  version: number;
  baseVersion: number;
  firstPage: number;
  /** What the payload decodes to, within what the header's counts allow. */
  rawLength: number;
}

/** Local limits of {@link readPageFrame}. */
export interface ReadPageFrameOptions {
  /** Largest page size accepted. @default 1 MiB ({@link MAX_PAGE_SIZE}) */
  maxPageSize?: number;
}

/**
 * Reads and checks a page frame's header and checksum: page size, first page,
 * counts and claimed decoded length against each other, all before the
 * checksum pass and before anything is allocated.
 * @throws DWCPError `ERR_CORRUPT_PAYLOAD`
 */
export function readPageFrame(frame: Uint8Array, o: ReadPageFrameOptions = {}): PageFrameInfo {
  if (frame.length < PAGE_FRAME_HEADER)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame truncated in its header");
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (v.getUint32(0, true) !== PAGE_FRAME_MAGIC)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "not a page frame");
  if (v.getUint8(4) !== PAGE_FRAME_VERSION)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", `page frame version ${v.getUint8(4)}`);
  // Every field a peer controls is checked before anything is sized from it.
  const codec = v.getUint8(5);
  if (codec > PageCodec.ZSTD) throw new DWCPError("ERR_CORRUPT_PAYLOAD", `unknown page codec ${codec}`);
  const pageSize = v.getUint32(8, true);
  const maxPageSize = o.maxPageSize ?? MAX_PAGE_SIZE;
  if (pageSize < 64 || pageSize % 8 !== 0 || pageSize > maxPageSize)
    throw new DWCPError(
      "ERR_CORRUPT_PAYLOAD",
      `page size ${pageSize} is not a multiple of 8 from 64 to ${maxPageSize}`,
    );
  const count = v.getUint32(12, true);
  // The first page is a u64: its high word must be zero (page indices are u32).
  const first = v.getUint32(32, true);
  if (v.getUint32(36, true) !== 0 || first + count > MAX_PAGES)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame's first page is beyond 2^32 pages");
  const refs = v.getUint32(40, true);
  const payload = v.getUint32(44, true);
  const rawLength = v.getUint32(48, true);
  const hashed = v.getUint32(52, true);
  // Hashed pages (FULL, DELTA, SPARSE) and references (DUP) are distinct pages of the batch.
  if (hashed + refs > count)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "more hashed and repeated pages than pages");
  // Each hashed page brings at least 2 bytes (an empty SPARSE page), at most a page.
  const least = count + refs * 4 + hashed * 2;
  if (rawLength < least || rawLength > pageFrameRawBound(pageSize, count, refs, hashed))
    throw new DWCPError(
      "ERR_CORRUPT_PAYLOAD",
      `page frame claims ${rawLength} decoded bytes; ${count} pages (${hashed} with bytes, ${refs} references) ` +
        `make ${least}–${pageFrameRawBound(pageSize, count, refs, hashed)}`,
    );
  if (codec === PageCodec.NONE && payload !== rawLength)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame payload has the wrong size");
  if (PAGE_FRAME_HEADER + hashed * 8 + payload !== frame.length)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame length does not match its header (truncated?)");
  if (v.getUint32(64, true) !== frameCrc(frame))
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame checksum mismatch");
  return {
    codec: codec as PageCodecId,
    pageSize,
    pageCount: count,
    dictId: v.getUint32(16, true),
    imageId: v.getUint32(20, true),
    version: v.getUint32(24, true),
    baseVersion: v.getUint32(28, true),
    firstPage: first,
    rawLength,
  };
}

/**
 * The most a page frame's payload can legitimately decode to: its map (a byte
 * per page), its references (4 bytes each) and a page of bytes per hashed page
 * (FULL and DELTA pages are a page, SPARSE pages less). Anything claiming more
 * is refused before a byte is decoded.
 */
export function pageFrameRawBound(pageSize: number, count: number, refs: number, hashed: number): number {
  return count + refs * 4 + hashed * pageSize;
}
