/**
 * The TypeScript page encoder: it picks each page's kind and writes the page
 * frame, and hands a batch to the addon's twin on the libuv pool when there is
 * one. Both paths take the same options and refuse the same bad ones, because
 * one `validate` serves both.
 */

import { DWCPError } from "../../errors.js";
import { hashPages } from "../../hash/index.js";
import {
  lz4Compress,
  nativePageCoder,
  type ZstdDictionary,
  zstdCompress,
  zstdFrameDictId,
} from "../index.js";
import { type BatchKinds, countBatch } from "./counters.js";
import {
  baselineDigest,
  frameCrc,
  MAX_PAGE_SIZE,
  PAGE_FRAME_HEADER,
  PAGE_FRAME_MAGIC,
  PAGE_FRAME_VERSION,
  PageCodec,
  type PageCodecId,
  PageKind,
  xorInto,
} from "./format.js";

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

/** zstd levels above this try level 1 first, to spot a batch that does not compress. */
const PROBE_ABOVE_LEVEL = 3;
/** A level-1 result this close to the raw size means the batch does not compress. */
const INCOMPRESSIBLE = 0.99;

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
  /** Told the batch's page counts once it is encoded (a migration's per-run tally). */
  onBatch?: (kinds: BatchKinds) => void;
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
  let deltaBytes = 0;
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
        deltaBytes += sparse;
        stats.delta++;
        continue;
      }
      if (nonZero < pageSize / 2) {
        kinds[i] = PageKind.DELTA;
        raw.push(x);
        rawBytes += pageSize;
        deltaBytes += pageSize;
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
    const dictionary = policy.dictionary ? { dictionary: policy.dictionary } : {};
    // zstd's high levels spend ~12× level 1's time on bytes that do not
    // compress (random guest memory, already compressed data): a level-1 pass
    // that gains nothing says the batch travels raw, for a twelfth of the CPU.
    const probe =
      codec === PageCodec.ZSTD && policy.level > PROBE_ABOVE_LEVEL
        ? zstdCompress(joined, { level: 1, ...dictionary })
        : undefined;
    payload =
      probe && probe.length >= rawLength * INCOMPRESSIBLE
        ? probe
        : codec === PageCodec.LZ4
          ? lz4Compress(joined, { level: policy.level })
          : zstdCompress(joined, { level: policy.level, ...dictionary });
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
  v.setUint32(0, PAGE_FRAME_MAGIC, true);
  v.setUint8(4, PAGE_FRAME_VERSION);
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
  const counted: BatchKinds = { ...stats, deltaBytes, frameBytes: size };
  countBatch(pageSize, counted);
  o.onBatch?.(counted);
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
  const kinds = new Float64Array(6);
  let frame: Uint8Array;
  try {
    frame = await native.encode(image, v.base?.image ?? null, v.base?.hashes ?? null, {
      pageSize: v.pageSize,
      first: v.first,
      count: v.count,
      codec: v.policy.codec,
      level: v.policy.level,
      ...(dict ? { dict } : {}),
      imageId: o.imageId >>> 0,
      version: o.version,
      baseVersion: v.base?.version ?? 0,
      stats: kinds,
    });
  } catch (err) {
    const e = err as Error & { code?: string };
    throw new DWCPError((e.code ?? "ERR_CODEC") as "ERR_CODEC", e.message, { cause: e });
  }
  const [zero, same, dup, delta, full, deltaBytes] = kinds as unknown as number[];
  const counted: BatchKinds = {
    zero: zero!,
    same: same!,
    dup: dup!,
    delta: delta!,
    full: full!,
    deltaBytes: deltaBytes!,
    frameBytes: frame.length,
  };
  countBatch(v.pageSize, counted);
  o.onBatch?.(counted);
  return frame;
}
