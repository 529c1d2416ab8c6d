// `dwcp tunnel`: two agents carry a local unix-socket stream, bit-exact, in
// both directions; each reports its channels and exits 0 when interrupted; the
// forms are checked (exit 2).
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { runCli, startCli, stopAll, v1Address } from "./helpers/cli.js";

const dir = mkdtempSync(join(tmpdir(), "dwcp-cli-tunnel-"));
writeFileSync(join(dir, "psk"), randomBytes(32));
const PSK = ["--psk-file", join(dir, "psk")];

afterEach(stopAll);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("dwcp tunnel", () => {
  it("carries a unix-socket stream to the peer's target and back; exit 0 on SIGTERM, and the peer on its close", async () => {
    const target = join(dir, "echo.sock");
    const echo = createServer({ allowHalfOpen: true }, (c) => c.pipe(c));
    await new Promise<void>((r) => echo.listen(target, r));
    try {
      const far = startCli(["tunnel", "--to", `unix:${target}`, "--listen", "127.0.0.1:0", ...PSK, "--json"]);
      const address = v1Address(await far.event("listening"));
      const entry = join(dir, "entry.sock");
      const near = startCli(["tunnel", address, `unix:${entry}`, ...PSK, "--json"]);
      await near.event("forwarding");
      const data = randomBytes(8 << 20);
      const back = await new Promise<Buffer>((resolve, reject) => {
        const c = createConnection({ path: entry, allowHalfOpen: true });
        const got: Buffer[] = [];
        c.on("data", (b: Buffer) => got.push(b));
        c.on("end", () => {
          c.destroy();
          resolve(Buffer.concat(got));
        });
        c.on("error", reject);
        c.end(data);
      });
      expect(back.equals(data)).toBe(true);
      await near.until(() => near.json.some((l) => l.event === "end"), 10_000, "the channel's end");
      expect(near.json.find((l) => l.event === "end")).toMatchObject({ channel: 1, local: true, code: null });
      near.child.kill("SIGTERM");
      const n = await near.exited;
      const f = await far.exited;
      expect(n.status, n.stderr).toBe(0);
      expect(f.status, f.stderr).toBe(0);
      expect(near.json.at(-1)).toMatchObject({
        ok: true,
        channels: 1,
        bytesOut: data.length,
        bytesIn: data.length,
      });
      expect(far.json.at(-1)).toMatchObject({
        ok: true,
        channels: 1,
        bytesOut: data.length,
        bytesIn: data.length,
      });
    } finally {
      echo.close();
    }
  });

  it("usage errors: neither form, both forms, a bad codec (exit 2)", async () => {
    for (const args of [
      ["tunnel", ...PSK],
      ["tunnel", "127.0.0.1:1", "unix:/tmp/x.sock", "--to", "unix:/tmp/y.sock", ...PSK],
      ["tunnel", "127.0.0.1:1", "unix:/tmp/x.sock", "--compression", "gzip", ...PSK],
    ]) {
      const r = await runCli(args);
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).toBe(2);
    }
  });
});
