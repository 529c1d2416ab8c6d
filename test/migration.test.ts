// Live migration end to end over in-process channels: images of every kind
// arrive byte-identical, a guest that keeps writing during pre-copy is caught
// up at switchover, and every failure ends with a code, the source running on
// and no image handed out.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PageCodec } from "../src/codec/pages/format.js";
import { isDWCPError } from "../src/errors.js";
import { hashPages } from "../src/hash/index.js";
import { FileImage } from "../src/migration/file-image.js";
import { fillImage, IMAGE_KINDS } from "../src/migration/fill.js";
import { MemoryImage } from "../src/migration/memory-image.js";
import { decodeMigrationMessage, MigrationMessage } from "../src/migration/messages.js";
import { acceptMigration } from "../src/migration/receiver.js";
import { migrate } from "../src/migration/sender.js";
import type { PageSource } from "../src/migration/source.js";
import { channelPair } from "./helpers/channels.js";
import { codeOf } from "./helpers/codes.js";

const PAGES = 2048; // 8 MiB of 4 KiB pages

function image(kind: (typeof IMAGE_KINDS)[number], seed = 7): MemoryImage {
  const m = new MemoryImage({ pageCount: PAGES });
  m.fillPages(kind, seed);
  return m;
}

function sameImage(a: Uint8Array, b: Uint8Array): void {
  expect(b.length).toBe(a.length);
  // Page by page, so a failure names the first page that differs.
  const ha = hashPages(a, 4096);
  const hb = hashPages(b, 4096);
  const diff = ha.findIndex((h, i) => h !== hb[i]);
  expect(diff).toBe(-1);
  expect(Buffer.compare(a, b)).toBe(0);
}

describe("migrate() and acceptMigration()", () => {
  for (const kind of IMAGE_KINDS)
    it(`moves a ${kind} image byte for byte`, async () => {
      const [a, b] = channelPair({ lend: true });
      const src = image(kind);
      const incoming = acceptMigration(b);
      const m = migrate(a, src);
      const [stats, got] = await Promise.all([m.done, incoming.done]);
      sameImage(src.bytes, got.image);
      expect(stats.status).toBe("completed");
      expect(stats.rounds).toBeGreaterThanOrEqual(2);
      expect(stats.downtime).toBeGreaterThanOrEqual(0);
      expect(stats.transferred).toBe(a.sent.bytes);
      const h = stats.hde;
      if (kind === "zero") expect(stats.transferred).toBeLessThan(4096);
      if (kind === "random") expect(h.full.pages).toBeGreaterThanOrEqual(PAGES * 0.99);
      if (kind === "duplicate") {
        // Repeats within a frame go as references, repeats of pages sent earlier as copy orders.
        expect(h.duplicate.pages).toBeGreaterThan(0);
        expect(h.copy.pages).toBeGreaterThan(PAGES / 4);
        expect(stats.transferred).toBeLessThan(src.bytes.length * 0.02);
      }
    });

  it("catches up with a guest that writes during pre-copy: the copy equals the paused source", async () => {
    const [a, b] = channelPair();
    const src = image("mixed");
    let n = 0;
    const writer = setInterval(() => {
      for (let k = 0; k < 40; k++) {
        const page = (n * 97 + k * 31) % 512; // a 2 MiB hot set
        src.write(page * 4096 + ((n + k) % 500) * 8, new Uint8Array([n & 255, k, 1, 2, 3, 4, 5, 6]));
      }
      n++;
    }, 1);
    const incoming = acceptMigration(b);
    const m = migrate(a, {
      pageSize: src.pageSize,
      pageCount: src.pageCount,
      read: (f, c, into) => src.read(f, c, into),
      dirty: () => src.dirty(),
      pause: () => {
        clearInterval(writer);
        src.pause();
      },
      resume: () => src.resume(),
    });
    const rounds: number[] = [];
    m.on("round", (s) => rounds.push(s.rounds));
    const [stats, got] = await Promise.all([m.done, incoming.done]);
    clearInterval(writer);
    expect(n).toBeGreaterThan(0);
    sameImage(src.bytes, got.image);
    expect(stats.rounds).toBeGreaterThanOrEqual(2);
    expect(rounds.length).toBeGreaterThanOrEqual(1);
    // Later rounds carried deltas against what the destination held.
    expect(stats.hde.delta.pages + stats.hde.same.pages).toBeGreaterThan(0);
  });

  it("plain pre-copy (hde: false): dirty pages go whole, no deltas, no copies, and the copy is still exact", async () => {
    const [a, b] = channelPair();
    const src = image("mixed");
    const incoming = acceptMigration(b);
    const m = migrate(a, src, { hde: false, policy: { codec: PageCodec.NONE, level: 0 } });
    m.on("round", (s) => {
      if (s.rounds === 1)
        for (let p = 0; p < 64; p++) src.write(p * 4096 * 3, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    });
    const [stats, got] = await Promise.all([m.done, incoming.done]);
    sameImage(src.bytes, got.image);
    const h = stats.hde;
    expect(h.same.pages + h.delta.pages + h.copy.pages).toBe(0);
    // Every non-zero page went whole at least once, uncompressed.
    expect(stats.transferred).toBeGreaterThan((PAGES - h.zero.pages - h.duplicate.pages) * 4096);
  });

  it("zstd with a dictionary: the destination learns it from the sender", async () => {
    const { ZstdDictionary, trainDictionary } = await import("../src/codec/index.js");
    const src = image("structured");
    let dictionary: InstanceType<typeof ZstdDictionary> | undefined;
    try {
      const samples = Array.from({ length: 200 }, (_, i) => src.bytes.subarray(i * 4096, (i + 1) * 4096));
      dictionary = new ZstdDictionary(trainDictionary(samples), 9);
    } catch (err) {
      if (!isDWCPError(err, "ERR_NATIVE_UNAVAILABLE")) throw err;
    }
    const [a, b] = channelPair();
    const incoming = acceptMigration(b);
    const m = migrate(a, src, {
      policy: { codec: PageCodec.ZSTD, level: 9, ...(dictionary ? { dictionary } : {}) },
    });
    const [stats, got] = await Promise.all([m.done, incoming.done]);
    sameImage(src.bytes, got.image);
    expect(stats.transferred).toBeLessThan(src.bytes.length / 2);
  });
});

describe("migration failures", () => {
  it("the link dies mid-migration: both sides end with ERR_CLOSED, the source resumes", async () => {
    const [a, b] = channelPair();
    const src = image("random");
    let frames = 0;
    a.tap = (d) => {
      if (decodeMigrationMessage(d).type === MigrationMessage.FRAME && ++frames === 3)
        queueMicrotask(() => a.cut());
      return d;
    };
    const incoming = acceptMigration(b);
    const m = migrate(a, src);
    expect(await codeOf(m.done)).toBe("ERR_CLOSED");
    expect(await codeOf(incoming.done)).toBe("ERR_CLOSED");
    expect(m.stats().status).toBe("failed");
    expect(src.paused).toBe(false);
    src.write(0, new Uint8Array(8)); // the source still takes writes
  });

  it("resume: after the link died, a new attempt with the partial copy as holds sends only what differs", async () => {
    const src = image("random");
    const [a, b] = channelPair();
    const first = acceptMigration(b);
    let applied = 0;
    // The link dies once the destination has applied a few frames.
    first.on("progress", (p) => {
      applied = p.frames;
      if (applied >= 3) a.cut();
    });
    expect(await codeOf(migrate(a, src).done)).toBe("ERR_CLOSED");
    expect(await codeOf(first.done)).toBe("ERR_CLOSED");
    const partial = first.partial()!;
    expect(partial.length).toBe(src.bytes.length);
    // The guest ran on meanwhile: a few pages the first attempt sent are stale now.
    for (let p = 0; p < 8; p++) src.write(p * 4096, new Uint8Array(64).fill(p + 1));
    const [a2, b2] = channelPair();
    const second = acceptMigration(b2, { holds: partial });
    const [stats, got] = await Promise.all([migrate(a2, src).done, second.done]);
    sameImage(src.bytes, got.image);
    expect(got.image).toBe(partial); // rebuilt in place
    // The frames applied before the cut (256 pages each, less the 8 rewritten) did not travel again.
    expect(applied).toBeGreaterThanOrEqual(1);
    expect(stats.hde.same.pages).toBeGreaterThanOrEqual(applied * 256 - 8);
    expect(stats.transferred).toBeLessThan(src.bytes.length - (applied * 256 - 8) * 4096 + 64 * 1024);
  });

  it("a file image to a destination holding an image: pages zero on both sides are not read; the rest arrives exact", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-held-"));
    try {
      // 2,048 pages: the first 256 random, the rest zero; the destination holds
      // zeros but for 16 pages of its own (QEMU's start-up writes, say), 8 of them
      // in the zero part of the source.
      const bytes = new Uint8Array(PAGES * 4096);
      fillImage(bytes.subarray(0, 256 * 4096), "random", 3);
      const path = join(dir, "guest.mem");
      writeFileSync(path, bytes);
      const holds = new Uint8Array(PAGES * 4096);
      for (const p of [1, 2, 3, 4, 5, 6, 7, 8, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 2047])
        holds.fill(p & 0xff || 1, p * 4096, p * 4096 + 100);
      const f = await FileImage.open(path);
      let read = 0;
      const counted: PageSource = {
        pageSize: f.pageSize,
        pageCount: f.pageCount,
        read: (first, count, into) => {
          read += count;
          return f.read(first, count, into);
        },
        dirty: () => f.dirty(),
        knownHashes: () => f.knownHashes(),
        pause: () => f.pause(),
        resume: () => f.resume(),
      };
      const [a, b] = channelPair();
      const incoming = acceptMigration(b, { holds });
      const [, got] = await Promise.all([migrate(a, counted).done, incoming.done]);
      await f.close();
      sameImage(bytes, got.image);
      // The 256 random pages, the 8 the destination holds beyond them, nothing else.
      expect(read).toBe(256 + 8);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the destination's memory cap refuses the offer before allocating", async () => {
    const [a, b] = channelPair();
    const src = image("mixed");
    const incoming = acceptMigration(b, { maxImageBytes: 1 << 20 });
    const m = migrate(a, src);
    expect(await codeOf(m.done)).toBe("ERR_RESOURCE_LIMIT");
    expect(await codeOf(incoming.done)).toBe("ERR_RESOURCE_LIMIT");
    expect(src.paused).toBe(false);
  });

  it("cancel: the destination is told, the source runs on", async () => {
    const [a, b] = channelPair();
    const src = image("random");
    const ac = new AbortController();
    let frames = 0;
    a.tap = (d) => {
      if (decodeMigrationMessage(d).type === MigrationMessage.FRAME && ++frames === 2) ac.abort();
      return d;
    };
    const incoming = acceptMigration(b);
    const m = migrate(a, src, { signal: ac.signal });
    expect(await codeOf(m.done)).toBe("ERR_ABORTED");
    expect(await codeOf(incoming.done)).toBe("ERR_ABORTED");
    expect(m.stats().status).toBe("cancelled");
    expect(src.paused).toBe(false);
  });

  it("cancel during stop-and-copy resumes the paused source", async () => {
    const [a, b] = channelPair();
    const src = image("structured");
    const ac = new AbortController();
    a.tap = (d) => {
      if (decodeMigrationMessage(d).type === MigrationMessage.COMPLETE) {
        expect(src.paused).toBe(true);
        ac.abort();
        return null; // never reaches the destination
      }
      return d;
    };
    const incoming = acceptMigration(b);
    const m = migrate(a, src, { signal: ac.signal });
    expect(await codeOf(m.done)).toBe("ERR_ABORTED");
    expect(await codeOf(incoming.done)).toBe("ERR_ABORTED");
    expect(src.paused).toBe(false);
  });

  it("a corrupted frame is refused before it is applied; both sides fail with its code", async () => {
    const [a, b] = channelPair();
    const src = image("structured");
    let frames = 0;
    a.tap = (d) => {
      if (decodeMigrationMessage(d).type !== MigrationMessage.FRAME || ++frames !== 2) return d;
      const bad = new Uint8Array(d);
      bad[bad.length - 10]! ^= 0x40;
      return bad;
    };
    const incoming = acceptMigration(b);
    const m = migrate(a, src);
    expect(await codeOf(incoming.done)).toBe("ERR_CORRUPT_PAYLOAD");
    expect(await codeOf(m.done)).toBe("ERR_CORRUPT_PAYLOAD");
    expect(src.paused).toBe(false);
  });

  it("a page the dirty log missed is found and sent when the paused source is verified", async () => {
    const [a, b] = channelPair();
    const src = image("mixed");
    let syncs = 0;
    const source = {
      pageSize: 4096,
      pageCount: PAGES,
      read: (f: number, c: number, into: Uint8Array) => src.read(f, c, into),
      dirty: () => {
        const d = src.dirty();
        // After round one, change a page behind the log's back.
        if (++syncs === 2) src.bytes[5 * 4096 + 3]! ^= 1;
        return d;
      },
      pause: () => src.pause(),
      resume: () => src.resume(),
    };
    const incoming = acceptMigration(b);
    const [stats, got] = await Promise.all([migrate(a, source, { verifySource: true }).done, incoming.done]);
    sameImage(src.bytes, got.image);
    expect(stats.rounds).toBe(3);
  });

  it("a frame lost on the way is noticed at its round's end: no copy that differs is reported done", async () => {
    const [a, b] = channelPair();
    const src = image("random"); // nothing later touches the lost pages: no baseline digest sees them
    let frames = 0;
    a.tap = (d) => (decodeMigrationMessage(d).type === MigrationMessage.FRAME && ++frames === 2 ? null : d);
    const incoming = acceptMigration(b);
    const m = migrate(a, src);
    expect(await codeOf(incoming.done)).toBe("ERR_MIGRATION_FAILED");
    expect(await codeOf(m.done)).toBe("ERR_MIGRATION_FAILED");
    expect(src.paused).toBe(false);
  });

  it("a silent destination times out", async () => {
    const [a] = channelPair();
    const src = image("zero");
    const m = migrate(a, src, { timeoutMs: 50 });
    expect(await codeOf(m.done)).toBe("ERR_TIMEOUT");
  });
});
