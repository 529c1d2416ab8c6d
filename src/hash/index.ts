/**
 * Checksums and page hashing.
 *
 * - {@link crc32c}: CRC-32C (Castagnoli), the frame checksum.
 * - {@link xxh3_64}: XXH3-64 with seed 0, page identity for dedup and deltas.
 * - {@link hashPages}: XXH3-64 of every page of a buffer in one call.
 *
 * Native and TypeScript implementations return identical values; which one runs
 * is decided once, on the first call (see `nativeStatus()` and `useBackend()`).
 *
 * @packageDocumentation
 */
import { invalidArg } from "../errors.js";
import { type BackendName, defineBackend } from "../native/load.js";
import { crc32cWasm, WASM_MIN_BYTES } from "./crc32c-wasm.js";
import { xxh3PagesTs, xxh3Ts } from "./xxh3-ts.js";

/** Bytes accepted by the hashing API: any typed array, DataView or ArrayBuffer. */
export type BytesLike = ArrayBufferView | ArrayBuffer;

/** One implementation of the hash functions (native or TypeScript). */
export interface HashBackend {
  readonly name: BackendName;
  crc32c(data: Uint8Array, initial: number): number;
  xxh3_64(data: Uint8Array): bigint;
  xxh3Pages(data: Uint8Array, pageSize: number, out: BigUint64Array): number;
}

/** What the TypeScript path runs, for reports. */
export const TS_HASH_DETAIL = `CRC-32C on hash-wasm's WebAssembly from ${WASM_MIN_BYTES} B (slicing-by-8 table below), XXH3 on hash-wasm`;

/**
 * The implementation without the addon (always available): CRC-32C from
 * hash-wasm's WebAssembly on inputs of half a KiB and more, the slicing-by-8
 * table below; XXH3 from hash-wasm.
 */
export const tsHashBackend: HashBackend = {
  name: "ts",
  crc32c: crc32cWasm,
  xxh3_64: xxh3Ts,
  xxh3Pages: xxh3PagesTs,
};

const backend = defineBackend<HashBackend>("hash", {
  native: (b) => ({ name: "native", crc32c: b.crc32c, xxh3_64: b.xxh3_64, xxh3Pages: b.xxh3Pages }),
  ts: () => tsHashBackend,
  detail: (b) => `crc32c ${b.features.crc32c}, xxh3 ${b.features.xxh3}`,
});

/**
 * The backend in use for this process, chosen on the first call.
 * @throws DWCPError `ERR_NATIVE_REQUIRED` when `DWCP_NATIVE=1` and the addon is unavailable
 */
export function hashBackend(): HashBackend {
  return backend.get();
}

/** Views any {@link BytesLike} as a Uint8Array without copying. */
export function asBytes(data: BytesLike, name = "data"): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw invalidArg(name, "an ArrayBufferView or ArrayBuffer", data);
}

/**
 * CRC-32C of `data`.
 *
 * @param initial - CRC of the preceding bytes, to checksum a message in parts
 *   (`crc32c(b, crc32c(a))` equals `crc32c(a ++ b)`). @default 0
 * @returns unsigned 32-bit value
 */
export function crc32c(data: BytesLike, initial = 0): number {
  if (!Number.isInteger(initial) || initial < 0 || initial > 0xffffffff) {
    throw invalidArg("initial", "an unsigned 32-bit integer", initial);
  }
  return backend.get().crc32c(asBytes(data), initial);
}

/** XXH3-64 (seed 0) of `data`, as an unsigned 64-bit bigint. */
export function xxh3_64(data: BytesLike): bigint {
  return backend.get().xxh3_64(asBytes(data));
}

/**
 * XXH3-64 of every `pageSize` slice of `data` in one call (the last page may be
 * short). This is the fast path for page identity: the per-call cost is paid
 * once per batch, not per page.
 *
 * @param pageSize - bytes per page. @default 4096
 * @param out - where to write the hashes; must hold `ceil(length / pageSize)`
 *   entries. Allocated when omitted.
 * @returns the array of hashes (`out` when given), one per page
 */
export function hashPages(data: BytesLike, pageSize = 4096, out?: BigUint64Array): BigUint64Array {
  if (!Number.isSafeInteger(pageSize) || pageSize <= 0) {
    throw invalidArg("pageSize", "a positive integer", pageSize);
  }
  const bytes = asBytes(data);
  const count = Math.ceil(bytes.length / pageSize);
  const dst = out ?? new BigUint64Array(count);
  if (!(dst instanceof BigUint64Array) || dst.length < count) {
    throw invalidArg("out", `a BigUint64Array of at least ${count} entries`, dst);
  }
  backend.get().xxh3Pages(bytes, pageSize, dst);
  return dst;
}
