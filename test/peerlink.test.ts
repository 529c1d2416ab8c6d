// PeerLink and DWCPManager correctness (issue #15, items 8 and 9): sizes and
// sequence numbers, caller errors, generation events, lent messages held out of
// order, the breaker and the sender's own queue, link events and backpressure,
// errors without listeners, and the mode rule on both sides of a link.
import { once } from "node:events";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../src/errors.js";
import type { DWCPManager, Generation, PeerLink } from "../src/manager.js";
import { MemoryNetwork, type MemoryOptions, memory } from "../src/transport/memory/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { tls } from "../src/transport/tls/index.js";
import { testPki } from "./helpers/certs.js";
import { closeManagers, manager, managerPair, sleep, until, V3_ON, within } from "./helpers/managers.js";
import { PSK } from "./helpers/nodes.js";

afterEach(closeManagers);

/** Both generations on one fresh memory network, on a path both sides declare datacenter. */
function memoryPair(extra: Partial<Parameters<typeof managerPair>[0]> = {}) {
  const net = new MemoryNetwork();
  const n = Math.random().toString(36).slice(2, 8);
  return managerPair({
    v1: () => memory({}, net),
    v3: () => memory({}, net),
    addresses: { v1: `m1-${n}:0`, v3: `m3-${n}:0` },
    ...extra,
    both: { assumeMode: "datacenter", ...extra.both },
  });
}

describe("PeerLink: sizes and sequence numbers (item 9)", () => {
  it("a message over the link's limit fails before taking a number, quoting what the caller passed; the next one is delivered", async () => {
    // 128 KiB sessions: the link's own limit is 8 bytes less (its header).
    const LIMIT = 128 * 1024;
    const { linkA, linkB } = await memoryPair({ node: { maxFrameSize: 64 * 1024, maxMessageSize: LIMIT } });
    const got: number[] = [];
    linkB.on("message", (m) => got.push(m.data.length));
    const err = await linkA.send(new Uint8Array(LIMIT)).catch((e: DWCPError) => e);
    expect(err).toBeInstanceOf(DWCPError);
    expect((err as DWCPError).code).toBe("ERR_MESSAGE_TOO_LARGE");
    // The next send must reach the peer, not resolve while the peer waits for a
    // number the failed send used up.
    await linkA.send(new Uint8Array(5));
    await within(
      until(() => got.length === 1, 1000),
      2000,
      "the message after a refused one delivered",
    );
    expect(got).toEqual([5]);
    expect((err as Error).message).toContain(`message of ${LIMIT} bytes`);
    expect((err as Error).message).not.toContain(String(LIMIT + 8));
    expect(linkA.maxMessageSize).toBe(LIMIT - 8);
    // Exactly at the advertised limit: sent and delivered.
    await linkA.send(new Uint8Array(linkA.maxMessageSize));
    await until(() => got.length === 2, 1000);
    expect(got).toEqual([5, LIMIT - 8]);
  });

  it("caller errors on v3 (size, type, the caller's signal) never count against v3 nor move the link", async () => {
    const { a, linkA, linkB } = await memoryPair({
      node: { maxFrameSize: 64 * 1024, maxMessageSize: 128 * 1024 },
    });
    expect(linkA.active).toBe("v3");
    const events: string[] = [];
    a.on("generation", (_l, g) => events.push(`${g.from}→${g.to}`));
    a.on("breaker", (_l, b) => events.push(`breaker ${b.state}`));
    let n = 0;
    linkB.on("message", () => n++);
    await expect(linkA.send(new Uint8Array(200 * 1024))).rejects.toMatchObject({
      code: "ERR_MESSAGE_TOO_LARGE",
    });
    expect(linkA.stats.v3Failures).toBe(0);
    expect(linkA.active).toBe("v3");
    for (let i = 0; i < 60; i++) {
      await expect(linkA.send(new Uint8Array(200 * 1024))).rejects.toMatchObject({
        code: "ERR_MESSAGE_TOO_LARGE",
      });
      await expect(linkA.send("text" as unknown as Uint8Array)).rejects.toMatchObject({
        code: "ERR_INVALID_ARG",
      });
      await expect(linkA.send(new Uint8Array(10), { signal: AbortSignal.abort() })).rejects.toMatchObject({
        code: "ERR_ABORTED",
      });
      await linkA.send(new Uint8Array(10));
    }
    await sleep(400); // the health check runs every 250 ms
    expect(linkA.stats.v3Failures).toBe(0);
    expect(linkA.active).toBe("v3");
    expect(events).toEqual([]);
    expect(n).toBe(60);
    expect(linkA.stats.sent).toBe(60);
  });

  it("every generation change emits `generation`: v3 failing under messages too", async () => {
    const { a, linkA, linkB } = await memoryPair({ both: { rollback: { coolDownMs: 60_000 } } });
    const changes: { from: Generation; to: Generation; reason: string }[] = [];
    a.on("generation", (_l, g) => changes.push(g));
    const linkChanges: string[] = [];
    linkA.on("generation", (g) => linkChanges.push(`${g.from}→${g.to}`));
    const got = new Set<number>();
    linkB.on("message", (m) => got.add(m.seq));
    const sends = Array.from({ length: 20 }, () => linkA.send(new Uint8Array(1000)));
    linkA.v3!.conn.abort(new Error("injected v3 failure"));
    await Promise.all(sends);
    await until(() => got.size === 20, 2000);
    expect(linkA.active).toBe("v1");
    expect(changes[0]).toMatchObject({ from: "v3", to: "v1" });
    expect(changes[0]!.reason).toMatch(/v3/);
    expect(linkChanges[0]).toBe("v3→v1");
  });
});

describe("PeerLink: lent messages held out of order (item 9)", () => {
  it("with lendMessages, messages that wait for an earlier one are the link's own copies: every byte intact", async () => {
    const net = new MemoryNetwork();
    const { a, linkA, linkB } = await managerPair({
      // v1 lends (TCP reads into reused buffers); v3 is slow from a to b, so v1's
      // messages overtake the ones still on v3 and wait in the reorder map.
      v1: () => tcp(),
      v3: (side) => memory({ latencyMs: side === "a" ? 300 : 0 }, net),
      addresses: { v1: "127.0.0.1:0", v3: `lend3-${Date.now()}:0` },
      both: { assumeMode: "datacenter" },
      node: { lendMessages: true },
    });
    expect(linkA.active).toBe("v3");
    const SIZE = 64 * 1024;
    const body = (i: number) => {
      const m = new Uint8Array(SIZE);
      for (let j = 0; j < SIZE; j += 512) m[j] = (i * 31 + j / 512) & 0xff;
      new DataView(m.buffer).setUint32(0, i, true);
      return m;
    };
    let bad = 0;
    let count = 0;
    linkB.on("message", (m) => {
      count++;
      const i = new DataView(m.data.buffer, m.data.byteOffset, 4).getUint32(0, true);
      const want = body(i);
      if (Buffer.compare(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.length), want) !== 0) bad++;
    });
    const sends: Promise<number>[] = [];
    for (let i = 0; i < 4; i++) sends.push(linkA.send(body(i)));
    a.flags.update({ forceV1: true });
    expect(linkA.active).toBe("v1");
    for (let i = 4; i < 132; i++) sends.push(linkA.send(body(i)));
    await Promise.all(sends);
    await until(() => count === 132, 5000, "all 132 delivered");
    expect(bad).toBe(0);
    expect(linkB.stats.reorderPeakMessages).toBeGreaterThan(16);
  });
});

describe("breaker and the sender's own queue (item 9)", () => {
  it("a bulk burst queued by the sender does not trip the latency breaker (its acks waited behind our own bytes)", async () => {
    const { a, linkA, linkB } = await memoryPair({ both: { rollback: { coolDownMs: 60_000 } } });
    const states: string[] = [];
    a.on("breaker", (_l, b) => states.push(`${b.state}: ${b.reason}`));
    let n = 0;
    linkB.on("message", () => n++);
    for (let i = 0; i < 40; i++) await linkA.send(new Uint8Array(100));
    await sleep(300);
    expect(a.breakers("node-b").transport?.baselineMs).toBeGreaterThan(0);
    // 64 MiB at once: the last acks wait behind everything queued before them.
    const body = new Uint8Array(1 << 20);
    await Promise.all(Array.from({ length: 64 }, () => linkA.send(body)));
    await sleep(600);
    expect(states).toEqual([]);
    expect(linkA.active).toBe("v3");
    expect(n).toBe(104);
  });
});

describe("PeerLink events and backpressure (item 9)", () => {
  it("`link` fires with the link's session attached; `close` fires when the peer closes", async () => {
    const net = new MemoryNetwork();
    const b = manager({
      nodeId: "node-b",
      v1: { transport: memory({}, net), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      flags: V3_ON,
      detectMode: false,
      assumeMode: "datacenter",
    });
    const a = manager({
      nodeId: "node-a",
      v1: { transport: memory({}, net), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      flags: V3_ON,
      detectMode: false,
      assumeMode: "datacenter",
    });
    const bound = await b.listen({ v1: "ev1:0", v3: "ev3:0" });
    const atLink: { v1: boolean; v3: boolean }[] = [];
    const onLink = (l: PeerLink) => atLink.push({ v1: l.v1 !== undefined, v3: l.v3 !== undefined });
    a.on("link", onLink);
    b.on("link", onLink);
    const linkBReady = new Promise<PeerLink>((r) => b.once("link", r));
    const linkA = await a.connect({ v1: bound.v1, v3: bound.v3! });
    const linkB = await linkBReady;
    expect(atLink).toEqual([
      { v1: true, v3: false },
      { v1: true, v3: false },
    ]);
    const closed = within(once(linkB, "close"), 3000, "linkB close");
    await a.close();
    const [err] = await closed;
    expect(err).toBeUndefined();
    expect(linkB.state).toBe("closed");
    expect(linkA.state).toBe("closed");
    expect(b.links.has("node-a")).toBe(false);
    await expect(linkB.send(new Uint8Array(1))).rejects.toMatchObject({ code: "ERR_CLOSED" });
  });

  it("`error` reports a failed session to listeners; without one nothing throws and the manager counts it", async () => {
    const { a, linkA } = await memoryPair({ both: { rollback: { coolDownMs: 60_000 } } });
    const errors: Error[] = [];
    linkA.on("error", (e) => errors.push(e));
    linkA.v3!.conn.abort(new DWCPError("ERR_CLOSED", "injected"));
    await until(() => errors.length > 0, 1000);
    expect(errors[0]).toBeInstanceOf(DWCPError);
    // No listener on the manager: the same failure is counted, not thrown.
    expect(a.counters().errors.count).toBeGreaterThan(0);
    linkA.removeAllListeners("error");
    const closed = new Promise<Error | undefined>((r) => linkA.once("close", r));
    linkA.v1!.conn.abort(new DWCPError("ERR_CLOSED", "injected v1"));
    const closeErr = await within(closed, 1000, "link close");
    expect(closeErr).toBeInstanceOf(Error);
    expect(linkA.closeError).toBe(closeErr);
  });

  it("queuedBytes, needDrain and drain give backpressure; a queued send is withdrawn by its signal without using a number", async () => {
    const net = new MemoryNetwork();
    const slow: MemoryOptions = { latencyMs: 40 };
    const { linkA, linkB } = await managerPair({
      v1: () => memory(slow, net),
      v3: () => memory(slow, net),
      addresses: { v1: "bp1:0", v3: "bp3:0" },
      both: { assumeMode: "datacenter", link: { windowBytes: 1 << 20, highWaterMark: 2 << 20 } },
    });
    const got: { seq: number; first: number }[] = [];
    linkB.on("message", (m) => got.push({ seq: m.seq, first: m.data[0]! }));
    const msg = (tag: number) => new Uint8Array(1 << 20).fill(tag);
    const p1 = linkA.send(msg(1));
    const p2 = linkA.send(msg(2));
    const ac = new AbortController();
    const p3 = linkA.send(msg(3), { signal: ac.signal });
    const p4 = linkA.send(msg(4));
    expect(linkA.queuedBytes).toBe(4 << 20);
    expect(linkA.needDrain).toBe(true);
    ac.abort(new Error("caller gave up"));
    await expect(p3).rejects.toMatchObject({ code: "ERR_ABORTED" });
    expect(linkA.queuedBytes).toBe(3 << 20);
    await within(once(linkA, "drain"), 3000, "drain");
    expect(linkA.needDrain).toBe(false);
    expect(await Promise.all([p1, p2, p4])).toEqual([1, 2, 3]);
    await until(() => got.length === 3, 2000);
    expect(got).toEqual([
      { seq: 1, first: 1 },
      { seq: 2, first: 2 },
      { seq: 3, first: 4 },
    ]);
    expect(linkA.queuedBytes).toBe(0);
  });
});

describe("PeerLink without a `message` listener", () => {
  it("messages wait in the session's receive queue (≤ 4 MiB + one message, the sender held back) until a listener comes; none is acknowledged and dropped", async () => {
    const { linkA, linkB } = await memoryPair({ node: { receiveQueueBytes: 4 << 20 } });
    expect(linkA.active).toBe("v3");
    const body = (i: number) => new Uint8Array(1 << 20).fill(i);
    let acked = 0;
    const sends = Array.from({ length: 32 }, (_, i) =>
      linkA.send(body(i)).then((seq) => {
        acked++;
        return seq;
      }),
    );
    await sleep(300);
    const queued = linkB.v3!.queuedBytes;
    expect(queued).toBeLessThanOrEqual(5 << 20);
    expect(acked).toBeLessThan(32);
    const got: { seq: number; fill: number }[] = [];
    linkB.on("message", (m) => got.push({ seq: m.seq, fill: m.data[0]! }));
    expect(await within(Promise.all(sends), 5000, "sends")).toEqual(
      Array.from({ length: 32 }, (_, i) => i + 1),
    );
    await until(() => got.length === 32, 2000, "all 32 delivered");
    expect(got).toEqual(Array.from({ length: 32 }, (_, i) => ({ seq: i + 1, fill: i })));
  });
});

describe("errors without an `error` listener (item 9)", () => {
  it("a bad flags file (at start and on a later edit) is counted and the flags stay; with a listener it is emitted", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-flags-typo-"));
    const flagsFile = join(dir, "flags.json");
    writeFileSync(flagsFile, '{"forceV1": tru}');
    const net = new MemoryNetwork();
    let m: DWCPManager | undefined;
    expect(() => {
      m = manager({
        nodeId: "agent",
        v1: { transport: memory({}, net), psk: PSK },
        v3: { transport: memory({}, net), psk: PSK },
        flagsFile,
        detectMode: false,
      });
    }).not.toThrow();
    await until(() => m!.counters().errors.count === 1, 1000, "the start-up error counted");
    expect(m!.counters().errors).toMatchObject({ count: 1, byCode: { ERR_INVALID_FLAGS: 1 } });
    expect(m!.flags.flags.forceV1).toBe(false);
    writeFileSync(flagsFile, JSON.stringify({ forceV1: true }));
    await until(() => m!.flags.flags.forceV1, 2000, "forceV1 loaded");
    writeFileSync(flagsFile, '{"forceV1": "yes"}');
    await until(() => m!.counters().errors.count >= 2, 2000, "second error counted");
    expect(m!.flags.flags.forceV1).toBe(true);
    expect(m!.counters().errors.last).toMatchObject({ code: "ERR_INVALID_FLAGS" });
    const seen: Error[] = [];
    m!.on("error", (e) => seen.push(e));
    writeFileSync(flagsFile, "{");
    await until(() => seen.length > 0, 2000, "error emitted to a listener");
    expect(seen[0]).toMatchObject({ code: "ERR_INVALID_FLAGS" });
  });
});

describe("the mode rule on both sides (item 8)", () => {
  it("an unmeasured path counts as internet: plain v3 unused, plain v1 refused with a reason in components() and an event", async () => {
    const net = new MemoryNetwork();
    const b = manager({
      nodeId: "node-b",
      v1: { transport: memory({}, net), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      flags: V3_ON,
      detectMode: false,
    });
    const a = manager({
      nodeId: "node-a",
      v1: { transport: memory({}, net), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      flags: V3_ON,
      detectMode: false,
    });
    const refusals: { refusing: boolean; reason: string }[] = [];
    a.on("refusal", (_l, r) => refusals.push(r));
    // A send from the `link` listener already follows the rule.
    const fromLinkEvent: Promise<unknown>[] = [];
    b.on("link", (l) => fromLinkEvent.push(l.send(new Uint8Array(10)).catch((e: DWCPError) => e.code)));
    const bound = await b.listen({ v1: "u1:0", v3: "u3:0" });
    const linkA = await a.connect({ v1: bound.v1, v3: bound.v3! });
    expect(linkA.mode).toBeUndefined();
    const t = a.components("node-b").transport;
    expect(t.generation).toBe("v1");
    expect(t.reason).toMatch(/unmeasured path .* requires TLS for v3/);
    expect(t.refused).toMatch(
      /never carries application data unencrypted, and v1 \(memory\) is not encrypted/,
    );
    await expect(linkA.send(new Uint8Array(10))).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
    expect(refusals.at(-1)).toMatchObject({ refusing: true });
    expect(linkA.stats.sent).toBe(0);
    await until(() => fromLinkEvent.length === 1, 1000);
    expect(await fromLinkEvent[0]).toBe("ERR_UNSUPPORTED");
  });

  it("the accepting side measures its own path (100 ms RTT: internet) and sends nothing in plain text meanwhile", async () => {
    const net = new MemoryNetwork();
    const wan: MemoryOptions = { latencyMs: 50 };
    const mk = (id: string, detectMode: boolean) =>
      manager({
        nodeId: id,
        v1: { transport: memory(wan, net), psk: PSK },
        v3: { transport: memory(wan, net), psk: PSK },
        flags: V3_ON,
        detectMode,
      });
    const b = mk("node-b", true);
    const a = mk("node-a", true);
    const bound = await b.listen({ v1: "w1:0", v3: "w3:0" });
    const linkBReady = new Promise<PeerLink>((r) => b.once("link", r));
    const bMode = new Promise<string>((r) => b.once("mode", (_l, e) => r(e.mode)));
    // A send as soon as the accepting side has its link: the path is not measured
    // yet, so it waits (nothing leaves over the plain v3 or v1) for the verdict.
    const early = linkBReady.then((l) => l.send(new Uint8Array(10)).catch((e: DWCPError) => e));
    const linkA = await a.connect({ v1: bound.v1, v3: bound.v3! });
    const linkB = await linkBReady;
    expect(linkA.mode).toBe("internet");
    expect(await within(bMode, 10_000, "the accepting side's mode")).toBe("internet");
    expect(await early).toMatchObject({ code: "ERR_UNSUPPORTED" });
    expect(linkB.mode).toBe("internet");
    const t = b.components("node-a").transport;
    expect(t).toMatchObject({
      generation: "v1",
      reason: "internet mode requires TLS for v3 (v3 transport is memory)",
    });
    await expect(linkB.send(new Uint8Array(10))).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
    expect(linkB.stats.v3 + linkB.stats.v1).toBe(0);
  }, 20_000);

  it("on a datacenter path the accepting side's first sends wait for its own measurement, then go over v1", async () => {
    const net = new MemoryNetwork();
    const mk = (id: string) =>
      manager({
        nodeId: id,
        v1: { transport: memory({}, net), psk: PSK },
        v3: { transport: memory({}, net), psk: PSK },
      });
    const b = mk("node-b");
    const a = mk("node-a");
    const bound = await b.listen({ v1: "dc1:0" });
    const early: Promise<number>[] = [];
    b.on("link", (l) => {
      // Measured nothing yet: the manager says why v1 may not carry it, and that sends wait.
      expect(b.components("node-a").transport.refused).toMatch(/sends wait for the first measurement/);
      early.push(l.send(new Uint8Array(10)));
    });
    const linkA = await a.connect({ v1: bound.v1 });
    const got: Generation[] = [];
    linkA.on("message", (m) => got.push(m.generation));
    expect(linkA.mode).toBe("datacenter");
    expect(await within(Promise.all(early), 10_000, "the early send")).toEqual([1]);
    expect(b.links.get("node-a")!.mode).toBe("datacenter");
    await until(() => got.length === 1, 2000);
    expect(got).toEqual(["v1"]);
    expect(b.counters().refusedSends).toBe(0);
  }, 20_000);

  it("the kill switch on an internet path with PSK-over-TCP v1: refused, said why, nothing in plain text; lifted, v3 carries again", async () => {
    const pki = testPki();
    const { a, linkA, linkB } = await managerPair({
      v1: () => tcp(),
      v3: (side) => tls(side === "a" ? { ...pki.client, ca: pki.ca } : { ...pki.server, ca: pki.ca }),
      addresses: { v1: "127.0.0.1:0", v3: "127.0.0.1:0" },
      both: { assumeMode: "internet" },
    });
    expect(linkA.active).toBe("v3");
    let onV1 = 0;
    // Application messages only: the link's hello (number 0, a random id) goes on every session.
    linkB.v1!.on("message", (m) => {
      if (new DataView(m.data.buffer, m.data.byteOffset).getBigUint64(0, true) !== 0n) onV1++;
    });
    const got: Generation[] = [];
    linkB.on("message", (m) => got.push(m.generation));
    for (let i = 0; i < 10; i++) await linkA.send(new Uint8Array(100));
    const refusals: { refusing: boolean; reason: string }[] = [];
    a.on("refusal", (_l, r) => refusals.push(r));
    a.flags.update({ forceV1: true });
    const err = await linkA.send(new Uint8Array(100)).catch((e: DWCPError) => e);
    expect(err).toMatchObject({ code: "ERR_UNSUPPORTED" });
    expect((err as Error).message).toMatch(/v1 \(tcp\) is not encrypted/);
    expect(refusals).toEqual([
      {
        refusing: true,
        reason: expect.stringMatching(/internet mode never carries/),
        at: expect.any(Number),
      },
    ]);
    expect(a.components("node-b").transport).toMatchObject({
      generation: "v1",
      reason: "forceV1 (kill switch)",
      refused: "internet mode never carries application data unencrypted, and v1 (tcp) is not encrypted",
    });
    a.flags.update({ forceV1: false });
    expect(refusals.at(-1)).toMatchObject({ refusing: false });
    await linkA.send(new Uint8Array(100));
    await until(() => got.length === 11, 2000);
    expect(onV1).toBe(0);
    expect(new Set(got)).toEqual(new Set(["v3"]));
  });

  it("a breaker trip on an internet path: messages v3 failed under wait for v3 to come back, never go over plain v1", async () => {
    const pki = testPki();
    const { a, linkA, linkB } = await managerPair({
      v1: () => tcp(),
      v3: (side) => tls(side === "a" ? { ...pki.client, ca: pki.ca } : { ...pki.server, ca: pki.ca }),
      addresses: { v1: "127.0.0.1:0", v3: "127.0.0.1:0" },
      both: { assumeMode: "internet", rollback: { coolDownMs: 500 } },
    });
    let onV1 = 0;
    // Application messages only: the link's hello (number 0, a random id) goes on every session.
    linkB.v1!.on("message", (m) => {
      if (new DataView(m.data.buffer, m.data.byteOffset).getBigUint64(0, true) !== 0n) onV1++;
    });
    const got: { seq: number; gen: Generation }[] = [];
    linkB.on("message", (m) => got.push({ seq: m.seq, gen: m.generation }));
    const states: string[] = [];
    a.on("breaker", (_l, b) => states.push(b.state));
    const sends = Array.from({ length: 20 }, () => linkA.send(new Uint8Array(64 * 1024)));
    linkA.v3!.conn.abort(new Error("injected v3 failure"));
    await until(() => states.includes("open"), 2000, "breaker open");
    await expect(linkA.send(new Uint8Array(10))).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
    expect(await within(Promise.all(sends), 5000, "sends held for v3")).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    await until(() => got.length === 20, 2000);
    expect(got.map((g) => g.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(got.every((g) => g.gen === "v3")).toBe(true);
    expect(onV1).toBe(0);
    expect(states).toContain("half-open");
  }, 20_000);
});
