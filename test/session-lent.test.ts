// Lent reads: a TCP connection that reads into reused buffers (Conn.release) and
// sessions that lend messages to their listeners (lendMessages). Every message
// carries its sequence number and is compared byte for byte with what was sent,
// inside the listener (while it is valid) or after later traffic has reused the
// buffers (for messages that must be copies).
import { randomFillSync } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import type { Message } from "../src/session/session.js";
import { type AmstConn, amst } from "../src/transport/amst/index.js";
import type { Conn, Transport } from "../src/transport/contract.js";
import { tcp } from "../src/transport/tcp/index.js";
import { lendingTcp } from "./helpers/lending.js";
import { closeAll, sessionPair } from "./helpers/nodes.js";

afterEach(closeAll);

const POOL = randomFillSync(new Uint8Array(8 << 20));

/** Message `seq`: 1 B … 3 MiB, its bytes a window of POOL chosen by seq. */
function message(seq: number): Uint8Array {
  const r = (Math.imul(seq, 2654435761) >>> 0) % 100;
  const n =
    r < 50 ? 1 + ((seq * 37) % 4096) : r < 85 ? 65_536 + ((seq * 911) % 200_000) : (seq * 7919) % (3 << 20);
  const start = (seq * 4099) % (POOL.length - n);
  return POOL.subarray(start, start + n);
}

function sameBytes(m: Message, want: Uint8Array): boolean {
  if (m.length !== want.length) return false;
  let at = 0;
  for (const c of m.chunks) {
    if (Buffer.compare(c, want.subarray(at, at + c.length)) !== 0) return false;
    at += c.length;
  }
  return at === want.length;
}

/** Sends messages 1..count (message(seq)), at most `window` in flight. */
async function sendAll(s: { send(d: Uint8Array): Promise<number> }, count: number): Promise<void> {
  const inFlight: Promise<number>[] = [];
  for (let seq = 1; seq <= count; seq++) {
    inFlight.push(s.send(message(seq)));
    if (inFlight.length >= 64) await inFlight.shift();
  }
  await Promise.all(inFlight);
}

/** Bytes [at, at + n) of a stream that repeats POOL. */
function poolStream(at: number, n: number): Uint8Array {
  const i = at % POOL.length;
  return i + n <= POOL.length
    ? POOL.subarray(i, i + n)
    : Buffer.concat([POOL.subarray(i), POOL.subarray(0, n - (POOL.length - i))]);
}

/** A connection dialled on loopback to a listener that lends its accepted connections. */
async function lendingServer(t: Transport) {
  let accept!: (c: Conn) => void;
  const accepted = new Promise<Conn>((r) => {
    accept = r;
  });
  const listener = await t.listen("127.0.0.1:0", accept, { lend: true });
  const client = await t.dial(listener.address);
  return { listener, client, server: await accepted };
}

describe("tcp connections that lend their chunks", () => {
  it("carry every byte in order, and released memory is read into again", async () => {
    const { listener, client, server } = await lendingServer(tcp());
    expect(server.release).toBeTypeOf("function");
    expect(client.release).toBeUndefined();
    const total = 256 << 20;
    const got = (async () => {
      let n = 0;
      const buffers = new Set<ArrayBufferLike>();
      for await (const c of server) {
        const want = poolStream(n, c.length);
        if (Buffer.compare(c, want) !== 0) throw new Error(`bytes differ at offset ${n}`);
        n += c.length;
        buffers.add(c.buffer);
        server.release!(undefined);
      }
      return { n, buffers: buffers.size };
    })();
    for (let sent = 0; sent < total; sent += POOL.length) if (!client.send(POOL)) await client.onDrain();
    await client.close();
    const r = await got;
    expect(r.n).toBe(total);
    // Thousands of reads; a handful of buffers, read into again and again.
    expect(r.buffers).toBeLessThan(16);
    await listener.close();
  });
});

describe("amst bundles that lend their chunks", () => {
  it("carry every byte in order over 4 streams, a stream killed mid-way; held chunks stay intact, released memory is reused", async () => {
    const p = await lendingServer(amst(tcp(), { streams: 4, maxStreams: 4, reconnectInitialMs: 20 }));
    const { listener } = p;
    const client = p.client as AmstConn;
    const server = p.server as AmstConn;
    // A raw bundle with no session above it: nothing authenticates the peers, so say so.
    client.authenticated();
    server.authenticated();
    expect(server.release).toBeTypeOf("function");
    expect(client.release).toBeUndefined();
    const total = 256 << 20;
    const got = (async () => {
      let n = 0;
      let chunks = 0;
      let killed = false;
      let checkedHolds = 0;
      const buffers = new Set<ArrayBufferLike>();
      // Every 64th chunk is kept (with its expected bytes) while 32 more arrive:
      // the release calls meanwhile name it as the oldest chunk still in use.
      let held: { chunk: Uint8Array; want: Buffer; until: number } | undefined;
      for await (const c of server) {
        const want = poolStream(n, c.length);
        if (Buffer.compare(c, want) !== 0) throw new Error(`bytes differ at offset ${n}`);
        n += c.length;
        chunks++;
        buffers.add(c.buffer);
        if (held && chunks >= held.until) {
          if (Buffer.compare(held.chunk, held.want) !== 0) throw new Error("a held chunk was overwritten");
          checkedHolds++;
          held = undefined;
        }
        if (!held && chunks % 64 === 0) held = { chunk: c, want: Buffer.from(want), until: chunks + 32 };
        server.release!(held?.chunk.buffer);
        if (!killed && n >= total / 2) {
          // Its unacknowledged segments go out again on the other streams, and are
          // read after later bytes of those streams.
          killed = true;
          server.streamConns()[1]!.socket!.destroy();
        }
      }
      return { n, chunks, buffers: buffers.size, checkedHolds };
    })();
    for (let sent = 0; sent < total; sent += POOL.length) if (!client.send(POOL)) await client.onDrain();
    await client.close();
    const r = await got;
    expect(r.n).toBe(total);
    expect(r.checkedHolds).toBeGreaterThan(10);
    expect(client.stats.segmentsResent).toBeGreaterThan(0);
    // Thousands of reads over the streams (and their replacements), a 256 KiB
    // buffer each if none were reused: a set bounded by the streams' and the
    // bundle's queues (~100–250 here), read into again and again.
    expect(r.chunks).toBeGreaterThan(1000);
    expect(r.buffers).toBeLessThan(r.chunks / 4);
    await listener.close();
  });
});

describe("sessions that lend messages (lendMessages)", () => {
  // ~300 MiB each way in 256 KiB reads (~1,200 buffers were none reused): a few
  // dozen buffers for one connection, a few dozen per stream for a bundle.
  for (const [name, transport, maxBuffers] of [
    ["tcp", () => tcp(), 64],
    ["amst over tcp, 4 streams", () => amst(tcp(), { streams: 4, maxStreams: 4 }), 256],
  ] as const)
    it(`lend each message to the listener, both ways, dialled and accepted (${name}): every byte as sent, buffers reused`, async () => {
      const t = transport();
      const { a, b } = await sessionPair(
        { transport: t, lendMessages: true },
        { transport: t, lendMessages: true },
        "127.0.0.1:0",
      );
      expect(a.conn.release).toBeTypeOf("function");
      expect(b.conn.release).toBeTypeOf("function");
      const count = 600;
      const check = (s: typeof a) =>
        new Promise<{ bad: number; buffers: number }>((resolve) => {
          let next = 1;
          let bad = 0;
          const buffers = new Set<ArrayBufferLike>();
          s.on("message", (m) => {
            if (m.id !== next || !sameBytes(m, message(next))) bad++;
            for (const c of m.chunks) buffers.add(c.buffer);
            if (++next > count) resolve({ bad, buffers: buffers.size });
          });
        });
      const atB = check(b);
      const atA = check(a);
      await Promise.all([sendAll(a, count), sendAll(b, count)]);
      const [rb, ra] = await Promise.all([atB, atA]);
      expect(rb.bad).toBe(0);
      expect(ra.bad).toBe(0);
      expect(rb.buffers).toBeLessThan(maxBuffers);
      expect(ra.buffers).toBeLessThan(maxBuffers);
    });

  it("messages queued with no listener, and messages taken by iteration, are copies that outlive the buffers", async () => {
    const { a, b } = await sessionPair(
      { transport: tcp(), lendMessages: true },
      { transport: tcp() },
      "127.0.0.1:0",
    );
    // Nobody listens yet: these are queued.
    await sendAll(a, 40);
    const it = b[Symbol.asyncIterator]();
    const first: Message[] = [];
    for (let i = 0; i < 40; i++) first.push((await it.next()).value as Message);
    // Much more traffic through the same reused buffers, read by iteration too.
    const more = (async () => {
      const later: Message[] = [];
      for (let i = 0; i < 200; i++) later.push((await it.next()).value as Message);
      return later;
    })();
    const inFlight: Promise<number>[] = [];
    for (let seq = 41; seq <= 240; seq++) inFlight.push(a.send(message(seq)));
    await Promise.all(inFlight);
    const later = await more;
    for (const [i, m] of [...first, ...later].entries()) {
      expect(m.id).toBe(i + 1);
      expect(sameBytes(m, message(i + 1))).toBe(true);
    }
  });

  it("on a lending connection a session that did not ask to lend gives its listener copies", async () => {
    const { a, b } = await sessionPair(
      { transport: lendingTcp() },
      { transport: lendingTcp() },
      "127.0.0.1:0",
    );
    expect(b.conn.release).toBeTypeOf("function");
    const kept: Message[] = [];
    b.on("message", (m) => kept.push(m));
    await sendAll(a, 300);
    await new Promise((r) => setTimeout(r, 50));
    expect(kept.length).toBe(300);
    // Checked only now, after later reads reused every buffer.
    for (const [i, m] of kept.entries()) expect(sameBytes(m, message(i + 1))).toBe(true);
  });
});

describe("lent reads' free slots", () => {
  it("keep at most FREE_SLOTS once a message that spanned many reads is released", async () => {
    const { LentReads } = await import("../src/transport/tcp/socket-conn.js");
    const lent = new LentReads();
    lent.attach(() => {});
    // A message spanning 40 reads: every slot is handed out, then all released at once.
    const first = Array.from({ length: 40 }, () => {
      const slot = lent.onread.buffer();
      lent.onread.callback(LentReads.SLOT_BYTES, slot);
      lent.handedOut();
      return slot;
    });
    lent.release(undefined);
    const next = new Set(Array.from({ length: 40 }, () => lent.onread.buffer()));
    const reused = first.filter((s) => next.has(s)).length;
    expect(reused).toBe(LentReads.FREE_SLOTS);
  });
});
