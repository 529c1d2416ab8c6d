/**
 * Payload codecs: LZ4 frame and zstd frame (with or without a trained
 * dictionary). Payloads are standard frames: `lz4 -d` and `zstd -d [-D dict]`
 * decode them.
 *
 * Two backends, picked once, on first use (`useBackend("codec", …)` before that
 * picks one): the addon on the system liblz4/libzstd, or the TypeScript path on
 * npm packages (lz4-napi's frame API, the zstd wasm build of @bokuweb/zstd-wasm).
 * They may emit different bytes for the same input (other library versions), but
 * each decodes everything the other writes; the tests check both directions. Dictionary training is native only (an offline step);
 * a TypeScript-only node still uses dictionaries it is given.
 *
 * @packageDocumentation
 */
import { createRequire } from "node:module";
import { createXXHash32, type IHasher } from "hash-wasm";
import { DWCPError } from "../errors.js";
import type { NativeBinding, NativeZstdDictionary } from "../native/binding.js";
import { type BackendName, defineBackend } from "../native/load.js";
import { lz4FrameHeader, zstdContentSize, zstdDictionaryId, zstdFrameDictId } from "./frames.js";

export {
  type Lz4FrameHeader,
  lz4ContentSize,
  lz4FrameHeader,
  zstdContentSize,
  zstdDictionaryId,
  zstdFrameDictId,
} from "./frames.js";

/** Largest output any decompression may produce unless told otherwise. */
export const DEFAULT_MAX_DECODED = 256 * 1024 * 1024;

/** A zstd dictionary: its bytes, its id, and the backend's prepared form. */
export class ZstdDictionary {
  readonly bytes: Uint8Array;
  readonly id: number;
  readonly level: number;
  #native: NativeZstdDictionary | undefined;

  /** @param level the compression level the dictionary is prepared for. @default 3 */
  constructor(bytes: Uint8Array, level = 3) {
    if (!(bytes instanceof Uint8Array) || bytes.length < 8)
      throw new DWCPError("ERR_INVALID_ARG", "a zstd dictionary must be a Uint8Array of at least 8 bytes");
    this.bytes = bytes;
    this.level = level;
    this.id = zstdDictionaryId(bytes);
  }

  /** @internal The addon's CDict/DDict pair, built on first use. */
  native(b: NativeBinding): NativeZstdDictionary {
    this.#native ??= new b.ZstdDictionary!(this.bytes, this.level);
    return this.#native;
  }
}

/** Options of the compressors. */
export interface CompressOptions {
  /** LZ4: 0–12 (≤ 2 is the fast mode); zstd: 1–19. @default lz4 1, zstd 3 */
  level?: number;
}

/** Options of the zstd compressor. */
export interface ZstdCompressOptions extends CompressOptions {
  dictionary?: ZstdDictionary;
}

/** Options of the decompressors. */
export interface DecompressOptions {
  /**
   * A hard cap on the decoded size: a frame that declares more is refused before
   * anything is allocated, and decoding stops (and fails) before producing more.
   * A non-negative integer. @default 256 MiB ({@link DEFAULT_MAX_DECODED})
   */
  maxBytes?: number;
}

/** Options of the zstd decompressor. */
export interface ZstdDecompressOptions extends DecompressOptions {
  dictionary?: ZstdDictionary;
}

/** @internal The options of one batch for the native page encoder, with the dictionary as given. */
export type NativePageJob = Omit<Parameters<NonNullable<NativeBinding["encodePagesAsync"]>>[3], "dict"> & {
  dict?: ZstdDictionary;
};

/**
 * @internal The addon's page-frame coder: one batch per call on the libuv pool,
 * the same bytes and error codes as the TypeScript coder in `./pages/encode.ts` and `./pages/decode.ts`.
 */
export interface NativePageCoder {
  encode(
    image: Uint8Array,
    baseline: Uint8Array | null,
    baselineHashes: BigUint64Array | null,
    o: NativePageJob,
  ): Promise<Uint8Array>;
  decode(
    frame: Uint8Array,
    target: Uint8Array,
    baseline: Uint8Array | null,
    baselineHashes: BigUint64Array | null,
    dict: ZstdDictionary | null,
  ): Promise<void>;
}

/** One backend's implementation of the codecs. */
interface CodecBackend {
  readonly name: BackendName;
  lz4Compress(data: Uint8Array, level: number): Uint8Array;
  lz4Decompress(data: Uint8Array, max: number): Uint8Array;
  /** Decodes into the start of `target`, at most `max` bytes (≤ its length); returns the length. */
  lz4DecompressInto(data: Uint8Array, max: number, target: Uint8Array): number;
  lz4CompressAsync(data: Uint8Array, level: number): Promise<Uint8Array>;
  zstdCompress(data: Uint8Array, level: number, dict: ZstdDictionary | undefined): Uint8Array;
  zstdDecompress(data: Uint8Array, max: number, dict: ZstdDictionary | undefined): Uint8Array;
  zstdCompressAsync(data: Uint8Array, level: number, dict: ZstdDictionary | undefined): Promise<Uint8Array>;
  /** Dictionary training (ZDICT): native only. */
  train?(samples: Uint8Array, sizes: Uint32Array, capacity: number): Uint8Array;
  /** The page-frame coder: native only. */
  pages?: NativePageCoder;
}

function rethrow(err: unknown): never {
  const e = err as Error & { code?: string };
  if (e instanceof DWCPError) throw e;
  if (e?.code && /^ERR_/.test(e.code)) throw new DWCPError(e.code as "ERR_CODEC", e.message, { cause: e });
  throw new DWCPError("ERR_CORRUPT_PAYLOAD", e?.message ?? String(e), { cause: e });
}

function nativeBackend(b: NativeBinding): CodecBackend | undefined {
  if (!b.lz4Compress || !b.zstdCompress || !b.ZstdDictionary) return undefined;
  const nb = b as Required<NativeBinding>;
  const wrap =
    <A extends unknown[], R>(f: (...a: A) => R) =>
    (...a: A): R => {
      try {
        return f(...a);
      } catch (err) {
        rethrow(err);
      }
    };
  return {
    name: "native",
    lz4Compress: wrap((d, level) => nb.lz4Compress(d, level)),
    // The declared size is checked here before the addon sees the frame (the
    // addon allocates what the frame declares, up to `max`, and grows its output
    // no further than `max` for a frame that declares nothing).
    lz4Decompress: wrap((d, max) => {
      const declared = lz4FrameHeader(d).contentSize;
      if (declared !== undefined) checkSize(declared, max, "LZ4");
      return nb.lz4Decompress(d, max);
    }),
    lz4DecompressInto: wrap((d, max, target) => {
      const declared = lz4FrameHeader(d).contentSize;
      if (declared !== undefined) checkSize(declared, max, "LZ4");
      return nb.lz4Decompress(d, max, target);
    }),
    lz4CompressAsync: (d, level) => nb.lz4CompressAsync(d, level).catch(rethrow),
    zstdCompress: wrap((d, level, dict) => nb.zstdCompress(d, level, dict?.native(b))),
    // Only frames that declare their size, at most `max`: the addon decodes in
    // one shot into a buffer of that size, which then bounds the output.
    zstdDecompress: wrap((d, max, dict) => {
      checkSize(zstdContentSize(d), max, "zstd");
      return nb.zstdDecompress(d, max, dict?.native(b));
    }),
    zstdCompressAsync: (d, level, dict) => nb.zstdCompressAsync(d, level, dict?.native(b)).catch(rethrow),
    ...(b.zstdTrain
      ? { train: wrap((samples, sizes, capacity) => nb.zstdTrain(samples, sizes, capacity)) }
      : {}),
    ...(b.encodePagesAsync && b.decodePagesAsync
      ? {
          pages: {
            encode: (image, baseline, hashes, { dict, ...o }) =>
              nb.encodePagesAsync(image, baseline, hashes, {
                ...o,
                ...(dict ? { dict: dict.native(b) } : {}),
              }),
            decode: (frame, target, baseline, hashes, dict) =>
              nb.decodePagesAsync(frame, target, baseline, hashes, dict ? dict.native(b) : null),
          },
        }
      : {}),
  };
}

// --- TypeScript path -------------------------------------------------------

interface Lz4Napi {
  compressFrameSync(d: Buffer, o?: { contentChecksum?: boolean }): Buffer;
  compressFrame(d: Uint8Array, o?: { contentChecksum?: boolean }): Promise<Buffer>;
  /** One LZ4 block after a u32 LE output capacity; fails rather than write past it. */
  uncompressSync(d: Uint8Array, dict?: Uint8Array): Buffer;
}
interface ZstdWasm {
  init(): Promise<void>;
  compress(d: Uint8Array, level?: number): Uint8Array;
  decompress(d: Uint8Array, o?: { defaultHeapSize?: number }): Uint8Array;
  createCCtx(): number;
  createDCtx(): number;
  compressUsingDict(cctx: number, d: Uint8Array, dict: Uint8Array, level?: number): Uint8Array;
  decompressUsingDict(
    dctx: number,
    d: Uint8Array,
    dict: Uint8Array,
    o?: { defaultHeapSize?: number },
  ): Uint8Array;
}

const require = createRequire(import.meta.url);
let zstdWasm: ZstdWasm | undefined;
let zstdCtx: { c: number; d: number } | undefined;
let xxh32: IHasher | undefined;

/**
 * The wasm modules instantiate asynchronously, so they are prepared when this
 * module is imported with the TypeScript path ahead (see the end of the module).
 */
function prepared<T>(m: T | undefined): T {
  if (m === undefined)
    throw new DWCPError(
      "ERR_UNSUPPORTED",
      'the TypeScript codecs were not prepared: choose them (useBackend("codec", "ts")) before importing the codec module',
    );
  return m;
}

function wasm(): ZstdWasm {
  return prepared(zstdWasm);
}

/**
 * lz4-napi writes no content size; DWCP frames always carry one (so a receiver
 * can refuse an oversize payload before decoding it). Inserts it into the frame
 * descriptor and recomputes the descriptor checksum (second byte of XXH32).
 */
function withContentSize(frame: Buffer, size: number): Buffer {
  if (frame.length < 7 || frame.readUInt32LE(0) !== 0x184d2204 || (frame[4]! & 0x08) !== 0) return frame;
  const out = Buffer.allocUnsafe(frame.length + 8);
  frame.copy(out, 0, 0, 6); // magic, FLG, BD
  out[4] = frame[4]! | 0x08;
  out.writeUInt32LE(size % 0x1_0000_0000, 6);
  out.writeUInt32LE(Math.floor(size / 0x1_0000_0000), 10);
  const h = prepared(xxh32);
  h.init();
  h.update(out.subarray(4, 14));
  out[14] = h.digest("binary")[2]!; // (XXH32 >> 8) & 0xff; the digest is big-endian
  frame.copy(out, 15, 7);
  return out;
}

function checkSize(size: number | undefined, max: number, what: string): number {
  if (size === undefined)
    throw new DWCPError(
      "ERR_CORRUPT_PAYLOAD",
      `${what} frame without a content size (DWCP always writes one)`,
    );
  if (size > max)
    throw new DWCPError("ERR_MESSAGE_TOO_LARGE", `${what} frame declares ${size} bytes, above ${max}`);
  return size;
}

/** XXH32 (seed 0) of `d`, as the LZ4 frame format uses it. */
function xxh32Of(d: Uint8Array): number {
  const h = prepared(xxh32);
  h.init();
  h.update(d);
  const b = h.digest("binary"); // big-endian
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

/** The largest zstd output the wasm heap is asked for (its malloc takes a signed 32-bit size). */
const WASM_MAX_DECODED = 0x7fff_ffff;

/**
 * Decodes one LZ4 frame with `max` as a hard cap. lz4-napi's frame decoder
 * produces the whole frame before its size can be compared, and LZ4 expands up
 * to 255:1, so a frame that declares 4 KiB could produce a thousand times more.
 * Its block decoder, though, takes an output capacity (the u32 prefix of
 * `uncompressSync`) and fails rather than write past it. So the frame container
 * (LZ4 frame format §4: a u32 per block, high bit set when stored, 0 at the end)
 * is walked here before any allocation, which also bounds the output, and each
 * block is decoded with a capacity of what may still come. The descriptor,
 * block and content checksums are checked as the format defines them.
 */
function lz4DecodeCapped(lz4: Lz4Napi, d: Uint8Array, max: number, into?: Uint8Array): Uint8Array {
  const h = lz4FrameHeader(d);
  // The header checksum is the second byte of the descriptor's XXH32.
  if (((xxh32Of(d.subarray(4, h.headerLength - 1)) >>> 8) & 0xff) !== d[h.headerLength - 1])
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "LZ4 frame header checksum mismatch");
  if (h.dictId !== undefined)
    throw new DWCPError("ERR_DICTIONARY", `LZ4 frame needs dictionary ${h.dictId} (DWCP uses none)`);
  const declared = h.contentSize;
  if (declared !== undefined) checkSize(declared, max, "LZ4");
  // The walk: the frame's structure and what its blocks can produce at most.
  const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
  let at = h.headerLength;
  let bound = 0;
  let largest = 0;
  for (;;) {
    if (at + 4 > d.length) throw new DWCPError("ERR_CORRUPT_PAYLOAD", "truncated LZ4 frame");
    const word = v.getUint32(at, true);
    at += 4;
    if (word === 0) break;
    const len = word & 0x7fff_ffff;
    if (len > h.blockMaxSize)
      throw new DWCPError("ERR_CORRUPT_PAYLOAD", "LZ4 block larger than the frame's block size");
    at += len + (h.blockChecksum ? 4 : 0);
    bound += word >>> 31 ? len : h.blockMaxSize;
    largest = Math.max(largest, len);
  }
  const end = at + (h.contentChecksum ? 4 : 0);
  if (end !== d.length)
    throw new DWCPError(
      "ERR_CORRUPT_PAYLOAD",
      end > d.length ? "truncated LZ4 frame" : "bytes after the end of the LZ4 frame",
    );
  if (declared !== undefined && declared > bound)
    throw new DWCPError(
      "ERR_CORRUPT_PAYLOAD",
      `LZ4 frame declares ${declared} bytes; its blocks can hold at most ${bound}`,
    );
  // What may come: the declared size exactly, else the smaller of the bound and `max`.
  const limit = declared ?? Math.min(bound, max);
  // As liblz4 reports it: data past the declared size is corrupt; past `max` without one, too large.
  const over = (what: string) =>
    declared !== undefined
      ? new DWCPError("ERR_CORRUPT_PAYLOAD", `LZ4 frame content size does not match its data (${what})`)
      : new DWCPError(
          "ERR_MESSAGE_TOO_LARGE",
          `LZ4 frame decodes beyond the limit of ${max} bytes (${what})`,
        );
  // Without a declared size an output of its own grows as blocks come, never past
  // `limit`; a caller's (`max` is at most its length) never needs to.
  let out = into
    ? into.subarray(0, limit)
    : Buffer.allocUnsafe(declared ?? Math.min(limit, Math.max(64 << 10, d.length * 4)));
  const scratch = Buffer.allocUnsafe(4 + largest);
  let produced = 0;
  at = h.headerLength;
  for (;;) {
    const word = v.getUint32(at, true);
    at += 4;
    if (word === 0) break;
    const len = word & 0x7fff_ffff;
    const block = d.subarray(at, at + len);
    at += len;
    if (h.blockChecksum) {
      if (xxh32Of(block) !== v.getUint32(at, true))
        throw new DWCPError("ERR_CORRUPT_PAYLOAD", "LZ4 block checksum mismatch");
      at += 4;
    }
    const room = limit - produced;
    let bytes: Uint8Array;
    if (word >>> 31) {
      if (len > room) throw over("a stored block");
      bytes = block;
    } else {
      // One byte past the room: a block that fills it is told from one that overruns it.
      const cap = Math.min(h.blockMaxSize, room + 1);
      scratch.writeUInt32LE(cap, 0);
      scratch.set(block, 4);
      const input = scratch.subarray(0, 4 + len);
      try {
        bytes = h.independentBlocks
          ? lz4.uncompressSync(input)
          : lz4.uncompressSync(input, out.subarray(Math.max(0, produced - 65536), produced));
      } catch (err) {
        // The capacity was cut by the limit: the block overruns it, or is corrupt
        // (its error does not say which). Uncut, or cut by the blocks' own bound, corrupt.
        if (cap < h.blockMaxSize && (declared !== undefined || limit === max))
          throw over("a block overruns it, or is corrupt");
        rethrow(err);
      }
      if (bytes.length > room) throw over("a block overruns it");
    }
    if (produced + bytes.length > out.length) {
      const grown = Buffer.allocUnsafe(Math.min(limit, Math.max(2 * out.length, produced + bytes.length)));
      grown.set(out.subarray(0, produced));
      out = grown;
    }
    out.set(bytes, produced);
    produced += bytes.length;
  }
  if (declared !== undefined && produced !== declared) throw over(`${produced} bytes`);
  if (h.contentChecksum && xxh32Of(out.subarray(0, produced)) !== v.getUint32(at, true))
    throw new DWCPError("ERR_CORRUPT_PAYLOAD", "LZ4 content checksum mismatch");
  if (into) return out.subarray(0, produced);
  return produced === out.length ? out : Buffer.from(out.subarray(0, produced));
}

function tsBackend(): CodecBackend {
  // Loaded on first use: a native process never loads these packages.
  let lz4Module: Lz4Napi | undefined;
  const lz4 = new Proxy({} as Lz4Napi, {
    get: (_t, k: keyof Lz4Napi) => {
      lz4Module ??= require("lz4-napi") as Lz4Napi;
      return lz4Module[k];
    },
  });
  const buf = (d: Uint8Array) => (Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength));
  const zc = (d: Uint8Array, level: number, dict: ZstdDictionary | undefined) => {
    const z = wasm();
    if (!dict) return z.compress(d, level);
    zstdCtx ??= { c: z.createCCtx(), d: z.createDCtx() };
    return z.compressUsingDict(zstdCtx.c, d, dict.bytes, level);
  };
  return {
    name: "ts",
    lz4Compress: (d) => withContentSize(lz4.compressFrameSync(buf(d), { contentChecksum: false }), d.length),
    lz4Decompress: (d, max) => lz4DecodeCapped(lz4, d, max),
    lz4DecompressInto: (d, max, target) => lz4DecodeCapped(lz4, d, max, target).length,
    lz4CompressAsync: async (d) =>
      withContentSize(await lz4.compressFrame(d, { contentChecksum: false }), d.length),
    zstdCompress: (d, level, dict) => zc(d, level, dict),
    zstdDecompress: (d, max, dict) => {
      checkDict(d, dict);
      // The wasm decoder decodes in one shot into a heap buffer of the declared
      // size (so that bounds the output; the window needs no memory of its own),
      // and the wasm heap never shrinks: the declared size is checked first.
      const size = checkSize(zstdContentSize(d), Math.min(max, WASM_MAX_DECODED), "zstd");
      const z = wasm();
      let out: Uint8Array;
      try {
        if (!dict) out = z.decompress(d, { defaultHeapSize: size });
        else {
          zstdCtx ??= { c: z.createCCtx(), d: z.createDCtx() };
          out = z.decompressUsingDict(zstdCtx.d, d, dict.bytes, { defaultHeapSize: size });
        }
      } catch (err) {
        rethrow(err);
      }
      if (out.length !== size)
        throw new DWCPError("ERR_CORRUPT_PAYLOAD", "zstd frame content size does not match its data");
      return out;
    },
    zstdCompressAsync: async (d, level, dict) => zc(d, level, dict),
  };
}

function checkDict(frame: Uint8Array, dict: ZstdDictionary | undefined): void {
  const want = zstdFrameDictId(frame);
  const have = dict?.id ?? 0;
  if (want !== have) {
    throw new DWCPError(
      "ERR_DICTIONARY",
      want === 0
        ? "zstd frame needs no dictionary but one was given"
        : `zstd frame needs dictionary ${want}, ${have ? `given ${have}` : "none given"}`,
    );
  }
}

const codec = defineBackend<CodecBackend>("codec", {
  native: nativeBackend,
  ts: tsBackend,
  detail: (b) => `${b.features.codec} (system libraries)`,
});

// The codec API is synchronous and the wasm modules instantiate asynchronously:
// they are prepared here when the TypeScript path is the one ahead (a native
// process never loads them).
if (codec.peek() === "ts") {
  const m = require("@bokuweb/zstd-wasm") as ZstdWasm;
  await m.init();
  zstdWasm = m;
  xxh32 = await createXXHash32(0);
}

/**
 * The codec backend in use, `"native"` or `"ts"`, chosen on the first use of a codec.
 * @throws DWCPError `ERR_NATIVE_REQUIRED` when `DWCP_NATIVE=1` and the addon is unavailable
 */
export function codecBackend(): BackendName {
  return codec.choice().name;
}

/** @internal The native page coder, when the native codecs are in use. */
export function nativePageCoder(): NativePageCoder | undefined {
  return codec.get().pages;
}

function level(o: CompressOptions, dflt: number, min: number, max: number): number {
  const l = o.level ?? dflt;
  if (!Number.isInteger(l) || l < min || l > max)
    throw new DWCPError("ERR_INVALID_ARG", `compression level must be an integer in ${min}…${max}, got ${l}`);
  return l;
}

function maxBytes(o: DecompressOptions): number {
  const m = o.maxBytes ?? DEFAULT_MAX_DECODED;
  // NaN or a fraction would make every size comparison false: no cap at all.
  if (!Number.isSafeInteger(m) || m < 0)
    throw new DWCPError("ERR_INVALID_ARG", `maxBytes must be a non-negative integer, got ${m}`);
  return m;
}

function bytes(d: unknown): Uint8Array {
  if (!(d instanceof Uint8Array)) throw new DWCPError("ERR_INVALID_ARG", "expected a Uint8Array");
  return d;
}

/** Compresses `data` into one LZ4 frame (content size recorded, no content checksum). */
export function lz4Compress(data: Uint8Array, o: CompressOptions = {}): Uint8Array {
  return codec.get().lz4Compress(bytes(data), level(o, 1, 0, 12));
}

/** The same on the libuv pool (native), so several can use several cores. */
export function lz4CompressAsync(data: Uint8Array, o: CompressOptions = {}): Promise<Uint8Array> {
  return codec.get().lz4CompressAsync(bytes(data), level(o, 1, 0, 12));
}

/**
 * Decodes one LZ4 frame.
 * @throws DWCPError `ERR_CORRUPT_PAYLOAD` (not a frame, corrupt, truncated),
 *   `ERR_MESSAGE_TOO_LARGE` (above `maxBytes`)
 */
export function lz4Decompress(data: Uint8Array, o: DecompressOptions = {}): Uint8Array {
  return codec.get().lz4Decompress(bytes(data), maxBytes(o));
}

/**
 * Decodes one LZ4 frame into `target`, from its start, rather than into a new
 * buffer. A caller that reuses one buffer, or decodes straight into where the
 * bytes belong, saves the allocation and the first touch of fresh memory (a page
 * fault per 4 KiB), which cost more than LZ4 decoding itself.
 *
 * The limit is the smaller of `target.length` and `maxBytes`. A frame that
 * declares its content size (DWCP always writes one) writes exactly that many
 * bytes; without one, bytes of `target` past the decoded length, up to the
 * limit, may be overwritten too.
 * @returns the decoded bytes, a view of `target`
 * @throws DWCPError `ERR_CORRUPT_PAYLOAD` (not a frame, corrupt, truncated),
 *   `ERR_MESSAGE_TOO_LARGE` (above the limit), `ERR_INVALID_ARG` (`target`
 *   overlaps `data`); on failure the contents of `target` are unspecified
 */
export function lz4DecompressInto(
  data: Uint8Array,
  target: Uint8Array,
  o: DecompressOptions = {},
): Uint8Array {
  const d = bytes(data);
  const t = bytes(target);
  const max = Math.min(maxBytes(o), t.length);
  // Decoding over its own input would read bytes it has already overwritten.
  if (
    d.buffer === t.buffer &&
    d.length > 0 &&
    t.length > 0 &&
    d.byteOffset < t.byteOffset + t.length &&
    t.byteOffset < d.byteOffset + d.length
  )
    throw new DWCPError("ERR_INVALID_ARG", "the target overlaps the frame");
  return t.subarray(0, codec.get().lz4DecompressInto(d, max, t));
}

/** Compresses `data` into one zstd frame (content size and, with a dictionary, its id recorded). */
export function zstdCompress(data: Uint8Array, o: ZstdCompressOptions = {}): Uint8Array {
  return codec.get().zstdCompress(bytes(data), level(o, o.dictionary?.level ?? 3, 1, 19), o.dictionary);
}

/** The same on the libuv pool (native). */
export function zstdCompressAsync(data: Uint8Array, o: ZstdCompressOptions = {}): Promise<Uint8Array> {
  return codec.get().zstdCompressAsync(bytes(data), level(o, o.dictionary?.level ?? 3, 1, 19), o.dictionary);
}

/**
 * Decodes one zstd frame.
 * @throws DWCPError `ERR_DICTIONARY` (the frame's dictionary id is not the one
 *   given), `ERR_CORRUPT_PAYLOAD`, `ERR_MESSAGE_TOO_LARGE`
 */
export function zstdDecompress(data: Uint8Array, o: ZstdDecompressOptions = {}): Uint8Array {
  const d = bytes(data);
  return codec.get().zstdDecompress(d, maxBytes(o), o.dictionary);
}

/**
 * Trains a zstd dictionary (ZDICT) from samples, e.g. pages of earlier images.
 * Native only: training is an offline step; TypeScript-only nodes use the result.
 * @throws DWCPError `ERR_NATIVE_UNAVAILABLE` without the addon, `ERR_DICTIONARY`
 *   when the samples cannot make a dictionary (too few or too uniform)
 */
export function trainDictionary(samples: readonly Uint8Array[], capacity = 112_640): Uint8Array {
  const { train } = codec.get();
  if (!train)
    throw new DWCPError(
      "ERR_NATIVE_UNAVAILABLE",
      "dictionary training needs the native addon (libzstd's ZDICT)",
    );
  return train(
    Buffer.concat(samples as Uint8Array[]),
    Uint32Array.from(samples, (s) => s.length),
    capacity,
  );
}
