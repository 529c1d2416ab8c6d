// Native and TypeScript hashing must agree bit for bit: random lengths up to 1 MiB
// at random offsets (unaligned views included), and random page sizes for batches.
import { randomFillSync } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { crc32c, hashPages, tsHashBackend, xxh3_64 } from "../src/hash/index.js";
import { describeNative, itNative, native } from "./helpers/native.js";

const MiB = 1 << 20;
// One random pool; each case takes a view at a random offset so both alignment and
// content vary without allocating per case.
const pool = randomFillSync(new Uint8Array(2 * MiB + 64));

const lengths = fc.oneof(
  fc.integer({ min: 0, max: 300 }),
  fc.integer({ min: 0, max: 64 * 1024 }),
  fc.integer({ min: 0, max: MiB }),
  // fast-check biases integers towards small values; make sure big inputs happen.
  fc.integer({ min: MiB / 2, max: MiB }),
);

describeNative("native == TypeScript hashing", () => {
  itNative("CRC-32C over random lengths 0…1 MiB at random offsets", () => {
    fc.assert(
      fc.property(lengths, fc.nat({ max: MiB + 63 }), fc.nat({ max: 0xffffffff }), (len, off, init) => {
        const view = pool.subarray(off, off + len);
        expect(native!.crc32c(view, init)).toBe(tsHashBackend.crc32c(view, init));
      }),
      { numRuns: 300 },
    );
  });

  // Each implementation the CPU offers, not only the chosen one: a machine without
  // AVX-512 runs the sse4.2 path in production, and this one must have checked it.
  for (const impl of native?.features.crc32cImpls ?? []) {
    itNative(`CRC-32C "${impl}": every length 0…1300 at offsets 0…15, then random lengths`, () => {
      // The folding path has a head of 256 bytes, then 256-, 64- and 16-byte steps and
      // a byte tail: every length up to 1300 crosses each boundary at every alignment.
      for (let off = 0; off < 16; off++) {
        for (let len = 0; len <= 1300; len++) {
          const view = pool.subarray(off, off + len);
          const init = (len * 2654435761 + off) >>> 0;
          const want = tsHashBackend.crc32c(view, init);
          if (native!.crc32cWith(impl, view, init) !== want)
            expect.fail(`${impl}: length ${len}, offset ${off}, initial ${init}`);
        }
      }
      fc.assert(
        fc.property(lengths, fc.nat({ max: MiB + 63 }), fc.nat({ max: 0xffffffff }), (len, off, init) => {
          const view = pool.subarray(off, off + len);
          expect(native!.crc32cWith(impl, view, init)).toBe(tsHashBackend.crc32c(view, init));
        }),
        { numRuns: 100 },
      );
    });
  }

  itNative("the chosen CRC-32C implementation is the last (fastest) one the CPU offers", () => {
    const impls = native!.features.crc32cImpls;
    expect(impls[0]).toBe("table");
    expect(native!.features.crc32c).toBe(impls.at(-1));
    expect(() => native!.crc32cWith("no-such" as "table", new Uint8Array(1), 0)).toThrow(
      /no CRC-32C implementation/,
    );
  });

  itNative("XXH3-64 over random lengths 0…1 MiB at random offsets", () => {
    fc.assert(
      fc.property(lengths, fc.nat({ max: MiB + 63 }), (len, off) => {
        const view = pool.subarray(off, off + len);
        expect(native!.xxh3_64(view)).toBe(tsHashBackend.xxh3_64(view));
      }),
      { numRuns: 300 },
    );
  });

  itNative("batched page hashes over random page sizes and buffer lengths", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(1, 7, 64, 512, 4096, 8192, 65536),
        fc.nat({ max: 256 }),
        fc.nat({ max: 65535 }),
        fc.nat({ max: 63 }),
        (pageSize, pages, tail, off) => {
          // Up to 256 whole pages plus a short tail: large buffers without spending
          // the test on a quarter-million 1-byte pages.
          const len = Math.min(pages * pageSize + (tail % pageSize), 2 * MiB);
          const view = pool.subarray(off, off + len);
          const count = Math.ceil(len / pageSize);
          const a = new BigUint64Array(count);
          const b = new BigUint64Array(count);
          expect(native!.xxh3Pages(view, pageSize, a)).toBe(count);
          expect(tsHashBackend.xxh3Pages(view, pageSize, b)).toBe(count);
          expect(a).toEqual(b);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("views of a SharedArrayBuffer (a guest's memory shared with a worker)", () => {
  it("crc32c, xxh3_64 and hashPages read them, with offsets, as they read an ArrayBuffer's", () => {
    const shared = new Uint8Array(new SharedArrayBuffer(64 * 1024 + 16));
    shared.set(pool.subarray(0, shared.length));
    const copy = Uint8Array.from(shared);
    for (const [from, to] of [
      [0, shared.length],
      [16, 16 + 64 * 1024],
      [3, 3 + 4097],
    ] as const) {
      const s = shared.subarray(from, to);
      const c = copy.subarray(from, to);
      expect(crc32c(s)).toBe(crc32c(c));
      expect(xxh3_64(s)).toBe(xxh3_64(c));
      if ((to - from) % 4096 === 0) expect(hashPages(s, 4096)).toEqual(hashPages(c, 4096));
    }
    // The output of hashPages may live in shared memory too.
    const out = new BigUint64Array(new SharedArrayBuffer(16 * 8));
    hashPages(shared.subarray(16, 16 + 64 * 1024), 4096, out);
    expect([...out]).toEqual([...hashPages(copy.subarray(16, 16 + 64 * 1024), 4096)]);
  });
});
