// Tunnels: local streams over a link, one channel each, with flow control and
// hostile-peer handling. In-process link pairs; the QEMU tests carry real
// migrations through the same code over a manager's link.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DWCPError } from "../src/errors.js";
import { connectLocal, forwardLocal, Tunnel, type TunnelChannelInfo } from "../src/tunnel/index.js";
import { encodeTunnel, TunnelMessage } from "../src/tunnel/messages.js";
import { channelPair } from "./helpers/channels.js";

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

function dir(): string {
  const d = mkdtempSync(join(tmpdir(), "dwcp-tunnel-"));
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A unix-socket echo server (half-open: it ends its side once the client ended). */
async function echoServer(path: string): Promise<Server> {
  const s = createServer({ allowHalfOpen: true }, (c) => c.pipe(c));
  await new Promise<void>((r) => s.listen(path, r));
  cleanup.push(() => s.close());
  return s;
}

function connect(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const c = createConnection({ path, allowHalfOpen: true });
    c.once("connect", () => resolve(c));
    c.once("error", reject);
  });
}

/** Writes `data`, ends, and collects everything read until the far end ends. */
async function roundTrip(c: Socket, data: Uint8Array): Promise<Buffer> {
  const got: Buffer[] = [];
  c.on("data", (b: Buffer) => got.push(b));
  const ended = new Promise<void>((r) => c.once("end", r));
  c.end(data);
  await ended;
  return Buffer.concat(got);
}

function pair(o: { compression?: "none" | "lz4" | "zstd"; windowBytes?: number } = {}) {
  const [a, b] = channelPair({ lend: true });
  const d = dir();
  const target = join(d, "target.sock");
  const win = o.windowBytes ? { windowBytes: o.windowBytes } : {};
  const src = new Tunnel(a, { compression: o.compression ?? "none", ...win });
  const dst = new Tunnel(b, { connect: connectLocal({ path: target }), ...win });
  cleanup.push(() => {
    src.close();
    dst.close();
  });
  return { a, b, src, dst, target, entry: join(d, "entry.sock") };
}

describe("tunnel", () => {
  for (const compression of ["none", "lz4", "zstd"] as const)
    it(`carries a stream both ways, bit-exact, with ${compression}`, async () => {
      const t = pair({ compression });
      await echoServer(t.target);
      const server = await forwardLocal(t.src, { path: t.entry }, "echo");
      cleanup.push(() => server.close());
      // Half compressible, half not: both paths of the compressor.
      const data = Buffer.concat([randomBytes(6 << 20), Buffer.alloc(6 << 20, "dwcp tunnel ")]);
      const back = await roundTrip(await connect(t.entry), data);
      expect(back.length).toBe(data.length);
      expect(back.equals(data)).toBe(true);
      const s = t.src.stats();
      expect(s.bytesOut).toBe(data.length);
      expect(s.bytesIn).toBe(data.length);
      if (compression === "none") expect(s.wireBytesOut).toBe(data.length);
      else expect(s.wireBytesOut).toBeLessThan(data.length * 0.6);
      await expect.poll(() => t.src.stats().open + t.dst.stats().open).toBe(0);
    });

  it("carries several channels at once, each in order", async () => {
    const t = pair();
    await echoServer(t.target);
    const server = await forwardLocal(t.src, { path: t.entry });
    cleanup.push(() => server.close());
    const inputs = [0, 1, 2, 3].map(() => randomBytes(3 << 20));
    const outs = await Promise.all(inputs.map(async (d) => roundTrip(await connect(t.entry), d)));
    for (const [i, o] of outs.entries()) expect(o.equals(inputs[i]!)).toBe(true);
    expect(t.src.stats().channels).toBe(4);
  });

  it("stops reading a local stream while the far one does not take the bytes", async () => {
    const window = 1 << 20;
    const t = pair({ windowBytes: window });
    // A target that accepts and never reads.
    const held: Socket[] = [];
    const s = createServer((c) => {
      c.pause();
      held.push(c);
    });
    await new Promise<void>((r) => s.listen(t.target, r));
    cleanup.push(() => {
      for (const c of held) c.destroy();
      s.close();
    });
    const server = await forwardLocal(t.src, { path: t.entry });
    cleanup.push(() => server.close());
    const c = await connect(t.entry);
    cleanup.push(() => c.destroy());
    const errs: unknown[] = [];
    t.src.on("end", (_i, e) => errs.push(e));
    t.dst.on("end", (_i, e) => errs.push(e));
    for (let i = 0; i < 64; i++) c.write(Buffer.alloc(1 << 20, i));
    await new Promise((r) => setTimeout(r, 1500));
    expect(errs).toEqual([]);
    // What crossed the link beyond what the target's socket buffers took is one window.
    const crossed = t.dst.stats().bytesIn;
    expect(t.src.stats().bytesOut).toBeLessThan(64 << 20);
    expect(t.src.stats().bytesOut - crossed).toBeLessThanOrEqual(window + (256 << 10));
    expect(c.writableLength).toBeGreaterThan(16 << 20);
  });

  it("keeps twice the forecast's bandwidth-delay product in flight, not the whole window", async () => {
    const [a, b] = channelPair();
    // 160 Mbit/s × 50 ms: a BDP of 1 MB, so 2 MB ahead (raw bytes: no compression).
    const forecast = {
      at: 0,
      samples: 9,
      minRttMs: 50,
      horizons: { "1s": { bps: 160e6 }, "10s": { bps: 160e6 } },
    };
    (a as { forecast?: () => unknown }).forecast = () => forecast;
    const d = dir();
    const held: Socket[] = [];
    const s = createServer((c) => {
      c.pause();
      held.push(c);
    });
    await new Promise<void>((r) => s.listen(join(d, "t.sock"), r));
    const src = new Tunnel(a);
    const dst = new Tunnel(b, { connect: connectLocal({ path: join(d, "t.sock") }) });
    cleanup.push(() => {
      src.close();
      dst.close();
      for (const c of held) c.destroy();
      s.close();
    });
    expect(src.sendWindow()).toBe(2_000_000);
    const server = await forwardLocal(src, { path: join(d, "e.sock") });
    cleanup.push(() => server.close());
    const c = await connect(join(d, "e.sock"));
    cleanup.push(() => c.destroy());
    for (let i = 0; i < 32; i++) c.write(Buffer.alloc(1 << 20, i));
    await new Promise((r) => setTimeout(r, 1000));
    const ahead = src.stats().bytesOut - dst.stats().bytesIn;
    // Everything sent crossed (the in-process link is instant); what the target
    // has not taken is bounded by the adaptive window, far below the 8 MiB one.
    expect(ahead).toBe(0);
    const unread = dst.stats().bytesIn;
    expect(unread).toBeGreaterThan(1 << 20);
    expect(unread).toBeLessThan(2_000_000 + (1 << 20));
  });

  it("refuses the peer's channels without a connect, and the opener's socket ends", async () => {
    const [a, b] = channelPair();
    const src = new Tunnel(a);
    new Tunnel(b); // no connect
    cleanup.push(() => src.close());
    const ended = new Promise<[TunnelChannelInfo, DWCPError | undefined]>((r) =>
      src.once("end", (...x) => r(x)),
    );
    const d = dir();
    const server = await forwardLocal(src, { path: join(d, "e.sock") });
    cleanup.push(() => server.close());
    const c = await connect(join(d, "e.sock"));
    cleanup.push(() => c.destroy());
    const closed = new Promise((r) => c.once("end", r));
    const [, err] = await ended;
    expect(err?.code).toBe("ERR_UNSUPPORTED");
    expect(err?.remote).toBe(true);
    await closed;
  });

  it("fails a connect that cannot reach its target with ERR_CONNECT on both ends", async () => {
    const t = pair();
    const ends = [t.src, t.dst].map(
      (x) => new Promise<DWCPError | undefined>((r) => x.once("end", (_i, e) => r(e))),
    );
    const server = await forwardLocal(t.src, { path: t.entry });
    cleanup.push(() => server.close());
    await connect(t.entry);
    const [srcErr, dstErr] = await Promise.all(ends);
    expect(dstErr?.code).toBe("ERR_CONNECT");
    expect(srcErr?.code).toBe("ERR_CONNECT");
  });

  it("ends every channel and its local socket when the link ends", async () => {
    const t = pair();
    await echoServer(t.target);
    const server = await forwardLocal(t.src, { path: t.entry });
    cleanup.push(() => server.close());
    const c = await connect(t.entry);
    c.write("hello");
    await new Promise<void>((r) => c.once("data", () => r()));
    const ended = new Promise<DWCPError | undefined>((r) => t.src.once("end", (_i, e) => r(e)));
    const closed = new Promise((r) => c.once("end", r));
    t.a.cut(new DWCPError("ERR_CLOSED", "link gone"));
    expect((await ended)?.code).toBe("ERR_CLOSED");
    await closed;
    expect(() => t.src.open(createConnection({ path: t.entry }))).toThrow(/link gone/);
  });
});

describe("tunnel against a hostile peer", () => {
  /** A tunnel whose peer is the test: messages sent raw on `b`. */
  async function opened(window = 1 << 20) {
    const [a, b] = channelPair();
    const d = dir();
    const target = join(d, "t.sock");
    // A target that never reads: nothing the peer sends is credited back.
    const held: Socket[] = [];
    const s = createServer((c) => {
      c.pause();
      held.push(c);
    });
    await new Promise<void>((r) => s.listen(target, r));
    cleanup.push(() => {
      for (const c of held) c.destroy();
      s.close();
    });
    const t = new Tunnel(a, { connect: connectLocal({ path: target }), windowBytes: window });
    cleanup.push(() => t.close());
    const resets: string[] = [];
    b.on("message", ({ data }) => {
      if (data[4] === TunnelMessage.RESET) resets.push(Buffer.from(data.subarray(12)).toString());
    });
    const end = new Promise<DWCPError | undefined>((r) => t.once("end", (_i, e) => r(e)));
    await b.send(encodeTunnel(TunnelMessage.OPEN, 7, true, Buffer.from("x")));
    return { t, b, resets, end };
  }

  it("resets a channel whose peer sends beyond its window (ERR_PROTOCOL), holding no more than it", async () => {
    const p = await opened(1 << 20);
    // Unix socket buffers take a few hundred KiB; 24 MiB is far beyond them and the window.
    for (let i = 0; i < 96; i++)
      await p.b.send(encodeTunnel(TunnelMessage.DATA, 7, true, new Uint8Array(256 << 10)));
    expect((await p.end)?.code).toBe("ERR_PROTOCOL");
    await expect.poll(() => p.resets.length).toBe(1);
    expect(p.resets[0]).toMatch(/^ERR_PROTOCOL /);
  });

  it("resets a channel on a corrupt compressed chunk (ERR_CORRUPT_PAYLOAD)", async () => {
    const p = await opened();
    await p.b.send(encodeTunnel(TunnelMessage.DATA, 7, true, randomBytes(1000), 1));
    expect((await p.end)?.code).toBe("ERR_CORRUPT_PAYLOAD");
  });

  it("resets on a credit for bytes never sent", async () => {
    const p = await opened();
    const c = new Uint8Array(4);
    new DataView(c.buffer).setUint32(0, 1000, true);
    // The test's channel 7 was opened by the peer: a credit the tunnel's side never earned.
    await p.b.send(encodeTunnel(TunnelMessage.CREDIT, 7, true, c));
    expect((await p.end)?.code).toBe("ERR_PROTOCOL");
  });

  it("closes the whole tunnel on a broken header, and ignores messages of channels it does not know", async () => {
    const p = await opened();
    await p.b.send(encodeTunnel(TunnelMessage.DATA, 99, true, new Uint8Array(10)));
    expect(p.t.stats().open).toBe(1);
    const bad = encodeTunnel(TunnelMessage.END, 7, true);
    bad[6] = 1; // reserved
    await p.b.send(bad);
    expect((await p.end)?.code).toBe("ERR_PROTOCOL");
    expect(p.t.stats().open).toBe(0);
  });
});
