// The install-time build must never fail `npm install`: with a header missing it
// says which one (and the Debian package), records the reason and exits 0.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ROOT } from "./helpers/child.js";

// Hiding a system header needs a private mount namespace: root and unshare(1).
const canHide =
  process.getuid?.() === 0 &&
  spawnSync("unshare", ["-m", "true"]).status === 0 &&
  existsSync("/usr/include/xxhash.h");
const why = canHide ? "" : " [skipped: needs root, unshare(1) and /usr/include/xxhash.h to hide a header]";

const work = mkdtempSync(join(tmpdir(), "dwcp-build-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function copyProject(): string {
  const dir = mkdtempSync(join(work, "p-"));
  for (const f of ["package.json", "binding.gyp", "native", "scripts"])
    cpSync(join(ROOT, f), join(dir, f), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  return dir;
}

function runBuild(dir: string, shell: string, env: Record<string, string> = {}) {
  // The suite may itself run under DWCP_NATIVE=0, which the script honours by skipping.
  const base = { ...process.env, DWCP_NATIVE: "", DWCP_NATIVE_BUILD: "" };
  return spawnSync("sh", ["-c", shell], { cwd: dir, encoding: "utf8", env: { ...base, ...env } });
}

describe("scripts/build-native.mjs", () => {
  it.skipIf(!canHide)(`exits 0 and names the package when xxhash.h is unusable${why}`, () => {
    const dir = copyProject();
    const r = runBuild(
      dir,
      "unshare -m sh -c 'mount --bind /dev/null /usr/include/xxhash.h && node scripts/build-native.mjs'",
    );
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/native addon NOT built: missing xxhash\.h \(Debian: libxxhash-dev\)/);
    const status = JSON.parse(readFileSync(join(dir, "build", "native-status.json"), "utf8"));
    expect(status).toMatchObject({ built: false, reason: "missing xxhash.h (Debian: libxxhash-dev)" });
    expect(existsSync(join(dir, "build", "Release", "dwcp.node"))).toBe(false);
  });

  it.skipIf(!canHide)(`--strict (npm run build:native) exits 1 on the same failure${why}`, () => {
    const dir = copyProject();
    const r = runBuild(
      dir,
      "unshare -m sh -c 'mount --bind /dev/null /usr/include/xxhash.h && node scripts/build-native.mjs --strict'",
    );
    expect(r.status).toBe(1);
  });

  it("DWCP_NATIVE_BUILD=0 skips the build and records why", () => {
    const dir = copyProject();
    const r = runBuild(dir, "node scripts/build-native.mjs", { DWCP_NATIVE_BUILD: "0" });
    expect(r.status).toBe(0);
    const status = JSON.parse(readFileSync(join(dir, "build", "native-status.json"), "utf8"));
    expect(status.built).toBe(false);
    expect(status.reason).toMatch(/build skipped/);
  });
});
