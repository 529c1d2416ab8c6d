/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) in TypeScript, slicing-by-8.
 * The twin of native/checksum.cc's table path; the hardware path gives the same values.
 */

const POLY = 0x82f63b78;

const TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  const t0 = t[0]!;
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (POLY & -(c & 1));
    t0[i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 8; s++) {
      const prev = t[s - 1]![i]!;
      t[s]![i] = ((prev >>> 8) ^ t0[prev & 0xff]!) >>> 0;
    }
  }
  return t;
})();

/** The byte-at-a-time table (reflected), for code that runs the register itself. */
export const CRC32C_TABLE: Uint32Array = TABLES[0]!;

const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
  Uint32Array,
];

/** CRC-32C of `data`, continuing from `initial` (the CRC of the bytes before). */
export function crc32cTs(data: Uint8Array, initial: number): number {
  let crc = ~initial >>> 0;
  let i = 0;
  const n = data.length;
  const end8 = n - (n & 7);
  for (; i < end8; i += 8) {
    const lo = (crc ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    crc =
      T7[lo & 0xff]! ^
      T6[(lo >>> 8) & 0xff]! ^
      T5[(lo >>> 16) & 0xff]! ^
      T4[lo >>> 24]! ^
      T3[data[i + 4]!]! ^
      T2[data[i + 5]!]! ^
      T1[data[i + 6]!]! ^
      T0[data[i + 7]!]!;
  }
  for (; i < n; i++) crc = (crc >>> 8) ^ T0[(crc ^ data[i]!) & 0xff]!;
  return ~crc >>> 0;
}
