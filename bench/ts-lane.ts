// `npm run bench -- ts-lane`: the library without its addon (DWCP_NATIVE=0), as a
// machine without the Debian dev headers runs it, before and after in one run.
//
//   npm start      the demo (`dwcp demo --json`: two agents, a live migration of a
//                  256 MiB guest) with DWCP_NATIVE=0; its figure is guest memory
//                  moved per second of query-migrate's total-time. With
//                  DWCP_BENCH_BASE (a checkout of another commit, with
//                  node_modules) the same demo of that build, interleaved round by
//                  round with this one's.
//   CRC-32C        the TypeScript path's CRC-32C (hash-wasm's WebAssembly from
//                  512 B) against the slicing-by-8 table it replaced, over 1 MiB
//                  and 4 KiB blocks of a 64 MiB buffer, each in its own process.
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { runChild, xorshiftFill } from "./lib/child.js";
import { median, round, writeResult } from "./lib/result.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MIB = 64;
const REPS = 5;

/** One CRC contender's GB/s per block size, and the XOR of its block CRCs (must agree). */
type CrcSample = Record<string, { gbps: number; xor: number }>;

async function crcChild(contender: string): Promise<void> {
  const { crc32cTs } = await import("../src/hash/crc32c-ts.js");
  const { crc32cWasm } = await import("../src/hash/crc32c-wasm.js");
  const crc = contender === "table" ? crc32cTs : crc32cWasm;
  const data = xorshiftFill(MIB << 20);
  const out: CrcSample = {};
  for (const block of [1 << 20, 4096]) {
    const views = Array.from({ length: data.length / block }, (_, i) =>
      data.subarray(i * block, (i + 1) * block),
    );
    const gbps: number[] = [];
    let xor = 0;
    for (let r = -1; r < REPS; r++) {
      xor = 0;
      const t0 = process.hrtime.bigint();
      // Continued from a non-zero value, as a frame's payload continues its header's.
      for (const v of views) xor ^= crc(v, 0x1234_5678);
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      if (r >= 0) gbps.push(data.length / dt / 1e9);
    }
    out[block] = { gbps: median(gbps), xor: xor >>> 0 };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/** The demo of the build at `root` without the addon: guest MB moved per second. */
function demo(root: string): { mbps: number; totalTimeMs: number; identical: boolean } {
  const out = execFileSync(process.execPath, [`${root}/dist/cli/dwcp.js`, "demo", "--json"], {
    encoding: "utf8",
    env: { ...process.env, DWCP_NATIVE: "0" },
    maxBuffer: 64 << 20,
  });
  const r = JSON.parse(out) as {
    migration: { "total-time": number; ram: { total: number }; identical: boolean };
  };
  const m = r.migration;
  return {
    mbps: m.ram.total / (m["total-time"] / 1000) / 1e6,
    totalTimeMs: m["total-time"],
    identical: m.identical,
  };
}

async function main(): Promise<void> {
  execFileSync("npm", ["run", "-s", "build:ts"], { cwd: ROOT, stdio: "inherit" });
  const base = process.env.DWCP_BENCH_BASE;
  if (base) execFileSync("npm", ["run", "-s", "build:ts"], { cwd: base, stdio: "inherit" });
  const builds: [string, string][] = [["this", ROOT], ...(base ? [["base", base] as [string, string]] : [])];
  const start: Record<string, number[]> = {};
  const crc: Record<string, number[]> = {};
  const add = (to: Record<string, number[]>, key: string, x: number) => {
    to[key] = [...(to[key] ?? []), x];
  };
  const xors = new Set<string>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, root] of builds) {
      const d = demo(root);
      if (!d.identical) throw new Error(`${name}: the demo's destination differs from its guest`);
      add(start, name, d.mbps);
      console.log(
        `round ${r + 1} npm start (${name})`.padEnd(28) +
          ` ${d.mbps.toFixed(1)} MB/s of guest memory (total-time ${d.totalTimeMs.toFixed(0)} ms)`,
      );
    }
    for (const c of ["table", "wasm"]) {
      const s = runChild<CrcSample>(fileURLToPath(import.meta.url), c);
      xors.add(`${s[1 << 20]!.xor}/${s[4096]!.xor}`);
      add(crc, `${c}/1MiB`, s[1 << 20]!.gbps);
      add(crc, `${c}/4KiB`, s[4096]!.gbps);
      console.log(
        `round ${r + 1} CRC-32C ${c}`.padEnd(28) +
          ` ${s[1 << 20]!.gbps.toFixed(2)} GB/s (1 MiB blocks), ${s[4096]!.gbps.toFixed(2)} GB/s (4 KiB)`,
      );
    }
  }
  if (xors.size !== 1) throw new Error("the CRC-32C contenders disagree");
  const m = (xs: number[]) => round(median(xs), 2);
  const result = writeResult(
    {
      name: "ts-lane",
      unit: "MB/s of guest memory moved by `npm start` with DWCP_NATIVE=0",
      ours: m(start.this!),
      peers: base ? { "base-npm-start": m(start.base!) } : {},
      detail: {
        method: `${ROUNDS} interleaved rounds; npm start = \`dwcp demo --json\` with DWCP_NATIVE=0, guest bytes ÷ query-migrate total-time; CRC-32C over every block of a ${MIB} MiB buffer continued from a non-zero value, median of ${REPS} passes, each contender in its own process (GB = 1e9 bytes)`,
        ...(base ? { base } : {}),
        crc32c: {
          "wasm-1MiB": m(crc["wasm/1MiB"]!),
          "table-1MiB": m(crc["table/1MiB"]!),
          "wasm-4KiB": m(crc["wasm/4KiB"]!),
          "table-4KiB": m(crc["table/4KiB"]!),
          speedup1MiB: round(median(crc["wasm/1MiB"]!) / median(crc["table/1MiB"]!), 2),
        },
        samples: { npmStart: start, crc },
      },
    },
    false,
  );
  console.log(
    JSON.stringify({ ours: result.ours, peers: result.peers, crc32c: result.detail?.crc32c }, null, 2),
  );
}

if (process.argv[2] === "--child") await crcChild(process.argv[3]!);
else await main();
