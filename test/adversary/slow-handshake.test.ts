// Slow handshakes (issue #15, must-show 3): peers that connect and then send
// nothing, half a greeting, or a greeting and half a Hello. Each is ended by the
// handshake timeout (ERR_HANDSHAKE_TIMEOUT on the listener, and in an Error frame
// to the attacker), holds at most one greeting and one Hello frame meanwhile,
// and the same listener serves an honest peer while they stall and after.
import { afterEach, describe, expect, it } from "vitest";
import { HELLO_MAX } from "../../src/session/handshake.js";
import {
  attackerConn,
  cleanup,
  greeting,
  grownSince,
  helloFrame,
  KINDS,
  MiB,
  mib,
  rawSocket,
  replyOf,
  serve,
  servesHonestPeer,
  settled,
  sleep,
  until,
} from "./harness.js";

afterEach(cleanup);

/** The handshake timeout under test, small so the suite stays quick. */
const TIMEOUT_MS = 300;

const STALLS: [string, (kind: (typeof KINDS)[number]) => Uint8Array][] = [
  ["sends nothing", () => new Uint8Array(0)],
  ["sends half a greeting", (kind) => greeting(kind).subarray(0, 20)],
  [
    "sends a greeting and half a Hello",
    (kind) => {
      const hello = helloFrame(kind);
      return Buffer.concat([greeting(kind), hello.subarray(0, hello.length >> 1)]);
    },
  ],
];

describe("slow handshakes", () => {
  for (const kind of KINDS) {
    it(`${kind}: a peer that sends nothing, half a greeting, or a greeting and half a Hello ends with ERR_HANDSHAKE_TIMEOUT after handshakeTimeoutMs (${TIMEOUT_MS} ms; arrival asserted within a generous 5 s) on both sides; meanwhile each holds <= HELLO_MAX (64 KiB) and the three heap +< 8 MiB; an honest peer is served during and after`, async () => {
      const srv = await serve(kind, {
        node: { handshakeTimeoutMs: TIMEOUT_MS },
      });
      const before = await settled();
      const attacks = await Promise.all(
        STALLS.map(async ([what, bytes], i) => {
          // Taken before the dial: the listener's timer cannot start earlier.
          const at = performance.now();
          const conn = await attackerConn(kind, srv.address, `127.0.0.${2 + i}`);
          const sent = bytes(kind);
          if (sent.length > 0) conn.send(sent);
          const reply = replyOf(conn).then((code) => ({ code, ms: performance.now() - at }));
          return { what, conn, reply };
        }),
      );
      await until(() => srv.node.metrics().pendingHandshakes === 3, 5000, "three pending handshakes");
      const held = await grownSince(before);
      // While they stall, the honest peer (from 127.0.0.1) completes its own handshake.
      await servesHonestPeer(srv);
      const replies = await Promise.all(attacks.map((a) => a.reply));
      const waited = replies.map((r) => r.ms);
      console.log(
        `${kind} slow handshakes: heap while held +${mib(held.heapUsed)}, Error frames after ${waited.map((w) => w.toFixed(0)).join(" / ")} ms`,
      );
      expect(replies.map((r) => r.code)).toEqual(Array(3).fill("ERR_HANDSHAKE_TIMEOUT"));
      await until(() => srv.errors.length === 3, 5000, "three handshake errors");
      expect(srv.errors.map((e) => e.code)).toEqual(Array(3).fill("ERR_HANDSHAKE_TIMEOUT"));
      expect(srv.node.metrics().handshakes.byCode.ERR_HANDSHAKE_TIMEOUT).toBe(3);
      for (const w of waited) {
        expect(w).toBeGreaterThanOrEqual(TIMEOUT_MS);
        expect(w).toBeLessThan(5000);
      }
      const m = srv.node.metrics();
      expect(m.maxHandshakeBufferBytes).toBeLessThanOrEqual(HELLO_MAX);
      expect(m.pendingHandshakes).toBe(0);
      expect(held.heapUsed).toBeLessThan(8 * MiB);
      // Each attacker's connection is closed by the listener.
      for (const a of attacks) await until(() => a.conn.status !== "open", 5000, `${a.what}: closed`);
      await servesHonestPeer(srv);
    });
  }

  it(`amst: a TCP connection that never sends its STREAM_OPEN is closed after openTimeoutMs (${TIMEOUT_MS} ms; asserted within a generous 5 s), before any bundle or handshake exists; an honest peer is served during and after`, async () => {
    const srv = await serve("amst", { amst: { openTimeoutMs: TIMEOUT_MS } });
    const socket = await rawSocket(srv.address, "127.0.0.2");
    const half = await rawSocket(srv.address, "127.0.0.3");
    socket.on("error", () => {});
    half.on("error", () => {});
    // Half of a STREAM_OPEN frame header.
    half.write(new Uint8Array(16).fill(5));
    const at = performance.now();
    const closed = (s: typeof socket) =>
      new Promise<number>((r) => s.once("close", () => r(performance.now() - at)));
    const ends = [closed(socket), closed(half)];
    await servesHonestPeer(srv);
    const [t1, t2] = await Promise.all(ends.map((p) => Promise.race([p, sleep(5000).then(() => Infinity)])));
    console.log(`amst stalled opens closed after ${t1!.toFixed(0)} / ${t2!.toFixed(0)} ms`);
    expect(t1).toBeLessThan(5000);
    expect(t2).toBeLessThan(5000);
    expect(srv.amst.listener!.stats.bundles).toBe(0);
    expect(srv.node.metrics().pendingHandshakes).toBe(0);
    await servesHonestPeer(srv);
  });
});
