// RDMA on a real verbs device. Runs where one exists; `.ci/run` runs this file
// inside a qemu guest with Soft-RoCE (test/rig/rxe-guest.sh) because this
// machine's kernel has no RDMA. Everywhere else it is listed as skipped.
// Correctness only: no speed is measured or claimed from an emulated device.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { Conn } from "../src/transport/contract.js";
import { type RdmaConn, rdma, rdmaAvailability } from "../src/transport/rdma/index.js";
import { onLoopback, transportCompliance } from "./compliance/transport.js";
import { exchange } from "./fixtures/rdma-pattern.js";
import { ROOT } from "./helpers/child.js";
import { within } from "./helpers/managers.js";

const avail = rdmaAvailability();
const skip = avail.available
  ? ""
  : `needs a verbs device (${avail.reason}); .ci/run runs this file in the Soft-RoCE guest: test/rig/rxe-guest.sh`;
// In the guest a missing device is a failure, not a skip.
if (process.env.DWCP_RDMA_REQUIRED === "1" && !avail.available)
  throw new Error(`DWCP_RDMA_REQUIRED=1: ${skip}`);
const EACH_WAY = Number(process.env.DWCP_RDMA_MIB ?? 128) << 20;

transportCompliance(
  `rdma on ${avail.devices[0] ?? "a real device"}`,
  () => {
    const t = rdma({ bufferBytes: 64 * 1024, recvBuffers: 16, sendBuffers: 16 });
    return onLoopback(t);
  },
  skip,
);

function counters(dev: string): Record<string, number> {
  const dir = `/sys/class/infiniband/${dev}/ports/1/hw_counters`;
  const out: Record<string, number> = {};
  for (const name of ["sent_pkts", "rcvd_pkts", "rdma_sends", "rdma_recvs"]) {
    try {
      out[name] = Number(readFileSync(`${dir}/${name}`, "utf8"));
    } catch {
      // Not every provider has every counter.
    }
  }
  return out;
}

describe.skipIf(Boolean(skip))(`rdma between two processes${skip ? ` [skipped: ${skip}]` : ""}`, () => {
  it(`exchanges ${(2 * EACH_WAY) >> 20} MiB over verbs with checksums, counted by the device`, {
    timeout: 780_000,
  }, async () => {
    const dev = avail.devices[0]!;
    const before = counters(dev);
    let accept!: (c: Conn) => void;
    const accepted = new Promise<Conn>((r) => {
      accept = r;
    });
    const listener = await rdma().listen("127.0.0.1:0", accept);
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "test/fixtures/rdma-peer.ts", listener.address, `${EACH_WAY}`],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      err += d;
      process.stderr.write(d);
    });
    const exited = new Promise<string>((r) => child.once("exit", (code, signal) => r(`${code ?? signal}`)));
    // Every wait is bounded and a failure says what each side saw: a peer that
    // dies before connecting (its setup refused or timed out) must not leave
    // this test waiting for the guest's own timeout.
    let conn: RdmaConn | undefined;
    const state = () =>
      `parent ${JSON.stringify(conn?.stats)}, child exit ${child.exitCode ?? child.signalCode}, child stderr: ${err.slice(-2000)}`;
    try {
      conn = (await Promise.race([
        within(accepted, 60_000, "the peer's connection"),
        exited.then((how) => {
          throw new Error(`the peer exited (${how}) before its connection was accepted: ${err.slice(-2000)}`);
        }),
      ])) as RdmaConn;
      // No session above this raw transport authenticates the peer; without this
      // the listener's pre-authentication limit (30 s) would abort a long exchange.
      conn.authenticated();
      expect(conn.transport).toBe("rdma");
      expect(conn.rdma.active).toBe(true);
      const got = await within(exchange(conn, EACH_WAY, 1), 600_000, "the exchange").catch((e: Error) => {
        throw new Error(`${e.message}; ${state()}`);
      });
      await within(exited, 60_000, "the peer's exit").catch((e: Error) => {
        throw new Error(`${e.message}; ${state()}`);
      });
      const peer = JSON.parse(out);
      // Both directions complete and bit-exact.
      expect(got.received).toBe(EACH_WAY);
      expect(peer.received).toBe(EACH_WAY);
      expect(got.crcReceived).toBe(peer.crcSent);
      expect(peer.crcReceived).toBe(got.crcSent);
      // Over verbs, not TCP: our counters, the control connection's few bytes, and the device's own packet counters.
      expect(peer.transport).toBe("rdma");
      expect(conn.stats.bytesSent).toBe(EACH_WAY);
      expect(conn.stats.bytesReceived).toBe(EACH_WAY);
      expect(conn.stats.controlBytes + peer.stats.controlBytes).toBeLessThan(4096);
      const after = counters(dev);
      const sent = (after.sent_pkts ?? 0) - (before.sent_pkts ?? 0);
      // Both processes share the one device: 2 × EACH_WAY bytes in packets of at most 4 KiB.
      expect(sent).toBeGreaterThanOrEqual((2 * EACH_WAY) / 4096);
      // And its count of SEND work requests: at least one per 256 KiB buffer each way.
      if (after.rdma_sends !== undefined)
        expect(after.rdma_sends - before.rdma_sends!).toBeGreaterThanOrEqual((2 * EACH_WAY) / (256 * 1024));
      console.log(`device ${dev} counters: before ${JSON.stringify(before)} after ${JSON.stringify(after)}`);
    } finally {
      child.kill("SIGKILL");
      conn?.abort();
      await listener.close();
    }
  });
});
