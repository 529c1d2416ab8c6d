/**
 * XXH3-64 (unseeded) without the addon, through hash-wasm's WebAssembly build of
 * the reference implementation. hash-wasm instantiates asynchronously, hence the
 * top-level await: after import, every call is synchronous like the native one.
 */
import { createXXHash3 } from "hash-wasm";

const hasher = await createXXHash3();

function digest(): bigint {
  // Canonical XXH3 output is big-endian.
  const d = hasher.digest("binary");
  return new DataView(d.buffer, d.byteOffset, 8).getBigUint64(0, false);
}

/** XXH3-64 of `data` with seed 0. */
export function xxh3Ts(data: Uint8Array): bigint {
  hasher.init();
  hasher.update(data);
  return digest();
}

/** XXH3-64 of each `pageSize` slice of `data` (the last may be short) into `out`. */
export function xxh3PagesTs(data: Uint8Array, pageSize: number, out: BigUint64Array): number {
  const count = Math.ceil(data.length / pageSize);
  for (let i = 0; i < count; i++) {
    const start = i * pageSize;
    hasher.init();
    hasher.update(data.subarray(start, Math.min(start + pageSize, data.length)));
    out[i] = digest();
  }
  return count;
}
