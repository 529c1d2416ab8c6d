// Oversize claims (issue #15, must-show 3): a Hello frame larger than HELLO_MAX
// before authentication, a DATA frame larger than the negotiated frame size
// after it, a message larger than the negotiated message size across frames.
// Each is refused with its code before the memory it claims is allocated, and
// the same listener then serves an honest peer.
import { randomFillSync } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../../src/errors.js";
import { HELLO_MAX } from "../../src/session/handshake.js";
import type { Session } from "../../src/session/session.js";
import { encodeFrame, FrameFlags, FrameType } from "../../src/wire/frame.js";
import {
  attackerConn,
  authenticated,
  CONTROL,
  cleanup,
  greeting,
  KINDS,
  KiB,
  lyingHeader,
  MiB,
  mib,
  replyOf,
  sampler,
  serve,
  servesHonestPeer,
  settled,
  sleep,
  until,
} from "./harness.js";

afterEach(cleanup);

const DATA = { type: FrameType.DATA, streamId: 0, codecId: 0 } as const;

async function closedCode(s: Session): Promise<string> {
  const err = await Promise.race([s.closed, sleep(10_000).then(() => new Error("not closed in 10 s"))]);
  expect(err).toBeInstanceOf(DWCPError);
  return (err as DWCPError).code;
}

describe("oversize claims before authentication", () => {
  for (const kind of KINDS) {
    it(`${kind}: a Hello frame claiming 4 GiB - 1, and a real one of HELLO_MAX + 1 bytes: ERR_FRAME_TOO_LARGE (listener and attacker), no handshake buffer above HELLO_MAX (64 KiB), arrayBuffers +< 4 MiB; an honest peer is served`, async () => {
      const srv = await serve(kind);
      const before = await settled();
      const peak = sampler(before);
      const claims = [
        Buffer.concat([greeting(kind), lyingHeader(CONTROL, 0xffff_ffff)]),
        Buffer.concat([greeting(kind), encodeFrame(CONTROL, randomFillSync(new Uint8Array(HELLO_MAX + 1)))]),
      ];
      for (const [i, bytes] of claims.entries()) {
        const conn = await attackerConn(kind, srv.address, `127.0.0.${2 + i}`);
        const reply = replyOf(conn);
        conn.send(bytes);
        expect(await reply).toBe("ERR_FRAME_TOO_LARGE");
        expect((await srv.error(i)).code).toBe("ERR_FRAME_TOO_LARGE");
      }
      const grown = peak.stop();
      console.log(`${kind} oversize Hellos: arrayBuffers peak +${mib(grown.arrayBuffers)}`);
      const m = srv.node.metrics();
      expect(m.maxHandshakeBufferBytes).toBeLessThanOrEqual(HELLO_MAX);
      expect(m.handshakes.byCode.ERR_FRAME_TOO_LARGE).toBe(2);
      expect(m.pendingHandshakes).toBe(0);
      expect(grown.arrayBuffers).toBeLessThan(4 * MiB);
      await servesHonestPeer(srv);
    });
  }
});

describe("oversize claims after authentication", () => {
  for (const kind of KINDS) {
    it(`${kind}: a DATA frame of 64 KiB + 1 where 64 KiB was negotiated: ERR_FRAME_TOO_LARGE (listener and attacker), refused unread (largestAllocation unchanged, arrayBuffers +< 2 MiB); an honest peer is served`, async () => {
      const srv = await serve(kind, { node: { maxFrameSize: 64 * KiB } });
      const conn = await attackerConn(kind, srv.address, "127.0.0.2");
      const peer = await authenticated(kind, conn);
      const b = await until(() => srv.sessions[0], 5000);
      expect(b.negotiated.maxFrameSize).toBe(64 * KiB);
      const largest = b.frameStats.largestAllocation;
      const before = await settled();
      const peak = sampler(before);
      peer.frame(
        { ...DATA, flags: FrameFlags.END, messageId: 1, offset: 0 },
        randomFillSync(new Uint8Array(64 * KiB + 1)),
      );
      expect(await closedCode(b)).toBe("ERR_FRAME_TOO_LARGE");
      expect(await peer.ended).toBe("ERR_FRAME_TOO_LARGE");
      const grown = peak.stop();
      expect(b.frameStats.largestAllocation).toBe(largest);
      expect(grown.arrayBuffers).toBeLessThan(2 * MiB);
      expect(b.stats.messagesReceived).toBe(0);
      await servesHonestPeer(srv);
    });

    it(`${kind}: a message growing past the negotiated 1 MiB across 64 KiB frames: ERR_MESSAGE_TOO_LARGE at the frame that crosses it (listener and attacker), at most 1 MiB held, arrayBuffers +< 6 MiB; an honest peer is served`, async () => {
      const srv = await serve(kind, { node: { maxFrameSize: 64 * KiB, maxMessageSize: MiB } });
      const conn = await attackerConn(kind, srv.address, "127.0.0.2");
      const peer = await authenticated(kind, conn);
      const b = await until(() => srv.sessions[0], 5000);
      expect(b.negotiated.maxMessageSize).toBe(MiB);
      const before = await settled();
      const peak = sampler(before);
      const piece = randomFillSync(new Uint8Array(64 * KiB));
      // 17 frames of one message, none with END: the 17th crosses 1 MiB.
      for (let i = 0; i < 17 && conn.status === "open"; i++) {
        peer.frame({ ...DATA, flags: 0, messageId: 1, offset: i * piece.length }, piece);
      }
      expect(await closedCode(b)).toBe("ERR_MESSAGE_TOO_LARGE");
      expect(await peer.ended).toBe("ERR_MESSAGE_TOO_LARGE");
      const grown = peak.stop();
      console.log(`${kind} oversize message: arrayBuffers peak +${mib(grown.arrayBuffers)}`);
      expect(grown.arrayBuffers).toBeLessThan(6 * MiB);
      expect(b.stats.messagesReceived).toBe(0);
      await servesHonestPeer(srv);
    });
  }
});
