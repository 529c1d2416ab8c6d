// The strict fake verbs provider (fakeverbs.c) for fast RDMA tests: built once
// into build/rig and loaded by the addon through DWCP_VERBS_LIB, the same dlopen
// seam a real libibverbs goes through.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const BUILD = join(HERE, "..", "..", "build", "rig");

/** Builds the fake provider; returns its path, or why it cannot be built. */
export function buildFakeVerbs(): { path: string; reason: string } {
  const src = join(HERE, "fakeverbs.c");
  const out = join(BUILD, "fakeverbs.so");
  if (!existsSync("/usr/include/infiniband/verbs.h"))
    return { path: "", reason: "needs the libibverbs headers (Debian: libibverbs-dev)" };
  if (spawnSync("sh", ["-c", "command -v cc"]).status !== 0)
    return { path: "", reason: "needs a C compiler (Debian: build-essential)" };
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(BUILD, { recursive: true });
    execFileSync("cc", [
      "-O2",
      "-Wall",
      "-Wextra",
      "-Werror",
      "-shared",
      "-fPIC",
      `-Wl,--version-script=${join(HERE, "fakeverbs.map")}`,
      src,
      "-o",
      out,
      "-lpthread",
    ]);
  }
  return { path: out, reason: "" };
}
