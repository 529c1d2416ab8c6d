// The rdma transport on the strict fake verbs provider (same dlopen seam as a real
// libibverbs): the compliance suite, proof that the bytes went over verbs, and the
// fallbacks to TCP with their reasons. Real-device tests: test/rdma-device.test.ts.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { DWCPError } from "../src/errors.js";
import { crc32c } from "../src/hash/index.js";
import { loadNative } from "../src/native/load.js";
import type { Conn } from "../src/transport/contract.js";
import { type RdmaConn, type RdmaListener, rdma, rdmaAvailability } from "../src/transport/rdma/index.js";
import { controlFrame } from "../src/wire/control.js";
import { FrameDecoder, FrameType } from "../src/wire/frame.js";
import { decodeControl } from "../src/wire/proto.js";
import { onLoopback, transportCompliance } from "./compliance/transport.js";
import { until } from "./helpers/amst-raw.js";
import { ROOT, runTs } from "./helpers/child.js";
import { native, nativeSkipReason } from "./helpers/native.js";
import { readAllCrc } from "./helpers/read.js";
import { buildFakeVerbs } from "./rig/verbs.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const fake = native ? buildFakeVerbs() : { path: "", reason: nativeSkipReason };
if (fake.path) process.env.DWCP_VERBS_LIB = fake.path;
const skip = fake.reason;

transportCompliance(
  "rdma (fake verbs provider)",
  () => {
    // No session authenticates these connections, and the suite holds 16 at once.
    const t = rdma({ bufferBytes: 64 * 1024, recvBuffers: 16, sendBuffers: 16, maxPendingSetups: 32 });
    return onLoopback(t);
  },
  skip,
);

async function pair(t = rdma({ bufferBytes: 64 * 1024, recvBuffers: 8, sendBuffers: 8 })) {
  let accept!: (c: Conn) => void;
  const accepted = new Promise<Conn>((r) => {
    accept = r;
  });
  const listener = await t.listen("127.0.0.1:0", accept);
  const client = (await t.dial(listener.address)) as RdmaConn;
  const server = (await accepted) as RdmaConn;
  return { client, server, listener };
}

describe.skipIf(Boolean(skip))(`rdma on the fake provider${skip ? ` [skipped: ${skip}]` : ""}`, () => {
  it("moves 64 MiB over verbs: every byte in a SEND, credits bounding what is in flight", async () => {
    expect(rdmaAvailability()).toMatchObject({ available: true, devices: ["fake0"] });
    const { client, server, listener } = await pair();
    expect(client.transport).toBe("rdma");
    expect(client.rdma).toMatchObject({ active: true, device: "fake0" });
    const data = randomFillSync(new Uint8Array(64 << 20));
    const got = readAllCrc(server);
    for (let off = 0; off < data.length; off += 1 << 20) {
      if (!client.send(data.subarray(off, off + (1 << 20)))) await client.onDrain();
    }
    await Promise.all([client.close(), server.close()]);
    const r = await got;
    expect(r.n).toBe(data.length);
    expect(r.crc).toBe(crc32c(data));
    expect(client.stats.bytesSent).toBe(data.length);
    expect(server.stats.bytesReceived).toBe(data.length);
    expect(client.stats.sends).toBeGreaterThanOrEqual(data.length / (64 * 1024));
    // Only setup and end frames went over TCP.
    expect(client.stats.controlBytes + server.stats.controlBytes).toBeLessThan(4096);
    // The receiver returned credits; with 8 receive buffers the sender could never
    // have had more than 8 SENDs outstanding, and none was refused.
    expect(server.stats.creditMessages + server.stats.sends).toBeGreaterThan(0);
    await listener.close();
  });

  it("a reader that stops reading stops the sender (no repost, no credits), and nothing is lost", async () => {
    const { client, server, listener } = await pair();
    const data = randomFillSync(new Uint8Array(32 << 20));
    let sawBackpressure = false;
    const sending = (async () => {
      for (let off = 0; off < data.length; off += 256 * 1024) {
        if (!client.send(data.subarray(off, off + 256 * 1024))) {
          sawBackpressure = true;
          await client.onDrain();
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    // Everything the receiver took without reading is bounded by its read buffer,
    // and the sender is stuck behind its credits.
    expect(server.stats.bytesReceived).toBeLessThan(16 << 20);
    let n = 0;
    let crc = 0;
    for await (const c of server) {
      n += c.length;
      crc = crc32c(c, crc);
      if (n >= data.length) break;
    }
    await sending;
    expect(sawBackpressure).toBe(true);
    expect(n).toBe(data.length);
    expect(crc).toBe(crc32c(data));
    client.abort();
    server.abort();
    await listener.close();
  });
});

/** What a raw TCP peer of an rdma listener got first: its RdmaInfo, or an Error frame's code. */
function firstControl(sock: Socket): { got: string | undefined } {
  const r: { got: string | undefined } = { got: undefined };
  const decoder = new FrameDecoder(1 << 16);
  sock.on("data", (chunk: Buffer) => {
    decoder.push(chunk);
    for (let f = decoder.next(); f; f = decoder.next()) {
      if (f.type !== FrameType.CONTROL || r.got) continue;
      const m = decodeControl(f.payload);
      r.got = "error" in m ? m.error.code : Object.keys(m)[0];
    }
  });
  sock.on("error", () => {});
  return r;
}

describe.skipIf(Boolean(skip))(
  `rdma setups before authentication${skip ? ` [skipped: ${skip}]` : ""}`,
  () => {
    const opts = { bufferBytes: 64 * 1024, recvBuffers: 8, sendBuffers: 8 };

    it("20 TCP peers that never authenticate: at most maxPendingSetups (2) hold a device and registered pools (<= 4 registrations, arrayBuffers +< 4 MiB), 18 refused with ERR_CONNECT; the slots free on close and on authenticated(); then an honest dialler moves 8 MiB", async () => {
      // Counted at the addon's door: every device opened through it counts its registrations.
      const binding = loadNative().binding!;
      const Device = binding.RdmaDevice!;
      let registrations = 0;
      binding.RdmaDevice = class extends Device {
        override register(bytes: Uint8Array): number {
          registrations++;
          return super.register(bytes);
        }
      } as typeof Device;
      try {
        const accepted: RdmaConn[] = [];
        const listener = (await rdma({ ...opts, maxPendingSetups: 2 }).listen("127.0.0.1:0", (c) =>
          accepted.push(c as RdmaConn),
        )) as RdmaListener;
        const [host, port] = listener.address.split(":") as [string, string];
        gc();
        const before = process.memoryUsage().arrayBuffers;
        const socks = Array.from({ length: 20 }, () => connect(Number(port), host));
        const replies = socks.map(firstControl);
        await until(() => replies.every((r) => r.got), 10_000, "an answer on every connection");
        const grown = process.memoryUsage().arrayBuffers - before;
        console.log(
          `20 unauthenticated rdma peers: ${registrations} registrations, arrayBuffers +${(grown / 2 ** 20).toFixed(2)} MiB`,
        );
        expect(registrations).toBeLessThanOrEqual(4);
        expect(grown).toBeLessThan(4 * 2 ** 20);
        const codes = replies.map((r) => r.got).sort();
        expect(codes).toEqual([...Array(18).fill("ERR_CONNECT"), "rdma", "rdma"]);
        expect(listener.stats).toEqual({ pendingSetups: 2, refusedSetups: 18 });
        // A real dialler is refused with the code as well.
        const refused = await rdma(opts)
          .dial(listener.address)
          .catch((e: DWCPError) => e);
        expect(refused).toBeInstanceOf(DWCPError);
        expect((refused as DWCPError).code).toBe("ERR_CONNECT");
        // The peers hang up: their setups fail and free the slots (and the devices).
        for (const s of socks) s.destroy();
        await until(() => listener.stats.pendingSetups === 0, 5000, "the setups to be released");
        const client = (await rdma(opts).dial(listener.address)) as RdmaConn;
        const server = await until(() => accepted[0]);
        expect(server.rdma.active).toBe(true);
        expect(listener.stats.pendingSetups).toBe(1);
        server.authenticated();
        expect(listener.stats.pendingSetups).toBe(0);
        const data = randomFillSync(new Uint8Array(8 << 20));
        const got = readAllCrc(server);
        client.send(data);
        await client.close();
        expect(await got).toEqual({ n: data.length, crc: crc32c(data) });
        await server.close();
        await listener.close();
      } finally {
        binding.RdmaDevice = Device;
      }
    });

    it("an accepted rdma connection not authenticated within preAuthTimeoutMs (300 ms) is aborted with ERR_HANDSHAKE_TIMEOUT; an authenticated one is not", async () => {
      const accepted: RdmaConn[] = [];
      const listener = (await rdma({ ...opts, preAuthTimeoutMs: 300 }).listen("127.0.0.1:0", (c) =>
        accepted.push(c as RdmaConn),
      )) as RdmaListener;
      const idle = (await rdma(opts).dial(listener.address)) as RdmaConn;
      const kept = (await rdma(opts).dial(listener.address)) as RdmaConn;
      await until(() => accepted.length === 2);
      accepted[1]!.authenticated();
      const err = await new Promise<Error | undefined>((r) => accepted[0]!.once("close", r));
      expect((err as DWCPError).code).toBe("ERR_HANDSHAKE_TIMEOUT");
      await until(() => idle.status !== "open", 5000, "the dialler to see the abort");
      expect(listener.stats.pendingSetups).toBe(0);
      await new Promise((r) => setTimeout(r, 400));
      expect(accepted[1]!.status).toBe("open");
      const got = readAllCrc(accepted[1]!);
      kept.send(new Uint8Array(1 << 20).fill(7));
      await kept.close();
      expect((await got).n).toBe(1 << 20);
      await accepted[1]!.close();
      await listener.close();
    });
  },
);

/** Runs a probe of the rdma situation in a child with `env`; returns what it reports. */
function probeChild(env: Record<string, string>): string {
  const r = runTs(
    `import { rdmaAvailability } from "./src/transport/rdma/index.js";
     import { nativeStatus } from "./src/index.js";
     console.log(JSON.stringify({ a: rdmaAvailability(), s: nativeStatus().features.rdma }));`,
    env,
  );
  if (r.status !== 0) throw new Error(`probe child failed: ${r.stderr}`);
  return r.stdout;
}

describe.skipIf(Boolean(skip))(`rdma against a malformed peer${skip ? ` [skipped: ${skip}]` : ""}`, () => {
  it.each([
    ["a 4-byte GID", { gid: Uint8Array.of(1, 2, 3, 4) }],
    ["a 17-byte GID", { gid: new Uint8Array(17) }],
    ["a QPN above 24 bits", { qpNum: 2 ** 24 }],
    ["MTU 6", { mtu: 6 }],
  ])(
    "a peer whose queue pair has %s is refused with ERR_PROTOCOL before verbs see it",
    async (_what, bad) => {
      // A fake listener: reads the dialler's RdmaInfo, answers with a malformed one.
      const server = createServer((sock) => {
        sock.on("error", () => {});
        sock.once("data", () =>
          sock.write(
            controlFrame({
              rdma: {
                capable: true,
                device: "x",
                qpNum: 1,
                psn: 1,
                lid: 1,
                gid: new Uint8Array(16),
                mtu: 3,
                recvBuffers: 8,
                bufferBytes: 65536,
                ...bad,
              },
            }),
          ),
        );
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      const { port } = server.address() as { port: number };
      const err = await rdma({ bufferBytes: 64 * 1024, recvBuffers: 8, sendBuffers: 8 })
        .dial(`127.0.0.1:${port}`)
        .catch((e: unknown) => e);
      server.close();
      expect(err).toBeInstanceOf(DWCPError);
      expect(err).toMatchObject({ code: "ERR_PROTOCOL" });
    },
  );
});

describe("rdma falls back to TCP and says why", () => {
  it.skipIf(Boolean(skip))(`no device (empty list)${skip ? ` [skipped: ${skip}]` : ""}`, async () => {
    const r = JSON.parse(probeChild({ DWCP_VERBS_LIB: fake.path, FAKEVERBS_DEVICES: "0" }));
    expect(r.a).toMatchObject({ available: false, reason: "no RDMA devices" });
    expect(r.s).toEqual({ native: false, detail: "no RDMA devices" });
  });

  it.skipIf(Boolean(skip))(`no kernel support (ENOSYS)${skip ? ` [skipped: ${skip}]` : ""}`, async () => {
    const r = JSON.parse(probeChild({ DWCP_VERBS_LIB: fake.path, FAKEVERBS_ENOSYS: "1" }));
    expect(r.a.available).toBe(false);
    expect(r.a.reason).toMatch(/Function not implemented/);
  });

  it.skipIf(!native)(`no library${native ? "" : ` [skipped: ${nativeSkipReason}]`}`, async () => {
    const r = JSON.parse(probeChild({ DWCP_VERBS_LIB: "/nonexistent/libibverbs.so.1" }));
    expect(r.a.available).toBe(false);
    expect(r.a.reason).toMatch(/cannot load \/nonexistent\/libibverbs\.so\.1/);
  });

  const canHide = process.getuid?.() === 0 && spawnSync("sh", ["-c", "command -v unshare"]).status === 0;
  const hideReason = !native ? nativeSkipReason : canHide ? "" : "needs root and unshare (util-linux)";
  it.skipIf(Boolean(hideReason))(
    `libibverbs hidden from the process (private mount namespace)${hideReason ? ` [skipped: ${hideReason}]` : ""}`,
    () => {
      const lib = execFileSync(
        "sh",
        ["-c", "ls /lib/*/libibverbs.so.1 /usr/lib/*/libibverbs.so.1 2>/dev/null | head -1"],
        {
          encoding: "utf8",
        },
      ).trim();
      const script = `import { rdmaAvailability } from "./src/transport/rdma/index.js"; console.log(JSON.stringify(rdmaAvailability()));`;
      const cmd = lib
        ? `mount --bind /dev/null ${lib} && exec node --import tsx -e '${script}'`
        : `exec node --import tsx -e '${script}'`;
      const out = execFileSync("unshare", ["-m", "sh", "-c", cmd], {
        encoding: "utf8",
        env: { ...process.env, DWCP_VERBS_LIB: "" },
      });
      const r = JSON.parse(out);
      expect(r.available).toBe(false);
      expect(r.reason).toMatch(/cannot load libibverbs\.so\.1/);
    },
  );

  it("without the addon (DWCP_NATIVE=0)", async () => {
    const r = JSON.parse(probeChild({ DWCP_NATIVE: "0" }));
    expect(r.a.available).toBe(false);
    expect(r.a.reason).toMatch(/native addon not loaded/);
    expect(r.s.native).toBe(false);
  });

  it.skipIf(Boolean(skip))(
    `the peer has no RDMA: the same TCP connection carries the bytes${skip ? ` [skipped: ${skip}]` : ""}`,
    async () => {
      // This side has the (fake) device; the peer is a child whose addon cannot
      // load any verbs library.
      let accept!: (c: Conn) => void;
      const accepted = new Promise<Conn>((r) => {
        accept = r;
      });
      const listener = await rdma().listen("127.0.0.1:0", accept);
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          "--input-type=module",
          "-e",
          `import { rdma } from "./src/transport/rdma/index.js";
           const c = await rdma().dial(process.env.ADDR);
           c.send(Buffer.from("pong"));
           const chunks = [];
           for await (const b of c) chunks.push(Buffer.from(b));
           await c.close();
           console.log(JSON.stringify({ transport: c.transport, rdma: c.rdma, got: Buffer.concat(chunks).length }));`,
        ],
        {
          cwd: ROOT,
          env: { ...process.env, DWCP_VERBS_LIB: "/nonexistent/libibverbs.so.1", ADDR: listener.address },
          stdio: ["ignore", "pipe", "inherit"],
        },
      );
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
      });
      const server = (await accepted) as RdmaConn;
      expect(server.transport).toBe("tcp");
      expect(server.rdma.active).toBe(false);
      expect(server.rdma.reason).toMatch(/^the peer has no RDMA: cannot load \/nonexistent/);
      const data = randomFillSync(new Uint8Array(5 << 20));
      const reply = (async () => {
        const parts: Uint8Array[] = [];
        for await (const c of server) parts.push(c);
        return Buffer.concat(parts).toString();
      })();
      server.send(data);
      void server.close();
      expect(await reply).toBe("pong");
      await new Promise((r) => child.once("exit", r));
      const r = JSON.parse(out);
      expect(r).toMatchObject({ transport: "tcp", got: data.length });
      expect(r.rdma.reason).toMatch(/cannot load \/nonexistent/);
      await listener.close();
    },
  );
});
