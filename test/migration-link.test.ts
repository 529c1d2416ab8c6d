// Live migration over a manager's PeerLink: the link carries the pages on v3,
// the kill switch sends the rest over v1 mid-migration, and the image arrives
// whole. Across processes, a native sender and a TypeScript-only receiver (and
// the reverse) agree on every page.
import { spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryImage } from "../src/migration/memory-image.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { ROOT } from "./helpers/child.js";
import { closeManagers, managerPair } from "./helpers/managers.js";
import { nativeBuilt } from "./helpers/native.js";
import { parseProm, promValue } from "./helpers/prom.js";

afterEach(closeManagers);

function memoryPair() {
  const net = new MemoryNetwork();
  const n = Math.random().toString(36).slice(2, 8);
  return managerPair({
    v1: () => memory({}, net),
    v3: () => memory({}, net),
    addresses: { v1: `m1-${n}:0`, v3: `m3-${n}:0` },
    both: { assumeMode: "datacenter" },
  });
}

describe("migration over a PeerLink", () => {
  it("moves a 32 MiB image on v3, the kill switch flipped between rounds moves the rest to v1, nothing lost", async () => {
    const { a, b, linkA } = await memoryPair();
    const src = new MemoryImage({ pageCount: 8192 });
    src.fillPages("mixed", 3);
    expect(linkA.active).toBe("v3");
    const incoming = b.acceptMigration("node-a");
    const m = a.migrate("node-b", src, { downtimeLimitMs: 1 });
    let flipped = false;
    m.on("round", () => {
      if (flipped) return;
      flipped = true;
      // The guest keeps writing: round two has pages to carry over v1.
      for (let p = 0; p < 512; p++) src.write(p * 16 * 4096, new Uint8Array([p & 255, 1, 2, 3]));
      a.flags.update({ forceV1: true });
    });
    const [stats, got] = await Promise.all([m.done, incoming.done]);
    expect(Buffer.compare(src.bytes, got.image)).toBe(0);
    expect(flipped).toBe(true);
    expect(linkA.active).toBe("v1");
    expect(linkA.stats.v1).toBeGreaterThan(0);
    expect(linkA.stats.v3).toBeGreaterThan(0);
    expect(stats.rounds).toBeGreaterThanOrEqual(2);
    // The pages went in the link's migration flow, and both managers count the migration.
    expect(linkA.flows().find((f) => f.id === "migration")?.settings.class).toBe("migration");
    const [ma, mb] = [parseProm(await a.metrics()), parseProm(await b.metrics())];
    const labels = (role: string) => ({ role, outcome: "completed" });
    expect(promValue(ma, "dwcp_migrations_total", { peer: "node-b", ...labels("source") })).toBe(1);
    expect(promValue(mb, "dwcp_migrations_total", { peer: "node-a", ...labels("destination") })).toBe(1);
    expect(promValue(ma, "dwcp_migration_bytes_total", { peer: "node-b", role: "source" })).toBe(
      stats.transferred,
    );
    expect(promValue(mb, "dwcp_migration_bytes_total", { peer: "node-a", role: "destination" })).toBe(
      got.frameBytes,
    );
    expect(promValue(ma, "dwcp_migration_downtime_seconds_count", { peer: "node-b" })).toBe(1);
    expect(promValue(ma, "dwcp_migration_downtime_seconds_sum", { peer: "node-b" })).toBeCloseTo(
      stats.downtime! / 1000,
      6,
    );
  });

  it("a destination whose reports its link refuses fails with the refusal at once, not after the source's silence timeout", async () => {
    const { a, b, linkB } = await memoryPair();
    const src = new MemoryImage({ pageCount: 8192 });
    src.fillPages("mixed", 4);
    const incoming = b.acceptMigration("node-a");
    const m = a.migrate("node-b", src, { downtimeLimitMs: 1, timeoutMs: 3000 });
    const t0 = performance.now();
    let refusedAt = 0;
    m.on("round", () => {
      if (refusedAt) return;
      // The destination's path is now called internet: its v1 (memory, unencrypted)
      // may not carry data and its v3 is not TLS, so every report it sends is refused.
      for (let p = 0; p < 512; p++) src.write(p * 16 * 4096, new Uint8Array([p & 255, 9, 9, 9]));
      linkB.setMode("internet");
      b.flags.update({ enableV3Compression: true });
      refusedAt = performance.now();
    });
    const settledAt = (p: Promise<unknown>) =>
      p.then(
        () => performance.now(),
        () => performance.now(),
      );
    const [sentAt, gotAt] = await Promise.all([settledAt(m.done), settledAt(incoming.done)]);
    const [sent, got] = await Promise.allSettled([m.done, incoming.done]);
    expect(got.status).toBe("rejected");
    expect((got as PromiseRejectedResult).reason).toMatchObject({ code: "ERR_UNSUPPORTED" });
    expect(refusedAt).toBeGreaterThan(t0);
    expect(gotAt).toBeLessThan(sentAt);
    // The source cannot hear the destination: it fails too (its timeout, or the
    // ABORT it never gets), and its guest runs on.
    expect(sent.status).toBe("rejected");
    expect(src.paused).toBe(false);
  });

  it("a migration to a peer without a link is ERR_NOT_CONNECTED; a cancelled one is counted as cancelled", async () => {
    const { a, b } = await memoryPair();
    const src = new MemoryImage({ pageCount: 64 });
    expect(() => a.migrate("nobody", src)).toThrow(expect.objectContaining({ code: "ERR_NOT_CONNECTED" }));
    const ac = new AbortController();
    const incoming = b.acceptMigration("node-a");
    const m = a.migrate("node-b", src, { signal: ac.signal });
    ac.abort();
    await expect(m.done).rejects.toMatchObject({ code: "ERR_ABORTED" });
    await expect(incoming.done).rejects.toMatchObject({ code: "ERR_ABORTED" });
    const ma = parseProm(await a.metrics());
    expect(
      promValue(ma, "dwcp_migrations_total", { peer: "node-b", role: "source", outcome: "cancelled" }),
    ).toBe(1);
    const mb = parseProm(await b.metrics());
    expect(
      promValue(mb, "dwcp_migrations_total", { peer: "node-a", role: "destination", outcome: "cancelled" }),
    ).toBe(1);
  });
});

/** What a peer process prints last. */
interface PeerResult {
  ok: boolean;
  digest?: string;
  error?: string;
}

/**
 * A migration peer in its own process with DWCP_NATIVE as given: the
 * destination listens and prints its ports, the sender connects to them; each
 * prints the digest of every page's hash of its image.
 */
function peer(role: "send" | "accept", native: "0" | "1", ports?: { v1: number; v3: number }) {
  const script = `
    import { DWCPManager, tcp } from "./src/index.js";
    import { MemoryImage } from "./src/migration/memory-image.js";
    import { migrate } from "./src/migration/sender.js";
    import { acceptMigration } from "./src/migration/receiver.js";
    import { xxh3_64, hashPages } from "./src/hash/index.js";
    const psk = new Uint8Array(32).fill(7);
    const m = new DWCPManager({ nodeId: "${role}", v1: { transport: tcp(), psk }, v3: { transport: tcp(), psk },
      flags: { enableV3Transport: true, v3RolloutPercentage: 100 }, assumeMode: "datacenter" });
    const say = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
    const digest = (img) => xxh3_64(new Uint8Array(hashPages(img, 4096).buffer)).toString(16);
    try {
      if (${JSON.stringify(role)} === "accept") {
        const b = await m.listen({ v1: "127.0.0.1:0", v3: "127.0.0.1:0" });
        say({ v1: Number(b.v1.split(":").pop()), v3: Number(b.v3.split(":").pop()) });
        const link = await new Promise((r) => m.once("link", r));
        const got = await acceptMigration(link).done;
        say({ ok: true, digest: digest(got.image) });
      } else {
        const link = await m.connect({ v1: "127.0.0.1:${ports?.v1}", v3: "127.0.0.1:${ports?.v3}" });
        const src = new MemoryImage({ pageCount: 4096 });
        src.fillPages("mixed", 11);
        await migrate(link, src).done;
        say({ ok: true, digest: digest(src.bytes) });
      }
    } catch (e) {
      say({ ok: false, error: String(e?.code) + " " + e?.message });
    }
    await m.close();
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: ROOT,
    env: { ...process.env, DWCP_NATIVE: native },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines: Record<string, unknown>[] = [];
  const waiting: (() => void)[] = [];
  let buf = "";
  let exited = false;
  child.stdout.on("data", (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
    for (const w of waiting) w();
  });
  child.on("exit", () => {
    exited = true;
    for (const w of waiting) w();
  });
  const line = <T>(key: string) =>
    new Promise<T>((resolve, reject) => {
      const look = () => {
        const l = lines.find((x) => key in x);
        if (l) resolve(l as T);
        else if (exited)
          reject(new Error(`the ${role} peer exited before printing ${key}: ${JSON.stringify(lines)}`));
      };
      waiting.push(look);
      look();
    });
  return { ports: () => line<{ v1: number; v3: number }>("v3"), result: line<PeerResult>("ok") };
}

describe("migration across processes and backends", () => {
  for (const [from, to] of [
    ["1", "0"],
    ["0", "1"],
  ] as const) {
    const name = (b: string) => (b === "1" ? "native" : "TypeScript");
    it.skipIf(!nativeBuilt)(
      `${name(from)} sender → ${name(to)} destination over TCP: the same image${nativeBuilt ? "" : " [skipped: the addon is not built]"}`,
      async () => {
        const dest = peer("accept", to);
        const sender = peer("send", from, await dest.ports());
        const [s, d] = await Promise.all([sender.result, dest.result]);
        expect(s.error ?? "").toBe("");
        expect(d.error ?? "").toBe("");
        expect(d.digest).toBe(s.digest);
      },
      60_000,
    );
  }
});
