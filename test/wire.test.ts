// The byte layouts of docs/PROTOCOL.md, checked field by field.
import { createHash, createHmac, hkdfSync } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { crc32c } from "../src/hash/index.js";
import { deriveKeys, readyProof, transcriptHash, verifyReadyProof } from "../src/wire/auth.js";
import {
  decodeHeader,
  encodeFrame,
  FrameDecoder,
  FrameFlags,
  FrameType,
  HEADER_SIZE,
} from "../src/wire/frame.js";
import { decodeGreeting, encodeGreeting, GREETING_SIZE } from "../src/wire/greeting.js";
import { PartsCursor } from "../src/wire/parts.js";
import { decodeControl, encodeControl } from "../src/wire/proto.js";

describe("greeting (PROTOCOL §2)", () => {
  it("is 40 bytes: magic, format 1, max version, u16 flags LE, 32-byte nonce", () => {
    const nonce = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
    const g = encodeGreeting({ maxVersion: 3, flags: 0x0102, nonce });
    expect(g.length).toBe(GREETING_SIZE);
    expect([...g.subarray(0, 8)]).toEqual([0x44, 0x57, 0x43, 0x50, 1, 3, 0x02, 0x01]);
    expect([...g.subarray(8)]).toEqual([...nonce]);
    expect(decodeGreeting(g)).toMatchObject({ format: 1, maxVersion: 3, flags: 0x0102 });
  });

  it("rejects other magic with ERR_BAD_MAGIC and another format with ERR_VERSION_MISMATCH", () => {
    const g = encodeGreeting({ maxVersion: 3, flags: 0, nonce: new Uint8Array(32) });
    expect(() => decodeGreeting(Uint8Array.from(g, (b, i) => (i === 0 ? 0x45 : b)))).toThrow(
      expect.objectContaining({ code: "ERR_BAD_MAGIC" }),
    );
    expect(() => decodeGreeting(Uint8Array.from(g, (b, i) => (i === 4 ? 2 : b)))).toThrow(
      expect.objectContaining({ code: "ERR_VERSION_MISMATCH" }),
    );
  });
});

describe("frames (PROTOCOL §3)", () => {
  it("lays the header out as specified, CRC over header bytes 0..27 then the payload", () => {
    const payload = new TextEncoder().encode("hello");
    const f = encodeFrame(
      {
        type: FrameType.DATA,
        flags: FrameFlags.END,
        streamId: 0x0203,
        messageId: 2 ** 40 + 5,
        offset: 7,
        codecId: 9,
      },
      payload,
    );
    const v = new DataView(f.buffer);
    expect(f.length).toBe(HEADER_SIZE + 5);
    expect(v.getUint8(0)).toBe(1);
    expect(v.getUint8(1)).toBe(1);
    expect(v.getUint16(2, true)).toBe(0x0203);
    expect(v.getUint32(4, true)).toBe(5);
    expect(v.getBigUint64(8, true)).toBe(2n ** 40n + 5n);
    expect(v.getBigUint64(16, true)).toBe(7n);
    expect(v.getUint8(24)).toBe(9);
    expect([...f.subarray(25, 28)]).toEqual([0, 0, 0]);
    expect(v.getUint32(28, true)).toBe(crc32c(payload, crc32c(f.subarray(0, 28))));
  });

  it("decodes any split of a frame stream into the same frames", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (payloads, cuts) => {
          const stream = Buffer.concat(
            payloads.map((p, i) =>
              encodeFrame(
                {
                  type: FrameType.DATA,
                  flags: FrameFlags.END,
                  streamId: 0,
                  messageId: i + 1,
                  offset: 0,
                  codecId: 0,
                },
                p,
              ),
            ),
          );
          const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const d = new FrameDecoder(4096);
          const got: Uint8Array[] = [];
          let prev = 0;
          for (const at of [...points, stream.length]) {
            d.push(stream.subarray(prev, at));
            for (let f = d.next(); f; f = d.next())
              got.push(new Uint8Array(f.parts ? Buffer.concat(f.parts) : f.payload));
            prev = at;
          }
          expect(got).toEqual(payloads.map((p) => new Uint8Array(p)));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses a length above the limit before buffering, and a flipped bit with ERR_CHECKSUM", () => {
    const f = encodeFrame(
      { type: FrameType.DATA, flags: 0, streamId: 0, messageId: 1, offset: 0, codecId: 0 },
      new Uint8Array(100),
    );
    expect(() => decodeHeader(f, 99)).toThrow(expect.objectContaining({ code: "ERR_FRAME_TOO_LARGE" }));
    const bad = new Uint8Array(f);
    bad[HEADER_SIZE + 50]! ^= 4;
    const d = new FrameDecoder(1000);
    d.push(bad);
    expect(() => d.next()).toThrow(expect.objectContaining({ code: "ERR_CHECKSUM" }));
    expect(() => d.next()).toThrow(expect.objectContaining({ code: "ERR_CHECKSUM" }));
  });

  it("rejects unknown frame types with ERR_BAD_FRAME", () => {
    const f = encodeFrame(
      { type: FrameType.DATA, flags: 0, streamId: 0, messageId: 1, offset: 0, codecId: 0 },
      new Uint8Array(0),
    );
    f[0] = 9;
    expect(() => decodeHeader(f, 10)).toThrow(expect.objectContaining({ code: "ERR_BAD_FRAME" }));
  });
});

describe("control messages (PROTOCOL §5, §8)", () => {
  it("round-trip through the .proto definition and ignore unknown fields", () => {
    const hello = {
      nodeId: "node-ü",
      versions: [1, 3],
      codecs: [{ id: 2, name: "zstd", dictionaryIds: [7] }],
      maxFrameSize: 1 << 20,
      maxMessageSize: 1 << 26,
    };
    const back = decodeControl(encodeControl({ hello }));
    expect(back).toMatchObject({ hello });
    // Field 15 of Control (unknown to this version) followed by an Ack: the unknown is skipped.
    const unknown = Uint8Array.of((15 << 3) | 0, 1);
    expect(decodeControl(Buffer.concat([unknown, encodeControl({ ack: { upTo: 42 } })]))).toEqual({
      ack: { upTo: 42 },
    });
    expect(() => decodeControl(Uint8Array.of(0xff, 0xff))).toThrow(
      expect.objectContaining({ code: "ERR_BAD_CONTROL" }),
    );
  });
});

describe("PSK proof (PROTOCOL §6)", () => {
  const psk = new TextEncoder().encode("0123456789abcdef");
  const parts = {
    greetingC: new Uint8Array(40).fill(1),
    greetingS: new Uint8Array(40).fill(2),
    helloC: new Uint8Array(30).fill(3),
    helloS: new Uint8Array(31).fill(4),
  };
  const nonceC = new Uint8Array(32).fill(5);
  const nonceS = new Uint8Array(32).fill(6);

  it("hashes the length-prefixed transcript and derives keys with HKDF-SHA256, as the document says", () => {
    const lp = (b: Uint8Array) => {
      const n = Buffer.alloc(4);
      n.writeUInt32LE(b.length);
      return Buffer.concat([n, b]);
    };
    const t = createHash("sha256")
      .update("DWCP-PSK-2")
      .update(Buffer.concat([parts.greetingC, parts.greetingS, parts.helloC, parts.helloS].map(lp)))
      .digest();
    expect(Buffer.from(transcriptHash(parts)).equals(t)).toBe(true);
    const okm = Buffer.from(
      hkdfSync(
        "sha256",
        psk,
        Buffer.concat([nonceC, nonceS]),
        Buffer.concat([Buffer.from("DWCP-PSK-2 keys"), t]),
        128,
      ),
    );
    const keys = deriveKeys(psk, nonceC, nonceS, t);
    expect(Buffer.from(keys.proof.C).equals(okm.subarray(0, 32))).toBe(true);
    expect(Buffer.from(keys.mac.S).equals(okm.subarray(96, 128))).toBe(true);
    const proof = createHmac("sha256", okm.subarray(0, 32)).update("C").update(t).digest();
    expect(Buffer.from(readyProof(keys, "C", t)).equals(proof)).toBe(true);
  });

  it("a proof verifies only for its role, its transcript and its key", () => {
    const t = transcriptHash(parts);
    const keys = deriveKeys(psk, nonceC, nonceS, t);
    const proof = readyProof(keys, "C", t);
    expect(verifyReadyProof(keys, "C", t, proof)).toBe(true);
    expect(verifyReadyProof(keys, "S", t, proof)).toBe(false);
    // One byte of a Hello rewritten on the way: another transcript, other keys.
    const altered = transcriptHash({ ...parts, helloS: Uint8Array.of(...parts.helloS.subarray(1), 9) });
    expect(verifyReadyProof(deriveKeys(psk, nonceC, nonceS, altered), "C", altered, proof)).toBe(false);
    const otherKey = deriveKeys(new TextEncoder().encode("another key 1234"), nonceC, nonceS, t);
    expect(verifyReadyProof(otherKey, "C", t, proof)).toBe(false);
    expect(verifyReadyProof(keys, "C", t, undefined)).toBe(false);
  });
});

describe("PartsCursor (BATCH payloads that span socket reads)", () => {
  it("reads the same lengths and entries as the joined payload, wherever the cuts fall", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 30 }),
        fc.array(fc.nat({ max: 2000 }), { maxLength: 40 }),
        (entries, cuts) => {
          const joined = Buffer.concat(
            entries.flatMap((e) => {
              const len = Buffer.alloc(4);
              len.writeUInt32LE(e.length, 0);
              return [len, e];
            }),
          );
          // Split at the given offsets, empty parts included.
          const at = [...new Set(cuts.map((c) => c % (joined.length + 1)))].sort((x, y) => x - y);
          const parts = [0, ...at].map((start, i) => joined.subarray(start, [...at, joined.length][i]));
          const cur = new PartsCursor(parts);
          expect(cur.remaining).toBe(joined.length);
          for (const e of entries) {
            expect(cur.u32()).toBe(e.length);
            const views = cur.take(e.length);
            expect(Buffer.compare(Buffer.concat(views), e)).toBe(0);
          }
          expect(cur.remaining).toBe(0);
        },
      ),
      { numRuns: 500 },
    );
  });
});
