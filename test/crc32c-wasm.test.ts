// The TypeScript path's CRC-32C runs hash-wasm's WebAssembly from WASM_MIN_BYTES
// on and continues from an initial value by prefixing four forged bytes: it must
// give the slicing-by-8 table's values for every length, offset and initial value.
import { randomFillSync } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { crc32cTs } from "../src/hash/crc32c-ts.js";
import { crc32cWasm, WASM_MIN_BYTES } from "../src/hash/crc32c-wasm.js";

const pool = randomFillSync(new Uint8Array((1 << 20) + 64));

describe("CRC-32C through WebAssembly", () => {
  it("equals the table around the switch-over length, at every offset 0…7", () => {
    for (let off = 0; off < 8; off++) {
      for (let len = WASM_MIN_BYTES - 40; len <= WASM_MIN_BYTES + 40; len++) {
        const view = pool.subarray(off, off + len);
        for (const init of [0, 1, 0xffffffff, (len * 2654435761) >>> 0]) {
          if (crc32cWasm(view, init) !== crc32cTs(view, init))
            expect.fail(`length ${len}, offset ${off}, initial ${init}`);
        }
      }
    }
  });

  it("equals the table for random lengths up to 1 MiB and random initial values", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1 << 20 }),
        fc.nat({ max: 63 }),
        fc.nat({ max: 0xffffffff }),
        (len, off, init) => {
          const view = pool.subarray(off, off + len);
          expect(crc32cWasm(view, init)).toBe(crc32cTs(view, init));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("continues a CRC over parts as over the whole (what frames do: header, then payload)", () => {
    const whole = pool.subarray(0, 70_000);
    for (const cut of [0, 1, 28, 511, 512, 4096, 69_999, 70_000]) {
      expect(crc32cWasm(whole.subarray(cut), crc32cWasm(whole.subarray(0, cut), 0))).toBe(crc32cTs(whole, 0));
    }
  });

  it('continues from the check value of "123456789" (0xE3069283) after a run of zeros as the table does', () => {
    // The same nine bytes after WASM_MIN_BYTES zero bytes, continued from their CRC.
    const zeros = new Uint8Array(WASM_MIN_BYTES);
    const nine = new TextEncoder().encode("123456789");
    const joined = new Uint8Array(zeros.length + nine.length);
    joined.set(nine, zeros.length);
    expect(crc32cTs(nine, 0)).toBe(0xe3069283);
    expect(crc32cWasm(joined, 0)).toBe(crc32cTs(nine, crc32cTs(zeros, 0)));
  });
});
