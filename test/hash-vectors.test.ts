// Published test vectors, checked on every hash backend this process has.
import { describe, expect, it } from "vitest";
import { type HashBackend, hashBackend, hashPages, tsHashBackend } from "../src/hash/index.js";
import { crc32c, xxh3_64 } from "../src/index.js";
import { native, nativeSkipReason } from "./helpers/native.js";

const nativeBackend: HashBackend | undefined = native
  ? { name: "native", crc32c: native.crc32c, xxh3_64: native.xxh3_64, xxh3Pages: native.xxh3Pages }
  : undefined;

const backends: [string, HashBackend | undefined][] = [
  ["ts", tsHashBackend],
  [nativeBackend ? "native" : `native [skipped: ${nativeSkipReason}]`, nativeBackend],
];

const ascii = (s: string) => new TextEncoder().encode(s);

// xxHash's sanity buffer: byteGen starts at PRIME32 and is multiplied by PRIME64
// (mod 2^64) after each byte; each byte is byteGen's top 8 bits.
function sanityBuffer(length: number): Uint8Array {
  const out = new Uint8Array(length);
  let gen = 2654435761n;
  for (let i = 0; i < length; i++) {
    out[i] = Number(gen >> 56n);
    gen = (gen * 11400714785074694797n) & 0xffffffffffffffffn;
  }
  return out;
}

// XXH3_64bits, seed 0, from the xxHash project's published sanity table; the lengths
// cover every size class (0, 1-3, 4-8, 9-16, 17-128, 129-240, and long inputs ending
// mid-stripe, on a stripe, on a block boundary).
const XXH3_VECTORS: [number, bigint][] = [
  [0, 0x2d06800538d394c2n],
  [1, 0xc44bdff4074eecdbn],
  [6, 0x27b56a84cd2d7325n],
  [12, 0xa713daf0dfbb77e7n],
  [24, 0xa3fe70bf9d3510ebn],
  [48, 0x397da259ecba1f11n],
  [80, 0xbcdefbbb2c47c90an],
  [195, 0xcd94217ee362ec3an],
  [403, 0xcdeb804d65c6dea4n],
  [512, 0x617e49599013cb6bn],
  [2048, 0xdd59e2c3a5f038e0n],
  [2099, 0xc6b9d9b3fc9ac765n],
  [2240, 0x6e73a90539cf2948n],
  [2367, 0xcb37aeb9e5d361edn],
];

// CRC-32C check value and the iSCSI vectors of RFC 3720 §B.4.
const CRC_VECTORS: [string, Uint8Array, number][] = [
  ["ASCII 123456789", ascii("123456789"), 0xe3069283],
  ["empty", new Uint8Array(0), 0],
  ["32 zero bytes", new Uint8Array(32), 0x8a9136aa],
  ["32 0xFF bytes", new Uint8Array(32).fill(0xff), 0x62a8ab43],
  ["32 ascending bytes", Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
  ["32 descending bytes", Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
];

describe.each(backends)("hash vectors on the %s backend", (_name, backend) => {
  const run = backend ? it : it.skip;

  run.each(CRC_VECTORS)("CRC-32C of %s", (_label, data, expected) => {
    expect(backend!.crc32c(data, 0)).toBe(expected);
  });

  run("CRC-32C continues across parts", () => {
    const all = sanityBuffer(4099);
    const whole = backend!.crc32c(all, 0);
    for (const cut of [0, 1, 7, 8, 9, 4096, 4099]) {
      const first = backend!.crc32c(all.subarray(0, cut), 0);
      expect(backend!.crc32c(all.subarray(cut), first)).toBe(whole);
    }
  });

  run.each(XXH3_VECTORS)("XXH3-64 of the %i-byte sanity buffer", (length, expected) => {
    expect(backend!.xxh3_64(sanityBuffer(length))).toBe(expected);
  });

  run("xxh3Pages equals per-page xxh3_64, with a short last page", () => {
    const data = sanityBuffer(3 * 512 + 195);
    const out = new BigUint64Array(4);
    expect(backend!.xxh3Pages(data, 512, out)).toBe(4);
    expect(out[1]).toBe(backend!.xxh3_64(data.subarray(512, 1024)));
    expect(out[3]).toBe(backend!.xxh3_64(data.subarray(1536)));
    expect(out[0]).toBe(0x617e49599013cb6bn);
  });
});

describe("public hashing API", () => {
  it(`uses the ${hashBackend().name} backend and accepts any byte view`, () => {
    const bytes = ascii("123456789");
    const copy = new Uint8Array(16);
    copy.set(bytes, 5);
    expect(crc32c(bytes)).toBe(0xe3069283);
    expect(crc32c(Buffer.from(bytes))).toBe(0xe3069283);
    expect(crc32c(new DataView(copy.buffer, 5, 9))).toBe(0xe3069283);
    expect(crc32c(bytes.slice().buffer)).toBe(0xe3069283);
    expect(xxh3_64(sanityBuffer(403))).toBe(0xcdeb804d65c6dea4n);
  });

  it("hashPages allocates ceil(length / pageSize) entries and checks the output size", () => {
    const data = sanityBuffer(10_000);
    const pages = hashPages(data, 4096);
    expect(pages.length).toBe(3);
    expect(pages[2]).toBe(xxh3_64(data.subarray(8192)));
    expect(hashPages(new Uint8Array(0)).length).toBe(0);
    expect(() => hashPages(data, 4096, new BigUint64Array(2))).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
  });

  it.each([0, -1, 1.5, Number.NaN])("rejects page size %s with ERR_INVALID_ARG", (size) => {
    expect(() => hashPages(new Uint8Array(8), size)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
  });

  it.each([-1, 2 ** 32, 0.5])("rejects CRC initial value %s with ERR_INVALID_ARG", (initial) => {
    expect(() => crc32c(new Uint8Array(8), initial)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
  });

  it("rejects non-byte input with ERR_INVALID_ARG", () => {
    expect(() => crc32c("abc" as unknown as Uint8Array)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
  });
});
