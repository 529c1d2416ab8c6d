// The addon's decoders against hostile peers (issue #15, items 1 and 2), called
// directly: the TypeScript checks in front of them are not counted on. Cases that
// crash an unhardened addon or measure memory run in a child process, so a crash
// is a failed assertion and the figures belong to that one decode.
import { randomFillSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { hashPages, xxh3_64 } from "../src/hash/index.js";
import type { NativeBinding } from "../src/native/binding.js";
import { runTs } from "./helpers/child.js";
import { codeOf } from "./helpers/codes.js";
import {
  baselineDigest,
  fullPageFrame,
  lz4WithDeclaredSize,
  lz4WithoutSize,
  pageFrame,
  zstdRleFrame,
} from "./helpers/hostile-frames.js";
import { describeNative, native, nativeSkipReason } from "./helpers/native.js";
import { buildFakeVerbs } from "./rig/verbs.js";

const MiB = 1 << 20;
const b = native as Required<NativeBinding>;

interface ChildFigures {
  /** The error code of the decode, or "resolved". */
  code: string;
  /** Growth of the address space peak (VmPeak), of the resident peak (VmHWM), and of arrayBuffers, in bytes. */
  peak: number;
  hwm: number;
  arrayBuffers: number;
}

/**
 * Runs `setup` then the decode `call` in a fresh process and reports its error
 * code and how much the peaks of address space and resident memory grew across
 * the call. A crash fails the assertion on the exit status, with its stderr.
 */
function inChild(setup: string, call: string): ChildFigures {
  const r = runTs(
    `import { readFileSync } from "node:fs";
     import { randomFillSync } from "node:crypto";
     import { loadNative } from "./src/native/load.ts";
     import * as H from "./test/helpers/hostile-frames.ts";
     import { crc32c, hashPages, xxh3_64 } from "./src/hash/index.ts";
     const b = loadNative().binding;
     const vm = () => Object.fromEntries(readFileSync("/proc/self/status", "utf8").split("\\n")
       .filter((l) => /^Vm(Peak|HWM):/.test(l)).map((l) => [l.split(":")[0], Number.parseInt(l.split(":")[1]) * 1024]));
     // The libuv pool's threads (stacks) start on its first job: started here,
     // so the figures are the decode's own.
     await b.lz4CompressAsync(new Uint8Array(64), 1);
     ${setup}
     const before = vm();
     const ab = process.memoryUsage().arrayBuffers;
     let code = "resolved";
     try { await (${call}); } catch (e) { code = e.code ?? String(e); }
     const after = vm();
     console.log(JSON.stringify({ code, peak: after.VmPeak - before.VmPeak, hwm: after.VmHWM - before.VmHWM,
       arrayBuffers: process.memoryUsage().arrayBuffers - ab }));`,
    // One malloc arena: a thread's first allocation would otherwise reserve 64 MiB
    // of address space for its own, which is not the decode's.
    { DWCP_NATIVE: "1", MALLOC_ARENA_MAX: "1" },
  );
  expect(r.status, `child exited ${r.status}: ${r.stderr.slice(-2000)}`).toBe(0);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as ChildFigures;
}

describeNative("native page decoder: peer-supplied offsets and counts (issue #15 item 1)", () => {
  it("a first page with its high 32 bits set (2^52) is refused with ERR_CORRUPT_PAYLOAD, not wrapped onto page 0", async () => {
    const page = randomFillSync(new Uint8Array(4096));
    const frame = fullPageFrame(page, { firstPage: 1n << 52n });
    const target = new Uint8Array(4096);
    expect(await codeOf(b.decodePagesAsync(frame, target, null, null, null))).toBe("ERR_CORRUPT_PAYLOAD");
    expect(target.every((x) => x === 0)).toBe(true);
  });

  it("every first page from 2^32 up is refused, including those whose (first + n) · pageSize wraps below the target size", async () => {
    const page = randomFillSync(new Uint8Array(4096));
    const target = new Uint8Array(4096 * 4);
    for (const first of [1n << 32n, (1n << 52n) - 1n, 1n << 52n, (1n << 64n) - 1n, (1n << 64n) - 4096n]) {
      const frame = fullPageFrame(page, { firstPage: first });
      expect(await codeOf(b.decodePagesAsync(frame, target, null, null, null)), `first ${first}`).toBe(
        "ERR_CORRUPT_PAYLOAD",
      );
    }
  });

  it("with a baseline, a first page of 2^52 is refused before the baseline's hash array is indexed (the child exits 0)", () => {
    const r = inChild(
      `const base = randomFillSync(new Uint8Array(4096));
       const hashes = hashPages(base, 4096);
       const frame = H.pageFrame({ count: 1, baseVersion: 1, firstPage: 1n << 52n, payload: new Uint8Array([1]),
         baseDigest: H.baselineDigest(hashes) });`,
      "b.decodePagesAsync(frame, new Uint8Array(4096), base, hashes, null)",
    );
    expect(r.code).toBe("ERR_CORRUPT_PAYLOAD");
  });

  it("a frame naming a baseline that was not passed is ERR_BASELINE_MISSING, not a read through a null baseline (the child exits 0)", () => {
    const r = inChild(
      `const frame = H.pageFrame({ count: 1, firstPage: 1000n, baseVersion: 1, payload: new Uint8Array([1]) });`,
      "b.decodePagesAsync(frame, new Uint8Array(4096 * 1024), null, null, null)",
    );
    expect(r.code).toBe("ERR_BASELINE_MISSING");
  });

  it("baseline hashes that do not reach the batch are not read past their end: the baseline's pages are hashed instead", async () => {
    const base = randomFillSync(new Uint8Array(4 * 4096));
    const digest = baselineDigest(hashPages(base.subarray(3 * 4096), 4096));
    const frame = pageFrame({
      count: 1,
      firstPage: 3n,
      baseVersion: 1,
      baseDigest: digest,
      payload: new Uint8Array([1]),
    });
    const target = new Uint8Array(4 * 4096);
    // One hash for a four-page baseline: page 3's would be past the array's end.
    const short = hashPages(base.subarray(0, 4096), 4096);
    await b.decodePagesAsync(frame, target, base, short, null);
    expect(Buffer.compare(target.subarray(3 * 4096), base.subarray(3 * 4096))).toBe(0);
  });

  it("a page count or page size that does not fit the target, and a target not a whole number of pages, are ERR_CORRUPT_PAYLOAD", async () => {
    const page = randomFillSync(new Uint8Array(4096));
    const cases: [Uint8Array, number][] = [
      [fullPageFrame(page, { count: 0xffff_ffff }), 4096],
      [fullPageFrame(page, { pageSize: 0x8000_0000 }), 4096],
      [fullPageFrame(page, { pageSize: 0 }), 4096],
      [fullPageFrame(page), 4096 + 8],
    ];
    for (const [frame, size] of cases)
      expect(await codeOf(b.decodePagesAsync(frame, new Uint8Array(size), null, null, null))).toBe(
        "ERR_CORRUPT_PAYLOAD",
      );
  });
});

describeNative("native page encoder: ranges checked where pointers are made", () => {
  it("encodePagesAsync refuses a batch outside the image, a baseline of another size and a first page past 2^32 with ERR_INVALID_ARG", async () => {
    const image = new Uint8Array(4 * 4096);
    const o = {
      pageSize: 4096,
      first: 0,
      count: 4,
      codec: 1,
      level: 1,
      imageId: 1,
      version: 2,
      baseVersion: 0,
    };
    for (const [what, call] of [
      ["count past the end", () => b.encodePagesAsync(image, null, null, { ...o, count: 1000 })],
      ["first past the end", () => b.encodePagesAsync(image, null, null, { ...o, first: 4, count: 1 })],
      ["first past 2^32", () => b.encodePagesAsync(image, null, null, { ...o, first: 2 ** 32, count: 0 })],
      ["page size 0", () => b.encodePagesAsync(image, null, null, { ...o, pageSize: 0 })],
      [
        "short baseline",
        () => b.encodePagesAsync(image, new Uint8Array(4096), null, { ...o, baseVersion: 1 }),
      ],
    ] as const)
      expect(await codeOf(call), what).toBe("ERR_INVALID_ARG");
    // Baseline hashes too few for the batch are not read: the baseline is hashed instead.
    const base = randomFillSync(new Uint8Array(4 * 4096));
    const frame = await b.encodePagesAsync(image, base, new BigUint64Array(1), { ...o, baseVersion: 1 });
    const digest = new DataView(frame.buffer, frame.byteOffset).getBigUint64(56, true);
    expect(digest).toBe(baselineDigest(hashPages(base, 4096)));
  });
});

describeNative("native decoders: decompression bombs (issue #15 item 2)", () => {
  it("a 16 KiB zstd page frame claiming 1 GiB for a 4 KiB target is refused before decompressing: ERR_CORRUPT_PAYLOAD, peak RSS +< 64 MiB", () => {
    // 4096 RLE blocks: 16 KiB on the wire that really expand to 512 MiB.
    const r = inChild(
      `const payload = H.zstdRleFrame(1n << 30n, 4096);
       const frame = H.pageFrame({ codec: 2, count: 1, rawLength: 2 ** 30, payload });`,
      "b.decodePagesAsync(frame, new Uint8Array(4096), null, null, null)",
    );
    expect(r.code).toBe("ERR_CORRUPT_PAYLOAD");
    expect(r.hwm).toBeLessThan(64 * MiB);
    expect(r.arrayBuffers).toBeLessThan(64 * MiB);
  });

  it("a 16 KiB LZ4 page frame claiming 1 GiB for a 4 KiB target is refused before anything is allocated for it: address space +< 64 MiB", () => {
    const r = inChild(
      `const data = randomFillSync(new Uint8Array(16 * 1024));
       const payload = await H.lz4WithDeclaredSize(b.lz4Compress(data, 1), 1n << 30n);
       const frame = H.pageFrame({ codec: 1, count: 1, rawLength: 2 ** 30, payload });`,
      "b.decodePagesAsync(frame, new Uint8Array(4096), null, null, null)",
    );
    expect(r.code).toBe("ERR_CORRUPT_PAYLOAD");
    expect(r.peak).toBeLessThan(64 * MiB);
    expect(r.hwm).toBeLessThan(64 * MiB);
  });

  it("lz4Decompress of a 16 KiB frame declaring 1 GiB (limit 2 GiB) refuses the claim before allocating: ERR_CORRUPT_PAYLOAD, address space +< 64 MiB", () => {
    const r = inChild(
      `const data = randomFillSync(new Uint8Array(16 * 1024));
       const frame = await H.lz4WithDeclaredSize(b.lz4Compress(data, 1), 1n << 30n);`,
      "b.lz4Decompress(frame, 2 ** 31)",
    );
    expect(r.code).toBe("ERR_CORRUPT_PAYLOAD");
    expect(r.peak).toBeLessThan(64 * MiB);
  });

  it("zstdDecompress of a 16 KiB frame declaring 1 GiB whose blocks hold 512 MiB (limit 2 GiB) is refused before decoding: ERR_CORRUPT_PAYLOAD, peak RSS +< 64 MiB", () => {
    const r = inChild(`const frame = H.zstdRleFrame(1n << 30n, 4096);`, "b.zstdDecompress(frame, 2 ** 31)");
    expect(r.code).toBe("ERR_CORRUPT_PAYLOAD");
    expect(r.hwm).toBeLessThan(64 * MiB);
    expect(r.peak).toBeLessThan(64 * MiB);
  });

  it("zstdDecompress of a 116-byte frame declaring 256 MiB (the default limit) is refused before allocating: address space +< 32 MiB", () => {
    const r = inChild(
      `const frame = H.zstdRawFrame(256n << 20n, randomFillSync(new Uint8Array(100)));`,
      "b.zstdDecompress(frame, 256 * 1024 * 1024)",
    );
    expect(r.code).toBe("ERR_CORRUPT_PAYLOAD");
    expect(r.peak).toBeLessThan(32 * MiB);
  });

  it("a declared size above the caller's limit is ERR_MESSAGE_TOO_LARGE for LZ4 and zstd, with and without a dictionary", async () => {
    const lz4 = await lz4WithDeclaredSize(b.lz4Compress(new Uint8Array(1000), 1), 1000n);
    expect(await codeOf(() => b.lz4Decompress(lz4, 999))).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(await codeOf(b.lz4DecompressAsync(lz4, 999))).toBe("ERR_MESSAGE_TOO_LARGE");
    const zstd = zstdRleFrame(BigInt(MiB), 8);
    expect(await codeOf(() => b.zstdDecompress(zstd, MiB - 1))).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(await codeOf(b.zstdDecompressAsync(zstd, MiB - 1))).toBe("ERR_MESSAGE_TOO_LARGE");
    const samples = Array.from({ length: 200 }, (_, i) =>
      new TextEncoder().encode(`page ${i} of image ${i % 7}: ${"x".repeat(i % 50)}`),
    );
    const dict = new b.ZstdDictionary(
      b.zstdTrain(
        Buffer.concat(samples),
        Uint32Array.from(samples, (s) => s.length),
        4096,
      ),
      3,
    );
    const withDict = b.zstdCompress(new Uint8Array(5000).fill(9), 3, dict);
    expect(await codeOf(() => b.zstdDecompress(withDict, 4999, dict))).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(Buffer.from(b.zstdDecompress(withDict, 5000, dict)).equals(Buffer.alloc(5000, 9))).toBe(true);
  });

  it("an LZ4 frame without a content size decodes only up to the limit: 1 MiB limit, 4 MiB of content is ERR_MESSAGE_TOO_LARGE; limit 0 refuses any output", async () => {
    const sized = b.lz4Compress(new Uint8Array(4 * MiB), 1);
    const unsized = await lz4WithoutSize(sized);
    expect(await codeOf(() => b.lz4Decompress(unsized, MiB))).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(b.lz4Decompress(unsized, 4 * MiB).length).toBe(4 * MiB);
    const small = await lz4WithoutSize(b.lz4Compress(new TextEncoder().encode("ten bytes!"), 1));
    expect(await codeOf(() => b.lz4Decompress(small, 0))).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(Buffer.from(b.lz4Decompress(small, 10)).toString()).toBe("ten bytes!");
  });

  it("a limit that is negative or NaN counts as 0, not as no limit", async () => {
    const lz4 = b.lz4Compress(new Uint8Array(1000), 1);
    const zstd = b.zstdCompress(new Uint8Array(1000), 3);
    for (const max of [-1, Number.NaN]) {
      expect(await codeOf(() => b.lz4Decompress(lz4, max)), `lz4, limit ${max}`).toBe(
        "ERR_MESSAGE_TOO_LARGE",
      );
      expect(await codeOf(() => b.zstdDecompress(zstd, max)), `zstd, limit ${max}`).toBe(
        "ERR_MESSAGE_TOO_LARGE",
      );
    }
  });

  it("honest frames that expand a lot still decode: zstd RLE blocks to 4 MiB (8,000:1), LZ4 to 4 MiB, a page frame of 256 FULL pages of one byte value", async () => {
    const zeros = b.zstdDecompress(zstdRleFrame(BigInt(4 * MiB), 32), 4 * MiB);
    expect(Buffer.from(zeros).equals(Buffer.alloc(4 * MiB))).toBe(true);
    const ones = b.lz4Decompress(b.lz4Compress(new Uint8Array(4 * MiB).fill(1), 1), 4 * MiB);
    expect(Buffer.from(ones).equals(Buffer.alloc(4 * MiB, 1))).toBe(true);
    const pages = 256;
    const raw = new Uint8Array(pages + pages * 4096).fill(3, 0, pages);
    raw.fill(7, pages);
    const hashes = Array.from({ length: pages }, () => xxh3_64(new Uint8Array(4096).fill(7)));
    const frame = pageFrame({
      codec: 2,
      count: pages,
      rawLength: raw.length,
      hashes,
      payload: b.zstdCompress(raw, 3),
    });
    const target = new Uint8Array(pages * 4096);
    await b.decodePagesAsync(frame, target, null, null, null);
    expect(target.every((x) => x === 7)).toBe(true);
  });

  it("bytes after the end of an LZ4 or zstd frame are ERR_CORRUPT_PAYLOAD", async () => {
    const data = new Uint8Array(1000).fill(5);
    for (const [name, frame, decode] of [
      ["lz4", b.lz4Compress(data, 1), (f: Uint8Array) => b.lz4Decompress(f, MiB)],
      ["zstd", b.zstdCompress(data, 3), (f: Uint8Array) => b.zstdDecompress(f, MiB)],
    ] as const) {
      const padded = Buffer.concat([frame, Buffer.from([0, 0, 0, 0])]);
      expect(await codeOf(() => decode(padded)), name).toBe("ERR_CORRUPT_PAYLOAD");
    }
  });
});

// RDMA: the peer's queue pair description reaches connectQp as the peer sent it.
const fake = native ? buildFakeVerbs() : { path: "", reason: nativeSkipReason };
if (fake.path) process.env.DWCP_VERBS_LIB = fake.path;

describe.skipIf(Boolean(fake.reason))(
  `native connectQp: the peer's queue pair description (issue #15 item 1)${fake.reason ? ` [skipped: ${fake.reason}]` : ""}`,
  () => {
    function device() {
      const d = new b.RdmaDevice(undefined, () => {});
      return { d, a: d.createQp(8, 8), peer: d.createQp(8, 8) };
    }

    it("refuses a peer GID that is not exactly 16 bytes (0, 4, 15, 17, 64 bytes) with ERR_PROTOCOL", async () => {
      const { d, a, peer } = device();
      try {
        for (const len of [0, 4, 15, 17, 64]) {
          const gid = new Uint8Array(len).fill(0xfe);
          const code = await codeOf(() => d.connectQp(a.id, { ...peer, gid, mtu: 3 }));
          expect(code, `${len}-byte gid`).toBe("ERR_PROTOCOL");
        }
        // A GID in a 16-byte window of a larger buffer is 16 bytes: accepted.
        const big = new Uint8Array(64);
        big.set(peer.gid, 8);
        d.connectQp(a.id, { ...peer, gid: big.subarray(8, 24), mtu: 3 });
      } finally {
        d.close();
      }
    });

    it("refuses out-of-range fields with ERR_PROTOCOL: MTU 0, 6, 2^32+3; QPN and PSN ≥ 2^24; LID ≥ 2^16; negative, fractional, NaN or missing", async () => {
      const { d, a, peer } = device();
      try {
        const bad: Record<string, unknown>[] = [
          { mtu: 0 },
          { mtu: 6 },
          { mtu: 2 ** 32 + 3 },
          { mtu: Number.NaN },
          { qpn: 2 ** 24 },
          { qpn: -1 },
          { qpn: 1.5 },
          { psn: 2 ** 24 },
          { psn: undefined },
          { lid: 2 ** 16 },
          { gid: "0123456789abcdef" },
          { gid: new Uint16Array(8) },
        ];
        for (const over of bad) {
          const code = await codeOf(() => d.connectQp(a.id, { ...peer, mtu: 3, ...over } as never));
          expect(
            code,
            JSON.stringify(over, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v)),
          ).toBe("ERR_PROTOCOL");
        }
        // The same queue pair still connects to a well-formed description.
        d.connectQp(a.id, { ...peer, mtu: 3 });
      } finally {
        d.close();
      }
    });
  },
);
