// The control router (PROTOCOL §8.1): session.handle(kind, fn) answers the
// peer's requests of a kind, session.request(kind, payload) asks the peer's.
// Every way a request can end has its code, and a peer cannot make either side
// hold more than the stated bounds.
import v8 from "node:v8";
import vm from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../src/errors.js";
import { DWCPNode } from "../src/session/node.js";
import { REQUEST_ENVELOPE_BYTES, REQUESTS_IN_FLIGHT_MAX } from "../src/session/router.js";
import type { Session } from "../src/session/session.js";
import type { Conn } from "../src/transport/contract.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { type HostilePeer, hostilePeer } from "./helpers/hostile-peer.js";
import { closeAll, PSK, sessionPair } from "./helpers/nodes.js";

/** A kind of the private-use range: no component ever declares it. */
const ECHO = 1000;
const OTHER = 1001;

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
  await closeAll();
});

v8.setFlagsFromString("--expose-gc");
/** A full collection, so heap figures count what is kept rather than garbage not yet collected. */
const gc = vm.runInNewContext("gc") as () => void;

const bytes = (...b: number[]) => new Uint8Array(b);
/** The error `p` rejects with (and a failure of the test when it resolves). */
const failure = (p: Promise<unknown>) =>
  p.then(
    (v) => {
      throw new Error(`expected a rejection, got ${String(v)}`);
    },
    (e: DWCPError) => e,
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("requests and handlers", () => {
  it("a request gets its kind's handler's answer, both ways, each matched to its caller", async () => {
    const { a, b } = await sessionPair();
    b.handle(ECHO, (p, ctx) => {
      expect(ctx.kind).toBe(ECHO);
      return p;
    });
    b.handle(OTHER, async (p) => {
      await sleep(p[0]!);
      return bytes(p[0]! * 2);
    });
    a.handle(ECHO, () => bytes(7, 7));
    expect(await a.request(ECHO, bytes(1, 2, 3))).toEqual(bytes(1, 2, 3));
    expect(await b.request(ECHO, bytes())).toEqual(bytes(7, 7));
    expect(await a.request(ECHO, new Uint8Array(0))).toEqual(new Uint8Array(0));
    // Answers that arrive out of order still reach the right callers.
    const delays = [30, 5, 20, 1, 10];
    const answers = await Promise.all(delays.map((d) => a.request(OTHER, bytes(d))));
    expect(answers).toEqual(delays.map((d) => bytes(d * 2)));
    // A handler that answers nothing answers empty.
    b.handle(1002, () => undefined);
    expect(await a.request(1002, bytes(1))).toEqual(new Uint8Array(0));
    expect(a.requestsInFlight).toBe(0);
    expect(b.requestsInHand).toBe(0);
  });

  it("a request waits behind messages the peer's application has not read, like a Ping", async () => {
    const { a, b } = await sessionPair({ receiveQueueBytes: 1 << 20 }, { sendWindowBytes: 32 << 20 });
    b.handle(ECHO, (p) => p);
    // b's queue fills and its session stops reading the connection.
    const sends = Promise.all(Array.from({ length: 4 }, () => a.send(new Uint8Array(1 << 20))));
    await sleep(50);
    let answered = false;
    const asked = a.request(ECHO, bytes(9)).then((r) => {
      answered = true;
      return r;
    });
    await sleep(50);
    expect(answered).toBe(false);
    let n = 0;
    for await (const _ of b) if (++n === 4) break;
    expect(await asked).toEqual(bytes(9));
    await sends;
  });

  it("a kind with no handler fails with ERR_UNSUPPORTED; a removed handler stops answering", async () => {
    const { a, b } = await sessionPair();
    await expect(a.request(OTHER, bytes(1))).rejects.toMatchObject({ code: "ERR_UNSUPPORTED", remote: true });
    const remove = b.handle(OTHER, () => bytes(2));
    expect(await a.request(OTHER, bytes(1))).toEqual(bytes(2));
    remove();
    await expect(a.request(OTHER, bytes(1))).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
    expect(a.state).toBe("open");
  });

  it("a handler that throws answers with its code: ERR_REMOTE naming it, the code as its cause's", async () => {
    const { a, b } = await sessionPair();
    b.handle(ECHO, () => {
      throw new DWCPError("ERR_INVALID_ARG", "no such key");
    });
    b.handle(OTHER, async () => {
      await sleep(1);
      throw new DWCPError("ERR_BASELINE_MISSING");
    });
    b.handle(1002, () => {
      throw new TypeError("x is undefined");
    });
    b.handle(1003, () => "not bytes" as unknown as Uint8Array);
    const thrown = await failure(a.request(ECHO, bytes()));
    expect(thrown).toMatchObject({ code: "ERR_REMOTE", remote: true });
    expect(thrown.message).toContain("ERR_INVALID_ARG");
    expect((thrown.cause as DWCPError).code).toBe("ERR_INVALID_ARG");
    expect((thrown.cause as DWCPError).remote).toBe(true);
    const rejected = await failure(a.request(OTHER, bytes()));
    expect(rejected.code).toBe("ERR_REMOTE");
    expect((rejected.cause as DWCPError).code).toBe("ERR_BASELINE_MISSING");
    // Not a DWCPError: still an answer, with no code to name.
    const plain = await failure(a.request(1002, bytes()));
    expect(plain.code).toBe("ERR_REMOTE");
    expect(plain.message).toContain("x is undefined");
    expect(plain.cause).toBeUndefined();
    const wrong = await failure(a.request(1003, bytes()));
    expect((wrong.cause as DWCPError).code).toBe("ERR_INVALID_ARG");
    // Neither side failed.
    expect(a.state).toBe("open");
    expect(b.state).toBe("open");
    b.handle(1004, (p) => p);
    expect(await a.request(1004, bytes(4))).toEqual(bytes(4));
    expect(b.requestsInHand).toBe(0);
  });

  it("handle() refuses a bad kind, a second handler for a kind, and a bad handler", async () => {
    const { a } = await sessionPair();
    a.handle(ECHO, (p) => p);
    expect(() => a.handle(ECHO, (p) => p)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG" }));
    for (const kind of [0, -1, 1.5, 2 ** 31, Number.NaN])
      expect(() => a.handle(kind, (p) => p)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG" }));
    expect(() => a.handle(OTHER, "no" as never)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
    await expect(a.request(0, bytes())).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    await expect(a.request(ECHO, "text" as never)).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
  });
});

describe("how a request ends", () => {
  it("ERR_TIMEOUT after its timeout; the slot stays taken until the peer answers", async () => {
    const { a, b } = await sessionPair();
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    b.handle(ECHO, async () => {
      await held;
      return bytes(1);
    });
    const t0 = performance.now();
    await expect(a.request(ECHO, bytes(), { timeout: 50 })).rejects.toMatchObject({ code: "ERR_TIMEOUT" });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(45);
    expect(performance.now() - t0).toBeLessThan(2000);
    // The peer still holds the request: it counts on both sides.
    expect(a.requestsInFlight).toBe(1);
    expect(b.requestsInHand).toBe(1);
    release();
    await sleep(20);
    // The late answer found no caller and was dropped; the slot is free.
    expect(a.requestsInFlight).toBe(0);
    expect(b.requestsInHand).toBe(0);
    expect(await a.request(ECHO, bytes())).toEqual(bytes(1));
  });

  it("ERR_ABORTED when its signal fires, or fired before", async () => {
    const { a, b } = await sessionPair();
    b.handle(ECHO, () => new Promise<Uint8Array>(() => {}));
    const ac = new AbortController();
    const p = a.request(ECHO, bytes(), { signal: ac.signal, timeout: 60_000 });
    await sleep(10);
    ac.abort(new Error("changed my mind"));
    await expect(p).rejects.toMatchObject({ code: "ERR_ABORTED" });
    await expect(a.request(ECHO, bytes(), { signal: ac.signal })).rejects.toMatchObject({
      code: "ERR_ABORTED",
    });
    expect(a.state).toBe("open");
  });

  it("a session that ends fails its waiting requests with ERR_CLOSED, and tells the handlers", async () => {
    const { a, b } = await sessionPair({}, { maxRequestsInFlight: 1 });
    const signals: AbortSignal[] = [];
    b.handle(ECHO, (_p, ctx) => {
      signals.push(ctx.signal);
      return new Promise<Uint8Array>(() => {});
    });
    const first = a.request(ECHO, bytes(), { timeout: 60_000 });
    // The second waits for the only slot.
    const second = a.request(ECHO, bytes(), { timeout: 60_000 });
    await sleep(20);
    expect(signals).toHaveLength(1);
    const t0 = performance.now();
    await b.close({ signal: AbortSignal.timeout(2000) }).catch(() => {});
    await expect(first).rejects.toMatchObject({ code: "ERR_CLOSED" });
    await expect(second).rejects.toMatchObject({ code: "ERR_CLOSED" });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(signals[0]!.aborted).toBe(true);
    await expect(a.request(ECHO, bytes())).rejects.toMatchObject({ code: "ERR_CLOSED" });
    expect(a.requestsInFlight).toBe(0);
  });

  it("destroy() fails waiting requests with ERR_CLOSED, the reason as its cause", async () => {
    const { a, b } = await sessionPair();
    b.handle(ECHO, () => new Promise<Uint8Array>(() => {}));
    const p = a.request(ECHO, bytes(), { timeout: 60_000 });
    await sleep(10);
    a.destroy(new DWCPError("ERR_ABORTED", "shutting down"));
    const err = await failure(p);
    expect(err.code).toBe("ERR_CLOSED");
    expect((err.cause as DWCPError).code).toBe("ERR_ABORTED");
  });
});

describe("bounds", () => {
  it("at most maxRequestsInFlight unanswered: the rest wait their turn, in order", async () => {
    const { a, b } = await sessionPair({}, { maxRequestsInFlight: 3 });
    let running = 0;
    let most = 0;
    const order: number[] = [];
    b.handle(ECHO, async (p) => {
      running++;
      most = Math.max(most, running);
      order.push(p[0]!);
      await sleep(5);
      running--;
      return p;
    });
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => a.request(ECHO, bytes(i))));
    expect(answers).toEqual(Array.from({ length: 20 }, (_, i) => bytes(i)));
    expect(most).toBe(3);
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
    // A caller that gives up while waiting for a slot leaves the queue.
    const never = b.handle(OTHER, () => new Promise<Uint8Array>(() => {}));
    const stuck = [1, 2, 3].map(() => a.request(OTHER, bytes(), { timeout: 60_000 }).catch((e) => e));
    await sleep(10);
    await expect(a.request(ECHO, bytes(1), { timeout: 30 })).rejects.toMatchObject({ code: "ERR_TIMEOUT" });
    expect(a.requestsInFlight).toBe(3);
    never();
    a.destroy();
    await Promise.all(stuck);
  });

  it("maxRequestsInFlight is an integer from 1 to 256", async () => {
    for (const bad of [0, 257, 1.5]) {
      await expect(sessionPair({}, { maxRequestsInFlight: bad })).rejects.toMatchObject({
        code: "ERR_INVALID_ARG",
      });
      await closeAll();
    }
  });

  for (const integrity of ["crc", "mac"] as const) {
    it(`payloads up to one control frame's worth (${integrity}): larger fails with ERR_MESSAGE_TOO_LARGE`, async () => {
      const { a, b } = await sessionPair({ integrity, maxFrameSize: 64 * 1024 }, { integrity });
      expect(a.maxRequestBytes).toBe(64 * 1024 - (integrity === "mac" ? 16 : 0) - REQUEST_ENVELOPE_BYTES);
      b.handle(ECHO, (p) => p);
      b.handle(OTHER, () => new Uint8Array(b.maxRequestBytes + 1));
      const max = new Uint8Array(a.maxRequestBytes).fill(0xab);
      expect(await a.request(ECHO, max)).toEqual(max);
      await expect(a.request(ECHO, new Uint8Array(a.maxRequestBytes + 1))).rejects.toMatchObject({
        code: "ERR_MESSAGE_TOO_LARGE",
      });
      const big = await failure(a.request(OTHER, bytes()));
      expect(big.code).toBe("ERR_REMOTE");
      expect((big.cause as DWCPError).code).toBe("ERR_MESSAGE_TOO_LARGE");
      expect(a.state).toBe("open");
    });
  }
});

/** A listening node with a raw, hand-driven peer that completed a real handshake. */
async function nodeAndPeer(
  transport = memory({}, new MemoryNetwork()),
  read = true,
): Promise<{ session: Session; peer: HostilePeer; conn: Conn }> {
  const node = new DWCPNode({ nodeId: "server", transport, psk: PSK });
  const session = new Promise<Session>((resolve, reject) => {
    node.once("session", resolve);
    node.once("handshakeError", reject);
  });
  const listener = await node.listen(transport.name === "memory" ? "router:0" : "127.0.0.1:0");
  cleanup.push(
    () => node.close({ timeoutMs: 500 }),
    () => listener.close(),
  );
  const conn = await transport.dial(listener.address);
  cleanup.push(async () => conn.abort());
  const peer = await hostilePeer(conn, { read });
  return { session: await session, peer, conn };
}

describe("a peer that floods the router", () => {
  it("answers to ids nobody waits for are dropped, keeping nothing; the awaited one still arrives", async () => {
    const { session: b, peer } = await nodeAndPeer();
    const asked = b.request(ECHO, bytes(1), { timeout: 20_000 });
    asked.catch(() => {});
    gc();
    const heap0 = process.memoryUsage().heapUsed;
    // 200,000 answers of 256 B: 51 MB, several times what the heap may grow by.
    const junk = new Uint8Array(256);
    for (let id = 2; id <= 200_001; id++) {
      peer.control({ response: { id, payload: junk } });
      if (id % 20_000 === 0) await sleep(5);
    }
    await sleep(100);
    gc();
    const growth = process.memoryUsage().heapUsed - heap0;
    console.log(`200,000 stray answers of 256 B (51 MB): heap +${(growth / 2 ** 20).toFixed(1)} MiB`);
    expect(growth).toBeLessThan(4 * 2 ** 20);
    expect(b.requestsInFlight).toBe(1);
    expect(b.state).toBe("open");
    peer.control({ response: { id: 1, payload: bytes(42) } });
    expect(await asked).toEqual(bytes(42));
    // A second answer to the same id is a stray too.
    peer.control({ response: { id: 1, payload: bytes(43) } });
    await sleep(10);
    expect(b.state).toBe("open");
    expect(b.requestsInFlight).toBe(0);
  });

  it(`more than ${REQUESTS_IN_FLIGHT_MAX} requests in hand fail the session with ERR_PROTOCOL`, async () => {
    const { session: b, peer } = await nodeAndPeer();
    b.handle(ECHO, () => new Promise<Uint8Array>(() => {}));
    for (let id = 1; id <= REQUESTS_IN_FLIGHT_MAX; id++)
      peer.control({ request: { id, kind: ECHO, payload: bytes() } });
    await sleep(50);
    expect(b.requestsInHand).toBe(REQUESTS_IN_FLIGHT_MAX);
    expect(b.state).toBe("open");
    peer.control({ request: { id: REQUESTS_IN_FLIGHT_MAX + 1, kind: ECHO, payload: bytes() } });
    expect(await peer.ended).toBe("ERR_PROTOCOL");
    expect((await b.closed)?.message).toMatch(/requests/);
    expect(b.requestsInHand).toBe(0);
  });

  it("more than 16 MiB of requests in hand fail the session with ERR_PROTOCOL", async () => {
    const { session: b, peer } = await nodeAndPeer();
    b.handle(ECHO, () => new Promise<Uint8Array>(() => {}));
    const payload = new Uint8Array(900 * 1024);
    // 18 requests of 900 KiB fit 16 MiB; the 19th does not.
    for (let id = 1; id <= 18; id++) peer.control({ request: { id, kind: ECHO, payload } });
    await sleep(50);
    expect(b.state).toBe("open");
    peer.control({ request: { id: 19, kind: ECHO, payload } });
    expect(await peer.ended).toBe("ERR_PROTOCOL");
  });

  it("a peer that floods requests and never reads: answers wait, bounded, and the session fails (tcp)", async () => {
    const { session: b, peer, conn } = await nodeAndPeer(tcp(), false);
    b.handle(ECHO, () => new Uint8Array(512));
    let maxBuffered = 0;
    let most = 0;
    let sent = 0;
    for (let id = 1; id <= 200_000 && b.state === "open"; id++) {
      if (!peer.control({ request: { id, kind: ECHO, payload: bytes() } })) await conn.onDrain();
      sent = id;
      if (id % 100 === 0) {
        await new Promise((r) => setImmediate(r));
        maxBuffered = Math.max(maxBuffered, b.conn.bufferedAmount);
        most = Math.max(most, b.requestsInHand);
      }
    }
    const err = await b.closed;
    console.log(
      `request flood, peer not reading: failed after ${sent} requests, ${most} held at most, outbound buffer peaked at ${(maxBuffered / 2 ** 20).toFixed(2)} MiB`,
    );
    expect(most).toBeLessThanOrEqual(REQUESTS_IN_FLIGHT_MAX);
    expect(err).toMatchObject({ code: "ERR_PROTOCOL" });
    expect(maxBuffered).toBeLessThan(4 * 2 ** 20 + REQUESTS_IN_FLIGHT_MAX * 1024);
  });
});
