// Floods (issue #15, must-show 3). After authenticating: Pings to a listener
// whose answers are never read (its outbound buffer is bounded), empty messages
// (the queue's count is bounded), frames claiming oversize lengths (refused
// before any allocation). Before authenticating: a flood of garbage (refused at
// the greeting). Each ends with a DWCPError code, memory stays within the stated
// bound, and the same listener then serves an honest peer.
import { randomFillSync } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../../src/errors.js";
import { HELLO_MAX } from "../../src/session/handshake.js";
import type { Session } from "../../src/session/session.js";
import type { Conn } from "../../src/transport/contract.js";
import { FrameFlags, FrameType } from "../../src/wire/frame.js";
import { rawAmstStream } from "../helpers/amst-raw.js";
import { hostilePeer } from "../helpers/hostile-peer.js";
import {
  attackerConn,
  authenticated,
  cleanup,
  grownSince,
  KINDS,
  lyingHeader,
  MiB,
  mib,
  pingFrames,
  rawSocket,
  replyOf,
  sampler,
  segmentConn,
  serve,
  servesHonestPeer,
  settled,
  sleep,
  until,
} from "./harness.js";

afterEach(cleanup);

const DATA = { type: FrameType.DATA, streamId: 0, offset: 0, codecId: 0 } as const;

/** The listener's session with the authenticated attacker. */
const attackerSession = (sessions: Session[]) =>
  until(() => sessions.find((s) => s.remoteNodeId === "hostile" || s.remoteNodeId === "client"), 5000);

async function closedCode(s: Session): Promise<string | undefined> {
  const err = await Promise.race([s.closed, sleep(10_000).then(() => new Error("not closed in 10 s"))]);
  expect(err).toBeInstanceOf(DWCPError);
  return (err as DWCPError).code;
}

describe("floods after authentication", () => {
  for (const kind of KINDS) {
    it(`${kind}: 400,000 Pings (in bursts) from a peer that never reads the Pongs: all read, the listener's outbound buffer peaks at <= 4 MiB (writeHighWater) + 1 KiB, process heap +< 96 MiB retained; ERR_CLOSED when the attacker drops; an honest peer is served`, async () => {
      // AMST: a bundle that lost its streams waits giveUpMs for them; 1 s here.
      const srv = await serve(kind, { amst: { giveUpMs: 1000 } });
      let conn: Conn;
      let pause: () => void;
      if (kind === "amst") {
        // A raw stream: the attacker's own AMST sender stays out of the figures,
        // and it grants the listener a 1 MiB window once, never acknowledging more.
        const stream = await rawAmstStream(srv.address, { window: 64 * MiB });
        conn = segmentConn(stream);
        await hostilePeer(conn, { read: false });
        pause = () => stream.socket.pause();
      } else {
        conn = await attackerConn(kind, srv.address, "127.0.0.2");
        await authenticated(kind, conn, { read: false });
        pause = () => {};
      }
      pause();
      const b = await attackerSession(srv.sessions);
      const before = await settled();
      let maxBuffered = 0;
      const burst = pingFrames(10_000);
      for (let k = 0; k < 40; k++) {
        if (!conn.send(burst)) await Promise.race([conn.onDrain(), sleep(2000)]);
        // One turn of the event loop for the listener to read and answer.
        await sleep(1);
        maxBuffered = Math.max(maxBuffered, b.conn.bufferedAmount);
      }
      await until(() => b.frameStats.frames >= 400_000, 10_000, "every Ping read");
      await sleep(300);
      maxBuffered = Math.max(maxBuffered, b.conn.bufferedAmount);
      const grown = await grownSince(before);
      console.log(
        `${kind} Ping flood: listener's outbound buffer peaked at ${mib(maxBuffered)}, retained: heap +${mib(grown.heapUsed)}, arrayBuffers +${mib(grown.arrayBuffers)}, rss +${mib(grown.rss)}`,
      );
      // Every Ping was read (and answered, or its answer coalesced), and the bound held.
      expect(b.frameStats.frames).toBeGreaterThanOrEqual(400_000);
      expect(maxBuffered).toBeLessThan(4 * MiB + 1024);
      expect(grown.heapUsed).toBeLessThan(96 * MiB);
      expect(b.state).toBe("open");
      conn.abort();
      expect(await closedCode(b)).toBe("ERR_CLOSED");
      await servesHonestPeer(srv);
    });

    it(`${kind}: 262,144 empty messages (4 BATCH frames) to a listener that does not read: <= receiveQueueMessages (16,384) queued, heap +< 24 MiB; ERR_CLOSED when the attacker drops; an honest peer is served`, async () => {
      const srv = await serve(kind);
      const conn = await attackerConn(kind, srv.address, "127.0.0.2");
      const peer = await authenticated(kind, conn, { read: false });
      const b = await attackerSession(srv.sessions);
      const before = await settled();
      let id = 1;
      for (let f = 0; f < 4; f++) {
        // 65,536 entries of length 0: 4 bytes on the wire per message.
        peer.frame(
          { ...DATA, flags: FrameFlags.END | FrameFlags.BATCH, messageId: id },
          new Uint8Array(4 * 65536),
        );
        id += 65536;
      }
      await until(() => b.queuedMessages > 0, 5000, "messages queued");
      await sleep(300);
      const grown = await grownSince(before);
      console.log(
        `${kind} empty-message flood: ${b.queuedMessages} queued, ${b.stats.messagesReceived} received, heap +${mib(grown.heapUsed)}`,
      );
      expect(b.queuedMessages).toBeLessThanOrEqual(16384);
      expect(b.queuedMessages).toBeGreaterThan(0);
      expect(grown.heapUsed).toBeLessThan(24 * MiB);
      conn.abort();
      expect(await closedCode(b)).toBe("ERR_CLOSED");
      await servesHonestPeer(srv);
    });

    it(`${kind}: 1,000 DATA headers each claiming 4 GiB - 1: ERR_FRAME_TOO_LARGE (listener and attacker), nothing allocated for them (largestAllocation unchanged, arrayBuffers +< 2 MiB); an honest peer is served`, async () => {
      const srv = await serve(kind);
      const conn = await attackerConn(kind, srv.address, "127.0.0.2");
      const peer = await authenticated(kind, conn);
      const b = await attackerSession(srv.sessions);
      const largest = b.frameStats.largestAllocation;
      const before = await settled();
      const peak = sampler(before);
      const claim = lyingHeader({ ...DATA, flags: FrameFlags.END, messageId: 1 }, 0xffff_ffff);
      for (let i = 0; i < 1000; i++) if (conn.status === "open") conn.send(claim);
      expect(await closedCode(b)).toBe("ERR_FRAME_TOO_LARGE");
      expect(await peer.ended).toBe("ERR_FRAME_TOO_LARGE");
      const grown = peak.stop();
      console.log(`${kind} oversize claims: arrayBuffers peak +${mib(grown.arrayBuffers)}`);
      expect(b.frameStats.largestAllocation).toBe(largest);
      expect(largest).toBeLessThanOrEqual(HELLO_MAX);
      expect(grown.arrayBuffers).toBeLessThan(2 * MiB);
      await servesHonestPeer(srv);
    });
  }
});

describe("floods before authentication", () => {
  for (const kind of KINDS) {
    it(`${kind}: garbage instead of a greeting, written in 1 MiB pieces until the listener hangs up (at most 16 MiB): ERR_BAD_MAGIC (listener and attacker), the handshake holds <= HELLO_MAX, arrayBuffers +< 8 MiB; an honest peer is served`, async () => {
      const srv = await serve(kind);
      const garbage = randomFillSync(new Uint8Array(MiB));
      garbage[0] = 0; // not "D"
      const before = await settled();
      const peak = sampler(before);
      const conn = await attackerConn(kind, srv.address, "127.0.0.2");
      const reply = replyOf(conn);
      for (let i = 0; i < 16 && conn.status === "open"; i++) {
        // The same 1 MiB, sixteen times: the attacker's own memory stays out of the figure.
        if (!conn.send(garbage)) await Promise.race([conn.onDrain().catch(() => {}), sleep(1000)]);
      }
      expect(await reply).toBe("ERR_BAD_MAGIC");
      expect((await srv.error(0)).code).toBe("ERR_BAD_MAGIC");
      const grown = peak.stop();
      console.log(`${kind} garbage flood: arrayBuffers peak +${mib(grown.arrayBuffers)}`);
      expect(srv.node.metrics().maxHandshakeBufferBytes).toBeLessThanOrEqual(HELLO_MAX);
      expect(grown.arrayBuffers).toBeLessThan(8 * MiB);
      expect(srv.node.metrics().pendingHandshakes).toBe(0);
      await servesHonestPeer(srv);
    });
  }

  it("tls: 1 MiB of garbage instead of a ClientHello is refused by the TLS layer at once (rejectedHandshakes +1, socket closed within a generous 5 s), DWCP never sees it; an honest peer is served", async () => {
    const srv = await serve("tls");
    const socket = await rawSocket(srv.address, "127.0.0.2");
    socket.on("error", () => {});
    socket.resume();
    const closed = new Promise<void>((r) => socket.once("close", () => r()));
    socket.write(randomFillSync(new Uint8Array(MiB)));
    await Promise.race([closed, sleep(5000)]);
    expect(socket.destroyed).toBe(true);
    await until(() => srv.tls!.rejectedHandshakes >= 1, 5000, "the TLS refusal counted");
    expect(srv.tls!.pendingHandshakes).toBe(0);
    expect(srv.node.metrics().handshakes.failed).toBe(0);
    await servesHonestPeer(srv);
  });
});
