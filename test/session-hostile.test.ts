// A session against a peer that authenticated and then misbehaves (issue #15 §4):
// floods of empty messages and of Pings must stay within stated bounds, and a
// node must not let handshakes outlive close() (§12).
import { afterEach, describe, expect, it } from "vitest";
import { PathProber } from "../src/path/prober.js";
import { DWCPNode } from "../src/session/node.js";
import { MESSAGE_OVERHEAD, type Session } from "../src/session/session.js";
import type { Conn, Listener } from "../src/transport/contract.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { FrameFlags, FrameType } from "../src/wire/frame.js";
import { hostilePeer } from "./helpers/hostile-peer.js";
import { PSK } from "./helpers/nodes.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => {});
});

/** A listening node and a raw connection to it whose handshake a test drives. */
async function listenerAndConn(
  transport = memory({}, new MemoryNetwork()),
  options: Partial<ConstructorParameters<typeof DWCPNode>[0]> = {},
): Promise<{ node: DWCPNode; listener: Listener; conn: Conn; session: Promise<Session> }> {
  const node = new DWCPNode({ nodeId: "server", transport, psk: PSK, ...options });
  const session = new Promise<Session>((resolve, reject) => {
    node.once("session", resolve);
    node.once("handshakeError", reject);
  });
  const listener = await node.listen(transport.name === "memory" ? "hostile:0" : "127.0.0.1:0");
  cleanup.push(
    () => node.close({ timeoutMs: 500 }),
    () => listener.close(),
  );
  const conn = await transport.dial(listener.address);
  cleanup.push(async () => conn.abort());
  return { node, listener, conn, session };
}

const batchOfEmpty = (n: number) => new Uint8Array(4 * n); // n entries of length 0

describe("an authenticated peer flooding a session", () => {
  it("262,144 empty messages to a reader that does not read: at most 16,384 queued, heap +< 24 MiB", async () => {
    const { conn, session } = await listenerAndConn();
    const peer = await hostilePeer(conn, { read: false });
    const b = await session;
    const heap0 = process.memoryUsage().heapUsed;
    // 4 BATCH frames of 65,536 empty entries each: 4 bytes on the wire per message.
    let id = 1;
    for (let f = 0; f < 4; f++) {
      peer.frame(
        {
          type: FrameType.DATA,
          flags: FrameFlags.END | FrameFlags.BATCH,
          streamId: 0,
          messageId: id,
          offset: 0,
          codecId: 0,
        },
        batchOfEmpty(65536),
      );
      id += 65536;
    }
    await new Promise((r) => setTimeout(r, 300));
    const heapGrowth = process.memoryUsage().heapUsed - heap0;
    console.log(
      `empty-message flood: ${b.queuedMessages} queued, ${b.stats.messagesReceived} received, heap +${(heapGrowth / 2 ** 20).toFixed(1)} MiB`,
    );
    expect(b.queuedMessages).toBeLessThanOrEqual(16384);
    expect(heapGrowth).toBeLessThan(24 * 2 ** 20);
    // Reading resumes delivery where the batch stopped: every message arrives, in order.
    let n = 0;
    for await (const m of b) {
      expect(m.id).toBe(++n);
      expect(m.length).toBe(0);
      if (n === 4 * 65536) break;
    }
    expect(n).toBe(4 * 65536);
  });

  it("each queued message is charged its overhead: 300,000 empty messages stop at receiveQueueBytes / 64", async () => {
    const { conn, session } = await listenerAndConn(undefined, {
      receiveQueueBytes: 1 << 20,
      receiveQueueMessages: 1 << 30,
    });
    const peer = await hostilePeer(conn, { read: false });
    const b = await session;
    peer.frame(
      {
        type: FrameType.DATA,
        flags: FrameFlags.END | FrameFlags.BATCH,
        streamId: 0,
        messageId: 1,
        offset: 0,
        codecId: 0,
      },
      batchOfEmpty(150_000),
    );
    peer.frame(
      {
        type: FrameType.DATA,
        flags: FrameFlags.END | FrameFlags.BATCH,
        streamId: 0,
        messageId: 150_001,
        offset: 0,
        codecId: 0,
      },
      batchOfEmpty(150_000),
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(b.queuedBytes).toBe(0);
    expect(b.queuedMessages).toBeLessThanOrEqual((1 << 20) / MESSAGE_OVERHEAD);
    expect(b.queuedMessages).toBeGreaterThan(0);
  });

  it("a Ping flood from a peer that never reads: the outbound buffer stays under 4 MiB + one Pong (tcp)", async () => {
    const { conn, session } = await listenerAndConn(tcp());
    const peer = await hostilePeer(conn, { read: false });
    const b = await session;
    // 1,000,000 Pings (~47 MB); each would be answered by a ~50-byte Pong.
    let maxBuffered = 0;
    for (let i = 1; i <= 1_000_000; i++) {
      if (!peer.control({ ping: { id: i, sentAtUs: i } })) await conn.onDrain();
      if (i % 50_000 === 0) maxBuffered = Math.max(maxBuffered, b.conn.bufferedAmount);
    }
    await new Promise((r) => setTimeout(r, 200));
    maxBuffered = Math.max(maxBuffered, b.conn.bufferedAmount);
    console.log(`Ping flood: listener's outbound buffer peaked at ${(maxBuffered / 2 ** 20).toFixed(2)} MiB`);
    expect(maxBuffered).toBeLessThan(4 * 2 ** 20 + 1024);
    expect(b.state).toBe("open");
  });
});

describe("a peer that stops reading during a bandwidth probe", () => {
  it("the probe's wait for drain ends: ERR_TIMEOUT after timeoutMs, ERR_ABORTED when the signal fires (tcp)", async () => {
    const { conn, session } = await listenerAndConn(tcp());
    const peer = await hostilePeer(conn, { read: false });
    const b = await session;
    expect(peer.remote.nodeId).toBe("server");
    const t0 = performance.now();
    await expect(PathProber.of(b).probe(512 << 20, { timeoutMs: 300 })).rejects.toMatchObject({
      code: "ERR_TIMEOUT",
    });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    await expect(
      PathProber.of(b).probe(512 << 20, { timeoutMs: 60_000, signal: ac.signal }),
    ).rejects.toMatchObject({
      code: "ERR_ABORTED",
    });
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});

describe("DWCPNode.close() and handshakes in flight", () => {
  it("ends handshakes still in progress before it resolves, and emits no session after", async () => {
    const network = new MemoryNetwork();
    const transport = memory({}, network);
    const node = new DWCPNode({ nodeId: "server", transport, psk: PSK });
    const sessions: Session[] = [];
    node.on("session", (s) => sessions.push(s));
    node.on("handshakeError", () => {});
    const listener = await node.listen("closing:0");
    // Five peers that greet and then stall mid-handshake, and one honest client.
    const stalled = await Promise.all(Array.from({ length: 5 }, () => transport.dial(listener.address)));
    const client = new DWCPNode({ nodeId: "client", transport, psk: PSK });
    const connecting = client.connect(listener.address).catch((e) => e);
    await new Promise((r) => setTimeout(r, 1));
    expect(node.metrics().pendingHandshakes).toBeGreaterThan(0);
    await node.close({ timeoutMs: 1000 });
    expect(node.metrics().pendingHandshakes).toBe(0);
    const after = sessions.length;
    await connecting;
    await new Promise((r) => setTimeout(r, 100));
    expect(sessions.length).toBe(after);
    for (const s of sessions) expect(s.state).toBe("closed");
    await expect(node.connect(listener.address)).rejects.toMatchObject({ code: "ERR_CLOSED" });
    for (const c of stalled) c.abort();
    await client.close({ timeoutMs: 200 });
  });
});
