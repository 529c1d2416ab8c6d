// AMST under stress: a stream killed in the middle of a 1 GiB transfer, and the
// autotuner adding and removing streams mid-transfer. Every message carries its
// sequence number and the CRC-32C of its body, checked at the receiver, so a lost,
// duplicated, reordered or corrupted message fails the test.
import { randomFillSync } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { crc32c } from "../src/hash/index.js";
import { tuneParams } from "../src/mode/policy.js";
import type { Session } from "../src/session/session.js";
import { type AmstConn, amst } from "../src/transport/amst/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { closeAll, sessionPair } from "./helpers/nodes.js";
import { readAllCrc } from "./helpers/read.js";

afterEach(closeAll);

const TOTAL = Number(process.env.DWCP_AMST_MIB ?? 1024) << 20;
const POOL = randomFillSync(new Uint8Array(8 << 20));

/** Message sizes 1 B … 4 MiB, deterministic. */
function sizeOf(seq: number): number {
  const r = (Math.imul(seq, 2654435761) >>> 0) % 100;
  if (r < 40) return 16 + ((seq * 37) % 4096);
  if (r < 80) return 64 * 1024 + ((seq * 911) % (256 * 1024));
  return 1 + ((seq * 7919) % (4 << 20));
}

function message(seq: number): Uint8Array {
  const n = Math.max(12, sizeOf(seq));
  const start = (seq * 4099) % (POOL.length - n);
  const body = POOL.subarray(start + 12, start + n);
  const head = new Uint8Array(12);
  const v = new DataView(head.buffer);
  v.setUint32(0, seq, true);
  v.setUint32(4, 0, true);
  v.setUint32(8, crc32c(body), true);
  return Buffer.concat([head, body]);
}

interface Received {
  count: number;
  bytes: number;
  errors: string[];
}

/** Reads messages, checking sequence and checksum; calls `at(bytes)` as data arrives. */
function receive(b: Session, expected: number, at: (bytes: number) => void): Promise<Received> {
  return new Promise((resolve) => {
    const r: Received = { count: 0, bytes: 0, errors: [] };
    b.on("message", (m) => {
      const d = m.data;
      const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
      const seq = v.getUint32(0, true);
      if (seq !== r.count) r.errors.push(`message ${r.count}: got sequence ${seq}`);
      if (crc32c(d.subarray(12)) !== v.getUint32(8, true)) r.errors.push(`message ${seq}: checksum mismatch`);
      r.count++;
      r.bytes += d.length;
      at(r.bytes);
      if (r.count === expected) resolve(r);
    });
  });
}

async function send(a: Session, total: number): Promise<number> {
  let seq = 0;
  let bytes = 0;
  const inflight: Promise<number>[] = [];
  while (bytes < total) {
    const m = message(seq++);
    bytes += m.length;
    inflight.push(a.send(m));
    if (inflight.length >= 64) await inflight.shift();
  }
  await Promise.all(inflight);
  return seq;
}

function countMessages(total: number): number {
  let seq = 0;
  let bytes = 0;
  while (bytes < total) bytes += Math.max(12, sizeOf(seq++));
  return seq;
}

/** `lend`: the receiving side (b) lends its messages, so the bundle lends its streams' reads. */
async function amstPair(streams: number, lend = false) {
  const t = amst(tcp(), { streams, reconnectInitialMs: 20 });
  const p = await sessionPair({ transport: t, lendMessages: lend }, {}, "127.0.0.1:0");
  return { ...p, ca: p.a.conn as AmstConn, cb: p.b.conn as AmstConn };
}

describe("amst recovery", { timeout: 180_000 }, () => {
  // The receiver-side kill runs on lent reads: resent segments arrive after later
  // bytes of the same stream, and the memory they hold must outlive its neighbours'.
  for (const side of ["receiver", "sender"] as const) {
    const lend = side === "receiver";
    it(`a stream killed (${side} side${lend ? ", lent reads" : ""}) in the middle of ${TOTAL >> 20} MiB: nothing lost or duplicated, the count recovers`, async () => {
      const { a, b, ca, cb } = await amstPair(4, lend);
      expect(typeof cb.release).toBe(lend ? "function" : "undefined");
      expect(ca.streamCount).toBe(4);
      const expected = countMessages(TOTAL);
      let killed = false;
      const got = receive(b, expected, (bytes) => {
        if (!killed && bytes >= TOTAL / 2) {
          killed = true;
          const victim = (side === "receiver" ? cb : ca).streamConns()[1]!;
          victim.socket!.destroy();
        }
      });
      const sent = await send(a, TOTAL);
      const r = await got;
      expect(sent).toBe(expected);
      expect(r.errors).toEqual([]);
      expect(r.count).toBe(expected);
      expect(killed).toBe(true);
      expect(ca.stats.streamsLost + cb.stats.streamsLost).toBeGreaterThanOrEqual(1);
      expect(await ca.whenStreams(4, { timeoutMs: 5000 })).toBe(true);
      expect(ca.stats.reconnects).toBeGreaterThanOrEqual(1);
      // Striped for real: every stream that lived through the transfer carried segments.
      expect(ca.stats.segmentsSent).toBeGreaterThan(4);
      expect(a.stats.messagesSent).toBe(b.stats.messagesReceived);
      // A sender whose own stream died sends its unacknowledged segments again on
      // the others (the receiver drops what had already arrived). When the
      // receiver's end dies instead, the segments in flight on it may all have
      // arrived and be acknowledged on another stream before the sender sees the
      // loss: then nothing needs resending (seen in CI), and the count above is
      // what proves nothing was lost. Either way the reorder buffer stayed within
      // the window.
      if (side === "sender") expect(ca.stats.segmentsResent).toBeGreaterThan(0);
      expect(cb.stats.reorderBytesMax).toBeLessThanOrEqual(32 << 20);
    });
  }

  it("the autotuner adds and removes streams mid-transfer without loss", async () => {
    const { a, b, ca, cb } = await amstPair(2);
    const total = TOTAL / 2;
    const expected = countMessages(total);
    const targets: number[] = [];
    const seen = new Set<number>();
    let step = 0;
    const got = receive(b, expected, (bytes) => {
      seen.add(ca.streamCount);
      if (step === 0 && bytes >= total / 4) {
        step++;
        // A long fat lossy path under a loss-based control: many streams.
        targets.push(
          ca.tune({
            ...tuneParams({ mode: "internet", rttMs: 50, bandwidthBps: 1e9, lossRate: 0.01 }),
            congestion: "cubic",
          }),
        );
      } else if (step === 1 && bytes >= total / 2) {
        step++;
        // A datacenter path: one stream carries the bandwidth-delay product.
        targets.push(ca.tune(tuneParams({ mode: "datacenter", rttMs: 0.05, bandwidthBps: 10e9 })));
      } else if (step === 2 && bytes >= (3 * total) / 4) {
        step++;
        targets.push(ca.tune(tuneParams({ mode: "datacenter", rttMs: 5, bandwidthBps: 40e9 })));
      }
    });
    await send(a, total);
    const r = await got;
    expect(r.errors).toEqual([]);
    expect(r.count).toBe(expected);
    expect(targets).toEqual([16, 1, 6]);
    expect(Math.max(...seen)).toBeGreaterThan(2);
    expect(ca.stats.streamsRetired).toBeGreaterThan(0);
    expect(ca.stats.streamsLost + cb.stats.streamsLost).toBe(0);
    expect(await ca.whenStreams(6, { timeoutMs: 5000 })).toBe(true);
    expect(cb.streamCount).toBe(6);
  });
});

describe("amst closing", () => {
  it("every stream lost while closing: the dialler redials, and the close completes with everything delivered", async () => {
    const t = amst(tcp(), { streams: 2, reconnectInitialMs: 20 });
    let accept!: (c: import("../src/transport/contract.js").Conn) => void;
    const accepted = new Promise<import("../src/transport/contract.js").Conn>((r) => {
      accept = r;
    });
    const listener = await t.listen("127.0.0.1:0", accept);
    const client = (await t.dial(listener.address)) as AmstConn;
    const server = (await accepted) as AmstConn;
    // No session runs on top: the test vouches for both ends (an unauthenticated
    // accepted bundle is released, not kept for a rejoin, once its streams are gone).
    client.authenticated();
    server.authenticated();
    const data = randomFillSync(new Uint8Array(16 << 20));
    const got = readAllCrc(server);
    client.send(data);
    const closing = client.close();
    for (const c of client.streamConns()) c.socket!.destroy();
    await Promise.race([
      closing,
      new Promise((_, reject) => setTimeout(() => reject(new Error("close did not complete")), 10_000)),
    ]);
    expect(await got).toEqual({ n: data.length, crc: crc32c(data) });
    expect(client.stats.streamsLost).toBeGreaterThanOrEqual(2);
    expect(client.stats.reconnects).toBeGreaterThanOrEqual(1);
    await server.close();
    await listener.close();
  });
});
