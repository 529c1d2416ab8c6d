// A real QEMU guest (TCG) migrated over DWCP links on loopback, judged by QEMU
// and by the guest itself: its heartbeat goes on from the destination, its
// full memory check passes there, and nothing reports a bad chunk. One guest
// travels a chain of QEMU processes: by tunnel, by pages, by tunnel with four
// multifd channels; then a pages migration whose link is cut leaves it
// running where it was. Skipped, with the reason, where QEMU is missing.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { DWCPManager } from "../src/manager.js";
import { acceptPages, migratePages, migrateThroughTunnel, prepareIncoming } from "../src/qemu/migrate.js";
import { tcp } from "../src/transport/tcp/index.js";
import { connectLocal } from "../src/tunnel/local.js";
import { closeManagers, managerPair } from "./helpers/managers.js";
import { type Guest, qemuSkipReason, startGuest } from "./helpers/qemu.js";

const skip = qemuSkipReason();
const guests: Guest[] = [];
const dir = mkdtempSync(join(tmpdir(), "dwcp-qemu-test-"));
afterAll(async () => {
  await closeManagers();
  await Promise.all(guests.map((g) => g.stop()));
  rmSync(dir, { recursive: true, force: true });
});

async function guest(name: string, incoming: boolean): Promise<Guest> {
  const g = await startGuest({ name, sharedMemory: true, incoming });
  guests.push(g);
  return g;
}

/**
 * The guest runs on `to` now: beats go on past the last one `from` printed,
 * a full check passes there, and no chunk was ever bad.
 */
async function runsOn(from: Guest, to: Guest): Promise<{ gapMs: number; lastBeat: number }> {
  const before = from.beats();
  const last = before[before.length - 1]!;
  const verify = await to.waitLine(/DWCP-GUEST VERIFY \d+ (ok|bad)/, 60_000);
  expect(verify.text).toMatch(/ ok 0$/);
  await to.waitLine(/DWCP-GUEST BEAT /, 30_000, verify.index);
  const after = to.beats();
  expect(after.length).toBeGreaterThan(0);
  // Beats go on in order from where the source stopped (the source may have
  // printed its last one into the stopped console: it then comes again or is
  // followed directly).
  expect(after[0]!.n).toBeGreaterThanOrEqual(last.n);
  expect(after[0]!.n).toBeLessThanOrEqual(last.n + 1);
  for (const g of [from, to]) expect(g.lines.filter((l) => /DWCP-GUEST BAD/.test(l.text))).toEqual([]);
  return { gapMs: after[0]!.t - last.t, lastBeat: last.n };
}

describe.skipIf(Boolean(skip))(`QEMU guest migrated over DWCP${skip ? ` [skipped: ${skip}]` : ""}`, () => {
  let a: DWCPManager;
  let b: DWCPManager;
  let current: Guest;

  it("boots the test guest: its memory region checked, beating", { timeout: 240_000 }, async () => {
    ({ a, b } = await managerPair({
      v1: () => tcp(),
      v3: () => tcp(),
      addresses: { v1: "127.0.0.1:0", v3: "127.0.0.1:0" },
      both: { assumeMode: "datacenter", detectMode: false },
    }));
    current = await guest("g1", false);
    await current.waitLine(/DWCP-GUEST READY/, 200_000);
    await current.waitLine(/DWCP-GUEST VERIFY 0 ok 0/, 30_000);
    await current.waitLine(/DWCP-GUEST BEAT 2 /, 30_000);
  });

  it("(a) tunnel: QEMU's stream through a DWCP tunnel; the guest resumes on the destination", {
    timeout: 180_000,
  }, async () => {
    const dst = await guest("g2", true);
    const incoming = join(dir, "g2-incoming.sock");
    await prepareIncoming(dst.qmp, incoming);
    const far = b.tunnel("node-a", { connect: connectLocal({ path: incoming }) });
    const near = a.tunnel("node-b", { class: "migration" });
    const q = await migrateThroughTunnel({
      qmp: current.qmp,
      tunnel: near,
      socketPath: join(dir, "a-out.sock"),
    });
    near.close();
    far.close();
    expect(q.status).toBe("completed");
    expect(q["total-time"]).toBeGreaterThan(0);
    expect(q.ram?.transferred).toBeGreaterThan(32 << 20);
    // LZ4 in the datacenter: the random region does not shrink, the rest does.
    expect(near.stats().wireBytesOut).toBeLessThan(near.stats().bytesOut);
    expect((await current.qmp.execute<{ status: string }>("query-status")).status).toBe("postmigrate");
    expect((await dst.qmp.execute<{ status: string }>("query-status")).status).toBe("running");
    const { gapMs } = await runsOn(current, dst);
    console.log(
      `tunnel: total ${q["total-time"]} ms, downtime ${q.downtime} ms, transferred ${q.ram?.transferred}, ` +
        `on the link ${near.stats().wireBytesOut}, guest's beat gap ${gapMs.toFixed(0)} ms`,
    );
    current = dst;
  });

  it("(b) pages: the RAM file pre-copied by the engine, device state by QEMU; the guest resumes", {
    timeout: 180_000,
  }, async () => {
    const dst = await guest("g3", true);
    const incoming = join(dir, "g3-incoming.sock");
    const far = b.tunnel("node-a", { connect: connectLocal({ path: incoming }) });
    const near = a.tunnel("node-b", { class: "migration" });
    const incomingPages = acceptPages(b.links.get("node-a")!, {
      qmp: dst.qmp,
      memPath: dst.memPath!,
      socketPath: incoming,
    });
    await incomingPages.ready;
    const [accepted, result] = await Promise.all([
      incomingPages.done,
      migratePages(a.links.get("node-b")!, {
        qmp: current.qmp,
        tunnel: near,
        memPath: current.memPath!,
        socketPath: join(dir, "a-dev.sock"),
      }),
    ]);
    near.close();
    far.close();
    expect(result.device.status).toBe("completed");
    // Only device state went through QEMU: its RAM stayed in the shared file.
    expect(result.device.ram?.transferred ?? 0).toBeLessThan(4 << 20);
    expect(result.pages.transferred).toBeGreaterThan(32 << 20);
    expect(accepted.status).toBe("paused");
    expect((await current.qmp.execute<{ status: string }>("query-status")).status).toBe("postmigrate");
    expect((await dst.qmp.execute<{ status: string }>("query-status")).status).toBe("running");
    const { gapMs } = await runsOn(current, dst);
    console.log(
      `pages: total ${result.totalMs.toFixed(0)} ms, downtime ${result.downtimeMs.toFixed(0)} ms ` +
        `(QEMU's device state ${result.device.downtime} ms, ${result.device.ram?.transferred} B), ` +
        `rounds ${result.pages.dirtySyncCount}, pages ${result.pages.transferred} B, guest's beat gap ${gapMs.toFixed(0)} ms`,
    );
    current = dst;
  });

  it("(a) tunnel with 4 multifd channels: each connection a channel", { timeout: 180_000 }, async () => {
    const dst = await guest("g4", true);
    const incoming = join(dir, "g4-incoming.sock");
    const settings = { capabilities: { multifd: true }, parameters: { "multifd-channels": 4 } };
    await prepareIncoming(dst.qmp, incoming, settings);
    const far = b.tunnel("node-a", { connect: connectLocal({ path: incoming }) });
    const near = a.tunnel("node-b", { class: "migration" });
    const q = await migrateThroughTunnel({
      qmp: current.qmp,
      tunnel: near,
      socketPath: join(dir, "a-multifd.sock"),
      ...settings,
    });
    near.close();
    far.close();
    expect(q.status).toBe("completed");
    // This QEMU once received a migration: its own figures, not that one's.
    expect(q["total-time"]).toBeGreaterThan(0);
    expect(q.ram?.["multifd-bytes"]).toBeGreaterThan(32 << 20);
    // The main connection and four multifd ones.
    expect(near.stats().channels).toBe(5);
    await runsOn(current, dst);
    current = dst;
  });

  it("a pages migration whose link dies leaves the guest running where it was", {
    timeout: 180_000,
  }, async () => {
    const dst = await guest("g5", true);
    const incoming = join(dir, "g5-incoming.sock");
    const near = a.tunnel("node-b", { class: "migration" });
    const linkA = a.links.get("node-b")!;
    const accepting = acceptPages(b.links.get("node-a")!, {
      qmp: dst.qmp,
      memPath: dst.memPath!,
      socketPath: incoming,
    });
    await accepting.ready;
    const source = migratePages(linkA, {
      qmp: current.qmp,
      tunnel: near,
      memPath: current.memPath!,
      socketPath: join(dir, "a-cut.sock"),
      onProgress: () => {
        // Once pages flow, the link goes (both managers' sessions closed).
        void a.close();
      },
    });
    await expect(source).rejects.toMatchObject({
      code: expect.stringMatching(/ERR_CLOSED|ERR_ABORTED|ERR_NOT_CONNECTED/),
    });
    await expect(accepting.done).rejects.toBeDefined();
    // The source guest was never stopped for good: it runs and beats on.
    expect((await current.qmp.execute<{ status: string }>("query-status")).status).toBe("running");
    const seen = current.lines.length;
    await current.waitLine(/DWCP-GUEST BEAT /, 30_000, seen);
    expect(current.lines.filter((l) => /DWCP-GUEST BAD/.test(l.text))).toEqual([]);
  });
});
