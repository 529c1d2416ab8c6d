// The page sources of live migration: an in-memory image, a file another
// process writes, and a simulated guest whose worker thread keeps dirtying
// pages. For each: the dirty bitmaps are exact (every write shows, and only
// written pages do), read() returns the bytes, and pause/resume/throttle do
// what the migration relies on. Timed bounds are stated in the titles.
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { codecBackend, lz4Compress, zstdCompress } from "../src/codec/index.js";
import { DWCPError } from "../src/errors.js";
import { hashPages } from "../src/hash/index.js";
import { FileImage } from "../src/migration/file-image.js";
import { fillImage, IMAGE_KINDS } from "../src/migration/fill.js";
import { MemoryImage } from "../src/migration/memory-image.js";
import { SimulatedGuest } from "../src/migration/simulated-guest.js";
import { countDirty, isDirty } from "../src/migration/source.js";

const PS = 4096;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The pages set in a bitmap. */
function pagesOf(bitmap: Uint8Array, pageCount: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < pageCount; p++) if (isDirty(bitmap, p)) out.push(p);
  return out;
}

/** The pages of `image` that are not all zeros. */
function nonZero(image: Uint8Array, ps = PS): number[] {
  const out: number[] = [];
  for (let p = 0; p < image.length / ps; p++)
    if (image.subarray(p * ps, (p + 1) * ps).some((b) => b !== 0)) out.push(p);
  return out;
}

/** The pages where `a` and `b` differ. */
function changed(a: Uint8Array, b: Uint8Array, ps = PS): number[] {
  const out: number[] = [];
  for (let p = 0; p < a.length / ps; p++) {
    if (Buffer.compare(a.subarray(p * ps, (p + 1) * ps), b.subarray(p * ps, (p + 1) * ps)) !== 0) out.push(p);
  }
  return out;
}

async function code(p: unknown): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(DWCPError);
    return (err as DWCPError).code;
  }
  return undefined;
}

function codeSync(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DWCPError);
    return (err as DWCPError).code;
  }
  return undefined;
}

describe("fillImage", () => {
  it("is deterministic per seed, and differs between seeds", () => {
    for (const kind of IMAGE_KINDS) {
      const a = new Uint8Array(64 * PS);
      const b = new Uint8Array(64 * PS);
      const c = new Uint8Array(64 * PS);
      fillImage(a, kind, 5);
      fillImage(b, kind, 5);
      fillImage(c, kind, 6);
      expect(Buffer.compare(a, b), kind).toBe(0);
      if (kind !== "zero") expect(Buffer.compare(a, c), kind).not.toBe(0);
    }
  });

  it("makes each kind what it says: zero, few distinct duplicates, incompressible random, 2–3× structured, the mixed shares", () => {
    const pages = 4096;
    const img = (kind: (typeof IMAGE_KINDS)[number]) => {
      const a = new Uint8Array(pages * PS);
      const summary = fillImage(a, kind, 9);
      return { a, summary };
    };
    const distinct = (a: Uint8Array) => new Set(hashPages(a, PS)).size;
    expect(nonZero(img("zero").a)).toEqual([]);
    expect(distinct(img("duplicate").a)).toBeLessThanOrEqual(8);
    const random = img("random").a;
    expect(distinct(random)).toBe(pages);
    expect(lz4Compress(random.subarray(0, 1 << 20)).length).toBeGreaterThan(0.99 * (1 << 20));
    const structured = img("structured").a.subarray(0, 1 << 20);
    const ratio = (1 << 20) / zstdCompress(structured, { level: 3 }).length;
    expect(ratio, `zstd ratio on ${codecBackend()}`).toBeGreaterThan(2);
    expect(ratio).toBeLessThan(3.2);
    const { summary } = img("mixed");
    expect(summary.zero + summary.duplicate + summary.structured + summary.random).toBe(pages);
    // Runs of up to 16 pages make 4096 pages a coarse sample: shares within ±10 points.
    expect(summary.zero / pages).toBeGreaterThan(0.2);
    expect(summary.zero / pages).toBeLessThan(0.4);
    expect(summary.structured / pages).toBeGreaterThan(0.3);
    expect(summary.structured / pages).toBeLessThan(0.5);
    expect(summary.random / pages).toBeGreaterThan(0.1);
    expect(summary.random / pages).toBeLessThan(0.3);
    expect(summary.duplicate).toBeGreaterThan(0);
  });

  it("refuses an unknown kind and a bad page size with ERR_INVALID_ARG", () => {
    expect(codeSync(() => fillImage(new Uint8Array(PS), "nope" as "zero", 1))).toBe("ERR_INVALID_ARG");
    expect(codeSync(() => fillImage(new Uint8Array(PS), "random", 1, 100))).toBe("ERR_INVALID_ARG");
  });
});

describe("MemoryImage", () => {
  it("reports every non-zero page first, then exactly the pages written since the previous call", () => {
    const image = new Uint8Array(256 * PS);
    fillImage(image, "mixed", 3);
    const m = new MemoryImage({ image });
    const expected = nonZero(image);
    expect(expected.length).toBeGreaterThan(50);
    expect(expected.length).toBeLessThan(256);
    expect(pagesOf(m.dirty(), m.pageCount)).toEqual(expected);
    expect(countDirty(m.dirty(), m.pageCount)).toBe(0);

    m.write(5 * PS + 10, new Uint8Array([1, 2, 3]));
    m.write(9 * PS - 2, new Uint8Array(4).fill(7)); // spans pages 8 and 9
    m.fill(0, 20 * PS, 2 * PS + 1); // pages 20, 21 and 22, even with zeros
    m.fillPages("random", 4, 100, 3);
    m.write(200 * PS, new Uint8Array(0)); // writes nothing
    expect(pagesOf(m.dirty(), m.pageCount)).toEqual([5, 8, 9, 20, 21, 22, 100, 101, 102]);
    expect(countDirty(m.dirty(), m.pageCount)).toBe(0);
    expect(Array.from(m.bytes.subarray(9 * PS - 2, 9 * PS + 2))).toEqual([7, 7, 7, 7]);
  });

  it("read() copies the pages asked for, and checks its arguments", () => {
    const m = new MemoryImage({ pageCount: 16, pageSize: 512 });
    m.fillPages("random", 1);
    const into = new Uint8Array(3 * 512);
    m.read(4, 3, into);
    expect(Buffer.compare(into, m.bytes.subarray(4 * 512, 7 * 512))).toBe(0);
    into.fill(0);
    expect(m.bytes.subarray(4 * 512, 7 * 512).some((b) => b !== 0)).toBe(true); // a copy, not a view
    expect(codeSync(() => m.read(15, 2, new Uint8Array(1024)))).toBe("ERR_INVALID_ARG");
    expect(codeSync(() => m.read(0, 2, new Uint8Array(100)))).toBe("ERR_INVALID_ARG");
    expect(codeSync(() => m.read(-1, 1, new Uint8Array(512)))).toBe("ERR_INVALID_ARG");
  });

  it("refuses writes while paused (ERR_CLOSED) and takes them again after resume; throttle is recorded", () => {
    const m = new MemoryImage({ pageCount: 4 });
    m.dirty();
    m.pause();
    expect(m.paused).toBe(true);
    expect(codeSync(() => m.write(0, new Uint8Array([1])))).toBe("ERR_CLOSED");
    expect(codeSync(() => m.fill(1))).toBe("ERR_CLOSED");
    expect(codeSync(() => m.fillPages("random", 1))).toBe("ERR_CLOSED");
    expect(countDirty(m.dirty(), m.pageCount)).toBe(0);
    expect(m.bytes.every((b) => b === 0)).toBe(true);
    m.resume();
    m.write(PS, new Uint8Array([1]));
    expect(pagesOf(m.dirty(), m.pageCount)).toEqual([1]);
    expect(m.throttlePercent).toBe(0);
    m.throttle(30);
    expect(m.throttlePercent).toBe(30);
    expect(codeSync(() => m.throttle(100))).toBe("ERR_INVALID_ARG");
    expect(codeSync(() => m.throttle(-1))).toBe("ERR_INVALID_ARG");
    expect(m.throttlePercent).toBe(30);
  });

  it("refuses bad geometry and out-of-range writes with ERR_INVALID_ARG", () => {
    expect(codeSync(() => new MemoryImage({ pageCount: 4, pageSize: 100 }))).toBe("ERR_INVALID_ARG");
    expect(codeSync(() => new MemoryImage({ pageCount: 4, pageSize: 32 }))).toBe("ERR_INVALID_ARG");
    expect(codeSync(() => new MemoryImage({ image: new Uint8Array(PS + 8) }))).toBe("ERR_INVALID_ARG");
    expect(codeSync(() => new MemoryImage({}))).toBe("ERR_INVALID_ARG");
    const m = new MemoryImage({ pageCount: 2 });
    expect(codeSync(() => m.write(2 * PS - 1, new Uint8Array(2)))).toBe("ERR_INVALID_ARG");
    expect(codeSync(() => m.write(-1, new Uint8Array(1)))).toBe("ERR_INVALID_ARG");
    expect(codeSync(() => m.fill(256))).toBe("ERR_INVALID_ARG");
    expect(countDirty(m.dirty(), m.pageCount)).toBe(0);
  });
});

describe("FileImage", () => {
  function tempFile(bytes: Uint8Array): string {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-file-image-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "guest.mem");
    writeFileSync(path, bytes);
    return path;
  }

  async function opened(path: string, o: Parameters<typeof FileImage.open>[1] = {}): Promise<FileImage> {
    const f = await FileImage.open(path, o);
    cleanups.push(() => f.close());
    return f;
  }

  /** Another writer: plain positional writes through its own descriptor. */
  function writeAt(path: string, position: number, data: Uint8Array): void {
    const fd = openSync(path, "r+");
    try {
      writeSync(fd, data, 0, data.length, position);
    } finally {
      closeSync(fd);
    }
  }

  it.each([1, 5])(
    "reports every non-zero page first, then exactly the pages another writer changed (batches of 3 pages, %i read(s) in flight)",
    async (readsInFlight) => {
      const image = new Uint8Array(100 * PS);
      fillImage(image, "mixed", 11);
      const path = tempFile(image);
      const f = await opened(path, { batchBytes: 3 * PS, readsInFlight });
      expect(f.pageCount).toBe(100);
      expect(pagesOf(await f.dirty(), 100)).toEqual(nonZero(image));
      expect(countDirty(await f.dirty(), 100)).toBe(0);

      writeAt(path, 0, new Uint8Array([0xff]));
      writeAt(path, 50 * PS - 4, new Uint8Array(8).fill(0xab)); // pages 49 and 50
      writeAt(path, 99 * PS + PS - 1, new Uint8Array([0x5a])); // the last byte
      // Rewriting a page with its own bytes is no change: hash-based detection does not report it.
      writeAt(path, 70 * PS, image.subarray(70 * PS, 71 * PS));
      expect(pagesOf(await f.dirty(), 100)).toEqual([0, 49, 50, 99]);
      expect(countDirty(await f.dirty(), 100)).toBe(0);
      expect(f.stats.scans).toBe(4);
    },
  );

  it("read() returns the file's bytes, and a page changed and changed back after a read is still dirty", async () => {
    const image = new Uint8Array(32 * PS);
    fillImage(image, "structured", 2);
    const path = tempFile(image);
    const f = await opened(path);
    await f.dirty();
    const into = new Uint8Array(4 * PS);
    await f.read(10, 4, into);
    expect(Buffer.compare(into, image.subarray(10 * PS, 14 * PS))).toBe(0);

    // A lock word that goes 0 → 1 → 0: the destination got the 1 in between.
    const at = 20 * PS + 64;
    const before = image.subarray(at, at + 8).slice();
    writeAt(path, at, new Uint8Array(8).fill(1));
    const page = new Uint8Array(PS);
    await f.read(20, 1, page);
    expect(page[64]).toBe(1);
    writeAt(path, at, before);
    expect(pagesOf(await f.dirty(), 32)).toEqual([20]);
    expect(await code(f.read(31, 2, new Uint8Array(2 * PS)))).toBe("ERR_INVALID_ARG");
  });

  it("hands pause, resume and throttle to its callbacks; without them pause/resume do nothing and throttle is absent", async () => {
    const path = tempFile(new Uint8Array(4 * PS));
    const calls: string[] = [];
    const f = await opened(path, {
      pause: () => void calls.push("pause"),
      resume: async () => void calls.push("resume"),
      throttle: (p) => void calls.push(`throttle ${p}`),
    });
    await f.pause();
    await f.throttle?.(40);
    await f.resume();
    expect(calls).toEqual(["pause", "throttle 40", "resume"]);
    expect(await code(f.throttle?.(120))).toBe("ERR_INVALID_ARG");
    const bare = await opened(path);
    expect(bare.throttle).toBeUndefined();
    expect("throttle" in bare).toBe(false);
    await bare.pause();
    await bare.resume();
  });

  it("refuses readsInFlight outside 1…64 with ERR_INVALID_ARG", async () => {
    const path = tempFile(new Uint8Array(4 * PS));
    for (const readsInFlight of [0, 65, 1.5])
      await expect(FileImage.open(path, { readsInFlight })).rejects.toMatchObject({
        code: "ERR_INVALID_ARG",
      });
  });

  it("refuses a file whose size is not a multiple of the page size, an empty one and a missing one", async () => {
    expect(await code(FileImage.open(tempFile(new Uint8Array(PS + 1))))).toBe("ERR_INVALID_ARG");
    expect(await code(FileImage.open(tempFile(new Uint8Array(0))))).toBe("ERR_INVALID_ARG");
    expect(await code(FileImage.open(tempFile(new Uint8Array(PS)), { pageSize: 1000 }))).toBe(
      "ERR_INVALID_ARG",
    );
    expect(await code(FileImage.open(join(tmpdir(), "dwcp-no-such-file.mem")))).toBe("ERR_SYSCALL");
    expect(await code(FileImage.open(tmpdir()))).toBe("ERR_INVALID_ARG");
  });

  it("fails with ERR_UNSUPPORTED when the file shrinks, and ERR_CLOSED after close()", async () => {
    const path = tempFile(new Uint8Array(8 * PS).fill(1));
    const f = await FileImage.open(path);
    writeFileSync(path, new Uint8Array(4 * PS));
    expect(await code(f.dirty())).toBe("ERR_UNSUPPORTED");
    await f.close();
    expect(await code(f.dirty())).toBe("ERR_CLOSED");
    expect(await code(f.read(0, 1, new Uint8Array(PS)))).toBe("ERR_CLOSED");
    await f.close();
  });

  it("keeps the event loop turning while it rehashes 32 MiB in one batch (gap < max(30 ms, half the unsliced hash time))", async () => {
    const image = new Uint8Array(32 << 20);
    fillImage(image, "random", 8);
    const path = tempFile(image);
    const t0 = performance.now();
    hashPages(image, PS);
    const unsliced = performance.now() - t0;
    const f = await opened(path, { batchBytes: 32 << 20 });
    let last = performance.now();
    let gap = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      gap = Math.max(gap, now - last);
      last = now;
    }, 1);
    try {
      await f.dirty();
      last = performance.now();
      gap = 0;
      await f.dirty();
    } finally {
      clearInterval(timer);
    }
    // Only the TypeScript hash is slow enough for the bound to tell a sliced
    // scan from one that is not (32 MiB take it 50–100 ms); the addon's take ~2 ms.
    const bound = Math.max(30, unsliced / 2);
    expect(gap, `longest gap ${gap.toFixed(1)} ms; unsliced hash ${unsliced.toFixed(1)} ms`).toBeLessThan(
      bound,
    );
    expect(f.stats.longestSliceMs).toBeLessThan(bound);
  });
});

describe("SimulatedGuest", () => {
  async function started(o: Parameters<typeof SimulatedGuest.start>[0]): Promise<SimulatedGuest> {
    const g = await SimulatedGuest.start(o);
    cleanups.push(() => g.close());
    return g;
  }

  it("fills its image deterministically and reports every non-zero page first", async () => {
    const a = await started({ bytes: 256 * PS, fill: "mixed", seed: 4, paused: true });
    const b = await started({ bytes: 256 * PS, fill: "mixed", seed: 4, paused: true });
    expect(Buffer.compare(a.bytes, b.bytes)).toBe(0);
    const expected = new Uint8Array(256 * PS);
    fillImage(expected, "mixed", 4);
    expect(Buffer.compare(a.bytes, expected)).toBe(0);
    expect(pagesOf(a.dirty(), a.pageCount)).toEqual(nonZero(expected));
    expect(countDirty(a.dirty(), a.pageCount)).toBe(0);
    expect(a.touches).toBe(0);
  });

  it("every page whose bytes changed between two snapshots around dirty() calls is in the bitmap, and only hot pages are", async () => {
    for (const hotLayout of ["contiguous", "scattered"] as const) {
      const g = await started({
        bytes: 1024 * PS,
        hotBytes: 200 * PS,
        hotLayout,
        dirtyBytesPerSecond: 4 << 20,
        seed: 7,
      });
      const hot = new Set(g.hot);
      expect(hot.size).toBe(200);
      if (hotLayout === "contiguous") expect(g.hot[199]! - g.hot[0]!).toBe(199);
      else expect(g.hot[199]! - g.hot[0]!).toBeGreaterThan(199);
      g.dirty();
      for (let round = 0; round < 3; round++) {
        const before = g.bytes.slice();
        await sleep(60);
        // Running: a write seen in the snapshot is in this bitmap or a later one.
        const during = g.bytes.slice();
        const d1 = g.dirty();
        // A write seen in the snapshot sets its bit just after it; the worker may
        // be descheduled in between for as long as the machine's load decides.
        // Once paused, nothing is in flight: the next bitmap holds the rest.
        await g.pause();
        const d2 = g.dirty();
        g.resume();
        const moved = changed(before, during);
        expect(moved.length, hotLayout).toBeGreaterThan(10);
        for (const p of moved) expect(isDirty(d1, p) || isDirty(d2, p), `page ${p}`).toBe(true);
        for (const p of pagesOf(d1, g.pageCount)) expect(hot.has(p), `page ${p} is hot`).toBe(true);
      }
      // Paused: no write is in flight, so the one bitmap holds them all.
      const before = g.bytes.slice();
      await sleep(60);
      await g.pause();
      const after = g.bytes.slice();
      const d = g.dirty();
      const moved = changed(before, after);
      expect(moved.length).toBeGreaterThan(10);
      for (const p of moved) expect(isDirty(d, p), `page ${p}`).toBe(true);
    }
  });

  it("writes nothing while paused (two snapshots 100 ms apart are identical), writes again after resume", async () => {
    const g = await started({ bytes: 512 * PS, dirtyBytesPerSecond: 8 << 20 });
    await sleep(50);
    await g.pause();
    expect(g.stats().parked).toBe(true);
    g.dirty();
    const a = g.bytes.slice();
    const touches = g.touches;
    await sleep(100);
    expect(Buffer.compare(a, g.bytes)).toBe(0);
    expect(g.touches).toBe(touches);
    expect(countDirty(g.dirty(), g.pageCount)).toBe(0);
    g.resume();
    await sleep(100);
    expect(g.touches).toBeGreaterThan(touches);
    expect(changed(a, g.bytes).length).toBeGreaterThan(0);
    expect(countDirty(g.dirty(), g.pageCount)).toBeGreaterThan(0);
    // Pausing twice and resuming twice is harmless.
    await g.pause();
    await g.pause();
    g.resume();
    g.resume();
  });

  it("touches at about the configured rate, and a 90 % throttle lowers it below a third (300 ms windows)", async () => {
    const perSecond = 2000;
    const g = await started({ bytes: 4096 * PS, dirtyBytesPerSecond: perSecond * PS });
    const window = async () => {
      const t0 = performance.now();
      const n0 = g.touches;
      await sleep(300);
      return (g.touches - n0) / ((performance.now() - t0) / 1000);
    };
    const full = await window();
    g.throttle(90);
    expect(g.stats().throttlePercent).toBe(90);
    const throttled = await window();
    g.throttle(0);
    const again = await window();
    // A busy machine may fall short of the rate, never exceed it.
    expect(full).toBeLessThan(perSecond * 1.15);
    expect(full).toBeGreaterThan(perSecond * 0.5);
    expect(throttled, `${throttled.toFixed(0)}/s throttled against ${full.toFixed(0)}/s`).toBeLessThan(
      full / 3,
    );
    expect(again).toBeGreaterThan(throttled * 2);
    expect(codeSync(() => g.throttle(100))).toBe("ERR_INVALID_ARG");
  });

  it("a touch changes at most touchBytes bytes of its page; 'page' rewrites the whole page", async () => {
    const small = await started({
      bytes: 64 * PS,
      dirtyBytesPerSecond: 64 * PS * 20,
      touchBytes: 16,
      fill: "zero",
    });
    await sleep(50);
    await small.pause();
    const t = small.touches;
    const img = small.bytes;
    let differing = 0;
    for (let i = 0; i < img.length; i++) if (img[i] !== 0) differing++;
    expect(t).toBeGreaterThan(0);
    expect(differing).toBeGreaterThan(0);
    expect(differing).toBeLessThanOrEqual(16 * t);

    const full = await started({
      bytes: 64 * PS,
      dirtyBytesPerSecond: 64 * PS * 20,
      touchBytes: "page",
      fill: "zero",
    });
    await sleep(50);
    await full.pause();
    const pages = pagesOf(full.dirty(), full.pageCount);
    expect(pages.length).toBeGreaterThan(0);
    for (const p of pages) {
      const zeros = full.bytes.subarray(p * PS, (p + 1) * PS).filter((b) => b === 0).length;
      expect(zeros, `page ${p}`).toBeLessThan(PS / 64);
    }
  });

  it("read() copies the pages asked for", async () => {
    const g = await started({ bytes: 64 * PS, paused: true, fill: "random" });
    const into = new Uint8Array(3 * PS);
    g.read(7, 3, into);
    expect(Buffer.compare(into, g.bytes.subarray(7 * PS, 10 * PS))).toBe(0);
    expect(codeSync(() => g.read(63, 2, new Uint8Array(2 * PS)))).toBe("ERR_INVALID_ARG");
  });

  it("fails with ERR_TIMEOUT when it cannot start in time, ERR_CLOSED after close(), ERR_INVALID_ARG for bad options", async () => {
    expect(await code(SimulatedGuest.start({ bytes: 64 << 20, startTimeoutMs: 1 }))).toBe("ERR_TIMEOUT");
    const g = await SimulatedGuest.start({ bytes: 16 * PS, dirtyBytesPerSecond: 0 });
    await g.close();
    expect(await code(g.pause())).toBe("ERR_CLOSED");
    expect(codeSync(() => g.resume())).toBe("ERR_CLOSED");
    expect(codeSync(() => g.throttle(10))).toBe("ERR_CLOSED");
    await g.close();
    for (const bad of [
      { bytes: PS + 1 },
      { bytes: 0 },
      { bytes: 4 * PS, hotBytes: 5 * PS },
      { bytes: 4 * PS, touchBytes: 12 },
      { bytes: 4 * PS, touchBytes: 2 * PS },
      { bytes: 4 * PS, dirtyBytesPerSecond: -1 },
      { bytes: 4 * PS, fill: "nope" as "zero" },
      { bytes: 4 * PS, hotLayout: "diagonal" as "scattered" },
    ]) {
      expect(await code(SimulatedGuest.start(bad)), JSON.stringify(bad)).toBe("ERR_INVALID_ARG");
    }
  });
});
