// Live migration over a manager's PeerLink: the link carries the pages on v3,
// the kill switch sends the rest over v1 mid-migration, and the image arrives
// whole. Across processes, a native sender and a TypeScript-only receiver (and
// the reverse) agree on every page.
import { spawn } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryImage } from "../src/migration/memory-image.js";
import { acceptMigration } from "../src/migration/receiver.js";
import { migrate } from "../src/migration/sender.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { ROOT } from "./helpers/child.js";
import { closeManagers, managerPair } from "./helpers/managers.js";
import { nativeBuilt } from "./helpers/native.js";

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
    const { a, linkA, linkB } = await memoryPair();
    const src = new MemoryImage({ pageCount: 8192 });
    src.fillPages("mixed", 3);
    expect(linkA.active).toBe("v3");
    const incoming = acceptMigration(linkB);
    const m = migrate(linkA, src, { downtimeLimitMs: 1 });
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
