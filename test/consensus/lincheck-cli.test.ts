// `dwcp lincheck`: its exit codes (0 linearizable, 1 not or undecided, 2 bad
// input), its text and JSON output, and --explain.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { lincheckCommand } from "../../src/cli/lincheck.js";
import { run } from "../../src/cli/run.js";
import { formatJepsen, HistoryRecorder } from "../../src/consensus/lincheck/index.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/lincheck/", import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), "dwcp-lincheck-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
});

/** Runs `dwcp lincheck args…` in this process: its exit code and what it printed. */
async function lincheck(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  vi.spyOn(process.stdout, "write").mockImplementation((s) => {
    out += String(s);
    return true;
  });
  vi.spyOn(process.stderr, "write").mockImplementation((s) => {
    err += String(s);
    return true;
  });
  const p = new Command("dwcp").exitOverride();
  lincheckCommand(p, run);
  process.exitCode = undefined;
  await p.parseAsync(["lincheck", ...args], { from: "user" });
  const code = typeof process.exitCode === "number" ? process.exitCode : 0;
  vi.restoreAllMocks();
  process.exitCode = undefined;
  return { code, out, err };
}

describe("dwcp lincheck", () => {
  it("exits 0 on a linearizable log, and says so", async () => {
    const r = await lincheck(join(FIXTURES, "register-ok.jepsen"));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^linearizable \(9 operations, 1 key, \d+ ms\)\n$/);
    expect(r.err).toBe("");
  });

  it("exits 1 on a log that is not, naming the keys, and --explain shows the window", async () => {
    const plain = await lincheck(join(FIXTURES, "keyed-double-cas.jepsen"));
    expect(plain.code).toBe(1);
    expect(plain.out).toMatch(
      /^not linearizable: 0 \(6 operations, 2 keys, \d+ ms\)\n\(--explain shows why\)\n$/,
    );
    const explained = await lincheck(join(FIXTURES, "keyed-double-cas.jepsen"), "--explain");
    expect(explained.code).toBe(1);
    expect(explained.out).toContain("key 0: these 3 operations have no linearization");
    expect(explained.out).toContain("p1 cas 1 -> 3");
    expect(explained.out).toContain("(line 6-8)");
  });

  it("--json gives the verdict, each key and each window", async () => {
    const r = await lincheck(join(FIXTURES, "register-stale.jepsen"), "--json", "--explain");
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as {
      result: string;
      operations: number;
      keys: { key: string; result: string; window: { operations: unknown[]; text: string } }[];
    };
    expect(j.result).toBe("illegal");
    expect(j.operations).toBe(9);
    expect(j.keys).toHaveLength(1);
    expect(j.keys[0]!.result).toBe("illegal");
    expect(j.keys[0]!.window.operations).toHaveLength(4);
    expect(j.keys[0]!.window.text).toMatch(/^the register: /);
  });

  it("exits 1 saying it could not decide when --timeout runs out", async () => {
    const rec = new HistoryRecorder();
    const ts = Array.from({ length: 24 }, (_, i) => rec.invoke(i, { f: "write", value: `${i}` }));
    const read = rec.invoke(24, { f: "read" });
    for (const t of ts) rec.info(t);
    rec.ok(read, "never");
    const file = join(scratch, "hard.jepsen");
    writeFileSync(file, formatJepsen(rec.history()));
    const r = await lincheck(file, "--timeout", "20");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^could not decide within 20 ms: the register undecided/);
    const j = JSON.parse((await lincheck(file, "--timeout", "20", "--json")).out) as { result: string };
    expect(j.result).toBe("unknown");
  });

  it("exits 2 on a malformed log, naming the line", async () => {
    const r = await lincheck(join(FIXTURES, "malformed.jepsen"));
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toMatch(/^dwcp: ERR_INVALID_ARG: line 4: type must be/);
  });

  it("exits 2 on a file it cannot read, and on a bad --timeout", async () => {
    const missing = await lincheck(join(scratch, "absent.jepsen"));
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/^dwcp: ERR_INVALID_ARG: cannot read the log/);
    await expect(lincheck(join(FIXTURES, "register-ok.jepsen"), "--timeout", "0")).rejects.toThrow(
      /expected milliseconds/,
    );
  });
});
