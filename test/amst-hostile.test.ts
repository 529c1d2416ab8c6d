// AMST below the handshake, attacked by raw peers that open bundles and never
// greet (docs/PROTOCOL.md §12): out-of-window and overlapping segments, oversize
// frames, many bundles, many streams. Every case ends the bundle with a DWCPError
// code, memory stays within the stated bound, and the same listener (a DWCPNode
// on amst over TCP) then serves an honest peer: handshake, a 6 MiB message each
// way, the receive window raised to the full window and the bundle to 6 streams
// once authenticated.
import { randomFillSync } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../src/errors.js";
import { crc32c } from "../src/hash/index.js";
import { DWCPNode } from "../src/session/node.js";
import type { Session } from "../src/session/session.js";
import type { AmstConn, AmstListener, AmstOptions } from "../src/transport/amst/index.js";
import { amst } from "../src/transport/amst/index.js";
import type { Transport } from "../src/transport/contract.js";
import { tcp } from "../src/transport/tcp/index.js";
import { FrameType } from "../src/wire/frame.js";
import { rawAmstStream, until } from "./helpers/amst-raw.js";
import { PSK } from "./helpers/nodes.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const KiB = 1024;
const MiB = 1024 * KiB;
/** The default receive window before authentication. */
const PRE_AUTH = 256 * KiB;

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
});

/** A DWCPNode listening on amst over TCP, with the accepted bundles and the AMST listener in view. */
async function server(o: AmstOptions = {}) {
  const t = amst(tcp(), o);
  const accepted: AmstConn[] = [];
  let amstListener: AmstListener | undefined;
  const spy: Transport = {
    name: t.name,
    dial: (a, d) => t.dial(a, d),
    listen: async (a, onConn, l) => {
      amstListener = (await t.listen(
        a,
        (c) => {
          accepted.push(c as AmstConn);
          onConn(c);
        },
        l,
      )) as AmstListener;
      return amstListener;
    },
  };
  // The node's own per-address limits stay out of the way: AMST's are under test.
  const node = new DWCPNode({
    nodeId: "server",
    transport: spy,
    psk: PSK,
    maxPendingHandshakes: 1000,
    maxPendingPerAddress: 1000,
    // Longer than any AMST limit here, so that what ends a bundle is AMST's doing.
    handshakeTimeoutMs: 20_000,
  });
  const errors: DWCPError[] = [];
  const sessions: Session[] = [];
  node.on("handshakeError", (e) => errors.push(e));
  node.on("session", (s) => sessions.push(s));
  const listener = await node.listen("127.0.0.1:0");
  cleanup.push(async () => {
    await node.close({ timeoutMs: 1000 });
    await listener.close();
  });
  return {
    address: listener.address,
    accepted,
    errors,
    sessions,
    get stats() {
      return amstListener!.stats;
    },
  };
}

type Server = Awaited<ReturnType<typeof server>>;

/**
 * An honest DWCPNode dials the same listener over AMST, and a 6 MiB message goes
 * each way intact; returns the accepted bundle.
 */
async function servesHonestPeer(srv: Server, id: string): Promise<AmstConn> {
  const client = new DWCPNode({ nodeId: id, transport: amst(tcp(), { streams: 6 }), psk: PSK });
  cleanup.push(() => client.close({ timeoutMs: 1000 }));
  const before = srv.sessions.length;
  const a = await client.connect(srv.address);
  const b = await until(() => srv.sessions[before], 5000, "the server's session");
  const data = randomFillSync(new Uint8Array(6 * MiB));
  const got = (s: Session) =>
    new Promise<number>((resolve) => s.once("message", (m) => resolve(crc32c(m.data))));
  const [atB, atA] = [got(b), got(a)];
  await Promise.all([a.send(data), b.send(data)]);
  expect(await atB).toBe(crc32c(data));
  expect(await atA).toBe(crc32c(data));
  const conn = b.conn as AmstConn;
  // Authenticated: the bundle grew to the full window, and the dialler opened
  // the streams beyond the 4 taken before authentication.
  expect(conn.stats.receiveWindow).toBe(32 * MiB);
  expect(await (a.conn as AmstConn).whenStreams(6, { timeoutMs: 5000 })).toBe(true);
  expect(conn.streamCount).toBe(6);
  return conn;
}

/** Peak growth of process arrayBuffers while `f` runs (sampled every 2 ms, after a GC). */
async function peakArrayBuffers(f: () => Promise<void>): Promise<number> {
  gc();
  const base = process.memoryUsage().arrayBuffers;
  let peak = base;
  const sample = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  }, 2);
  try {
    await f();
  } finally {
    clearInterval(sample);
  }
  peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  return peak - base;
}

function error(srv: Server, i = 0): Promise<DWCPError> {
  return until(() => srv.errors[i], 15_000, "the handshake error");
}

describe("amst below the handshake: hostile peers", { timeout: 60_000 }, () => {
  it(`a peer that never greets and sends out-of-order segments up to its declared 64 MiB window: the reorder buffer holds <= 256 KiB, arrayBuffers +< 4 MiB, the bundle ends with ERR_PROTOCOL, and the listener then serves an honest peer`, async () => {
    const srv = await server();
    const payload = randomFillSync(new Uint8Array(60 * KiB));
    let conn: AmstConn | undefined;
    let peer: Awaited<ReturnType<typeof rawAmstStream>> | undefined;
    const grown = await peakArrayBuffers(async () => {
      peer = await rawAmstStream(srv.address, { window: 64 * MiB });
      expect(peer.answer.status).toBe(0);
      conn = await until(() => srv.accepted[0]);
      // The gap at 0 is never filled: everything after it waits in the reorder buffer.
      // First what the small window takes, then the rest of the declared window.
      let closed = false;
      void peer.closed.then(() => {
        closed = true;
      });
      for (let off = 64 * KiB; off < 64 * MiB && !closed; off += 64 * KiB) {
        if (!peer.segment(off, payload)) {
          await Promise.race([
            new Promise((r) => peer!.socket.once("drain", r)),
            peer.closed,
            new Promise((r) => setTimeout(r, 1000)),
          ]);
        }
      }
      await Promise.race([peer.closed, new Promise((r) => setTimeout(r, 10_000))]);
    });
    console.log(
      `out-of-window peer: reorder buffer peak ${conn!.stats.reorderBytesMax} B, arrayBuffers peak +${(grown / MiB).toFixed(2)} MiB`,
    );
    expect(conn!.stats.reorderBytesMax).toBeLessThanOrEqual(PRE_AUTH);
    expect(grown).toBeLessThan(4 * MiB);
    expect((await error(srv)).code).toBe("ERR_PROTOCOL");
    // The peer was told (STREAM_RESET) and its stream closed; nothing of it is kept.
    expect(peer!.reset).toBe(true);
    expect(conn!.status).toBe("aborted");
    expect(conn!.stats.reorderBytes).toBe(0);
    // The listener advertised the small window in its first acknowledgement.
    const ack = peer!.frames.find((f) => f.type === FrameType.SEGMENT_ACK)!;
    expect(ack.messageId).toBe(PRE_AUTH);
    await until(() => srv.stats.bundles === 0, 2000, "the bundle to be released");
    const honest = await servesHonestPeer(srv, "honest-1");
    expect(honest.stats.reorderBytesMax).toBeLessThanOrEqual(32 * MiB);
  });

  const cases: [string, (p: Awaited<ReturnType<typeof rawAmstStream>>) => void, string][] = [
    [
      "a segment starting inside a held one",
      (p) => {
        p.segment(64 * KiB, new Uint8Array(16 * KiB));
        p.segment(72 * KiB, new Uint8Array(16 * KiB));
      },
      "ERR_PROTOCOL",
    ],
    [
      "a segment ending inside a held one",
      (p) => {
        p.segment(64 * KiB, new Uint8Array(16 * KiB));
        p.segment(56 * KiB, new Uint8Array(16 * KiB));
      },
      "ERR_PROTOCOL",
    ],
    [
      "a segment covering a held one",
      (p) => {
        p.segment(64 * KiB, new Uint8Array(4 * KiB));
        p.segment(60 * KiB, new Uint8Array(16 * KiB));
      },
      "ERR_PROTOCOL",
    ],
    [
      "a segment at a held one's offset with another length",
      (p) => {
        p.segment(64 * KiB, new Uint8Array(16 * KiB));
        p.segment(64 * KiB, new Uint8Array(20 * KiB));
      },
      "ERR_PROTOCOL",
    ],
    [
      "a 1 MiB segment before authentication (larger than the window: refused unread)",
      (p) => {
        p.segment(64 * KiB, new Uint8Array(1 * MiB));
      },
      "ERR_FRAME_TOO_LARGE",
    ],
    [
      "tiny segments: more than window / 4 KiB of them",
      (p) => {
        for (let i = 1; i <= 80; i++) p.segment(i * 64, new Uint8Array(1));
      },
      "ERR_PROTOCOL",
    ],
  ];
  it(`overlapping, oversize and too many segments each end their bundle with a DWCPError code (an exact resend is dropped), the reorder buffer <= 256 KiB; then an honest peer is served`, async () => {
    const srv = await server();
    for (const [i, [what, attack, code]] of cases.entries()) {
      const p = await rawAmstStream(srv.address);
      expect(p.answer.status, what).toBe(0);
      const conn = await until(() => srv.accepted[i]);
      // An exact resend of a held segment is not an overlap: dropped, re-acknowledged.
      p.segment(200 * KiB, new Uint8Array(8 * KiB));
      p.segment(200 * KiB, new Uint8Array(8 * KiB));
      await until(() => conn.stats.duplicateSegments === 1, 5000, `${what}: the resend dropped`);
      attack(p);
      expect((await error(srv, i)).code, what).toBe(code);
      await Promise.race([p.closed, new Promise((r) => setTimeout(r, 5000))]);
      expect(p.reset, what).toBe(true);
      expect(conn.stats.reorderBytesMax, what).toBeLessThanOrEqual(PRE_AUTH);
    }
    await until(() => srv.stats.bundles === 0, 2000, "the bundles to be released");
    await servesHonestPeer(srv, "honest-2");
  });

  it("many bundles: at most maxPendingBundles (8) unauthenticated, reorder <= 8 x 256 KiB in total, the rest refused (ERR_CONNECT at a dialler); released after preAuthTimeoutMs with ERR_HANDSHAKE_TIMEOUT; then an honest peer is served", async () => {
    const srv = await server({ maxPendingBundles: 8, preAuthTimeoutMs: 1500 });
    const payload = new Uint8Array(60 * KiB);
    const peers = [];
    for (let i = 0; i < 12; i++) {
      const p = await rawAmstStream(srv.address);
      peers.push(p);
      if (p.answer.status === 0) for (let k = 1; k <= 3; k++) p.segment(k * 64 * KiB, payload);
    }
    expect(peers.map((p) => p.answer.status)).toEqual([...Array(8).fill(0), ...Array(4).fill(2)]);
    await until(() => srv.accepted.length === 8 && srv.accepted.every((c) => c.stats.reorderSegments === 3));
    const held = srv.accepted.reduce((n, c) => n + c.stats.reorderBytes, 0);
    expect(held).toBeLessThanOrEqual(8 * PRE_AUTH);
    expect(srv.stats.pending).toBe(8);
    expect(srv.stats.refusedBundles).toBe(4);
    // A real dialler is refused too, with a code.
    const refused = await amst(tcp())
      .dial(srv.address)
      .then(
        () => undefined,
        (e: DWCPError) => e,
      );
    expect(refused).toBeInstanceOf(DWCPError);
    expect(refused!.code).toBe("ERR_CONNECT");
    // Nobody authenticates them: each is torn down when its time is up.
    for (let i = 0; i < 8; i++) expect((await error(srv, i)).code).toBe("ERR_HANDSHAKE_TIMEOUT");
    await until(() => srv.stats.pending === 0 && srv.stats.bundles === 0, 5000, "the bundles to be released");
    for (const p of peers.slice(0, 8)) {
      await Promise.race([p.closed, new Promise((r) => setTimeout(r, 3000))]);
      expect(p.reset).toBe(true);
    }
    await servesHonestPeer(srv, "honest-3");
  });

  it("the reorder budget caps every bundle of a transport together (maxReorderBytes 1.5 MiB: 6 unauthenticated bundles, the 7th refused); a bundle whose streams close is released at once; then an honest peer is served", async () => {
    const srv = await server({ maxReorderBytes: 1.5 * MiB, maxPendingBundles: 16 });
    const peers = [];
    for (let i = 0; i < 7; i++) peers.push(await rawAmstStream(srv.address));
    expect(peers.map((p) => p.answer.status)).toEqual([0, 0, 0, 0, 0, 0, 2]);
    for (const p of peers.slice(0, 6))
      for (let k = 1; k <= 3; k++) p.segment(k * 64 * KiB, new Uint8Array(60 * KiB));
    await until(() => srv.accepted.length === 6 && srv.accepted.every((c) => c.stats.reorderSegments === 3));
    expect(srv.accepted.reduce((n, c) => n + c.stats.reorderBytes, 0)).toBeLessThanOrEqual(1.5 * MiB);
    // The peers hang up: their bundles go at once (no wait for a rejoin), budget with them.
    for (const p of peers) p.socket.destroy();
    await until(() => srv.stats.bundles === 0, 5000, "the bundles to be released");
    for (let i = 0; i < 6; i++) expect((await error(srv, i)).code).toBe("ERR_CLOSED");
    const client = new DWCPNode({ nodeId: "honest-4", transport: amst(tcp(), { streams: 4 }), psk: PSK });
    cleanup.push(() => client.close({ timeoutMs: 1000 }));
    const a = await client.connect(srv.address);
    const b = await until(() => srv.sessions[0]);
    const data = randomFillSync(new Uint8Array(6 * MiB));
    const got = new Promise<number>((resolve) => b.once("message", (m) => resolve(crc32c(m.data))));
    await a.send(data);
    expect(await got).toBe(crc32c(data));
    // Authenticated, it gets what the budget has left beside the reserve for new
    // connections (half of it here): its 256 KiB and 512 KiB more, not 32 MiB.
    expect((b.conn as AmstConn).stats.receiveWindow).toBe(768 * KiB);
  });

  it("a bundle takes at most preAuthStreams (4) streams until authenticated; more joins are refused", async () => {
    const srv = await server();
    const first = await rawAmstStream(srv.address);
    expect(first.answer).toMatchObject({ status: 0, streams: 4 });
    const joins = [];
    for (let i = 1; i <= 5; i++)
      joins.push(await rawAmstStream(srv.address, { bundle: first.bundle, kind: 2, index: i }));
    expect(joins.map((j) => j.answer.status)).toEqual([0, 0, 0, 2, 2]);
    expect(srv.stats.refusedStreams).toBe(2);
    expect(srv.accepted[0]!.streamCount).toBe(4);
    // Closing every stream releases the bundle.
    for (const s of [first, ...joins]) s.socket.destroy();
    expect((await error(srv)).code).toBe("ERR_CLOSED");
    await until(() => srv.stats.bundles === 0, 5000, "the bundle to be released");
    await servesHonestPeer(srv, "honest-5");
  });
});
