// Session behaviour on the memory transport: ordering, acks, events vs iteration,
// streamed sends, backpressure, limits, close vs destroy.
import { randomFillSync } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import type { DWCPError } from "../src/errors.js";
import { PathProber } from "../src/path/prober.js";
import type { Message } from "../src/session/session.js";
import { tcp } from "../src/transport/tcp/index.js";
import { encodeFrame, FrameFlags, FrameType } from "../src/wire/frame.js";
import { closeAll, sessionPair } from "./helpers/nodes.js";

afterEach(closeAll);

describe("session messages", () => {
  it("delivers messages in order with ids 1, 2, 3… and resolves send() with the id", async () => {
    const { a, b } = await sessionPair();
    const sizes = [0, 1, 100, 65_536, 1 << 20, (1 << 20) + 1, 3_000_000];
    const payloads = sizes.map((n) => randomFillSync(new Uint8Array(n)));
    const got: Message[] = [];
    b.on("message", (m) => got.push(m));
    const ids = await Promise.all(payloads.map((p) => a.send(p)));
    expect(ids).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(got.map((m) => m.id)).toEqual(ids);
    for (const [i, m] of got.entries()) {
      expect(m.length).toBe(sizes[i]);
      // Chunks are the zero-copy view of the same bytes that `data` joins.
      expect(Buffer.compare(Buffer.concat(m.chunks as Uint8Array[]), payloads[i]!)).toBe(0);
      expect(Buffer.compare(m.data, payloads[i]!)).toBe(0);
    }
    expect(a.stats.messagesSent).toBe(7);
    expect(b.stats.messagesReceived).toBe(7);
  });

  it("coalesces small messages sent together into BATCH frames, delivered one by one in order", async () => {
    const { a, b } = await sessionPair();
    const got: Message[] = [];
    b.on("message", (m) => got.push(m));
    const payloads = Array.from({ length: 500 }, (_, i) => new Uint8Array(i % 97).fill(i & 0xff));
    const ids = await Promise.all(payloads.map((p) => a.send(p)));
    expect(ids).toEqual(payloads.map((_, i) => i + 1));
    expect(got.map((m) => m.id)).toEqual(ids);
    for (const [i, m] of got.entries()) expect(Buffer.compare(m.data, payloads[i]!)).toBe(0);
    // Far fewer frames than messages crossed the wire.
    expect(b.frameStats.frames).toBeLessThan(50);
  });

  it("over TCP, BATCH frames cut across socket reads deliver every small message intact", async () => {
    const { a, b } = await sessionPair({ transport: tcp() }, {}, "127.0.0.1:0");
    const got: Message[] = [];
    b.on("message", (m) => got.push(m));
    // Random sizes 0…300 B: batches whose entries and length fields straddle
    // the 64 KiB socket reads at every kind of offset.
    const payloads = Array.from({ length: 20_000 }, (_, i) =>
      randomFillSync(new Uint8Array((i * 7919) % 301)),
    );
    for (let i = 0; i < payloads.length; i += 2000)
      await Promise.all(payloads.slice(i, i + 2000).map((p) => a.send(p)));
    expect(got.map((m) => m.id)).toEqual(payloads.map((_, i) => i + 1));
    for (const [i, m] of got.entries()) expect(Buffer.compare(m.data, payloads[i]!)).toBe(0);
    // Some entries really did arrive in more than one view.
    expect(got.some((m) => m.chunks.length > 1)).toBe(true);
  });

  it("a malformed BATCH frame ends the session with ERR_BAD_FRAME", async () => {
    const { a, b } = await sessionPair();
    const ended = b.closed;
    const payload = new Uint8Array(12);
    new DataView(payload.buffer).setUint32(0, 1000, true); // entry claims 1000 bytes, 8 follow
    a.conn.send(
      encodeFrame(
        {
          type: FrameType.DATA,
          flags: FrameFlags.END | FrameFlags.BATCH,
          streamId: 0,
          messageId: 1,
          offset: 0,
          codecId: 0,
        },
        payload,
      ),
    );
    expect(await ended).toMatchObject({ code: "ERR_BAD_FRAME" });
  });

  it("works in both directions at once", async () => {
    const { a, b } = await sessionPair();
    const atA: number[] = [];
    const atB: number[] = [];
    a.on("message", (m) => atA.push(m.data[0]!));
    b.on("message", (m) => atB.push(m.data[0]!));
    await Promise.all([
      ...Array.from({ length: 50 }, (_, i) => a.send(Uint8Array.of(i))),
      ...Array.from({ length: 50 }, (_, i) => b.send(Uint8Array.of(100 + i))),
    ]);
    expect(atB).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(atA).toEqual(Array.from({ length: 50 }, (_, i) => 100 + i));
  });

  it("delivers through async iteration when there is no message listener, ending on close", async () => {
    const { a, b } = await sessionPair();
    const reading = (async () => {
      const seen: number[] = [];
      for await (const m of b) seen.push(m.data.length);
      return seen;
    })();
    await a.send(new Uint8Array(10));
    await a.send(new Uint8Array(20));
    await a.close();
    expect(await reading).toEqual([10, 20]);
    expect(a.state).toBe("closed");
    expect(b.state).toBe("closed");
  });

  it("sends an async iterable of chunks as one message, streamed in frames", async () => {
    const { a, b } = await sessionPair({ maxFrameSize: 64 * 1024 }, { maxFrameSize: 64 * 1024 });
    const parts = [new Uint8Array(100_000).fill(1), new Uint8Array(0), new Uint8Array(50_000).fill(2)];
    const got = new Promise<Message>((r) => b.once("message", r));
    async function* chunks() {
      for (const p of parts) yield p;
    }
    expect(await a.send(chunks())).toBe(1);
    const m = await got;
    expect(m.data.length).toBe(150_000);
    expect(m.data[99_999]).toBe(1);
    expect(m.data[100_000]).toBe(2);
  });

  it("applies backpressure end to end: an unread receiver stops the sender; nothing is lost", async () => {
    const { a, b } = await sessionPair({ receiveQueueBytes: 4 << 20 }, { sendWindowBytes: 8 << 20 });
    const msg = new Uint8Array(1 << 20);
    let acked = 0;
    const sends = Array.from({ length: 64 }, () => a.send(msg).then(() => acked++));
    await new Promise((r) => setTimeout(r, 300));
    // The receiver's queue is bounded; the rest waits in the sender.
    expect(acked).toBeLessThan(64);
    expect(b.queuedBytes).toBeLessThanOrEqual((4 << 20) + (1 << 20));
    let n = 0;
    for await (const m of b) {
      expect(m.id).toBe(++n);
      if (n === 64) break;
    }
    await Promise.all(sends);
    expect(acked).toBe(64);
  });

  it("a Pong says when the peer's session stopped reading for its application (Pong.held)", async () => {
    const { a, b } = await sessionPair({ receiveQueueBytes: 4 << 20 }, { sendWindowBytes: 32 << 20 });
    // Nobody reads b: its queue fills and its session stops reading.
    expect((await PathProber.of(a).rttSample()).peerHeld).toBe(false);
    const msg = new Uint8Array(1 << 20);
    const sends = Array.from({ length: 16 }, () => a.send(msg));
    await new Promise((r) => setTimeout(r, 200));
    // This Ping waits behind the unread messages; b answers it once read again.
    const behind = PathProber.of(a).rttSample();
    await new Promise((r) => setTimeout(r, 100));
    let n = 0;
    for await (const _ of b) if (++n === 16) break;
    expect((await behind).peerHeld).toBe(true);
    await Promise.all(sends);
    // Reading freely since that answer: the next one is not held.
    expect((await PathProber.of(a).rttSample()).peerHeld).toBe(false);
  });

  it("a Pong says how busy the peer's event loop was since its previous Pong (Pong.busy_permille)", async () => {
    const { a } = await sessionPair();
    expect((await PathProber.of(a).rttSample()).peerBusy).toBe(0); // no previous Pong to measure from
    await new Promise((r) => setTimeout(r, 200));
    expect((await PathProber.of(a).rttSample()).peerBusy).toBeLessThan(0.5);
    // Both ends share this process: 300 ms of work right after that Pong is the peer's too.
    const end = performance.now() + 300;
    while (performance.now() < end);
    expect((await PathProber.of(a).rttSample()).peerBusy).toBeGreaterThan(0.9);
  });

  it("a probe round stops sending when its sendMs is up, and the peer's figures cover what was sent", async () => {
    const { a } = await sessionPair({ transport: tcp() }, {}, "127.0.0.1:0");
    // 64 GiB would take tens of seconds on any path here: the round must end at
    // the time bound, with its last frame marked so the peer answers.
    const t0 = performance.now();
    const r = await PathProber.of(a).probe(64 * 2 ** 30, { sendMs: 150 });
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(150);
    expect(took).toBeLessThan(3_000);
    expect(r.bytes).toBeGreaterThan(256 * 1024);
    expect(r.bytes).toBeLessThan(64 * 2 ** 30);
    expect(r.durationUs).toBeGreaterThan(0);
    expect(r.bps).toBeGreaterThan(0);
  });

  it("pings and probe rounds waiting for an answer fail as soon as the session ends", async () => {
    const { a, b } = await sessionPair({ receiveQueueBytes: 1 << 20 }, { sendWindowBytes: 32 << 20 });
    // b's application does not read: its queue fills, its session stops reading,
    // and nothing sent after that is answered.
    const sends = Promise.allSettled(Array.from({ length: 8 }, () => a.send(new Uint8Array(1 << 20))));
    await new Promise((r) => setTimeout(r, 100));
    const ping = PathProber.of(a).rttSample({ timeoutMs: 60_000 });
    const probe = PathProber.of(a).probe(1 << 20, { timeoutMs: 60_000 });
    await new Promise((r) => setTimeout(r, 100));
    const t0 = performance.now();
    a.destroy();
    await expect(ping).rejects.toMatchObject({ code: "ERR_ABORTED" });
    await expect(probe).rejects.toMatchObject({ code: "ERR_ABORTED" });
    expect(performance.now() - t0).toBeLessThan(1_000);
    await sends;
    await expect(PathProber.of(a).rttSample()).rejects.toMatchObject({ code: "ERR_ABORTED" });
    void b;
  });

  it("small messages queued behind backpressure still leave in BATCH frames, in order, intact", async () => {
    const { a, b } = await sessionPair(
      { transport: tcp(), receiveQueueBytes: 1 << 20 },
      { sendWindowBytes: 8 << 20 },
      "127.0.0.1:0",
    );
    // 40 MB at once at a receiver that is not reading yet: the socket pushes
    // back and the window fills, so most sends wait in the session's queue.
    const payloads = Array.from({ length: 40_000 }, (_, i) =>
      randomFillSync(new Uint8Array(1 + ((i * 7919) % 2000))),
    );
    const sends = payloads.map((p) => a.send(p));
    await new Promise((r) => setTimeout(r, 100));
    let n = 0;
    for await (const m of b) {
      expect(m.id).toBe(++n);
      expect(Buffer.compare(m.data, payloads[n - 1]!)).toBe(0);
      if (n === payloads.length) break;
    }
    expect(await Promise.all(sends)).toEqual(payloads.map((_, i) => i + 1));
    // About 40 MB in batches of up to 256 KiB: a few hundred frames (plus acks),
    // not one per message.
    expect(b.frameStats.frames).toBeLessThan(2_000);
  });

  it("a send aborted while it waits for the window fails alone; the session and the ids carry on", async () => {
    const { a, b } = await sessionPair({ receiveQueueBytes: 1 << 20 }, { sendWindowBytes: 1 << 20 });
    const big = new Uint8Array(1 << 20);
    // The receiver, not reading yet, queues (and acks) the first and stops
    // reading: the second fills the window.
    const first = [a.send(big), a.send(big)];
    const ac = new AbortController();
    const waiting = a.send(new Uint8Array(100).fill(7), { signal: ac.signal });
    const behind = a.send(new Uint8Array(100).fill(9));
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    await expect(waiting).rejects.toMatchObject({ code: "ERR_ABORTED" });
    const got: Message[] = [];
    for await (const m of b) {
      got.push(m);
      if (got.length === 3) break;
    }
    // The withdrawn message never had an id on the wire: the next one took it.
    expect(await Promise.all([...first, behind])).toEqual([1, 2, 3]);
    expect(got.map((m) => m.id)).toEqual([1, 2, 3]);
    expect(Buffer.compare(got[2]!.data, new Uint8Array(100).fill(9))).toBe(0);
    expect(a.state).toBe("open");
    expect(await a.send(new Uint8Array(1))).toBe(4);
  });

  it("refuses a message above the negotiated maximum with ERR_MESSAGE_TOO_LARGE", async () => {
    const { a } = await sessionPair({ maxMessageSize: 1 << 20 }, {});
    await expect(a.send(new Uint8Array((1 << 20) + 1))).rejects.toMatchObject({
      code: "ERR_MESSAGE_TOO_LARGE",
    });
  });

  it("graceful close waits for outstanding messages; later sends fail with ERR_CLOSED", async () => {
    const { a, b } = await sessionPair();
    const got: number[] = [];
    b.on("message", (m) => got.push(m.id));
    const sends = [a.send(new Uint8Array(1 << 20)), a.send(new Uint8Array(1 << 20))];
    const closing = a.close();
    await expect(a.send(new Uint8Array(1))).rejects.toMatchObject({ code: "ERR_CLOSED" });
    await Promise.all([...sends, closing]);
    expect(got).toEqual([1, 2]);
    await expect(b.send(new Uint8Array(1))).rejects.toMatchObject({ code: "ERR_CLOSED" });
  });

  it("close({signal}) ends in time when a send waits for a peer that stopped reading; every send settles", async () => {
    // The receiver takes nothing: its queue fills, it stops reading, both socket
    // buffers fill and a send waits for drain while holding the write lock. A
    // graceful close cannot finish; the signal must still end it (it used to wait
    // for the lock before listening to the signal, forever).
    const { a, b } = await sessionPair({ transport: tcp() }, {}, "127.0.0.1:0");
    const msg = new Uint8Array(1 << 20);
    const settled: string[] = [];
    const sends = Array.from({ length: 96 }, () =>
      a.send(msg).then(
        () => settled.push("acked"),
        (e: DWCPError) => settled.push(e.code),
      ),
    );
    await new Promise((r) => setTimeout(r, 500));
    expect(b.queuedBytes).toBeGreaterThan(0);
    expect(settled.length).toBeLessThan(96);
    const t0 = performance.now();
    await expect(a.close({ signal: AbortSignal.timeout(300) })).rejects.toMatchObject({
      code: "ERR_ABORTED",
    });
    expect(performance.now() - t0).toBeLessThan(2000);
    await Promise.all(sends);
    expect(settled).toHaveLength(96);
    expect(settled.filter((s) => s !== "acked").every((c) => c === "ERR_ABORTED")).toBe(true);
  });

  it("destroy(err) fails pending sends and tells the peer, which sees the code", async () => {
    const { a, b } = await sessionPair();
    const bClosed = new Promise<DWCPError | undefined>((r) => b.once("close", r));
    const pending = a.send(new Uint8Array(8 << 20));
    a.destroy(new (await import("../src/errors.js")).DWCPError("ERR_ABORTED", "test teardown"));
    await expect(pending).rejects.toMatchObject({ code: "ERR_ABORTED" });
    const err = await bClosed;
    expect(err).toMatchObject({ code: "ERR_ABORTED", remote: true });
  });

  it("a lost connection fails the session with ERR_CLOSED", async () => {
    const { a, b } = await sessionPair();
    const closed = new Promise<DWCPError | undefined>((r) => b.once("close", r));
    a.conn.abort();
    expect(await closed).toMatchObject({ code: "ERR_CLOSED" });
    await expect(b.send(Uint8Array.of(1))).rejects.toMatchObject({ code: "ERR_CLOSED" });
  });
});
