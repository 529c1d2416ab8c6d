// `dwcp migrate` and `dwcp accept`: an image file and a simulated guest move
// between two agents from the shell; the destination's file equals the
// source's; a refused migration exits with its code.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { runCli, startCli, stopAll, v1Address } from "./helpers/cli.js";

const dir = mkdtempSync(join(tmpdir(), "dwcp-cli-migrate-"));
writeFileSync(join(dir, "psk"), randomBytes(32));
const PSK = ["--psk-file", join(dir, "psk")];

afterEach(stopAll);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("dwcp migrate and dwcp accept", () => {
  it("an image file arrives byte for byte; both exit 0 with query-migrate figures", async () => {
    // Half zero, half random: the zero pages never travel.
    const data = Buffer.concat([Buffer.alloc(2 << 20), randomBytes(2 << 20)]);
    const src = join(dir, "image.bin");
    const dest = join(dir, "copy.bin");
    writeFileSync(src, data);
    const acc = startCli(["accept", dest, "--listen", "127.0.0.1:0", ...PSK, "--json"]);
    const address = v1Address(await acc.event("listening"));
    const m = await runCli(["migrate", address, src, ...PSK, "--json"]);
    expect(m.status, m.stderr).toBe(0);
    const lines = m.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    const result = lines.at(-1);
    expect(result).toMatchObject({
      ok: true,
      status: "completed",
      ram: { total: data.length, remaining: 0 },
    });
    expect(result.downtime).toBeGreaterThanOrEqual(0);
    expect(result.ram.transferred).toBeLessThan(data.length * 0.6);
    expect(lines.some((l) => l.event === "round")).toBe(true);
    const r = await acc.result(30_000);
    expect(r.status, r.stderr).toBe(0);
    expect(acc.json.find((l) => "ok" in l)).toMatchObject({ ok: true, bytes: data.length, file: dest });
    expect(readFileSync(dest).equals(data)).toBe(true);
  });

  it("a simulated guest that keeps writing, in text; the destination takes it without writing a file", async () => {
    const acc = startCli(["accept", "--listen", "127.0.0.1:0", ...PSK, "--json"]);
    const address = v1Address(await acc.event("listening"));
    const m = await runCli(["migrate", address, "guest:16m", ...PSK]);
    expect(m.status, m.stderr).toBe(0);
    expect(m.stdout).toMatch(/^migrated a simulated guest of 16777216 bytes to /m);
    expect(m.stdout).toMatch(/^ {2}status {15}completed$/m);
    expect(m.stdout).toMatch(/^ {2}downtime {13}\d+\.\d ms$/m);
    const r = await acc.result(30_000);
    expect(r.status, r.stderr).toBe(0);
    expect(acc.json.find((l) => "ok" in l)).toMatchObject({ ok: true, bytes: 16 << 20, file: null });
  });

  it("an image above the destination's --max-size is refused: both exit 1 with ERR_RESOURCE_LIMIT", async () => {
    const src = join(dir, "big.bin");
    writeFileSync(src, randomBytes(1 << 20));
    const acc = startCli(["accept", "--listen", "127.0.0.1:0", ...PSK, "--max-size", "512k", "--json"]);
    const address = v1Address(await acc.event("listening"));
    const m = await runCli(["migrate", address, src, ...PSK]);
    expect(m.status).toBe(1);
    expect(m.stderr).toMatch(/^dwcp: ERR_RESOURCE_LIMIT: /m);
    const r = await acc.result(30_000);
    expect(r.status).toBe(1);
    expect(r.stdout + r.stderr).toContain("ERR_RESOURCE_LIMIT");
  });

  it("usage errors: a missing image, a bad guest size, a bad downtime limit (exit 2)", async () => {
    for (const args of [
      ["migrate", "127.0.0.1:1", join(dir, "nope.bin"), ...PSK],
      ["migrate", "127.0.0.1:1", "guest:lots", ...PSK],
      ["migrate", "127.0.0.1:1", "guest:1m", "--downtime-limit", "-5", ...PSK],
    ]) {
      const r = await runCli(args);
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/^dwcp: ERR_/m);
    }
  });
});
