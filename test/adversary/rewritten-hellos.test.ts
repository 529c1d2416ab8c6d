// Rewritten Hellos and frames (issue #15, must-show 3): a man in the middle
// without the key (test/helpers/rewriting-proxy.ts) rewrites what it can parse.
// A Hello with other versions, codecs, limits, integrity or node id fails both
// PSK proofs (ERR_AUTH_FAILED on both sides); with integrity "mac" a flipped,
// replayed or dropped DATA frame ends the session with ERR_AUTH_FAILED and is
// never delivered. The same listener then serves an honest peer.
//
// tcp only: on tls the proxy sees ciphertext (TLS itself refuses any change),
// and on amst DWCP frames travel inside AMST segments, which this proxy does not
// reassemble.
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../../src/errors.js";
import { HELLO_MAX } from "../../src/session/handshake.js";
import { DWCPNode } from "../../src/session/node.js";
import type { Session } from "../../src/session/session.js";
import { tcp } from "../../src/transport/tcp/index.js";
import { FrameType } from "../../src/wire/frame.js";
import { decodeControl, encodeControl, type Hello, Integrity } from "../../src/wire/proto.js";
import { PSK } from "../helpers/nodes.js";
import { type Rewrite, rewritingProxy } from "../helpers/rewriting-proxy.js";
import {
  cleanup,
  grownSince,
  MiB,
  onCleanup,
  serve,
  servesHonestPeer,
  settled,
  sleep,
  until,
} from "./harness.js";

afterEach(cleanup);

/** Rewrites every Hello (both ways) with `change`. */
const helloRewrite =
  (change: (h: Hello) => Hello): Rewrite =>
  (_dir, _i, h, payload) => {
    if (h.type !== FrameType.CONTROL) return undefined;
    const msg = decodeControl(payload);
    if (!("hello" in msg)) return undefined;
    return { payload: encodeControl({ hello: change(msg.hello) }) };
  };

const LZ4 = [{ id: 1, name: "lz4", dictionaryIds: [] }];

const REWRITES: [string, (h: Hello) => Hello][] = [
  ["versions [1, 3] -> [1]", (h) => ({ ...h, versions: [1] })],
  ["codecs [lz4] -> []", (h) => ({ ...h, codecs: [] })],
  ["max frame and message size -> 64 KiB", (h) => ({ ...h, maxFrameSize: 65536, maxMessageSize: 65536 })],
  ["integrity mac -> crc", (h) => ({ ...h, integrity: Integrity.CRC })],
  ["the dialler's node id -> another", (h) => (h.nodeId === "client" ? { ...h, nodeId: "someone-else" } : h)],
];

describe("a keyless proxy rewriting Hellos (tcp, PSK)", () => {
  for (const [what, change] of REWRITES) {
    it(`${what}: ERR_AUTH_FAILED on both sides, no session, the handshake holds <= HELLO_MAX, heap +< 8 MiB; an honest peer is then served directly`, async () => {
      const srv = await serve("tcp", { node: { codecs: LZ4, integrity: "mac" } });
      const proxy = await rewritingProxy(srv.address, helloRewrite(change));
      onCleanup(() => proxy.close());
      const before = await settled();
      const client = new DWCPNode({ nodeId: "client", transport: tcp(), psk: PSK, codecs: LZ4 });
      onCleanup(() => client.close({ timeoutMs: 500 }));
      const err = await client.connect(proxy.address).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DWCPError);
      expect((err as DWCPError).code).toBe("ERR_AUTH_FAILED");
      expect((await srv.error(0)).code).toBe("ERR_AUTH_FAILED");
      const grown = await grownSince(before);
      const m = srv.node.metrics();
      expect(m.sessions).toBe(0);
      expect(m.maxHandshakeBufferBytes).toBeLessThanOrEqual(HELLO_MAX);
      expect(grown.heapUsed).toBeLessThan(8 * MiB);
      await servesHonestPeer(srv, { node: { codecs: LZ4 } });
    });
  }
});

/**
 * A proxy that lets the handshake through and then applies `tamper` to the
 * dialler's DATA frames (k = 0, 1, … among them), returning the new frame.
 */
function dataTamper(
  tamper: (k: number, h: Parameters<Rewrite>[2], p: Uint8Array, seen: Uint8Array[]) => ReturnType<Rewrite>,
): Rewrite {
  let k = 0;
  const seen: Uint8Array[] = [];
  return (dir, _i, h, payload) => {
    if (dir !== "up" || h.type !== FrameType.DATA) return undefined;
    const out = tamper(k++, h, payload, seen);
    seen.push(new Uint8Array(payload));
    return out;
  };
}

const TAMPERS: [string, () => Rewrite][] = [
  [
    "one bit of the first DATA frame flipped (CRC fixed)",
    () =>
      dataTamper((k, _h, p) => {
        if (k !== 0) return undefined;
        p[0]! ^= 1;
        return { payload: p };
      }),
  ],
  [
    "the second DATA frame replaced by a replay of the first",
    () =>
      dataTamper((k, _h, _p, seen) =>
        k === 1 ? { header: { messageId: 1 }, payload: seen[0]! } : undefined,
      ),
  ],
];

describe('frames through a keyless proxy with integrity "mac" (tcp, PSK)', () => {
  for (const [what, rewrite] of TAMPERS) {
    it(`${what}: the listener's session ends with ERR_AUTH_FAILED, the altered message is never delivered, and the dialler's send fails with ERR_AUTH_FAILED; an honest peer is then served directly`, async () => {
      const srv = await serve("tcp", { node: { integrity: "mac" } });
      const proxy = await rewritingProxy(srv.address, rewrite());
      onCleanup(() => proxy.close());
      const client = new DWCPNode({ nodeId: "client", transport: tcp(), psk: PSK });
      onCleanup(() => client.close({ timeoutMs: 500 }));
      const a = await client.connect(proxy.address);
      expect(a.negotiated.integrity).toBe("mac");
      const b: Session = await until(() => srv.sessions[0], 5000, "the listener's session");
      const delivered: Uint8Array[] = [];
      b.on("message", (m) => delivered.push(new Uint8Array(m.data)));
      // Two messages, one frame each (sent in separate turns, so not batched).
      const first = a.send(Uint8Array.of(0x10, 0x20)).catch((e: unknown) => e);
      await sleep(20);
      const second = a.send(Uint8Array.of(0x30, 0x40)).catch((e: unknown) => e);
      const ended = await Promise.race([b.closed, sleep(10_000).then(() => new Error("not closed"))]);
      expect(ended).toBeInstanceOf(DWCPError);
      expect((ended as DWCPError).code).toBe("ERR_AUTH_FAILED");
      const failed = [await first, await second].find((r) => r instanceof DWCPError) as DWCPError | undefined;
      expect(failed?.code).toBe("ERR_AUTH_FAILED");
      // Nothing the proxy touched reached the application.
      for (const m of delivered) expect([...m]).toEqual([0x10, 0x20]);
      expect(delivered.length).toBeLessThanOrEqual(1);
      await servesHonestPeer(srv);
    });
  }
});
