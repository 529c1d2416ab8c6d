// HDE decoders against a hostile peer (issue #15): page frame headers whose
// fields contradict each other or the receiver, decompression bombs, and page
// images assembled from overlapping frames or another page size. Every case
// ends in a DWCPError code, and the resource cases bound what it cost in RSS
// and arrayBuffers. Decoding runs both ways: decodePages (TypeScript) and
// decodePagesAsync (the addon when this lane has it).
import { randomFillSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { codecBackend, lz4Decompress, zstdDecompress } from "../src/codec/index.js";
import { BaselineStore } from "../src/codec/pages/baselines.js";
import { decodePages, decodePagesAsync } from "../src/codec/pages/decode.js";
import { encodePages } from "../src/codec/pages/encode.js";
import { PageCodec } from "../src/codec/pages/format.js";
import { ImageReceiver } from "../src/codec/pages/images.js";
import { hashPages, xxh3_64 } from "../src/hash/index.js";
import { codeOf } from "./helpers/codes.js";
import { lz4Frame, lz4ZeroBlock, MiB, memoryCost, zstdRle } from "./helpers/hde-hostile.js";
import { pageFrame, withCrc } from "./helpers/hostile-frames.js";

const lane = `${codecBackend()} codecs`;
const decoders = [
  ["decodePages", (f: Uint8Array, o: Parameters<typeof decodePages>[1]) => decodePages(f, o)],
  ["decodePagesAsync", (f: Uint8Array, o: Parameters<typeof decodePages>[1]) => decodePagesAsync(f, o)],
] as const;

/** The error code `fn` ends with, or "resolved". */

/** A frame of one FULL page (codec none) of random bytes, at `first`, in pages of `pageSize`. */
function fullPage(pageSize: number, first = 0, firstHigh = 0) {
  const page = randomFillSync(new Uint8Array(pageSize));
  const payload = new Uint8Array(1 + pageSize);
  payload[0] = 3; // FULL
  payload.set(page, 1);
  return pageFrame({
    pageSize,
    count: 1,
    firstPage: (BigInt(firstHigh) << 32n) | BigInt(first),
    rawLength: payload.length,
    hashes: [hashPages(page, pageSize)[0]!],
    payload,
  });
}

describe(`page frame headers a peer controls (${lane})`, () => {
  for (const [name, decode] of decoders) {
    it(`${name}: a first page with high bits set (u64 2^32) is ERR_CORRUPT_PAYLOAD and writes nothing`, async () => {
      // The low word is 0: a decoder that reads 32 bits would write page 0.
      const target = new Uint8Array(2 * 4096);
      expect(await codeOf(() => decode(fullPage(4096, 0, 1), { target }))).toBe("ERR_CORRUPT_PAYLOAD");
      expect(target.every((b) => b === 0)).toBe(true);
      // Control: the same frame with the high word clear decodes into page 0.
      await decode(fullPage(4096, 1), { target });
      expect(target.subarray(4096).some((b) => b !== 0)).toBe(true);
    });

    it(`${name}: page sizes not a multiple of 8, below 64 or above 1 MiB are ERR_CORRUPT_PAYLOAD, nothing written`, async () => {
      for (const size of [100, 32, 2 * MiB]) {
        const target = new Uint8Array(size);
        expect(await codeOf(() => decode(fullPage(size), { target }))).toBe("ERR_CORRUPT_PAYLOAD");
        expect(target.every((b) => b === 0)).toBe(true);
      }
      // A larger page size is a local option.
      const target = new Uint8Array(2 * MiB);
      await decode(fullPage(2 * MiB), { target, maxPageSize: 2 * MiB });
      expect(target.some((b) => b !== 0)).toBe(true);
    });
  }

  it("counts that contradict each other or the target: ERR_CORRUPT_PAYLOAD before decoding", async () => {
    const target = new Uint8Array(4 * 4096);
    const z = new Uint8Array(4); // four ZERO pages
    const cases = [
      // hashed + references > pages
      pageFrame({
        pageSize: 4096,
        count: 4,
        refCount: 4,
        hashCount: 1,
        hashes: [0n],
        rawLength: 4 + 16,
        payload: z,
      }),
      // count × page size past the target, and past 2^53 as a product
      pageFrame({ pageSize: 1 << 20, count: 0xffff_ffff, rawLength: 4, payload: z }),
      pageFrame({ pageSize: 4096, count: 4, firstPage: 0xffff_fffen, rawLength: 4, payload: z }),
      // claimed decoded length below the map, or above what the counts allow
      pageFrame({ pageSize: 4096, count: 4, rawLength: 3, payload: z }),
      pageFrame({ codec: PageCodec.LZ4, pageSize: 4096, count: 4, rawLength: 5, payload: z }),
    ];
    for (const f of cases)
      for (const [, decode] of decoders)
        expect(await codeOf(() => decode(f, { target }))).toBe("ERR_CORRUPT_PAYLOAD");
    // Control: four ZERO pages decode.
    await decodePages(pageFrame({ pageSize: 4096, count: 4, rawLength: 4, payload: z }), { target });
  });
});

describe(`decompression bombs (${lane})`, () => {
  for (const [name, decode] of decoders) {
    it(`${name}: a 16 KiB zstd page frame claiming 512 MiB for a 4 KiB target is ERR_CORRUPT_PAYLOAD; peak RSS +< 64 MiB, arrayBuffers +< 16 MiB`, async () => {
      // 4096 RLE blocks of 128 KiB: the payload really decodes to 512 MiB.
      const payload = zstdRle(4096, 3);
      const frame = pageFrame({
        codec: PageCodec.ZSTD,
        pageSize: 4096,
        count: 1,
        rawLength: 512 * MiB,
        hashes: [0n],
        payload,
      });
      expect(frame.length).toBeLessThan(17 << 10);
      const cost = await memoryCost(() => decode(frame, { target: new Uint8Array(4096) }));
      expect((cost.error as { code?: string })?.code).toBe("ERR_CORRUPT_PAYLOAD");
      expect(cost.peakRss).toBeLessThan(64 * MiB);
      expect(cost.arrayBuffers).toBeLessThan(16 * MiB);
      // Claiming what one page can be, with the payload declaring more: refused by the codec.
      const honestClaim = pageFrame({
        ...{ codec: PageCodec.ZSTD, pageSize: 4096, count: 1 },
        rawLength: 4097,
        hashes: [0n],
        payload,
      });
      const cost2 = await memoryCost(() => decode(honestClaim, { target: new Uint8Array(4096) }));
      expect((cost2.error as { code?: string })?.code).toBe("ERR_MESSAGE_TOO_LARGE");
      expect(cost2.peakRss).toBeLessThan(64 * MiB);
    });

    it(`${name}: an LZ4 page payload declaring 4097 bytes whose blocks decode to 128 MiB is ERR_CORRUPT_PAYLOAD; peak RSS +< 32 MiB`, async () => {
      const block = lz4ZeroBlock(4 * MiB);
      const payload = lz4Frame(
        Array.from({ length: 32 }, () => block),
        4097,
      );
      const frame = pageFrame({
        codec: PageCodec.LZ4,
        pageSize: 4096,
        count: 1,
        rawLength: 4097,
        hashes: [0n],
        payload,
      });
      const cost = await memoryCost(() => decode(frame, { target: new Uint8Array(4096) }));
      expect((cost.error as { code?: string })?.code).toBe("ERR_CORRUPT_PAYLOAD");
      expect(cost.peakRss).toBeLessThan(32 * MiB);
      expect(cost.arrayBuffers).toBeLessThan(8 * MiB);
    });
  }

  it("lz4Decompress is a hard cap: blocks past the declared size or maxBytes stop decoding; peak RSS +< 32 MiB", async () => {
    const block = lz4ZeroBlock(4 * MiB);
    const blocks = Array.from({ length: 32 }, () => block); // 128 MiB of zeros in ~512 KiB
    // Data past the declared size does not match its header, whether or not it is at maxBytes.
    for (const maxBytes of [4096, 64 * MiB]) {
      const lying = await memoryCost(() => lz4Decompress(lz4Frame(blocks, 4096), { maxBytes }));
      expect((lying.error as { code?: string })?.code).toBe("ERR_CORRUPT_PAYLOAD");
      expect(lying.peakRss).toBeLessThan(32 * MiB);
    }
    const undeclared = await memoryCost(() => lz4Decompress(lz4Frame(blocks), { maxBytes: MiB }));
    expect((undeclared.error as { code?: string })?.code).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(undeclared.peakRss).toBeLessThan(32 * MiB);
    // Control: within its limits the same kind of frame decodes.
    expect(lz4Decompress(lz4Frame(blocks.slice(0, 2)), { maxBytes: 8 * MiB }).length).toBe(8 * MiB);
    expect(lz4Decompress(lz4Frame(blocks.slice(0, 2), 8 * MiB), { maxBytes: 8 * MiB }).length).toBe(8 * MiB);
  });

  it("zstdDecompress refuses a frame declaring more than maxBytes before allocating; peak RSS +< 16 MiB", async () => {
    const cost = await memoryCost(() => zstdDecompress(zstdRle(4096, 1), { maxBytes: 4096 }));
    expect((cost.error as { code?: string })?.code).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(cost.peakRss).toBeLessThan(16 * MiB);
    expect(zstdDecompress(zstdRle(2, 1), { maxBytes: 256 << 10 }).length).toBe(256 << 10);
  });

  it("maxBytes that is not a non-negative integer (NaN, -1, 1.5) is ERR_INVALID_ARG, not a missing cap", async () => {
    const l = lz4Frame([lz4ZeroBlock(1024)], 1024);
    const z = zstdRle(1, 0, undefined, 1024);
    for (const maxBytes of [Number.NaN, -1, 1.5]) {
      expect(await codeOf(() => lz4Decompress(l, { maxBytes }))).toBe("ERR_INVALID_ARG");
      expect(await codeOf(() => zstdDecompress(z, { maxBytes }))).toBe("ERR_INVALID_ARG");
    }
  });

  it("maxDecodedBytes caps a page frame's decoded size: ERR_MESSAGE_TOO_LARGE before decoding", async () => {
    const image = randomFillSync(new Uint8Array(64 * 4096));
    const { frame } = encodePages(image, { imageId: 1, version: 1 });
    for (const [, decode] of decoders) {
      const target = new Uint8Array(image.length);
      expect(await codeOf(() => decode(frame, { target, maxDecodedBytes: 64 * 4096 }))).toBe(
        "ERR_MESSAGE_TOO_LARGE",
      );
      expect(target.every((b) => b === 0)).toBe(true);
      await decode(frame, { target });
      expect(Buffer.compare(target, image)).toBe(0);
    }
  });
});

describe(`page images (${lane})`, () => {
  const PAGE = 4096;
  const image = randomFillSync(new Uint8Array(8 * PAGE));
  const batch = (firstPage: number, pageCount: number, pageSize = PAGE) =>
    encodePages(image, { imageId: 3, version: 1, firstPage, pageCount, pageSize }).frame;

  it("overlapping batches whose page counts add up to the image are ERR_CORRUPT_PAYLOAD (pages 6–7 never came)", () => {
    const r = new ImageReceiver();
    expect(() => r.receive([batch(0, 4), batch(2, 4)], image.length)).toThrow(
      expect.objectContaining({ code: "ERR_CORRUPT_PAYLOAD" }),
    );
    expect(r.store.has(3, 1)).toBe(false);
    // A gap, and two page sizes for one image, are refused too.
    expect(() => r.receive([batch(0, 4), batch(5, 3)], image.length)).toThrow(
      expect.objectContaining({ code: "ERR_CORRUPT_PAYLOAD" }),
    );
    expect(() => r.receive([batch(0, 4), batch(2, 2, 2 * PAGE)], image.length)).toThrow(
      expect.objectContaining({ code: "ERR_CORRUPT_PAYLOAD" }),
    );
    // Control: the batches in any order make the image.
    const got = r.receive([batch(4, 4), batch(0, 4)], image.length);
    expect(Buffer.compare(got.image, image)).toBe(0);
    expect(r.store.pageSizeOf(3, 1)).toBe(PAGE);
  });

  for (const [name, decode] of decoders) {
    it(`${name}: a 73-byte frame in another page size is ERR_BASELINE_MISSING without rehashing a 128 MiB baseline (arrayBuffers +< 1 MiB, held hashes kept)`, async () => {
      const size = 128 * MiB;
      const store = new BaselineStore(2 * size);
      store.put(9, 1, new Uint8Array(size));
      // An honest delta in 4 KiB pages: the baseline's hashes, computed once.
      const target = new Uint8Array(size);
      const held = store.hashesOf(9, 1, PAGE)!;
      const honest = pageFrame({
        pageSize: PAGE,
        count: 1,
        imageId: 9,
        version: 2,
        baseVersion: 1,
        rawLength: 1,
        payload: Uint8Array.of(1), // SAME
        baseDigest: xxh3_64(new Uint8Array(held.buffer, held.byteOffset, 8)),
      });
      await decode(honest, { target, baselines: store });
      // 72 bytes of header and one page kind (SAME), in pages of 64 bytes.
      const hostile = pageFrame({
        pageSize: 64,
        count: 1,
        imageId: 9,
        version: 2,
        baseVersion: 1,
        rawLength: 1,
        payload: Uint8Array.of(1),
      });
      expect(hostile.length).toBe(73);
      const t0 = performance.now();
      const cost = await memoryCost(() => decode(hostile, { target, baselines: store }));
      const ms = performance.now() - t0;
      expect((cost.error as { code?: string })?.code).toBe("ERR_BASELINE_MISSING");
      // Rehashing would have made 2 Mi hashes of 8 bytes (16 MiB) and replaced the held ones.
      expect(cost.arrayBuffers).toBeLessThan(MiB);
      expect(store.hashesOf(9, 1, PAGE)).toBe(held);
      expect(ms).toBeLessThan(1000);
    });
  }

  it("a baseline stored with its page size refuses frames in another without hashing it", () => {
    const store = new BaselineStore();
    store.put(4, 1, new Uint8Array(16 * PAGE), PAGE);
    expect(store.pageSizeOf(4, 1)).toBe(PAGE);
    expect(store.hashesOf(4, 1, 64)).toBeUndefined();
    expect(store.hashesOf(4, 1, PAGE)?.length).toBe(16);
    const delta = withCrc(
      pageFrame({
        pageSize: 2 * PAGE,
        count: 1,
        imageId: 4,
        version: 2,
        baseVersion: 1,
        rawLength: 1,
        payload: Uint8Array.of(1),
      }),
    );
    expect(() => decodePages(delta, { target: new Uint8Array(16 * PAGE), baselines: store })).toThrow(
      expect.objectContaining({ code: "ERR_BASELINE_MISSING" }),
    );
  });
});
