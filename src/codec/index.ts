/**
 * Payload codecs: LZ4 frame and zstd frame (with or without a trained
 * dictionary). Payloads are standard frames: `lz4 -d` and `zstd -d [-D dict]`
 * decode them.
 *
 * Two backends, picked once: the addon on the system liblz4/libzstd, or the
 * TypeScript path on npm packages (lz4-napi's frame API, the zstd wasm build of
 * @bokuweb/zstd-wasm). They may emit different bytes for the same input (other
 * library versions), but each decodes everything the other writes; the tests
 * check both directions. Dictionary training is native only (an offline step);
 * a TypeScript-only node still uses dictionaries it is given.
 *
 * @packageDocumentation
 */
import { createRequire } from "node:module";
import { createXXHash32, type IHasher } from "hash-wasm";
import { DWCPError } from "../errors.js";
import type { NativeBinding, NativeZstdDictionary } from "../native/binding.js";
import { chooseBackend, loadNative } from "../native/load.js";
import { lz4ContentSize, zstdContentSize, zstdDictionaryId, zstdFrameDictId } from "./frames.js";

export { lz4ContentSize, zstdContentSize, zstdDictionaryId, zstdFrameDictId } from "./frames.js";

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
  /** Refuse payloads that decode to more than this. @default 256 MiB */
  maxBytes?: number;
}

/** Options of the zstd decompressor. */
export interface ZstdDecompressOptions extends DecompressOptions {
  dictionary?: ZstdDictionary;
}

/** One backend's implementation of the codecs. */
interface CodecBackend {
  readonly name: string;
  lz4Compress(data: Uint8Array, level: number): Uint8Array;
  lz4Decompress(data: Uint8Array, max: number): Uint8Array;
  lz4CompressAsync(data: Uint8Array, level: number): Promise<Uint8Array>;
  zstdCompress(data: Uint8Array, level: number, dict: ZstdDictionary | undefined): Uint8Array;
  zstdDecompress(data: Uint8Array, max: number, dict: ZstdDictionary | undefined): Uint8Array;
  zstdCompressAsync(data: Uint8Array, level: number, dict: ZstdDictionary | undefined): Promise<Uint8Array>;
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
    lz4Decompress: wrap((d, max) => nb.lz4Decompress(d, max)),
    lz4CompressAsync: (d, level) => nb.lz4CompressAsync(d, level).catch(rethrow),
    zstdCompress: wrap((d, level, dict) => nb.zstdCompress(d, level, dict?.native(b))),
    zstdDecompress: wrap((d, max, dict) => nb.zstdDecompress(d, max, dict?.native(b))),
    zstdCompressAsync: (d, level, dict) => nb.zstdCompressAsync(d, level, dict?.native(b)).catch(rethrow),
  };
}

// --- TypeScript path -------------------------------------------------------

interface Lz4Napi {
  compressFrameSync(d: Buffer, o?: { contentChecksum?: boolean }): Buffer;
  decompressFrameSync(d: Buffer): Buffer;
  compressFrame(d: Uint8Array, o?: { contentChecksum?: boolean }): Promise<Buffer>;
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

function wasm(): ZstdWasm {
  return zstdWasm!;
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
  xxh32!.init();
  xxh32!.update(out.subarray(4, 14));
  out[14] = xxh32!.digest("binary")[2]!; // (XXH32 >> 8) & 0xff; the digest is big-endian
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
    name: "typescript",
    lz4Compress: (d) => withContentSize(lz4.compressFrameSync(buf(d), { contentChecksum: false }), d.length),
    lz4Decompress: (d, max) => {
      const declared = lz4ContentSize(d);
      // Without a declared size (an empty input, or another encoder), LZ4's
      // largest expansion (255:1) still bounds the output before decoding.
      if (declared === undefined && d.length * 255 > max)
        throw new DWCPError(
          "ERR_MESSAGE_TOO_LARGE",
          "LZ4 frame without a content size could decode beyond the limit",
        );
      if (declared !== undefined) checkSize(declared, max, "LZ4");
      let out: Buffer;
      try {
        out = lz4.decompressFrameSync(buf(d));
      } catch (err) {
        rethrow(err);
      }
      if (declared !== undefined ? out.length !== declared : out.length > max)
        throw new DWCPError("ERR_CORRUPT_PAYLOAD", "LZ4 frame content size does not match its data");
      return out;
    },
    lz4CompressAsync: async (d) =>
      withContentSize(await lz4.compressFrame(d, { contentChecksum: false }), d.length),
    zstdCompress: (d, level, dict) => zc(d, level, dict),
    zstdDecompress: (d, max, dict) => {
      const size = checkSize(zstdContentSize(d), max, "zstd");
      checkDict(d, dict);
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

const backend: CodecBackend = chooseBackend("codec", nativeBackend, tsBackend());
if (backend.name === "typescript") {
  // The wasm modules instantiate asynchronously; after import every call is synchronous.
  const m = require("@bokuweb/zstd-wasm") as ZstdWasm;
  await m.init();
  zstdWasm = m;
  xxh32 = await createXXHash32(0);
}

/** `"native"` or `"typescript"`. */
export const codecBackend: string = backend.name;

function level(o: CompressOptions, dflt: number, min: number, max: number): number {
  const l = o.level ?? dflt;
  if (!Number.isInteger(l) || l < min || l > max)
    throw new DWCPError("ERR_INVALID_ARG", `compression level must be an integer in ${min}…${max}, got ${l}`);
  return l;
}

function bytes(d: unknown): Uint8Array {
  if (!(d instanceof Uint8Array)) throw new DWCPError("ERR_INVALID_ARG", "expected a Uint8Array");
  return d;
}

/** Compresses `data` into one LZ4 frame (content size recorded, no content checksum). */
export function lz4Compress(data: Uint8Array, o: CompressOptions = {}): Uint8Array {
  return backend.lz4Compress(bytes(data), level(o, 1, 0, 12));
}

/** The same on the libuv pool (native), so several can use several cores. */
export function lz4CompressAsync(data: Uint8Array, o: CompressOptions = {}): Promise<Uint8Array> {
  return backend.lz4CompressAsync(bytes(data), level(o, 1, 0, 12));
}

/**
 * Decodes one LZ4 frame.
 * @throws DWCPError `ERR_CORRUPT_PAYLOAD` (not a frame, corrupt, truncated),
 *   `ERR_MESSAGE_TOO_LARGE` (above `maxBytes`)
 */
export function lz4Decompress(data: Uint8Array, o: DecompressOptions = {}): Uint8Array {
  return backend.lz4Decompress(bytes(data), o.maxBytes ?? DEFAULT_MAX_DECODED);
}

/** Compresses `data` into one zstd frame (content size and, with a dictionary, its id recorded). */
export function zstdCompress(data: Uint8Array, o: ZstdCompressOptions = {}): Uint8Array {
  return backend.zstdCompress(bytes(data), level(o, o.dictionary?.level ?? 3, 1, 19), o.dictionary);
}

/** The same on the libuv pool (native). */
export function zstdCompressAsync(data: Uint8Array, o: ZstdCompressOptions = {}): Promise<Uint8Array> {
  return backend.zstdCompressAsync(bytes(data), level(o, o.dictionary?.level ?? 3, 1, 19), o.dictionary);
}

/**
 * Decodes one zstd frame.
 * @throws DWCPError `ERR_DICTIONARY` (the frame's dictionary id is not the one
 *   given), `ERR_CORRUPT_PAYLOAD`, `ERR_MESSAGE_TOO_LARGE`
 */
export function zstdDecompress(data: Uint8Array, o: ZstdDecompressOptions = {}): Uint8Array {
  const d = bytes(data);
  if (backend.name !== "native") checkDict(d, o.dictionary);
  return backend.zstdDecompress(d, o.maxBytes ?? DEFAULT_MAX_DECODED, o.dictionary);
}

/**
 * Trains a zstd dictionary (ZDICT) from samples, e.g. pages of earlier images.
 * Native only: training is an offline step; TypeScript-only nodes use the result.
 * @throws DWCPError `ERR_NATIVE_UNAVAILABLE` without the addon, `ERR_DICTIONARY`
 *   when the samples cannot make a dictionary (too few or too uniform)
 */
export function trainDictionary(samples: readonly Uint8Array[], capacity = 112_640): Uint8Array {
  const b = loadNative().binding;
  if (backend.name !== "native" || !b?.zstdTrain)
    throw new DWCPError(
      "ERR_NATIVE_UNAVAILABLE",
      "dictionary training needs the native addon (libzstd's ZDICT)",
    );
  const sizes = Uint32Array.from(samples, (s) => s.length);
  try {
    return b.zstdTrain(Buffer.concat(samples as Uint8Array[]), sizes, capacity);
  } catch (err) {
    rethrow(err);
  }
}
