// DWCPManager against hostile or broken peers (issue #15, items 4a, 7 and 9):
// a peer flooding the reorder map with far-ahead sequence numbers, an impostor
// claiming a linked node id with another credential, and a peer that stops
// reading during the bandwidth probe. Each case ends with a DWCPError code,
// memory within its stated bound, and the same listener still serving an
// honest peer.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../src/errors.js";
import type { PeerLink } from "../src/manager.js";
import { DWCPNode } from "../src/session/node.js";
import type { Session } from "../src/session/session.js";
import type { Conn, Transport } from "../src/transport/contract.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { tls } from "../src/transport/tls/index.js";
import { testPki } from "./helpers/certs.js";
import { closeManagers, manager, sleep, until, V3_ON, within } from "./helpers/managers.js";
import { PSK } from "./helpers/nodes.js";

const nodes: DWCPNode[] = [];
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.close({ timeoutMs: 500 }).catch(() => {})));
  await closeManagers();
});

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

async function settledArrayBuffers(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(20);
  }
  return process.memoryUsage().arrayBuffers;
}

/** A link message: the 8-byte sequence number, then the payload. */
function linkMessage(seq: bigint, payload: Uint8Array): Uint8Array[] {
  const header = new Uint8Array(8);
  new DataView(header.buffer).setBigUint64(0, seq, true);
  return [header, payload];
}

/** A manager "node-b" accepting v1 on a fresh memory network, and a raw v1 node dialling it as "node-a". */
async function rawPeerAgainstManager() {
  const net = new MemoryNetwork();
  const b = manager({
    nodeId: "node-b",
    v1: { transport: memory({}, net), psk: PSK },
    v3: { transport: memory({}, net), psk: PSK },
    flags: V3_ON,
    detectMode: false,
    assumeMode: "datacenter",
  });
  const bound = await b.listen({ v1: "hb1:0" });
  const raw = new DWCPNode({ nodeId: "node-a", transport: memory({}, net), psk: PSK, versions: [1] });
  nodes.push(raw);
  // The application reads its link: what is in order is delivered at once, the rest waits in the reorder map.
  const linkB = new Promise<PeerLink>((r) =>
    b.once("link", (l) => {
      l.on("message", () => {});
      r(l);
    }),
  );
  const s = await raw.connect(bound.v1);
  // A link's first message on a session is its hello (number 0, an 8-byte incarnation id).
  await s.send(linkMessage(0n, new Uint8Array(8).fill(0xa5)));
  return { net, b, bound, raw, s, linkB: await linkB };
}

/** After an attack: an honest manager "node-a" gets a link through the same listener, both ways. */
async function honestPeerServed(net: MemoryNetwork, b: ReturnType<typeof manager>, v1: string) {
  const a = manager({
    nodeId: "node-a",
    v1: { transport: memory({}, net), psk: PSK },
    v3: { transport: memory({}, net), psk: PSK },
    flags: V3_ON,
    detectMode: false,
    assumeMode: "datacenter",
  });
  const linkBReady = new Promise<PeerLink>((r) => b.once("link", r));
  const linkA = await a.connect({ v1 });
  const linkB = await linkBReady;
  const atB: number[] = [];
  const atA: number[] = [];
  linkB.on("message", (m) => atB.push(m.seq));
  linkA.on("message", (m) => atA.push(m.seq));
  await linkA.send(new Uint8Array(100));
  await linkB.send(new Uint8Array(100));
  await until(() => atA.length === 1 && atB.length === 1, 2000, "honest messages both ways");
  expect(atB).toEqual([1]);
  expect(atA).toEqual([1]);
}

describe("reorder map bounded (item 4a)", () => {
  it("far-ahead sequence numbers: held out of order ≤ the 32 MiB window, then ERR_PROTOCOL; arrayBuffers < +40 MiB during the flood, < +16 MiB after", async () => {
    const { net, b, bound, s, linkB } = await rawPeerAgainstManager();
    const before = await settledArrayBuffers();
    let peak = before;
    const body = new Uint8Array(1 << 20).fill(7);
    // Sequence number 1 never comes: 128 × 1 MiB, each one ahead of it.
    let sent = 0;
    for (let i = 0; i < 128; i++) {
      try {
        await s.send(linkMessage(BigInt(2 + i), body));
        sent++;
      } catch {
        break;
      }
      if (i % 4 === 3) peak = Math.max(peak, await settledArrayBuffers());
    }
    const err = await within(s.closed, 2000, "the flooding session's end");
    expect(err).toBeInstanceOf(DWCPError);
    expect((err as DWCPError).code).toBe("ERR_PROTOCOL");
    expect(sent).toBeLessThan(40);
    expect(linkB.stats.reorderPeakBytes).toBeLessThanOrEqual(32 << 20);
    // What the listener held during the flood: the window and a few messages in transit.
    expect(peak - before).toBeLessThan(40 << 20);
    expect(b.counters().linkViolations).toBe(1);
    const after = await settledArrayBuffers();
    console.log(
      `reorder flood: ${sent} MiB accepted before ERR_PROTOCOL, peak held ${(linkB.stats.reorderPeakBytes / 2 ** 20).toFixed(1)} MiB, ` +
        `arrayBuffers ${(before / 2 ** 20).toFixed(1)} → peak ${(peak / 2 ** 20).toFixed(1)} → ${(after / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(after - before).toBeLessThan(16 << 20);
    await honestPeerServed(net, b, bound.v1);
  });

  it("a number beyond the window (2^40, 2^60) or a message shorter than the header fails its session at once with ERR_PROTOCOL", async () => {
    for (const bad of [
      linkMessage(2n ** 40n, new Uint8Array(10)),
      linkMessage(2n ** 60n, new Uint8Array(10)),
      linkMessage(16385n, new Uint8Array(0)),
      [new Uint8Array(3)],
    ]) {
      const { s, linkB, b } = await rawPeerAgainstManager();
      await s.send(bad).catch(() => {});
      const err = await within(s.closed, 2000, "the session's end");
      expect((err as DWCPError).code).toBe("ERR_PROTOCOL");
      expect(linkB.reorder).toEqual({ messages: 0, bytes: 0 });
      expect(b.counters().linkViolations).toBe(1);
      await closeManagers();
    }
  });
});

describe("a live link keeps its credential (item 7)", () => {
  it("an impostor with another certificate claiming a linked node id is refused (ERR_AUTH_FAILED); the honest link gets the next message", async () => {
    const pki = testPki();
    const b = manager({
      nodeId: "node-b",
      v1: { transport: tcp(), psk: PSK },
      // Certificates of two CAs are trusted and ids are taken as declared, so the
      // node admits the impostor: only the manager's credential check stands.
      v3: {
        transport: tls({ ...pki.server, ca: [pki.ca, pki.stranger.ca] }),
        identity: "declared",
      },
      flags: V3_ON,
      detectMode: false,
      assumeMode: "internet",
    });
    const a = manager({
      nodeId: "node-a",
      v1: { transport: tcp(), psk: PSK },
      v3: { transport: tls({ ...pki.client, ca: pki.ca }) },
      flags: V3_ON,
      detectMode: false,
      assumeMode: "internet",
    });
    const bound = await b.listen({ v1: "127.0.0.1:0", v3: "127.0.0.1:0" });
    const linkBReady = new Promise<PeerLink>((r) => b.once("link", r));
    const linkA = await a.connect({ v1: bound.v1, v3: bound.v3! });
    const linkB = await linkBReady;
    await until(() => linkB.v3 !== undefined && linkB.active === "v3", 2000, "B on v3");
    const honestV3 = linkB.v3;
    const refusals: { generation: string; error: DWCPError }[] = [];
    b.on("sessionRefused", (r) => refusals.push(r));

    const impostor = new DWCPNode({
      nodeId: "node-a",
      transport: tls({ cert: pki.stranger.cert, key: pki.stranger.key, ca: pki.ca }),
      versions: [3],
    });
    nodes.push(impostor);
    const stolen: Uint8Array[] = [];
    const s: Session = await impostor.connect(bound.v3!);
    s.on("message", (m) => stolen.push(m.data));
    const gotA: number[] = [];
    linkA.on("message", (m) => gotA.push(m.data.length));

    const err = await within(s.closed, 2000, "the impostor's session end");
    expect(err).toMatchObject({ code: "ERR_AUTH_FAILED" });
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ generation: "v3", error: { code: "ERR_AUTH_FAILED" } });
    expect(b.counters().sessionsRefused).toBe(1);
    expect(linkB.v3).toBe(honestV3);
    await linkB.send(new Uint8Array(321));
    await until(() => gotA.length === 1, 2000, "the honest peer's message");
    expect(gotA).toEqual([321]);
    expect(stolen).toEqual([]);
    expect(linkB.active).toBe("v3");
  });
});

/**
 * `inner`, with accepted connections that stop being read after the second chunk
 * of at least 64 KiB (the mode detector's probe frames): the dialler's next
 * probe frame waits for a drain that never comes.
 */
function stopsReadingInProbe(inner: Transport): Transport {
  const freeze = (conn: Conn): Conn => {
    async function* chunks(): AsyncGenerator<Uint8Array> {
      let big = 0;
      for await (const chunk of conn) {
        yield chunk;
        if (chunk.length >= 64 * 1024 && ++big >= 2) await new Promise(() => {});
      }
    }
    return new Proxy(conn, {
      get(target, p) {
        if (p === Symbol.asyncIterator) return chunks;
        const v = Reflect.get(target, p, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  };
  return {
    name: inner.name,
    dial: (address, options) => inner.dial(address, options),
    listen: (address, onConn, options) => inner.listen(address, (conn) => onConn(freeze(conn)), options),
  };
}

describe("connect() is bounded (item 9)", () => {
  it("a peer that stops reading during the bandwidth probe fails connect() with ERR_HANDSHAKE_TIMEOUT within its 1.5 s limit", async () => {
    const net = new MemoryNetwork();
    const b = manager({
      nodeId: "node-b",
      v1: { transport: stopsReadingInProbe(memory({}, net)), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      detectMode: false,
    });
    const a = manager({
      nodeId: "node-a",
      // A small write buffer: one probe frame fills it, so the probe waits for drain.
      v1: { transport: memory({ writeHighWater: 64 * 1024 }, net), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      connectTimeoutMs: 1500,
    });
    const bound = await b.listen({ v1: "hang1:0" });
    const t0 = performance.now();
    const err = await within(
      a.connect({ v1: bound.v1 }).then(
        () => undefined,
        (e: unknown) => e,
      ),
      5000,
      "connect()",
    );
    const ms = performance.now() - t0;
    expect(err).toBeInstanceOf(DWCPError);
    expect(err).toMatchObject({ code: "ERR_HANDSHAKE_TIMEOUT" });
    expect((err as Error).message).toMatch(/measuring the path/);
    expect(ms).toBeGreaterThanOrEqual(1400);
    expect(ms).toBeLessThan(3000);
    await until(() => a.links.size === 0 && a.v1.sessions.size === 0, 1000, "the half-made link gone");
    // A caller's own signal ends it the same way, with ERR_ABORTED.
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 300);
    await expect(a.connect({ v1: bound.v1 }, { signal: ac.signal })).rejects.toMatchObject({
      code: "ERR_ABORTED",
    });
  });
});
