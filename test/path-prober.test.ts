// The path prober (src/path/prober.ts) asks through its session's control
// channel with the same messages as before it left the session: Ping/Pong and
// Probe/ProbeAck (PROTOCOL §8), one prober per session.
import { afterEach, describe, expect, it } from "vitest";
import { PathProber } from "../src/path/prober.js";
import { DWCPNode } from "../src/session/node.js";
import type { Session } from "../src/session/session.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { FrameDecoder, FrameType } from "../src/wire/frame.js";
import { GREETING_SIZE } from "../src/wire/greeting.js";
import { type Control, decodeControl } from "../src/wire/proto.js";
import { hostilePeer } from "./helpers/hostile-peer.js";
import { closeAll, PSK, sessionPair } from "./helpers/nodes.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
  await closeAll();
});

/**
 * A listening node's session with a hand-driven peer, and every control message
 * (but acks) the session sends it, decoded from a copy of the bytes it reads.
 */
async function sessionAndPeer() {
  const transport = memory({}, new MemoryNetwork());
  const node = new DWCPNode({ nodeId: "server", transport, psk: PSK });
  const accepted = new Promise<Session>((resolve) => node.once("session", resolve));
  const listener = await node.listen("prober:0");
  cleanup.push(
    () => node.close({ timeoutMs: 500 }),
    () => listener.close(),
  );
  const conn = await transport.dial(listener.address);
  cleanup.push(async () => conn.abort());
  const tap = new FrameDecoder(1 << 20);
  const seen: Control[] = [];
  let skip = GREETING_SIZE;
  const tapped = new Proxy(conn, {
    get(target, key) {
      if (key !== Symbol.asyncIterator) {
        const v = Reflect.get(target, key, target);
        return typeof v === "function" ? v.bind(target) : v;
      }
      return async function* () {
        for await (const chunk of target) {
          const rest = chunk.subarray(Math.min(skip, chunk.length));
          skip -= chunk.length - rest.length;
          if (rest.length > 0) {
            tap.push(new Uint8Array(rest));
            for (let f = tap.next(); f; f = tap.next()) {
              if (f.type !== FrameType.CONTROL) continue;
              const m = decodeControl(f.payload);
              if (!("hello" in m || "ready" in m || "ack" in m)) seen.push(m);
            }
          }
          yield chunk;
        }
      };
    },
  });
  const peer = await hostilePeer(tapped);
  const next = async (): Promise<Control> => {
    for (;;) {
      const m = seen.shift();
      if (m) return m;
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  return { session: await accepted, peer, next };
}

describe("PathProber", () => {
  it("is one per session", async () => {
    const { a, b } = await sessionPair();
    expect(PathProber.of(a)).toBe(PathProber.of(a));
    expect(PathProber.of(a)).not.toBe(PathProber.of(b));
    expect(PathProber.of(a).session).toBe(a);
    expect(() => a.attachProber({ pong() {}, probeAck() {}, end() {} })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
  });

  it("times a round trip by Ping/Pong: the peer echoes id and sent_at_us, and says whether it held", async () => {
    const { session, peer, next } = await sessionAndPeer();
    const prober = PathProber.of(session);
    const sample = prober.rttSample({ timeoutMs: 5000 });
    const ping = await next();
    expect(ping).toMatchObject({ ping: { id: 1 } });
    const sent = (ping as { ping: { id: number; sentAtUs: number } }).ping;
    peer.control({ pong: { id: sent.id, sentAtUs: sent.sentAtUs, held: true } });
    const r = await sample;
    expect(r.peerHeld).toBe(true);
    expect(r.rttMs).toBeGreaterThanOrEqual(0);
    expect(r.rttMs).toBeLessThan(5000);
    // A Pong nobody waits for is dropped; the next Ping has the next id.
    peer.control({ pong: { id: 99, sentAtUs: 0 } });
    const again = prober.ping({ timeoutMs: 5000 });
    const ping2 = (await next()) as { ping: { id: number; sentAtUs: number } };
    expect(ping2.ping.id).toBe(2);
    peer.control({ pong: { ...ping2.ping, held: false } });
    expect(await again).toBeGreaterThanOrEqual(0);
  });

  it("times the round trip from its own record: a forged sent_at_us cannot shorten it; busy_permille is clamped", async () => {
    const { session, peer, next } = await sessionAndPeer();
    const prober = PathProber.of(session);
    const sample = prober.rttSample({ timeoutMs: 5000 });
    const sent = ((await next()) as { ping: { id: number; sentAtUs: number } }).ping;
    await new Promise((r) => setTimeout(r, 60));
    // An echo claiming the Ping left just now, and a busy share out of range.
    const forged = Math.round(performance.now() * 1000);
    peer.control({ pong: { id: sent.id, sentAtUs: forged, busyPermille: 4_000_000 } });
    const r = await sample;
    expect(r.rttMs).toBeGreaterThanOrEqual(55);
    expect(r.peerBusy).toBe(1);
  });

  it("ERR_TIMEOUT when no Pong comes", async () => {
    const { session } = await sessionAndPeer();
    await expect(PathProber.of(session).rttSample({ timeoutMs: 30 })).rejects.toMatchObject({
      code: "ERR_TIMEOUT",
    });
  });

  it("a probe round is Probe frames of one round, the last marked, and the peer's ProbeAck gives the rate", async () => {
    const { session, peer, next } = await sessionAndPeer();
    const round = PathProber.of(session).probe(300 * 1024, { frameBytes: 100 * 1024 });
    const got: { round: number; last: boolean; bytes: number }[] = [];
    for (;;) {
      const m = (await next()) as { probe: { round: number; last: boolean; padding: Uint8Array } };
      got.push({ round: m.probe.round, last: m.probe.last, bytes: m.probe.padding.length });
      if (m.probe.last) break;
    }
    expect(got).toEqual([
      { round: 1, last: false, bytes: 100 * 1024 },
      { round: 1, last: false, bytes: 100 * 1024 },
      { round: 1, last: true, bytes: 100 * 1024 },
    ]);
    // 200 KiB past the first frame in 0.1 s: 16.384 Mbit/s; busy half the time.
    peer.control({ probeAck: { round: 1, bytes: 300 * 1024, durationUs: 100_000, busyUs: 50_000 } });
    const r = await round;
    expect(r.bytes).toBe(300 * 1024);
    expect(r.durationUs).toBe(100_000);
    expect(r.bps).toBeCloseTo((200 * 1024 * 8) / 0.1, 6);
    expect(r.receiverBusy).toBeCloseTo(0.5, 6);
  });
});
