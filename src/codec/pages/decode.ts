/**
 * The page decoders: the TypeScript one, and the addon's on the libuv pool
 * behind the same checks. Both start from one `prepareDecode`, so a frame a
 * receiver cannot use (no baseline, too large, not fitting the target) is
 * refused the same way whichever decodes it.
 */
import { DWCPError } from "../../errors.js";
import { hashPages } from "../../hash/index.js";
import {
  DEFAULT_MAX_DECODED,
  lz4DecompressInto,
  nativePageCoder,
  type ZstdDictionary,
  zstdDecompress,
} from "../index.js";
import type { BaselineSource } from "./baselines.js";
import {
  baselineDigest,
  MAX_PAGE_SIZE,
  PAGE_FRAME_HEADER,
  PageCodec,
  type PageFrameInfo,
  PageKind,
  readPageFrame,
  xorInto,
} from "./format.js";

/**
 * Where LZ4 payloads are decoded: one buffer reused across frames, since fresh
 * memory for every frame costs a page fault per 4 KiB (the decoder itself runs
 * at several GB/s). Decoding is synchronous, so no two frames share it at once;
 * one larger than a typical frame is not kept.
 */
let lz4Scratch: Uint8Array | undefined;
const SCRATCH_KEEP = 4 << 20;

function scratch(bytes: number): Uint8Array {
  if (lz4Scratch && lz4Scratch.length >= bytes) return lz4Scratch.subarray(0, bytes);
  const b = new Uint8Array(bytes);
  if (bytes <= SCRATCH_KEEP) lz4Scratch = b;
  return b;
}

/** Options of {@link decodePages}. */
export interface DecodeOptions {
  /** The image being rebuilt (its pages before the batch are already in place). */
  target: Uint8Array;
  /**
   * Baselines the receiver holds. The target may be a baseline itself (a
   * migration rebuilds its image in place): every page is read from the
   * baseline before its own bytes are written.
   */
  baselines?: BaselineSource;
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

/**
 * @internal {@link decodePages} past {@link prepareDecode}: the image receiver
 * checks each frame's header against the whole image before it decodes it.
 */
export function decodePrepared(
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
  else if (info.codec === PageCodec.LZ4)
    raw = lz4DecompressInto(payload, scratch(rawLength), { maxBytes: rawLength });
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
 * @internal Exported for the image receiver, which has read the header already.
 */
export function prepareDecode(frame: Uint8Array, o: DecodeOptions, read?: PageFrameInfo) {
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
