/**
 * The HDE page pipeline: memory or disk images cut into pages, sent as one
 * self-describing frame per batch (docs/PROTOCOL.md §14).
 *
 * Per page: zero pages are elided; a page equal to the receiver's baseline
 * page is sent as SAME; a page equal to an earlier page of this image is sent as
 * a reference (DUP, checked byte for byte, never trusted to the hash alone);
 * a changed page with a baseline is XORed against it (DELTA); anything else goes
 * whole (FULL). DELTA and FULL bytes are compressed together with the batch's
 * codec. Every page carries the XXH3-64 of its final contents, which the
 * receiver checks after rebuilding it: a wrong baseline, a corrupt payload or a
 * bug can cost an error and a resend, never a wrong page.
 *
 * A sender deltas only against a baseline the receiver acknowledged; the
 * receiver keeps baselines in a {@link BaselineStore} with a memory cap, and a
 * missing or evicted baseline is `ERR_BASELINE_MISSING`: the sender then sends
 * that image whole.
 */
import { DWCPError } from "../errors.js";
import { crc32c, hashPages, xxh3_64 } from "../hash/index.js";
import {
  DEFAULT_MAX_DECODED,
  lz4Compress,
  lz4Decompress,
  nativePageCoder,
  type ZstdDictionary,
  zstdCompress,
  zstdDecompress,
  zstdFrameDictId,
} from "./index.js";

const MAGIC = 0x47505744; // "DWPG"
const VERSION = 1;
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

/** Zero bytes that end a run of a SPARSE page (a shorter gap costs less inside the run). */
const SPARSE_GAP = 4;

/**
 * The runs of non-zero bytes of an XOR page, as a SPARSE page encodes them:
 * u16 run count, then per run u16 offset, u16 length and the bytes (the XOR
 * values). Runs end at SPARSE_GAP zero bytes or more. Returns the encoded size,
 * or Infinity past `limit` (then the page is not sent sparse).
 */
function sparseRuns(x: Uint8Array, limit: number, out?: Uint8Array): number {
  let size = 2;
  let runs = 0;
  const n = x.length;
  let i = 0;
  while (i < n) {
    if (x[i] === 0) {
      i++;
      continue;
    }
    const start = i;
    let end = i + 1;
    let j = i + 1;
    while (j < n) {
      if (x[j] !== 0) {
        end = ++j;
        continue;
      }
      let k = j;
      while (k < n && x[k] === 0) k++;
      if (k - j >= SPARSE_GAP || k === n) break;
      j = k;
    }
    const len = end - start;
    if (out) {
      out[size] = start & 0xff;
      out[size + 1] = start >>> 8;
      out[size + 2] = len & 0xff;
      out[size + 3] = len >>> 8;
      out.set(x.subarray(start, end), size + 4);
    }
    size += 4 + len;
    runs++;
    if (size > limit) return Number.POSITIVE_INFINITY;
    i = end;
  }
  if (out) {
    out[0] = runs & 0xff;
    out[1] = runs >>> 8;
  }
  return size;
}

/** How page frames are compressed; the caller picks one per path. */
export interface PagePolicy {
  codec: PageCodecId;
  level: number;
  dictionary?: ZstdDictionary;
}

/** Counters of one encoded batch. */
export interface BatchStats {
  pages: number;
  zero: number;
  same: number;
  dup: number;
  full: number;
  delta: number;
  /** Bytes of FULL and DELTA pages before compression, and the frame's size. */
  rawBytes: number;
  frameBytes: number;
}

function isZero(p: Uint8Array): boolean {
  const w = new BigUint64Array(p.buffer, p.byteOffset, p.byteLength >> 3);
  for (let i = 0; i < w.length; i++) if (w[i] !== 0n) return false;
  for (let i = w.length << 3; i < p.length; i++) if (p[i] !== 0) return false;
  return true;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

function xorInto(out: Uint8Array, a: Uint8Array, b: Uint8Array): number {
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

/** Options of {@link encodePages}. */
export interface EncodeOptions {
  imageId: number;
  /** Version of the image being sent (≥ 1). */
  version: number;
  /** @default 4096 */
  pageSize?: number;
  /** First page of the batch and how many. @default the whole image */
  firstPage?: number;
  pageCount?: number;
  /**
   * The receiver's acknowledged baseline of this image, if any; with `hashes`
   * (the XXH3-64 of each of its pages, kept from when it was sent) the encoder
   * does not hash it again.
   */
  baseline?: { version: number; image: Uint8Array; hashes?: BigUint64Array };
  policy?: PagePolicy;
}

/**
 * Encodes one batch of pages of `image` into a page frame.
 * @returns the frame and what went into it
 */
export function encodePages(image: Uint8Array, o: EncodeOptions): { frame: Uint8Array; stats: BatchStats } {
  const v = validate(image, o);
  const { pageSize, first, count, base } = v;
  const batch = image.subarray(first * pageSize, (first + count) * pageSize);
  const hashes = hashPages(batch, pageSize);
  const baseHashes = base
    ? (base.hashes?.subarray(first, first + count) ??
      hashPages(base.image.subarray(first * pageSize, (first + count) * pageSize), pageSize))
    : undefined;
  return encodeBatch(batch, hashes, baseHashes, o, v);
}

interface Validated {
  pageSize: number;
  first: number;
  count: number;
  base: EncodeOptions["baseline"];
  policy: PagePolicy;
}

function validate(image: Uint8Array, o: EncodeOptions): Validated {
  const pageSize = o.pageSize ?? 4096;
  if (!Number.isInteger(pageSize) || pageSize < 64 || pageSize % 8 !== 0 || pageSize > MAX_PAGE_SIZE)
    throw new DWCPError(
      "ERR_INVALID_ARG",
      `page size must be a multiple of 8 from 64 to ${MAX_PAGE_SIZE}, got ${pageSize}`,
    );
  if (image.length % pageSize !== 0)
    throw new DWCPError("ERR_INVALID_ARG", `image length ${image.length} is not a multiple of the page size`);
  if (!Number.isInteger(o.version) || o.version < 1)
    throw new DWCPError("ERR_INVALID_ARG", `image version must be a positive integer, got ${o.version}`);
  const total = image.length / pageSize;
  const first = o.firstPage ?? 0;
  const count = o.pageCount ?? total - first;
  if (!Number.isInteger(first) || !Number.isInteger(count) || first < 0 || count < 0 || first + count > total)
    throw new DWCPError("ERR_INVALID_ARG", `pages ${first}…${first + count} are outside the image`);
  const base = o.baseline;
  if (base && (base.image.length !== image.length || base.version >= o.version))
    throw new DWCPError(
      "ERR_INVALID_ARG",
      "a baseline must be an earlier version of an image of the same size",
    );
  if (base?.hashes && base.hashes.length !== total)
    throw new DWCPError("ERR_INVALID_ARG", "baseline hashes must cover every page of the baseline");
  const policy = o.policy ?? { codec: PageCodec.LZ4, level: 1 };
  const [lo, hi] =
    policy.codec === PageCodec.ZSTD ? [1, 19] : policy.codec === PageCodec.LZ4 ? [0, 12] : [0, 0];
  if (
    ![0, 1, 2].includes(policy.codec) ||
    !Number.isInteger(policy.level) ||
    policy.level < lo! ||
    policy.level > hi!
  )
    throw new DWCPError("ERR_INVALID_ARG", `bad page policy: codec ${policy.codec}, level ${policy.level}`);
  return { pageSize, first, count, base, policy };
}

function encodeBatch(
  batch: Uint8Array,
  hashes: BigUint64Array,
  baseHashes: BigUint64Array | undefined,
  o: EncodeOptions,
  { pageSize, first, count, base, policy }: Validated,
): { frame: Uint8Array; stats: BatchStats } {
  const kinds = new Uint8Array(count);
  const refs: number[] = [];
  const raw: Uint8Array[] = [];
  let rawBytes = 0;
  const stats: BatchStats = {
    pages: count,
    zero: 0,
    same: 0,
    dup: 0,
    full: 0,
    delta: 0,
    rawBytes: 0,
    frameBytes: 0,
  };
  // Pages of this batch already sent, by hash (dedup within the batch).
  const seen = new Map<bigint, number>();
  for (let i = 0; i < count; i++) {
    const page = batch.subarray(i * pageSize, (i + 1) * pageSize);
    const h = hashes[i]!;
    const basePage = base?.image.subarray((first + i) * pageSize, (first + i + 1) * pageSize);
    if (isZero(page)) {
      kinds[i] = PageKind.ZERO;
      stats.zero++;
      continue;
    }
    if (basePage && baseHashes![i] === h && equal(page, basePage)) {
      kinds[i] = PageKind.SAME;
      stats.same++;
      continue;
    }
    const earlier = seen.get(h);
    if (earlier !== undefined && equal(page, batch.subarray(earlier * pageSize, (earlier + 1) * pageSize))) {
      kinds[i] = PageKind.DUP;
      refs.push(first + earlier);
      stats.dup++;
      continue;
    }
    seen.set(h, i);
    if (basePage) {
      const x = new Uint8Array(pageSize);
      // A page that changed almost entirely is cheaper whole than as a delta;
      // one with a few changed spans is cheapest as its runs.
      const nonZero = xorInto(x, page, basePage);
      const sparse = pageSize <= 65536 ? sparseRuns(x, pageSize / 2 - 1) : Number.POSITIVE_INFINITY;
      if (sparse < pageSize / 2) {
        const enc = new Uint8Array(sparse);
        sparseRuns(x, sparse, enc);
        kinds[i] = PageKind.SPARSE;
        raw.push(enc);
        rawBytes += sparse;
        stats.delta++;
        continue;
      }
      if (nonZero < pageSize / 2) {
        kinds[i] = PageKind.DELTA;
        raw.push(x);
        rawBytes += pageSize;
        stats.delta++;
        continue;
      }
    }
    kinds[i] = PageKind.FULL;
    raw.push(page);
    rawBytes += pageSize;
    stats.full++;
  }

  // The page map, the references and the FULL/DELTA bytes are compressed
  // together (the map of a mostly unchanged image is long runs of one kind);
  // kept raw when compression does not pay.
  const map = new Uint8Array(count + refs.length * 4);
  map.set(kinds, 0);
  const mv = new DataView(map.buffer);
  for (const [k, r] of refs.entries()) mv.setUint32(count + 4 * k, r, true);
  const rawLength = map.length + rawBytes;
  const joined = Buffer.concat([map, ...raw], rawLength);
  let codec: PageCodecId = policy.codec;
  let payload: Uint8Array = joined;
  let dictId = 0;
  if (codec !== PageCodec.NONE) {
    payload =
      codec === PageCodec.LZ4
        ? lz4Compress(joined, { level: policy.level })
        : zstdCompress(joined, {
            level: policy.level,
            ...(policy.dictionary ? { dictionary: policy.dictionary } : {}),
          });
    if (payload.length >= rawLength * 0.97) {
      payload = joined;
      codec = PageCodec.NONE;
    } else if (codec === PageCodec.ZSTD) dictId = zstdFrameDictId(payload);
  }

  // Only pages whose bytes travel carry a hash: ZERO is zeros, SAME is the
  // baseline's page (the baseline itself is checked through its digest), DUP
  // repeats a page already checked.
  const sent: number[] = [];
  for (let i = 0; i < count; i++) if (kinds[i]! >= PageKind.FULL) sent.push(i);
  const size = PAGE_FRAME_HEADER + sent.length * 8 + payload.length;
  const frame = new Uint8Array(size);
  const v = new DataView(frame.buffer);
  v.setUint32(0, MAGIC, true);
  v.setUint8(4, VERSION);
  v.setUint8(5, codec);
  v.setUint32(8, pageSize, true);
  v.setUint32(12, count, true);
  v.setUint32(16, dictId, true);
  v.setUint32(20, o.imageId >>> 0, true);
  v.setUint32(24, o.version, true);
  v.setUint32(28, base?.version ?? 0, true);
  v.setUint32(32, first, true);
  v.setUint32(36, 0, true);
  v.setUint32(40, refs.length, true);
  v.setUint32(44, payload.length, true);
  v.setUint32(48, rawLength, true);
  v.setUint32(52, sent.length, true);
  v.setBigUint64(56, baseHashes ? baselineDigest(baseHashes) : 0n, true);
  let at = PAGE_FRAME_HEADER;
  for (const i of sent) {
    v.setBigUint64(at, hashes[i]!, true);
    at += 8;
  }
  frame.set(payload, at);
  v.setUint32(64, frameCrc(frame), true);
  stats.rawBytes = rawBytes;
  stats.frameBytes = size;
  return { frame, stats };
}

/**
 * {@link encodePages} on the libuv pool: with the native addon one call encodes
 * the batch off the event loop (the same bytes as the TypeScript encoder for the
 * same codec library); without it, the TypeScript encoder runs here.
 */
export async function encodePagesAsync(image: Uint8Array, o: EncodeOptions): Promise<Uint8Array> {
  const v = validate(image, o);
  const native = nativePageCoder();
  if (!native) return encodePages(image, o).frame;
  const dict = v.policy.codec === PageCodec.ZSTD ? v.policy.dictionary : undefined;
  try {
    return await native.encode(image, v.base?.image ?? null, v.base?.hashes ?? null, {
      pageSize: v.pageSize,
      first: v.first,
      count: v.count,
      codec: v.policy.codec,
      level: v.policy.level,
      ...(dict ? { dict } : {}),
      imageId: o.imageId >>> 0,
      version: o.version,
      baseVersion: v.base?.version ?? 0,
    });
  } catch (err) {
    const e = err as Error & { code?: string };
    throw new DWCPError((e.code ?? "ERR_CODEC") as "ERR_CODEC", e.message, { cause: e });
  }
}

/** XXH3-64 over a batch's baseline page hashes: both sides must hold the same baseline. */
function baselineDigest(pageHashes: BigUint64Array): bigint {
  return xxh3_64(new Uint8Array(pageHashes.buffer, pageHashes.byteOffset, pageHashes.byteLength));
}

/** CRC-32C of the header without its CRC field, continued over the rest. */
function frameCrc(frame: Uint8Array): number {
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
  if (v.getUint32(0, true) !== MAGIC) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "not a page frame");
  if (v.getUint8(4) !== VERSION)
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

/** Options of {@link decodePages}. */
export interface DecodeOptions {
  /** The image being rebuilt (its pages before the batch are already in place). */
  target: Uint8Array;
  /** Baselines the receiver holds. */
  baselines?: BaselineStore;
  /** Dictionaries by id. */
  dictionaries?: ReadonlyMap<number, ZstdDictionary>;
  /** Largest page size accepted. @default 1 MiB ({@link MAX_PAGE_SIZE}) */
  maxPageSize?: number;
  /**
   * Largest decoded payload of one frame (its map, references and page bytes),
   * on top of what the frame's counts and the target allow; above it a frame is
   * `ERR_MESSAGE_TOO_LARGE` before decoding. @default 256 MiB ({@link DEFAULT_MAX_DECODED})
   */
  maxDecodedBytes?: number;
}

/**
 * Rebuilds one batch into `target`, checking every page against its hash.
 * @throws DWCPError `ERR_BASELINE_MISSING` (the sender must send the image
 *   whole), `ERR_DICTIONARY`, `ERR_CORRUPT_PAYLOAD`; `target` is then unspecified
 *   for this batch's pages
 */
export function decodePages(frame: Uint8Array, o: DecodeOptions): PageFrameInfo {
  return decodePrepared(frame, o, prepareDecode(frame, o));
}

function decodePrepared(
  frame: Uint8Array,
  o: DecodeOptions,
  { info, base, baseHashes }: ReturnType<typeof prepareDecode>,
): PageFrameInfo {
  const { pageSize, pageCount: count, firstPage: first, rawLength } = info;
  const v = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (base && baselineDigest(baseHashes!.subarray(first, first + count)) !== v.getBigUint64(56, true))
    throw new DWCPError(
      "ERR_BASELINE_MISSING",
      `image ${info.imageId} version ${info.baseVersion} held here differs from the sender's baseline`,
    );
  const refCount = v.getUint32(40, true);
  const hashed = v.getUint32(52, true);
  const hashesAt = PAGE_FRAME_HEADER;
  const payload = frame.subarray(PAGE_FRAME_HEADER + hashed * 8);
  let raw: Uint8Array;
  if (info.codec === PageCodec.NONE) raw = payload;
  else if (info.codec === PageCodec.LZ4) raw = lz4Decompress(payload, { maxBytes: rawLength });
  else {
    const dict = info.dictId ? o.dictionaries?.get(info.dictId) : undefined;
    if (info.dictId && !dict)
      throw new DWCPError("ERR_DICTIONARY", `page frame needs dictionary ${info.dictId}`);
    raw = zstdDecompress(payload, { maxBytes: rawLength, ...(dict ? { dictionary: dict } : {}) });
  }
  if (raw.length !== rawLength || rawLength < count + refCount * 4)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame payload has the wrong size");
  const kinds = raw.subarray(0, count);
  const rv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  let rawAt = count + refCount * 4;
  let ref = 0;
  let h = 0;
  const batch = o.target.subarray(first * pageSize, (first + count) * pageSize);
  const check: number[] = [];
  for (let i = 0; i < count; i++) {
    const out = batch.subarray(i * pageSize, (i + 1) * pageSize);
    const basePage = base?.subarray((first + i) * pageSize, (first + i + 1) * pageSize);
    switch (kinds[i]) {
      case PageKind.ZERO:
        out.fill(0);
        break;
      case PageKind.SAME:
        if (!basePage) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "SAME page without a baseline");
        out.set(basePage);
        break;
      case PageKind.DUP: {
        if (ref >= refCount) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "more DUP pages than references");
        const src = rv.getUint32(count + 4 * ref++, true);
        if (src < first || src >= first + i)
          throw new DWCPError("ERR_CORRUPT_PAYLOAD", `DUP of page ${src}, not sent before`);
        out.set(o.target.subarray(src * pageSize, (src + 1) * pageSize));
        break;
      }
      case PageKind.FULL:
      case PageKind.DELTA: {
        if (h++ >= hashed) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "more FULL/DELTA pages than hashes");
        if (rawAt + pageSize > raw.length)
          throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame payload too short");
        const bytes = raw.subarray(rawAt, rawAt + pageSize);
        rawAt += pageSize;
        if (kinds[i] === PageKind.FULL) out.set(bytes);
        else {
          if (!basePage) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "DELTA page without a baseline");
          xorInto(out, bytes, basePage);
        }
        check.push(i);
        break;
      }
      case PageKind.SPARSE: {
        if (h++ >= hashed) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "more FULL/DELTA pages than hashes");
        if (!basePage) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "SPARSE page without a baseline");
        out.set(basePage);
        if (rawAt + 2 > raw.length)
          throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame payload too short");
        const runs = rv.getUint16(rawAt, true);
        rawAt += 2;
        for (let r = 0; r < runs; r++) {
          if (rawAt + 4 > raw.length)
            throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame payload too short");
          const off = rv.getUint16(rawAt, true);
          const len = rv.getUint16(rawAt + 2, true);
          rawAt += 4;
          if (off + len > pageSize || rawAt + len > raw.length)
            throw new DWCPError("ERR_CORRUPT_PAYLOAD", "SPARSE run outside its page or the payload");
          for (let k = 0; k < len; k++) out[off + k] = out[off + k]! ^ raw[rawAt + k]!;
          rawAt += len;
        }
        check.push(i);
        break;
      }
      default:
        throw new DWCPError("ERR_CORRUPT_PAYLOAD", `unknown page kind ${kinds[i]}`);
    }
  }
  if (h !== hashed || ref !== refCount || rawAt !== raw.length)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page map does not match its counts");
  // Every page whose bytes travelled must be the page the sender hashed.
  const got = hashPages(batch, pageSize);
  check.forEach((i, k) => {
    if (got[i] !== v.getBigUint64(hashesAt + 8 * k, true))
      throw new DWCPError("ERR_CORRUPT_PAYLOAD", `page ${first + i} does not match its hash after decoding`);
  });
  return info;
}

/**
 * What both decoders check first: the header and checksum, that the batch fits
 * the target, and that the baseline it needs is held (with its page hashes,
 * which the store computes once per baseline).
 */
function prepareDecode(frame: Uint8Array, o: DecodeOptions, read?: PageFrameInfo) {
  const info =
    read ?? readPageFrame(frame, o.maxPageSize === undefined ? {} : { maxPageSize: o.maxPageSize });
  const { pageSize, pageCount: count, firstPage: first } = info;
  // In whole pages, so nothing multiplies a peer's numbers past 2^53.
  const pages = o.target.length / pageSize;
  if (!Number.isInteger(pages) || count > pages || first > pages - count)
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame does not fit the target image");
  const maxDecoded = o.maxDecodedBytes ?? DEFAULT_MAX_DECODED;
  if (info.rawLength > maxDecoded)
    throw new DWCPError(
      "ERR_MESSAGE_TOO_LARGE",
      `page frame decodes to ${info.rawLength} bytes, above the limit of ${maxDecoded}`,
    );
  if (info.baseVersion === 0) return { info, base: undefined, baseHashes: undefined };
  const base = o.baselines?.get(info.imageId, info.baseVersion);
  if (!base || base.length !== o.target.length)
    throw new DWCPError(
      "ERR_BASELINE_MISSING",
      `image ${info.imageId} version ${info.baseVersion} is not held here (evicted or never received)`,
    );
  // A baseline has one page size: a frame with another is refused before its
  // pages are hashed again (a few bytes must not buy a pass over the whole image).
  const held = o.baselines!.pageSizeOf(info.imageId, info.baseVersion);
  const baseHashes =
    held === undefined || held === pageSize
      ? o.baselines!.hashesOf(info.imageId, info.baseVersion, pageSize)
      : undefined;
  if (!baseHashes)
    throw new DWCPError(
      "ERR_BASELINE_MISSING",
      `image ${info.imageId} version ${info.baseVersion} is held here in pages of ${held} bytes, not ${pageSize}`,
    );
  return { info, base, baseHashes };
}

/**
 * {@link decodePages} on the libuv pool: with the native addon one call rebuilds
 * and checks the batch off the event loop, with the same checks and error codes;
 * without it, the TypeScript decoder runs here.
 */
export async function decodePagesAsync(frame: Uint8Array, o: DecodeOptions): Promise<PageFrameInfo> {
  const native = nativePageCoder();
  if (!native) return decodePages(frame, o);
  const { info, base, baseHashes } = prepareDecode(frame, o);
  const dict = info.dictId ? o.dictionaries?.get(info.dictId) : undefined;
  if (info.codec === PageCodec.ZSTD && info.dictId && !dict)
    throw new DWCPError("ERR_DICTIONARY", `page frame needs dictionary ${info.dictId}`);
  try {
    await native.decode(frame, o.target, base ?? null, baseHashes ?? null, dict ?? null);
  } catch (err) {
    const e = err as Error & { code?: string };
    throw new DWCPError((e.code ?? "ERR_CORRUPT_PAYLOAD") as "ERR_CORRUPT_PAYLOAD", e.message, { cause: e });
  }
  return info;
}

/**
 * The receiver's baselines: whole images by (image id, version), most recently
 * used kept, least recently used evicted above `maxBytes`.
 */
export class BaselineStore {
  readonly maxBytes: number;
  readonly #images = new Map<string, Uint8Array>();
  readonly #hashes = new Map<string, BigUint64Array>();
  /** Each baseline's one page size, once known (stored with it, or its first hashing). */
  readonly #pageSizes = new Map<string, number>();
  #bytes = 0;
  evictions = 0;

  constructor(maxBytes = 1 << 30) {
    this.maxBytes = maxBytes;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Stores `image` (kept by reference: do not modify it afterwards). With
   * `pageSize`, that is the baseline's page size from now on; without it, the
   * page size of the first frame that deltas against it.
   */
  put(imageId: number, version: number, image: Uint8Array, pageSize?: number): void {
    if (
      pageSize !== undefined &&
      (!Number.isInteger(pageSize) || pageSize < 1 || image.length % pageSize !== 0)
    )
      throw new DWCPError("ERR_INVALID_ARG", `page size ${pageSize} does not divide the image`);
    const k = `${imageId}:${version}`;
    const old = this.#images.get(k);
    this.#hashes.delete(k);
    this.#pageSizes.delete(k);
    if (pageSize !== undefined) this.#pageSizes.set(k, pageSize);
    if (old) {
      this.#bytes -= old.length;
      this.#images.delete(k);
    }
    this.#images.set(k, image);
    this.#bytes += image.length;
    for (const [key, img] of this.#images) {
      if (this.#bytes <= this.maxBytes || key === k) break;
      this.#images.delete(key);
      this.#hashes.delete(key);
      this.#pageSizes.delete(key);
      this.#bytes -= img.length;
      this.evictions++;
    }
  }

  /** The page size of a held baseline, once fixed (by {@link put} or the first {@link hashesOf}). */
  pageSizeOf(imageId: number, version: number): number | undefined {
    return this.#pageSizes.get(`${imageId}:${version}`);
  }

  /**
   * The XXH3-64 of every page of a held baseline (computed once, kept with it).
   * The first call fixes the baseline's page size; for another page size, or a
   * baseline not held, undefined (nothing is hashed).
   */
  hashesOf(imageId: number, version: number, pageSize: number): BigUint64Array | undefined {
    const k = `${imageId}:${version}`;
    const img = this.#images.get(k);
    if (!img) return undefined;
    const fixed = this.#pageSizes.get(k);
    if (fixed !== undefined && fixed !== pageSize) return undefined;
    const h = this.#hashes.get(k);
    if (h) return h;
    if (!Number.isInteger(pageSize) || pageSize < 1 || img.length % pageSize !== 0) return undefined;
    const hashes = hashPages(img, pageSize);
    this.#hashes.set(k, hashes);
    this.#pageSizes.set(k, pageSize);
    return hashes;
  }

  get(imageId: number, version: number): Uint8Array | undefined {
    const k = `${imageId}:${version}`;
    const img = this.#images.get(k);
    if (img) {
      // Most recently used goes last.
      this.#images.delete(k);
      this.#images.set(k, img);
    }
    return img;
  }

  has(imageId: number, version: number): boolean {
    return this.#images.has(`${imageId}:${version}`);
  }

  delete(imageId: number, version: number): void {
    const k = `${imageId}:${version}`;
    const img = this.#images.get(k);
    this.#hashes.delete(k);
    this.#pageSizes.delete(k);
    if (img) {
      this.#images.delete(k);
      this.#bytes -= img.length;
    }
  }
}

/** Options of {@link ImageSender}. */
export interface ImageSenderOptions {
  /** @default 4096 */
  pageSize?: number;
  /** Pages per frame. @default 256 */
  batchPages?: number;
  /** Consecutive delta versions before one is sent whole again. @default 16 */
  maxChain?: number;
}

/**
 * The sending side of one image across versions: deltas only against the
 * version the receiver last acknowledged, a whole image when there is none, when
 * the receiver reported it missing, or every `maxChain` versions.
 */
export class ImageSender {
  readonly imageId: number;
  readonly #pageSize: number;
  readonly #batch: number;
  readonly #maxChain: number;
  #acked: { version: number; image: Uint8Array; hashes: BigUint64Array } | undefined;
  #chain = 0;
  /** Versions sent but not yet acknowledged, with what they would become as a baseline. */
  readonly #pending = new Map<number, { image: Uint8Array; hashes: BigUint64Array; delta: boolean }>();

  constructor(imageId: number, o: ImageSenderOptions = {}) {
    this.imageId = imageId;
    this.#pageSize = o.pageSize ?? 4096;
    this.#batch = o.batchPages ?? 256;
    this.#maxChain = o.maxChain ?? 16;
  }

  /** The version deltas are taken against now (0: none). */
  get baselineVersion(): number {
    return this.#acked?.version ?? 0;
  }

  /**
   * Encodes `image` as `version` (batches on the libuv pool with the addon).
   * The sender keeps a copy: the caller may reuse `image` afterwards.
   */
  async encode(image: Uint8Array, version: number, policy?: PagePolicy): Promise<Uint8Array[]> {
    const base = this.#acked && this.#chain < this.#maxChain ? this.#acked : undefined;
    const pages = image.length / this.#pageSize;
    const frames: Promise<Uint8Array>[] = [];
    for (let p = 0; p < pages; p += this.#batch) {
      frames.push(
        encodePagesAsync(image, {
          imageId: this.imageId,
          version,
          pageSize: this.#pageSize,
          firstPage: p,
          pageCount: Math.min(this.#batch, pages - p),
          ...(policy ? { policy } : {}),
          ...(base ? { baseline: base } : {}),
        }),
      );
    }
    const out = await Promise.all(frames);
    const copy = new Uint8Array(image);
    this.#pending.set(version, {
      image: copy,
      hashes: hashPages(copy, this.#pageSize),
      delta: base !== undefined,
    });
    return out;
  }

  /** The receiver holds `version` now: later versions are deltas against it. */
  acknowledge(version: number): void {
    const p = this.#pending.get(version);
    if (!p) return;
    this.#chain = p.delta ? this.#chain + 1 : 0;
    this.#acked = { version, image: p.image, hashes: p.hashes };
    for (const v of this.#pending.keys()) if (v <= version) this.#pending.delete(v);
  }

  /** The receiver lacks the baseline of `version` (ERR_BASELINE_MISSING): send whole next. */
  baselineMissing(): void {
    this.#acked = undefined;
    this.#chain = 0;
  }
}

/** The receiving side of images: rebuilds versions and keeps them as baselines. */
export class ImageReceiver {
  readonly store: BaselineStore;
  readonly #dicts: ReadonlyMap<number, ZstdDictionary>;

  constructor(store = new BaselineStore(), dictionaries: ReadonlyMap<number, ZstdDictionary> = new Map()) {
    this.store = store;
    this.#dicts = dictionaries;
  }

  /**
   * Rebuilds one version from all its frames and keeps it as a baseline. The
   * frames must cover every page exactly once, in one page size: which pages
   * came is tracked page by page, so an overlap or a gap cannot pass for a
   * whole image. Each frame's header is checked against that before it is
   * decoded.
   * @returns the image id, version (to acknowledge) and the image
   * @throws DWCPError `ERR_BASELINE_MISSING` (ask for the version whole),
   *   `ERR_CORRUPT_PAYLOAD` (frames overlap, leave pages out, or mix page sizes,
   *   images or versions), others as {@link decodePages}
   */
  receive(
    frames: readonly Uint8Array[],
    imageBytes: number,
  ): { imageId: number; version: number; image: Uint8Array } {
    if (frames.length === 0) throw new DWCPError("ERR_INVALID_ARG", "no frames");
    if (!Number.isSafeInteger(imageBytes) || imageBytes < 0)
      throw new DWCPError("ERR_INVALID_ARG", `image size must be a non-negative integer, got ${imageBytes}`);
    const first = readPageFrame(frames[0]!);
    const { imageId: id, version, pageSize } = first;
    if (imageBytes % pageSize !== 0)
      throw new DWCPError("ERR_CORRUPT_PAYLOAD", `page size ${pageSize} does not divide ${imageBytes} bytes`);
    const pages = imageBytes / pageSize;
    const target = new Uint8Array(imageBytes);
    // One bit per page: set when a frame has brought it.
    const came = new Uint8Array(Math.ceil(pages / 8));
    let covered = 0;
    const o: DecodeOptions = { target, baselines: this.store, dictionaries: this.#dicts };
    for (const [k, f] of frames.entries()) {
      const info = k === 0 ? first : readPageFrame(f);
      if (info.imageId !== id || info.version !== version)
        throw new DWCPError("ERR_CORRUPT_PAYLOAD", "frames of different images or versions mixed");
      if (info.pageSize !== pageSize)
        throw new DWCPError(
          "ERR_CORRUPT_PAYLOAD",
          `frames of one image in pages of ${pageSize} and ${info.pageSize} bytes`,
        );
      const { firstPage: from, pageCount: count } = info;
      if (count > pages || from > pages - count)
        throw new DWCPError("ERR_CORRUPT_PAYLOAD", "page frame does not fit the target image");
      for (let p = from; p < from + count; p++) {
        if (came[p >>> 3]! & (1 << (p & 7)))
          throw new DWCPError("ERR_CORRUPT_PAYLOAD", `page ${p} comes in two frames`);
        came[p >>> 3]! |= 1 << (p & 7);
      }
      covered += count;
      decodePrepared(f, o, prepareDecode(f, o, info));
    }
    // Every page must have come: a lost frame must not leave zeros behind.
    if (covered !== pages)
      throw new DWCPError("ERR_CORRUPT_PAYLOAD", `frames cover ${covered} of ${pages} pages`);
    this.store.put(id, version, target, pageSize);
    return { imageId: id, version, image: target };
  }
}
