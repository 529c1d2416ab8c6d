// The rdma transport on the strict fake verbs provider (same dlopen seam as a real
// libibverbs): the compliance suite, proof that the bytes went over verbs, and the
// fallbacks to TCP with their reasons. Real-device tests: test/rdma-device.test.ts.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { crc32c } from "../src/hash/index.js";
import type { Conn } from "../src/transport/contract.js";
import { type RdmaConn, rdma, rdmaAvailability } from "../src/transport/rdma/index.js";
import { onLoopback, transportCompliance } from "./compliance/transport.js";
import { ROOT, runTs } from "./helpers/child.js";
import { native, nativeSkipReason } from "./helpers/native.js";
import { readAllCrc } from "./helpers/read.js";
import { buildFakeVerbs } from "./rig/verbs.js";

const fake = native ? buildFakeVerbs() : { path: "", reason: nativeSkipReason };
if (fake.path) process.env.DWCP_VERBS_LIB = fake.path;
const skip = fake.reason;

transportCompliance(
  "rdma (fake verbs provider)",
  () => {
    const t = rdma({ bufferBytes: 64 * 1024, recvBuffers: 16, sendBuffers: 16 });
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
