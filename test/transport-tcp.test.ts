import { describe, expect } from "vitest";
import { tcp } from "../src/transport/tcp/index.js";
import { congestionControl } from "../src/transport/tcp/tcpinfo.js";
import { onLoopback, transportCompliance } from "./compliance/transport.js";
import { lendingTcp } from "./helpers/lending.js";
import { itNative } from "./helpers/native.js";

// Plain, and with reads into lent buffers on both sides (the accepted socket's
// handle moved to a socket made with onread); nothing here releases, so every
// chunk stays the reader's.
for (const [name, make] of [
  ["tcp", () => tcp()],
  ["tcp, lent reads", lendingTcp],
] as const) {
  transportCompliance(name, () => onLoopback(make()));
}

describe("tcp transport socket options", () => {
  itNative("applies the requested congestion control per socket (TCP_CONGESTION)", async () => {
    const t = tcp({ congestion: "cubic" });
    let accepted: import("../src/transport/contract.js").Conn | undefined;
    const listener = await t.listen("127.0.0.1:0", (c) => {
      accepted = c;
    });
    const conn = await t.dial(listener.address);
    await new Promise((r) => setTimeout(r, 20));
    expect(congestionControl(conn.socket!)).toBe("cubic");
    expect(congestionControl(accepted!.socket!)).toBe("cubic");
    conn.abort();
    accepted?.abort();
    await listener.close();
  });
});

describe("tcp direct writes (native writev while Node has nothing queued)", () => {
  // The reader stalls now and then until the kernel's buffers are full: writes go
  // straight to the kernel, stop part-way (EAGAIN), leave the rest to Node's
  // socket, and go direct again once Node has drained. Every byte must arrive once
  // and in order, whichever way it went. A stall lasts until a write was queued
  // (bounded by 2 s), not a fixed time: how much the kernel holds depends on the
  // machine's tcp_rmem/tcp_wmem, and a short fixed stall may never fill it.
  itNative(
    "random chunks through a stalling reader arrive in order; both paths were used",
    async () => {
      const t = tcp();
      const total = 96 << 20;
      let received = 0;
      let mismatch = -1;
      let finish!: (err?: unknown) => void;
      const done = new Promise<void>((resolve, reject) => {
        finish = (err) => (err ? reject(err) : resolve());
      });
      let stats: { direct: number; queued: number } | undefined;
      let stalls = 0;
      const listener = await t.listen("127.0.0.1:0", (c) => {
        void (async () => {
          let n = 0;
          for await (const chunk of c) {
            for (let i = 0; i < chunk.length; i++) {
              if (mismatch < 0 && chunk[i] !== ((received + i) * 31) % 251) mismatch = received + i;
            }
            received += chunk.length;
            if (++n % 64 === 0 && stalls < 8) {
              stalls++;
              const queued = stats?.queued ?? 0;
              const until = Date.now() + 2000;
              while ((stats?.queued ?? 0) === queued && Date.now() < until && received < total) {
                await new Promise((r) => setTimeout(r, 2));
              }
            }
            if (received >= total) break;
          }
        })().then(() => finish(), finish);
      });
      const conn = await t.dial(listener.address);
      stats = (conn as unknown as { writeStats: { direct: number; queued: number } }).writeStats;
      let sent = 0;
      let seed = 12345;
      while (sent < total) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const len = Math.min(total - sent, 1 + (seed % (300 << 10)));
        const chunk = new Uint8Array(len);
        for (let i = 0; i < len; i++) chunk[i] = ((sent + i) * 31) % 251;
        sent += len;
        if (!conn.send(chunk)) await conn.onDrain();
        // Now and then yield a turn: the reader frees kernel buffer space while Node
        // may still hold bytes from a partial write, which must go out first.
        else if (seed % 3 === 0) await new Promise((r) => setImmediate(r));
      }
      await done;
      await conn.close();
      await listener.close();
      expect(mismatch).toBe(-1);
      expect(received).toBe(total);
      expect(stats.direct + stats.queued).toBe(total);
      expect(stats.direct).toBeGreaterThan(0);
      expect(stats.queued).toBeGreaterThan(0);
    },
    60_000,
  );
});
