// `npm run bench -- crc`: CRC-32C, the checksum every DWCP frame carries, over
// 1 MiB blocks (a bulk DATA frame) and 4 KiB blocks (a small message) of a 64 MiB
// buffer.
//
// Contenders, each in its own child process, interleaved over several rounds:
//   ours (native)    crc32c() from the addon (the implementation it chose for this
//                    CPU: AVX-512 carry-less folding where offered)
//   ours (sse4.2)    the addon's crc32 instruction path (three chains), through
//                    crc32cWith(), where the CPU has both: the A/B of the two
//   ours (ts)        the same API on the TypeScript path (reported in detail)
//   @node-rs/crc32   its crc32c() (Rust, SIMD)
// Every contender checksums the same xorshift32-filled buffer and reports the XOR
// of all block CRCs; the run fails if any disagrees. "hot": one 1 MiB block again
// and again, in cache, as a frame is when it has just been read or written; the
// 64 MiB passes are bound by memory bandwidth.
import { fileURLToPath } from "node:url";
import { runChild, xorshiftFill } from "./lib/child.js";
import { median, round, writeResult } from "./lib/result.js";

const MIB = 64;
const BLOCKS = [1 << 20, 4096, "hot"] as const;
type Block = (typeof BLOCKS)[number];
const REPS = 5;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

type Sample = Record<string, { gbps: number[]; xor: number }>;

async function child(contender: string): Promise<void> {
  const bytes = xorshiftFill(MIB << 20);
  const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let crc: (b: Buffer) => number;
  if (contender === "node-rs") {
    const m = await import("@node-rs/crc32");
    crc = (b) => m.crc32c(b);
  } else if (contender === "ours-sse4.2") {
    const { loadNative } = await import("../src/native/load.js");
    const native = loadNative().binding!;
    crc = (b) => native.crc32cWith("sse4.2", b, 0);
  } else {
    const { crc32c, nativeStatus } = await import("../src/index.js");
    if (nativeStatus().features.hash.native !== (contender === "ours-native"))
      throw new Error(`${contender}: wrong backend`);
    crc = (b) => crc32c(b);
  }
  const out: Sample = {};
  for (const block of BLOCKS) {
    const views =
      block === "hot"
        ? Array.from({ length: MIB }, () => data.subarray(0, 1 << 20))
        : Array.from({ length: data.length / block }, (_, i) => data.subarray(i * block, (i + 1) * block));
    const gbps: number[] = [];
    let xor = 0;
    for (let r = -1; r < REPS; r++) {
      xor = 0;
      const t0 = process.hrtime.bigint();
      for (const v of views) xor ^= crc(v);
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      if (r >= 0) gbps.push(data.length / dt / 1e9);
    }
    out[block] = { gbps, xor: xor >>> 0 };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

async function main(): Promise<void> {
  const { loadNative } = await import("../src/native/load.js");
  const features = loadNative().binding?.features;
  const impls = features?.crc32cImpls ?? [];
  const chosen = features?.crc32c;
  const contenders = [
    "ours-native",
    ...(chosen !== "sse4.2" && impls.includes("sse4.2") ? ["ours-sse4.2"] : []),
    "ours-ts",
    "node-rs",
  ];
  const perRound: Record<string, number[]> = {};
  const xors = new Map<Block, Set<number>>(BLOCKS.map((b) => [b, new Set()]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of contenders) {
      const s = runChild<Sample>(fileURLToPath(import.meta.url), c);
      for (const block of BLOCKS) {
        const key = `${c}/${block}`;
        xors.get(block)!.add(s[block]!.xor);
        perRound[key] = [...(perRound[key] ?? []), round(median(s[block]!.gbps))];
        console.log(`round ${r + 1} ${key.padEnd(20)} ${median(s[block]!.gbps).toFixed(2)} GB/s`);
      }
    }
  }
  for (const [block, set] of xors) {
    if (set.size !== 1) throw new Error(`contenders disagree on the ${block}-byte block CRCs`);
  }
  const m = (k: string) => round(median(perRound[k]!), 2);
  const result = writeResult(
    {
      name: "crc",
      unit: "GB/s (CRC-32C, 1 MiB blocks)",
      ours: m(`ours-native/${1 << 20}`),
      peers: { "@node-rs/crc32": m(`node-rs/${1 << 20}`) },
      detail: {
        what: `CRC-32C of every block of a ${MIB} MiB buffer; hot: one 1 MiB block ${MIB} times (GB = 1e9 bytes)`,
        implementation: chosen,
        method: `${ROUNDS} interleaved rounds, each contender in its own process, median of ${REPS} passes after a warm-up`,
        blocks4KiB: {
          ours: m("ours-native/4096"),
          "@node-rs/crc32": m("node-rs/4096"),
          oursTs: m("ours-ts/4096"),
        },
        hot1MiB: {
          ours: m("ours-native/hot"),
          "@node-rs/crc32": m("node-rs/hot"),
          ...(contenders.includes("ours-sse4.2") ? { oursSse42: m("ours-sse4.2/hot") } : {}),
        },
        ...(contenders.includes("ours-sse4.2")
          ? { oursSse42: m(`ours-sse4.2/${1 << 20}`), oursSse42Blocks4KiB: m("ours-sse4.2/4096") }
          : {}),
        oursTs: m(`ours-ts/${1 << 20}`),
        perRound,
      },
    },
    true,
  );
  console.log(JSON.stringify({ ours: result.ours, peers: result.peers, ratios: result.ratios }));
}

if (process.argv[2] === "--child") await child(process.argv[3]!);
else await main();
