#!/usr/bin/env node
// Builds the optional native addon with node-gyp.
//
// Run as the package's `install` script, it must never fail the install: when a
// prerequisite is missing it says which one (and the Debian package that provides
// it), records why in build/native-status.json for nativeStatus(), and exits 0 so
// the library runs on its TypeScript path. With --strict (npm run build:native)
// a failed build exits 1.
//
// Skipped entirely when DWCP_NATIVE=0 or DWCP_NATIVE_BUILD=0.

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const buildDir = join(root, "build");
const statusFile = join(buildDir, "native-status.json");
const strict = process.argv.includes("--strict");

function record(built, reason) {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(statusFile, `${JSON.stringify({ built, reason, at: new Date().toISOString() }, null, 2)}\n`);
}

function finish(built, reason) {
  // A binary left from an earlier build would not match these sources: drop it.
  if (!built) rmSync(join(buildDir, "Release"), { recursive: true, force: true });
  record(built, reason);
  if (built) {
    console.log(`dwcp: native addon built (${reason})`);
    process.exit(0);
  }
  console.warn(`dwcp: native addon NOT built: ${reason}`);
  console.warn("dwcp: the library will use its TypeScript implementations (same results, slower).");
  process.exit(strict ? 1 : 0);
}

if (!strict && (process.env.DWCP_NATIVE === "0" || process.env.DWCP_NATIVE_BUILD === "0")) {
  finish(false, "build skipped (DWCP_NATIVE=0 or DWCP_NATIVE_BUILD=0 at install time)");
}

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { encoding: "utf8", cwd: root, ...opts });
}

// --- preflight: say exactly what is missing instead of a 200-line gyp log ---------
const missing = [];
const cxx = process.env.CXX || "c++";
if (run(cxx, ["--version"]).status !== 0) missing.push(`C++ compiler '${cxx}' (Debian: build-essential)`);
if (run("make", ["--version"]).status !== 0) missing.push("make (Debian: build-essential)");
if (run("python3", ["--version"]).status !== 0) missing.push("python3 (Debian: python3)");

const require = createRequire(import.meta.url);
try {
  require.resolve("node-addon-api");
} catch {
  missing.push("the node-addon-api package (npm dependency)");
}

// Each header is checked by compiling a use of one of its symbols, so a stub or
// broken header counts as missing too.
const headers = [
  [
    "xxhash.h",
    "libxxhash-dev",
    "#define XXH_INLINE_ALL\n#include <xxhash.h>\nunsigned long long f(const void*p){return XXH3_64bits(p,1);}",
  ],
  [
    "linux/tcp.h",
    "linux-libc-dev",
    "#include <linux/tcp.h>\nint f(){struct tcp_info t; return (int)sizeof t.tcpi_delivery_rate;}",
  ],
];
if (missing.length === 0) {
  for (const [header, pkg, src] of headers) {
    const r = run(cxx, ["-x", "c++", "-fsyntax-only", "-"], { input: src });
    if (r.status !== 0) missing.push(`${header} (Debian: ${pkg})`);
  }
}

const nodedir = process.env.npm_config_nodedir || (existsSync("/usr/include/node/node_api.h") ? "/usr" : "");
const nodeHeaders = nodedir ? join(nodedir, "include", "node", "node_api.h") : "";
if (nodedir && !existsSync(nodeHeaders)) missing.push(`Node headers at ${nodeHeaders} (Debian: libnode-dev)`);

if (missing.length > 0) finish(false, `missing ${missing.join(", ")}`);

// --- build ----------------------------------------------------------------------
let gyp = process.env.npm_config_node_gyp;
if (!gyp || !existsSync(gyp)) {
  try {
    gyp = require.resolve("node-gyp/bin/node-gyp.js");
  } catch {
    finish(false, "node-gyp not found (it ships with npm; or `npm i -D node-gyp`)");
  }
}
const args = [gyp, "rebuild", "--release"];
if (nodedir) args.push(`--nodedir=${nodedir}`);
const t0 = Date.now();
const r = run(process.execPath, args, { env: { ...process.env, JOBS: process.env.JOBS ?? "max" } });
mkdirSync(buildDir, { recursive: true });
writeFileSync(join(buildDir, "native-build.log"), `${r.stdout ?? ""}\n${r.stderr ?? ""}`);
if (r.status !== 0 || !existsSync(join(buildDir, "Release", "dwcp.node"))) {
  const tail = `${r.stdout ?? ""}${r.stderr ?? ""}`
    .split("\n")
    .filter((l) => /error/i.test(l))
    .slice(0, 8);
  if (tail.length) console.warn(tail.join("\n"));
  finish(false, `node-gyp failed (exit ${r.status}); full log in build/native-build.log`);
}
finish(true, `node-gyp ok in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
