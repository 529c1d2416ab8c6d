// `npm run bench -- hash`: batched XXH3-64 over 4 KiB pages of a 256 MiB buffer.
//
// Contenders, each in its own child process, interleaved over several rounds:
//   ours (native)         hashPages(): one addon call for all 65,536 pages
//   ours (ts)             the same API on the TypeScript path (reported in detail)
//   @node-rs/xxhash       xxh3.xxh64(page) once per page
//   c-libxxhash           C loop over XXH3_64bits() from the system libxxhash
//   c-libxxhash-dispatch  the same through libxxhash's AVX2 runtime dispatcher
// Every contender hashes the same xorshift32-filled buffer and reports the XOR of
// all page hashes; the run fails if any disagrees, so a fast wrong answer can't win.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runChild, xorshiftFill } from "./lib/child.js";
import { median, round, WORK_DIR, writeResult } from "./lib/result.js";

const MIB = Number(process.env.BENCH_HASH_MIB ?? 256);
const PAGE = 4096;
const REPS = 5;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

interface Sample {
  gbps: number[];
  xor: string;
}

async function child(contender: string): Promise<void> {
  const data = xorshiftFill(MIB << 20);
  const pages = data.length / PAGE;
  let hashAll: () => BigUint64Array;
  if (contender === "node-rs") {
    const { xxh3 } = await import("@node-rs/xxhash");
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const out = new BigUint64Array(pages);
    hashAll = () => {
      for (let p = 0; p < pages; p++) out[p] = xxh3.xxh64(buf.subarray(p * PAGE, (p + 1) * PAGE));
      return out;
    };
  } else {
    const { hashPages, nativeStatus } = await import("../src/index.js");
    const wantNative = contender === "ours-native";
    if (nativeStatus().features.hash.native !== wantNative) throw new Error(`${contender}: wrong backend`);
    const out = new BigUint64Array(pages);
    hashAll = () => hashPages(data, PAGE, out);
  }
  const gbps: number[] = [];
  let xor = 0n;
  for (let r = -1; r < REPS; r++) {
    const t0 = process.hrtime.bigint();
    const out = hashAll();
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r >= 0) gbps.push(data.length / dt / 1e9);
    xor = 0n;
    for (const h of out) xor ^= h;
  }
  process.stdout.write(`${JSON.stringify({ gbps, xor: xor.toString(16).padStart(16, "0") })}\n`);
}

function buildReference(): string {
  mkdirSync(WORK_DIR, { recursive: true });
  const bin = join(WORK_DIR, "xxh3_ref");
  const src = fileURLToPath(new URL("./c/xxh3_ref.c", import.meta.url));
  execFileSync("cc", ["-O3", "-march=native", src, "-o", bin, "-lxxhash"], { stdio: "inherit" });
  return bin;
}

const runChildHere = (contender: string) => runChild<Sample>(fileURLToPath(import.meta.url), contender);

async function main(): Promise<void> {
  const ref = buildReference();
  const contenders: [string, () => Sample][] = [
    ["ours-native", () => runChildHere("ours-native")],
    ["ours-ts", () => runChildHere("ours-ts")],
    ["@node-rs/xxhash", () => runChildHere("node-rs")],
    [
      "c-libxxhash",
      () => JSON.parse(execFileSync(ref, [`${MIB}`, `${PAGE}`, `${REPS}`], { encoding: "utf8" })),
    ],
    [
      "c-libxxhash-dispatch",
      () => JSON.parse(execFileSync(ref, [`${MIB}`, `${PAGE}`, `${REPS}`, "dispatch"], { encoding: "utf8" })),
    ],
  ];
  const perRound: Record<string, number[]> = {};
  const xors = new Set<string>();
  for (let round_ = 0; round_ < ROUNDS; round_++) {
    for (const [name, run] of contenders) {
      const s = run();
      xors.add(s.xor);
      perRound[name] = [...(perRound[name] ?? []), round(median(s.gbps))];
      console.log(`round ${round_ + 1} ${name.padEnd(22)} ${median(s.gbps).toFixed(2)} GB/s  xor=${s.xor}`);
    }
  }
  if (xors.size !== 1) throw new Error(`contenders disagree on the page hashes: ${[...xors].join(", ")}`);
  const m = (k: string) => round(median(perRound[k]!), 2);
  const result = writeResult(
    {
      name: "hash",
      unit: "GB/s",
      ours: m("ours-native"),
      peers: {
        "@node-rs/xxhash": m("@node-rs/xxhash"),
        "c-libxxhash": m("c-libxxhash"),
        "c-libxxhash-dispatch": m("c-libxxhash-dispatch"),
      },
      detail: {
        what: `XXH3-64 of every ${PAGE}-byte page of a ${MIB} MiB buffer (GB = 1e9 bytes)`,
        method: `${ROUNDS} interleaved rounds, each contender in its own process, median of ${REPS} passes after a warm-up`,
        oursTs: m("ours-ts"),
        perRound,
        pageHashXor: [...xors][0],
        goal: "ours >= 0.6x the C reference",
      },
    },
    true,
  );
  console.log(JSON.stringify(result, null, 2));
}

if (process.argv[2] === "--child") await child(process.argv[3]!);
else await main();
