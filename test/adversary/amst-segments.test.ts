// AMST segments from a hostile peer (issue #15, must-show 3): out-of-window and
// overlapping segments before and after the session above has authenticated the
// peer, and many unauthenticated bundles against the listener's total cap. Each
// ends with a DWCPError code (the handshake's before authentication, the
// session's after), the reorder buffer stays within its window, and the same
// listener then serves an honest peer.
import { randomFillSync } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../../src/errors.js";
import { type AmstConn, amst } from "../../src/transport/amst/index.js";
import { tcp } from "../../src/transport/tcp/index.js";
import { type RawStream, rawAmstStream } from "../helpers/amst-raw.js";
import { hostilePeer } from "../helpers/hostile-peer.js";
import {
  cleanup,
  greeting,
  grownSince,
  KiB,
  MiB,
  mib,
  openBundle,
  segmentConn,
  segmentFrame,
  serve,
  servesHonestPeer,
  settled,
  sleep,
  until,
} from "./harness.js";

afterEach(cleanup);

/** The default receive window before authentication. */
const PRE_AUTH = 256 * KiB;

const closedOf = (s: RawStream) => Promise.race([s.closed, sleep(5000)]);

describe("amst: hostile segments before authentication", () => {
  const attacks: [string, (s: RawStream, bundle: AmstConn) => unknown][] = [
    [
      "a segment beyond the 256 KiB pre-authentication window",
      (s) => s.segment(PRE_AUTH, new Uint8Array(KiB)),
    ],
    [
      "a segment straddling the window's edge",
      (s) => s.segment(PRE_AUTH - 8 * KiB, new Uint8Array(16 * KiB)),
    ],
    [
      "a segment overlapping one held ahead of a gap",
      (s) => {
        s.segment(64 * KiB, new Uint8Array(16 * KiB));
        s.segment(72 * KiB, new Uint8Array(16 * KiB));
      },
    ],
    [
      "a segment overlapping bytes already delivered (a greeting)",
      async (s, bundle) => {
        s.segment(0, greeting("amst"));
        // Delivered (and read by the handshake) first: the overlap is then what ends it.
        await until(() => bundle.stats.bytesDelivered === 40, 5000, "the greeting delivered");
        s.segment(20, new Uint8Array(40));
      },
    ],
  ];
  it("out-of-window and overlapping segments from peers that never finish a handshake: each bundle ends with ERR_PROTOCOL (and a STREAM_RESET to the peer), its reorder buffer <= 256 KiB; an honest peer is served", async () => {
    const srv = await serve("amst");
    for (const [i, [what, attack]] of attacks.entries()) {
      const s = await rawAmstStream(srv.address);
      expect(s.answer.status, what).toBe(0);
      const bundle = await until(() => srv.amst.accepted[i], 5000, `${what}: the bundle`);
      await attack(s, bundle);
      expect((await srv.error(i)).code, what).toBe("ERR_PROTOCOL");
      await closedOf(s);
      expect(s.reset, what).toBe(true);
      expect(bundle.stats.reorderBytesMax, what).toBeLessThanOrEqual(PRE_AUTH);
      expect(bundle.status, what).toBe("aborted");
    }
    await until(() => srv.amst.listener!.stats.bundles === 0, 5000, "the bundles released");
    await servesHonestPeer(srv);
  });
});

describe("amst: hostile segments after authentication", () => {
  /** A peer that completes a real PSK handshake over a raw AMST stream, then sends raw segments. */
  async function authenticatedStream(srv: Awaited<ReturnType<typeof serve>> & { window: number }) {
    const s = await rawAmstStream(srv.address);
    const conn = segmentConn(s);
    await hostilePeer(conn, { read: false });
    const session = await until(() => srv.sessions[0], 5000, "the attacker's session");
    const bundle = session.conn as AmstConn;
    await until(() => bundle.stats.receiveWindow === srv.window, 5000, "the full window granted");
    return { s, conn, session, bundle };
  }

  async function endsWith(session: { closed: Promise<Error | undefined> }): Promise<string> {
    const err = await Promise.race([session.closed, sleep(10_000).then(() => new Error("not closed"))]);
    expect(err).toBeInstanceOf(DWCPError);
    return (err as DWCPError).code;
  }

  const WINDOW = 4 * MiB;
  const serveSmall = async () =>
    Object.assign(await serve("amst", { amst: { windowBytes: WINDOW } }), { window: WINDOW });

  it(`a segment beyond the full window (4 MiB here) once authenticated: the session ends with ERR_PROTOCOL, the peer gets a STREAM_RESET; an honest peer is served`, async () => {
    const srv = await serveSmall();
    const { s, conn, session } = await authenticatedStream(srv);
    s.segment(conn.sent + WINDOW, new Uint8Array(KiB));
    expect(await endsWith(session)).toBe("ERR_PROTOCOL");
    await closedOf(s);
    expect(s.reset).toBe(true);
    await servesHonestPeer(srv);
  });

  it(`a segment overlapping one held ahead of a gap once authenticated: ERR_PROTOCOL; an honest peer is served`, async () => {
    const srv = await serveSmall();
    const { s, conn, session, bundle } = await authenticatedStream(srv);
    s.segment(conn.sent + 64 * KiB, new Uint8Array(16 * KiB));
    await until(() => bundle.stats.reorderSegments === 1, 5000, "the segment held");
    s.segment(conn.sent + 72 * KiB, new Uint8Array(16 * KiB));
    expect(await endsWith(session)).toBe("ERR_PROTOCOL");
    expect(bundle.stats.reorderBytes).toBe(0);
    await servesHonestPeer(srv);
  });

  it(`segments ahead of a gap that is never filled, up to the 4 MiB window and one past it: the reorder buffer holds <= 4 MiB, arrayBuffers +< 6 x 4 MiB, then ERR_PROTOCOL; an honest peer is served`, async () => {
    const srv = await serveSmall();
    const { s, conn, session, bundle } = await authenticatedStream(srv);
    const before = await settled();
    const payload = randomFillSync(new Uint8Array(60 * KiB));
    // 60 KiB + 4 KiB bookkeeping each: 64 of them fill the 4 MiB window exactly.
    const gap = conn.sent + 64 * KiB;
    for (let k = 0; k < 63; k++) s.segment(gap + k * 64 * KiB, payload);
    await until(() => bundle.stats.reorderSegments === 63, 10_000, "63 segments held");
    const held = await grownSince(before);
    console.log(
      `amst after authentication: reorder buffer ${mib(bundle.stats.reorderBytes)}, arrayBuffers +${mib(held.arrayBuffers)}`,
    );
    expect(bundle.stats.reorderBytes).toBeLessThanOrEqual(WINDOW);
    expect(held.arrayBuffers).toBeLessThan(6 * WINDOW);
    expect(session.state).toBe("open");
    // One more, past what the window allows.
    s.segment(gap + 63 * 64 * KiB, payload);
    expect(await endsWith(session)).toBe("ERR_PROTOCOL");
    expect(bundle.stats.reorderBytesMax).toBeLessThanOrEqual(WINDOW);
    await servesHonestPeer(srv);
  });
});

describe("amst: many unauthenticated bundles", () => {
  it("12 bundles opened from 3 addresses against maxPendingBundles 8: 8 accepted, 4 refused (status full; ERR_CONNECT at a real dialler), reorder <= 8 x 256 KiB in total; released by the handshake timeout (ERR_HANDSHAKE_TIMEOUT); then an honest peer is served", async () => {
    const srv = await serve("amst", {
      amst: { maxPendingBundles: 8 },
      node: { handshakeTimeoutMs: 1500 },
    });
    const payload = new Uint8Array(60 * KiB);
    const opened = [];
    for (let i = 0; i < 12; i++) {
      const b = await openBundle(srv.address, `127.0.0.${2 + (i % 3)}`);
      // Three segments ahead of a gap each: held in the reorder buffer.
      if (b.status === 0) for (let k = 1; k <= 3; k++) b.socket.write(segmentFrame(k * 64 * KiB, payload));
      opened.push(b);
    }
    expect(opened.filter((b) => b.status === 0).length).toBe(8);
    expect(opened.filter((b) => b.status === 2).length).toBe(4);
    const stats = srv.amst.listener!.stats;
    expect(stats.pending).toBe(8);
    expect(stats.refusedBundles).toBe(4);
    await until(
      () => srv.amst.accepted.length === 8 && srv.amst.accepted.every((c) => c.stats.reorderSegments === 3),
      5000,
      "the segments held",
    );
    const held = srv.amst.accepted.reduce((n, c) => n + c.stats.reorderBytes, 0);
    expect(held).toBeLessThanOrEqual(8 * PRE_AUTH);
    // A real dialler is refused while the cap is full, with a code.
    const refused = await amst(tcp())
      .dial(srv.address)
      .then(
        (c) => {
          c.abort();
          return undefined;
        },
        (e: unknown) => e,
      );
    expect(refused).toBeInstanceOf(DWCPError);
    expect((refused as DWCPError).code).toBe("ERR_CONNECT");
    // Nobody greets: the handshake timeout ends each of them.
    await until(() => srv.errors.length === 8, 10_000, "the handshakes to time out");
    expect(new Set(srv.errors.map((e) => e.code))).toEqual(new Set(["ERR_HANDSHAKE_TIMEOUT"]));
    await until(() => stats.pending === 0 && stats.bundles === 0, 5000, "the bundles released");
    await servesHonestPeer(srv);
  });
});
