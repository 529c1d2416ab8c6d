// A hostile peer on either end of a migration: every malformed or out-of-bounds
// message ends the migration with a stable code, before anything is sized from
// it, and no image is handed out.
import { describe, expect, it } from "vitest";
import { encodePages } from "../src/codec/pages/encode.js";
import { MemoryImage } from "../src/migration/memory-image.js";
import {
  decodeMigrationMessage,
  encodeAbort,
  encodeApplied,
  encodeComplete,
  encodeCopy,
  encodeEmpty,
  encodeFrame,
  encodeHeld,
  encodeOffer,
  encodeRound,
  MIGRATION_HEADER,
  MIGRATION_MAGIC,
  MigrationMessage,
} from "../src/migration/messages.js";
import { acceptMigration } from "../src/migration/receiver.js";
import { migrate } from "../src/migration/sender.js";
import { channelPair } from "./helpers/channels.js";
import { codeOf } from "./helpers/codes.js";

/** A destination fed by hand: the test plays a hostile sender. */
async function destination(o: Parameters<typeof acceptMigration>[1] = {}) {
  const [a, b] = channelPair();
  const told: ReturnType<typeof decodeMigrationMessage>[] = [];
  a.on("message", (m) => told.push(decodeMigrationMessage(m.data)));
  const incoming = acceptMigration(b, { timeoutMs: 2000, ...o });
  return { send: (d: Uint8Array) => a.send(d), incoming, told };
}

const ID = 77;
const offer = (pageCount = 16, pageSize = 4096) => encodeOffer(ID, { pageSize, pageCount, imageId: 5 });

describe("a hostile sender", () => {
  it("an offer above the memory cap is refused before allocating (2^32 pages of 1 MiB)", async () => {
    const d = await destination({ maxImageBytes: 1 << 30 });
    await d.send(offer(0xffff_ffff, 1 << 20));
    expect(await codeOf(d.incoming.done)).toBe("ERR_RESOURCE_LIMIT");
    await new Promise((r) => setImmediate(r));
    expect(d.told.map((m) => m.type)).toEqual([MigrationMessage.ABORT]);
  });

  for (const [name, ps, n] of [
    ["page size 0", 0, 16],
    ["page size not a multiple of 8", 4100, 16],
    ["page size above 1 MiB", 2 << 20, 1],
    ["no pages", 4096, 0],
  ] as const)
    it(`an offer with ${name} is a protocol error`, async () => {
      const d = await destination();
      await d.send(offer(n, ps));
      expect(await codeOf(d.incoming.done)).toBe("ERR_PROTOCOL");
    });

  it("a copy order outside the image", async () => {
    const d = await destination();
    await d.send(offer());
    await d.send(encodeCopy(ID, Uint32Array.from([3, 16])));
    expect(await codeOf(d.incoming.done)).toBe("ERR_PROTOCOL");
  });

  it("a frame of another image, page size or round is refused before it touches the image", async () => {
    const img = new Uint8Array(16 * 4096).fill(9);
    for (const [what, o] of [
      ["image", { imageId: 6, version: 2 }],
      ["round", { imageId: 5, version: 3 }],
    ] as const) {
      const d = await destination();
      await d.send(offer());
      const { frame } = encodePages(img, { ...o, pageSize: 4096 });
      await d.send(encodeFrame(ID, frame));
      expect(await codeOf(d.incoming.done), what).toBe("ERR_PROTOCOL");
    }
    const d = await destination();
    await d.send(offer(32, 2048));
    await d.send(encodeFrame(ID, encodePages(img, { imageId: 5, version: 2, pageSize: 4096 }).frame));
    expect(await codeOf(d.incoming.done), "page size").toBe("ERR_PROTOCOL");
  });

  it("a frame beyond the window of unapplied bytes", async () => {
    const d = await destination({ windowBytes: 4096 });
    await d.send(offer());
    const { frame } = encodePages(crypto.getRandomValues(new Uint8Array(16 * 4096)), {
      imageId: 5,
      version: 2,
      pageSize: 4096,
      policy: { codec: 0, level: 0 },
    });
    await d.send(encodeFrame(ID, frame));
    expect(await codeOf(d.incoming.done)).toBe("ERR_PROTOCOL");
  });

  it("a ROUND out of order, a COMPLETE before its round, an unknown type, truncated messages", async () => {
    const bad: [string, Uint8Array][] = [
      ["round 2 first", encodeRound(ID, 2, 0)],
      [
        "complete of round 1 before round 1",
        (() => {
          const b = new Uint8Array(MIGRATION_HEADER + 12);
          const v = new DataView(b.buffer);
          v.setUint32(0, MIGRATION_MAGIC, true);
          v.setUint8(4, MigrationMessage.COMPLETE);
          v.setUint32(8, ID, true);
          v.setUint32(12, 1, true);
          return b;
        })(),
      ],
      [
        "unknown type",
        (() => {
          const b = encodeEmpty(MigrationMessage.ACCEPT, ID);
          b[4] = 200;
          return b;
        })(),
      ],
      ["truncated ROUND", encodeRound(ID, 1, 0).subarray(0, MIGRATION_HEADER + 4)],
      ["an APPLIED from the sender", encodeApplied(ID, { round: 0, frames: 0, bytes: 0 })],
    ];
    for (const [what, msg] of bad) {
      const d = await destination();
      await d.send(offer());
      await d.send(msg);
      expect(await codeOf(d.incoming.done), what).toBe("ERR_PROTOCOL");
    }
  });

  it("a COMPLETE whose digest is not the destination's pages: ERR_MIGRATION_FAILED, no image", async () => {
    const d = await destination();
    await d.send(offer());
    await d.send(encodeRound(ID, 1, 0));
    await d.send(encodeComplete(ID, 1, 123n));
    expect(await codeOf(d.incoming.done)).toBe("ERR_MIGRATION_FAILED");
    await new Promise((r) => setImmediate(r));
    expect(d.told.map((m) => m.type)).toContain(MigrationMessage.ABORT);
    expect(d.told.map((m) => m.type)).not.toContain(MigrationMessage.DONE);
  });

  it("a round that announces more frames than came: ERR_MIGRATION_FAILED", async () => {
    const d = await destination();
    await d.send(offer());
    await d.send(encodeRound(ID, 1, 3));
    expect(await codeOf(d.incoming.done)).toBe("ERR_MIGRATION_FAILED");
  });

  it("a sender that goes silent times out", async () => {
    const d = await destination({ timeoutMs: 100 });
    await d.send(offer());
    expect(await codeOf(d.incoming.done)).toBe("ERR_TIMEOUT");
  });

  it("an ABORT carries the sender's code; an unknown code becomes ERR_REMOTE", async () => {
    for (const [code, want] of [
      ["ERR_ABORTED", "ERR_ABORTED"],
      ["ERR_FROM_THE_FUTURE", "ERR_REMOTE"],
    ]) {
      const d = await destination();
      await d.send(offer());
      await d.send(encodeAbort(ID, { code: code!, message: "x".repeat(5000) }));
      expect(await codeOf(d.incoming.done)).toBe(want);
    }
  });
});

describe("a hostile destination", () => {
  it("APPLIED for bytes never sent, messages a destination never sends, hashes of pages outside the image: ERR_PROTOCOL", async () => {
    for (const reply of [
      (id: number) => encodeApplied(id, { round: 1, frames: 1, bytes: 1 << 30 }),
      (id: number) => encodeRound(id, 1, 0),
      // Hashes of pages beyond the 64 the image has.
      (id: number) => encodeHeld(id, 60, new BigUint64Array(8)),
    ]) {
      const [a, b] = channelPair();
      b.on("message", (m) => {
        const msg = decodeMigrationMessage(m.data);
        if (msg.type === MigrationMessage.OFFER) {
          void b.send(reply(msg.id));
          void b.send(encodeEmpty(MigrationMessage.ACCEPT, msg.id));
        }
      });
      const src = new MemoryImage({ pageCount: 64 });
      src.fillPages("random", 1);
      const m = migrate(a, src, { timeoutMs: 2000 });
      expect(await codeOf(m.done)).toBe("ERR_PROTOCOL");
      expect(src.paused).toBe(false);
    }
  });

  it("a destination that never confirms the final round times out, and the paused source is resumed", async () => {
    const [a, b] = channelPair();
    b.on("message", (m) => {
      const msg = decodeMigrationMessage(m.data);
      if (msg.type === MigrationMessage.OFFER) void b.send(encodeEmpty(MigrationMessage.ACCEPT, msg.id));
      if (msg.type === MigrationMessage.ROUND)
        void b.send(encodeApplied(msg.id, { round: msg.round, frames: 0, bytes: 0 }));
      // COMPLETE is never answered.
    });
    const src = new MemoryImage({ pageCount: 8 });
    const m = migrate(a, src, { timeoutMs: 200 });
    expect(await codeOf(m.done)).toBe("ERR_TIMEOUT");
    expect(src.paused).toBe(false);
  });
});
