// Bad input at a listener: 100,000+ random and mutated greetings, Hellos and
// frames. Every connection must end with a DWCPError code (or, when a mutation
// happened to be harmless, a session that then ends with one); nothing crashes,
// hangs or holds more than the handshake's bounded buffer.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DWCPError, type DWCPErrorCode, ERROR_CODES } from "../src/errors.js";
import { HELLO_MAX } from "../src/session/handshake.js";
import { DWCPNode } from "../src/session/node.js";
import type { Session } from "../src/session/session.js";
import type { Conn, Listener, Transport } from "../src/transport/contract.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { deriveKeys, readyProof, transcriptHash } from "../src/wire/auth.js";
import { CONTROL_HEADER, controlFrame } from "../src/wire/control.js";
import { encodeFrame, FrameFlags, FrameType, HEADER_SIZE } from "../src/wire/frame.js";
import { decodeGreeting, encodeGreeting, GREETING_SIZE, newNonce } from "../src/wire/greeting.js";
import { AuthMethod, encodeControl } from "../src/wire/proto.js";
import { PSK } from "./helpers/nodes.js";

const SCALE = Number(process.env.DWCP_FUZZ_SCALE ?? 1);
const RANDOM_INPUTS = Math.round(30_000 * SCALE);
const MUTATED_INPUTS = Math.round(72_000 * SCALE);
const PARALLEL = 256;

type Outcome = { kind: "refused"; code: DWCPErrorCode } | { kind: "session"; session: Session };

/** Mutations applied to a valid transcript (greeting, Hello, Ready, one DATA frame). */
type Mutation =
  | { op: "flip"; at: number; bit: number }
  | { op: "set"; at: number; value: number }
  | { op: "truncate"; at: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "length"; frame: number; value: number }
  | { op: "none" };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 80,
    arbitrary: fc.record({ op: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  },
  {
    weight: 40,
    arbitrary: fc.record({ op: fc.constant("set" as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  },
  { weight: 40, arbitrary: fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }) },
  {
    weight: 20,
    arbitrary: fc.record({
      op: fc.constant("insert" as const),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
    }),
  },
  {
    weight: 20,
    arbitrary: fc.record({
      op: fc.constant("length" as const),
      frame: fc.nat({ max: 2 }),
      value: fc.oneof(
        fc.constant(0xffffffff),
        fc.integer({ min: HELLO_MAX + 1, max: 0xffffffff }),
        fc.nat({ max: 100 }),
      ),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: "none" as const }) },
);

/**
 * A valid client side of a handshake and one DATA frame. The Ready proof covers
 * the server's greeting and Hello (PROTOCOL.md §6); the server's Hello does not
 * depend on the client, so it is captured once and reused.
 */
function transcript(
  serverGreeting: Uint8Array,
  serverHello: Uint8Array,
): { bytes: Uint8Array; frameStarts: number[] } {
  const nonce = newNonce();
  const greeting = encodeGreeting({ maxVersion: 3, flags: 1, nonce });
  const psk = new TextEncoder().encode(PSK);
  const helloBytes = encodeControl({
    hello: {
      nodeId: "fuzzer",
      versions: [1, 3],
      maxFrameSize: 1 << 20,
      maxMessageSize: 1 << 24,
      auth: { method: AuthMethod.PSK_HMAC_SHA256 },
    },
  });
  const hello = encodeFrame(CONTROL_HEADER, helloBytes);
  const t = transcriptHash({
    greetingC: greeting,
    greetingS: serverGreeting,
    helloC: helloBytes,
    helloS: serverHello,
  });
  const keys = deriveKeys(psk, nonce, decodeGreeting(serverGreeting).nonce, t);
  const ready = controlFrame({ ready: { proof: readyProof(keys, "C", t) } });
  const data = encodeFrame(
    { type: FrameType.DATA, flags: FrameFlags.END, streamId: 0, messageId: 1, offset: 0, codecId: 0 },
    new Uint8Array(100).fill(7),
  );
  const starts = [GREETING_SIZE, GREETING_SIZE + hello.length, GREETING_SIZE + hello.length + ready.length];
  return { bytes: Buffer.concat([greeting, hello, ready, data]), frameStarts: starts };
}

function mutate(t: { bytes: Uint8Array; frameStarts: number[] }, m: Mutation): Uint8Array {
  const b = new Uint8Array(t.bytes);
  switch (m.op) {
    case "flip":
      b[m.at % b.length]! ^= 1 << m.bit;
      return b;
    case "set":
      b[m.at % b.length] = m.value;
      return b;
    case "truncate":
      return b.subarray(0, m.at % b.length);
    case "insert": {
      const at = m.at % b.length;
      return Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    }
    case "length":
      new DataView(b.buffer).setUint32(t.frameStarts[m.frame]! + 4, m.value, true);
      return b;
    case "none":
      return b;
  }
}

async function readAll(conn: Conn, firstBytes: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of conn) {
    parts.push(c);
    n += c.length;
    if (n >= firstBytes) break;
  }
  return Buffer.concat(parts);
}

describe("listener under random and mutated input", () => {
  let transport: Transport;
  let server: DWCPNode;
  let listener: Listener;
  const outcomes: Outcome[] = [];
  const sessionEnds: Promise<Error | undefined>[] = [];
  let serverHello: Uint8Array;

  beforeAll(async () => {
    transport = memory({}, new MemoryNetwork());
    // 256 handshakes at a time from one address: above the default connection limits,
    // which test/adversary covers; here every input must reach the handshake.
    server = new DWCPNode({
      nodeId: "server",
      transport,
      psk: PSK,
      handshakeTimeoutMs: 5000,
      maxPendingHandshakes: 4 * PARALLEL,
      maxPendingPerAddress: 4 * PARALLEL,
    });
    server.on("handshakeError", (err) => {
      expect(err).toBeInstanceOf(DWCPError);
      outcomes.push({ kind: "refused", code: err.code });
    });
    server.on("session", (session) => {
      outcomes.push({ kind: "session", session });
      sessionEnds.push(session.closed);
    });
    listener = await server.listen("fuzz:0");
    // The server's Hello, as it sends it to every client (captured once, handshake abandoned).
    const conn = await transport.dial(listener.address);
    conn.send(encodeGreeting({ maxVersion: 3, flags: 1, nonce: newNonce() }));
    let got = new Uint8Array(0);
    for await (const c of conn) {
      got = Buffer.concat([got, c]);
      if (got.length < GREETING_SIZE + HEADER_SIZE) continue;
      const len = new DataView(got.buffer, got.byteOffset).getUint32(GREETING_SIZE + 4, true);
      if (got.length < GREETING_SIZE + HEADER_SIZE + len) continue;
      serverHello = got.slice(GREETING_SIZE + HEADER_SIZE, GREETING_SIZE + HEADER_SIZE + len);
      break;
    }
    conn.abort();
  });

  afterAll(async () => {
    await listener.close();
  });

  async function feed(bytes: Uint8Array): Promise<void> {
    const conn = await transport.dial(listener.address);
    const drained = (async () => {
      try {
        for await (const _ of conn) {
          // The listener's answers are read and dropped, so the close can complete.
        }
      } catch {
        // Reset by the listener: fine.
      }
    })();
    if (bytes.length > 0) conn.send(bytes);
    await conn.close({ signal: AbortSignal.timeout(10_000) });
    await drained;
  }

  async function feedMutated(m: Mutation): Promise<void> {
    const conn = await transport.dial(listener.address);
    // The listener greets first; its greeting is part of what the PSK proof covers.
    const greeting = await readAll(conn, GREETING_SIZE);
    const t = transcript(greeting.subarray(0, GREETING_SIZE), serverHello);
    const bytes = mutate(t, m);
    if (bytes.length > 0) conn.send(bytes);
    const drained = (async () => {
      try {
        for await (const _ of conn) {
          // dropped
        }
      } catch {
        // reset: fine
      }
    })();
    await conn.close({ signal: AbortSignal.timeout(10_000) });
    await drained;
  }

  async function inBatches<T>(items: T[], run: (x: T) => Promise<void>): Promise<void> {
    for (let i = 0; i < items.length; i += PARALLEL) await Promise.all(items.slice(i, i + PARALLEL).map(run));
  }

  it(`refuses ${RANDOM_INPUTS.toLocaleString()} random byte strings with a code`, async () => {
    const inputs = fc.sample(
      fc.oneof(
        fc.uint8Array({ maxLength: 200 }),
        // A valid greeting followed by garbage reaches the frame decoder.
        fc
          .uint8Array({ maxLength: 200 })
          .map((tail) =>
            Buffer.concat([encodeGreeting({ maxVersion: 3, flags: 1, nonce: newNonce() }), tail]),
          ),
      ),
      { numRuns: RANDOM_INPUTS, seed: 20261122 },
    );
    const before = outcomes.length;
    await inBatches(inputs, (b) => feed(b));
    await until(() => outcomes.length - before === RANDOM_INPUTS);
    const mine = outcomes.slice(before);
    expect(mine.every((o) => o.kind === "refused" && ERROR_CODES.includes(o.code))).toBe(true);
  });

  it(`refuses ${MUTATED_INPUTS.toLocaleString()} mutated handshakes and frames with a code`, async () => {
    const mutations = fc.sample(mutationArb, { numRuns: MUTATED_INPUTS, seed: 7 });
    const before = outcomes.length;
    await inBatches(mutations, feedMutated);
    await until(() => outcomes.length - before === MUTATED_INPUTS);
    const mine = outcomes.slice(before);
    const sessions = mine.filter((o): o is Extract<Outcome, { kind: "session" }> => o.kind === "session");
    const refused = mine.filter((o) => o.kind === "refused");
    expect(refused.every((o) => o.kind === "refused" && ERROR_CODES.includes(o.code))).toBe(true);
    // Harmless mutations (e.g. in the greeting's flags or nonce-independent bytes)
    // give a session; it must then end with a code too, never hang.
    const ends = await Promise.all(sessionEnds);
    expect(ends.every((e) => e instanceof DWCPError && ERROR_CODES.includes(e.code))).toBe(true);
    const byCode = new Map<string, number>();
    for (const o of refused) if (o.kind === "refused") byCode.set(o.code, (byCode.get(o.code) ?? 0) + 1);
    const sessionEndCodes = new Map<string, number>();
    for (const e of ends)
      if (e instanceof DWCPError) sessionEndCodes.set(e.code, (sessionEndCodes.get(e.code) ?? 0) + 1);
    console.log(
      `mutated inputs: refused in the handshake by code ${JSON.stringify(Object.fromEntries(byCode))}; ` +
        `${sessions.length} reached a session (mutation after the handshake, or harmless), ended by code ` +
        JSON.stringify(Object.fromEntries(sessionEndCodes)),
    );
    for (const code of [
      "ERR_CHECKSUM",
      "ERR_FRAME_TOO_LARGE",
      "ERR_BAD_MAGIC",
      "ERR_AUTH_FAILED",
      "ERR_CLOSED",
    ]) {
      expect(byCode.get(code), code).toBeGreaterThan(0);
    }
  });

  it("left nothing behind and never buffered more than one Hello per handshake", async () => {
    await until(
      () => server.metrics().sessions === 0 && server.metrics().pendingHandshakes === 0,
      10_000,
    ).catch((e) => {
      console.log(
        server.metrics(),
        [...server.sessions].map((s) => [s.state, s.conn.status]),
      );
      throw e;
    });
    const m = server.metrics();
    // (+1: the handshake abandoned to capture the server's Hello)
    expect(m.handshakes.ok + m.handshakes.failed).toBe(RANDOM_INPUTS + MUTATED_INPUTS + 1);
    expect(m.maxHandshakeBufferBytes).toBeLessThanOrEqual(HELLO_MAX);
  });
});

describe("oversize frames", () => {
  it("a DATA frame longer than the negotiated maximum is refused without allocating it", async () => {
    const transport = memory({}, new MemoryNetwork());
    const server = new DWCPNode({ nodeId: "s", transport, psk: PSK, maxFrameSize: 256 * 1024 });
    const client = new DWCPNode({ nodeId: "c", transport, psk: PSK });
    const accepted = new Promise<Session>((r) => server.once("session", r));
    const listener = await server.listen("big:0");
    const a = await client.connect(listener.address);
    const b = await accepted;
    const ended = new Promise<DWCPError | undefined>((r) => b.once("close", r));
    // A header announcing 4 GiB - 1, followed by a few bytes only.
    const header = encodeFrame(
      { type: FrameType.DATA, flags: FrameFlags.END, streamId: 0, messageId: 1, offset: 0, codecId: 0 },
      new Uint8Array(0),
    );
    new DataView(header.buffer).setUint32(4, 0xffffffff, true);
    a.conn.send(header.subarray(0, HEADER_SIZE));
    a.conn.send(new Uint8Array(1000));
    expect(await ended).toMatchObject({ code: "ERR_FRAME_TOO_LARGE" });
    expect(b.frameStats.largestAllocation).toBe(0);
    await listener.close();
  });
});

async function until(cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`condition not reached in time: ${cond.toString()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
