/**
 * CRC-32C without the addon on long inputs: hash-wasm's WebAssembly CRC-32 with
 * the Castagnoli polynomial, about twice the slicing-by-8 table's speed from half
 * a KiB on (`npm run bench -- ts-lane`). Below that the call into WebAssembly costs
 * more than it saves, and the table runs.
 *
 * hash-wasm starts every CRC from zero. A CRC that continues from `initial` is the
 * CRC of four bytes chosen so that their CRC is `initial`, followed by the data:
 * the four bytes come from running the table backwards from `initial` (each table
 * entry has a distinct top byte, so each step back is determined) and forwards
 * from the start value. Values are identical to the table's and the addon's.
 */
import { createCRC32 } from "hash-wasm";
import { CRC32C_TABLE, crc32cTs } from "./crc32c-ts.js";

/** Below this many bytes the table is faster than a call into WebAssembly. */
export const WASM_MIN_BYTES = 512;

const hasher = await createCRC32(0x82f63b78);

/** Table index by the top byte of its entry (a permutation for this polynomial). */
const BY_TOP = (() => {
  const inv = new Uint8Array(256);
  for (let i = 0; i < 256; i++) inv[CRC32C_TABLE[i]! >>> 24] = i;
  return inv;
})();

const prefix = new Uint8Array(4);
const steps = new Uint8Array(4);

/** Fills `prefix` with four bytes whose CRC-32C is `crc`. */
function forge(crc: number): void {
  // The register (not inverted) after the four bytes must be ~crc. Backwards,
  // each step's table index is fixed by the register's top byte.
  let r = ~crc >>> 0;
  for (let k = 3; k >= 0; k--) {
    const i = BY_TOP[r >>> 24]!;
    steps[k] = i;
    r = ((r ^ CRC32C_TABLE[i]!) << 8) >>> 0;
  }
  // Forwards from the start value, each byte is whatever yields that index.
  r = 0xffffffff;
  for (let k = 0; k < 4; k++) {
    prefix[k] = (steps[k]! ^ r) & 0xff;
    r = (r >>> 8) ^ CRC32C_TABLE[steps[k]!]!;
  }
}

/** CRC-32C of `data`, continuing from `initial` (the CRC of the bytes before). */
export function crc32cWasm(data: Uint8Array, initial: number): number {
  if (data.length < WASM_MIN_BYTES) return crc32cTs(data, initial);
  hasher.init();
  if (initial !== 0) {
    forge(initial);
    hasher.update(prefix);
  }
  hasher.update(data);
  const d = hasher.digest("binary");
  return ((d[0]! << 24) | (d[1]! << 16) | (d[2]! << 8) | d[3]!) >>> 0;
}
