// `npm run bench -- codec`: LZ4 on the 256 MiB corpus (bench/corpus.ts), in
// 1 MiB independent blocks: compress and decompress MB/s (uncompressed bytes per
// second) and ratio, against, in the same run and interleaved rounds:
//   the lz4 CLI's in-memory benchmark (`lz4 -b1 -B1048576`, one core), and
//   lz4-napi's frame API, async (8 calls in flight on the libuv pool) and sync.
// DWCP runs through its public API: lz4CompressAsync with 8 blocks in flight (both
// cores), then decompression on the main thread two ways:
//   dwcp: lz4Decompress, a new output buffer per block, one pass;
//   dwcp-into: lz4DecompressInto, each block into its place in one image-sized
//     buffer, best of three passes: what the CLI's -b times (LZ4 blocks decoded
//     into a result buffer it allocated once, best of its -i passes).
// Each contender runs in its own process.
// Goals (#6): ≥ 1.0× the CLI's compress MB/s at ≥ its ratio; ≥ 3× lz4-napi;
// decompression (#19) ≥ 0.8× the CLI's.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeImage } from "./corpus.js";
import { median, nativeInUse, round, WORK_DIR, writeResult } from "./lib/result.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MIB = Number(process.env.BENCH_CORPUS_MIB ?? 256);
const BLOCK = 1 << 20;
const IN_FLIGHT = 8;

interface Measure {
  ratio: number;
  compressMBps: number;
  decompressMBps: number;
  /** DWCP only: lz4DecompressInto into a buffer allocated once. */
  decompressIntoMBps?: number;
}

function blocks(image: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < image.length; at += BLOCK) out.push(image.subarray(at, at + BLOCK));
  return out;
}

/** Runs `f` over every block with at most IN_FLIGHT pending; returns seconds. */
async function pool<T>(items: Uint8Array[], f: (b: Uint8Array) => Promise<T>, out: T[]): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return (performance.now() - t0) / 1000;
}

/**
 * HDE size reduction of the whole corpus sent as page frames (batches of 256
 * pages) in each mode's policy. The dictionary is trained on pages of another
 * image from the same generator (like one trained on earlier guests of a fleet),
 * never on the image it compresses.
 */
async function modeSizes(): Promise<Record<string, number>> {
  const { encodePagesAsync, trainDictionary, ZstdDictionary } = await import("../src/codec/public.js");
  const { policyFor } = await import("../src/index.js");
  const { image } = makeImage({ bytes: MIB << 20, seed: 1 });
  const { image: other } = makeImage({ bytes: 32 << 20, seed: 99 });
  const samples = Array.from({ length: 8192 }, (_, i) => other.subarray(i * 4096, (i + 1) * 4096));
  const dictionary = new ZstdDictionary(trainDictionary(samples, 112_640), 9);
  const out: Record<string, number> = {};
  for (const [name, policy] of [
    ["datacenter (lz4 1)", policyFor("datacenter", { v3: true })],
    ["internet (zstd 9)", policyFor("internet", { v3: true })],
    ["internet (zstd 9 + dictionary)", policyFor("internet", { v3: true, dictionary })],
  ] as const) {
    let bytes = 0;
    const pages = image.length / 4096;
    for (let p = 0; p < pages; p += 256 * 4) {
      const batch = await Promise.all(
        [0, 1, 2, 3].map((k) =>
          encodePagesAsync(image, { imageId: 1, version: 1, firstPage: p + k * 256, pageCount: 256, policy }),
        ),
      );
      for (const f of batch) bytes += f.length;
    }
    out[name] = round(1 - bytes / image.length, 4);
  }
  return out;
}

async function child(kind: string): Promise<Measure> {
  const { image } = makeImage({ bytes: MIB << 20, seed: 1 });
  const input = blocks(image);
  const packed: Uint8Array[] = [];
  let cs: number;
  let ds: number;
  let into: number | undefined;
  if (kind === "dwcp") {
    const c = await import("../src/codec/index.js");
    await pool(input.slice(0, 16), (b) => c.lz4CompressAsync(b), []); // warm-up
    cs = await pool(input, (b) => c.lz4CompressAsync(b), packed);
    const t0 = performance.now();
    for (const p of packed) c.lz4Decompress(p, { maxBytes: BLOCK });
    ds = (performance.now() - t0) / 1000;
    const target = new Uint8Array(image.length);
    into = Number.POSITIVE_INFINITY;
    for (let pass = 0; pass < 3; pass++) {
      const t1 = performance.now();
      for (let i = 0; i < packed.length; i++)
        c.lz4DecompressInto(packed[i]!, target.subarray(i * BLOCK, (i + 1) * BLOCK));
      into = Math.min(into, (performance.now() - t1) / 1000);
    }
    if (Buffer.compare(target, image) !== 0) throw new Error("lz4DecompressInto: the decoded image differs");
  } else if (kind === "lz4-napi") {
    const l = await import("lz4-napi");
    await pool(input.slice(0, 16), (b) => l.compressFrame(b), []);
    cs = await pool(input, (b) => l.compressFrame(b), packed);
    const out: Uint8Array[] = [];
    ds = await pool(packed, (p) => l.decompressFrame(p), out);
  } else {
    // lz4-napi's synchronous frame API, one block at a time on the main thread.
    const l = await import("lz4-napi");
    const buf = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.length);
    for (const b of input.slice(0, 16)) l.compressFrameSync(buf(b));
    let t0 = performance.now();
    for (const b of input) packed.push(l.compressFrameSync(buf(b)));
    cs = (performance.now() - t0) / 1000;
    t0 = performance.now();
    for (const p of packed) l.decompressFrameSync(buf(p));
    ds = (performance.now() - t0) / 1000;
  }
  const compressed = packed.reduce((n, p) => n + p.length, 0);
  return {
    ratio: image.length / compressed,
    compressMBps: image.length / 1e6 / cs,
    decompressMBps: image.length / 1e6 / ds,
    ...(into === undefined ? {} : { decompressIntoMBps: image.length / 1e6 / into }),
  };
}

function cli(file: string): Measure {
  // -b1: in-memory benchmark at level 1; -B: 1 MiB independent blocks; -i3: three passes, best kept.
  const r = spawnSync("lz4", ["-b1", `-B${BLOCK}`, "-i3", file], { encoding: "utf8" });
  const text = `${r.stdout}${r.stderr}`;
  const m = /->\s*(\d+)\s*\(([\d.]+)\),\s*([\d.]+)\s*MB\/s\s*,\s*([\d.]+)\s*MB\/s/.exec(
    text.replace(/\r/g, "\n"),
  );
  if (!m) throw new Error(`cannot read the lz4 benchmark output: ${text.slice(-300)}`);
  // The CLI reports MB/s with MB = 1,000,000 bytes, like ours.
  return { ratio: Number(m[2]), compressMBps: Number(m[3]), decompressMBps: Number(m[4]) };
}

function runChild(kind: string): Measure {
  const self = fileURLToPath(import.meta.url);
  const out = execFileSync(process.execPath, ["--import", "tsx", self, "--child", kind], {
    encoding: "utf8",
    maxBuffer: 1 << 20,
  });
  return JSON.parse(out.trim().split("\n").pop()!) as Measure;
}

async function main(): Promise<void> {
  if (spawnSync("sh", ["-c", "command -v lz4"]).status !== 0) {
    console.error("the lz4 CLI is required (Debian: lz4)");
    process.exit(1);
  }
  mkdirSync(WORK_DIR, { recursive: true });
  const file = join(WORK_DIR, `corpus-${MIB}m.bin`);
  writeFileSync(file, makeImage({ bytes: MIB << 20, seed: 1 }).image);
  const samples: Record<string, Measure[]> = { dwcp: [], "lz4-cli": [], "lz4-napi": [], "lz4-napi-sync": [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of Object.keys(samples)) {
      const m = c === "lz4-cli" ? cli(file) : runChild(c);
      samples[c]!.push(m);
      const into = m.decompressIntoMBps ? `  (into a buffer: ${m.decompressIntoMBps.toFixed(0)} MB/s)` : "";
      console.log(
        `round ${r + 1} ${c.padEnd(9)} ratio ${m.ratio.toFixed(3)}  compress ${m.compressMBps.toFixed(0)} MB/s  decompress ${m.decompressMBps.toFixed(0)} MB/s${into}`,
      );
    }
  }
  const med = (c: string, k: keyof Measure) => round(median(samples[c]!.map((m) => m[k] ?? Number.NaN)), 3);
  const decompressMBps = {
    dwcp: med("dwcp", "decompressMBps"),
    "dwcp-into": med("dwcp", "decompressIntoMBps"),
    "lz4-cli-b1": med("lz4-cli", "decompressMBps"),
    "lz4-napi-async": med("lz4-napi", "decompressMBps"),
    "lz4-napi-sync": med("lz4-napi-sync", "decompressMBps"),
  };
  const reduction = JSON.parse(
    execFileSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--child", "modes"], {
      encoding: "utf8",
    })
      .trim()
      .split("\n")
      .pop()!,
  ) as Record<string, number>;
  console.log("size reduction of the corpus as page frames, by mode:", reduction);
  const result = writeResult(
    {
      name: "codec",
      unit: "MB/s LZ4 compress (uncompressed bytes, 1 MiB blocks, 256 MiB corpus)",
      ours: med("dwcp", "compressMBps"),
      peers: {
        "lz4-cli-b1": med("lz4-cli", "compressMBps"),
        "lz4-napi-async": med("lz4-napi", "compressMBps"),
        "lz4-napi-sync": med("lz4-napi-sync", "compressMBps"),
      },
      detail: {
        method: `${ROUNDS} interleaved rounds, each contender in its own process; compression: DWCP and lz4-napi with ${IN_FLIGHT} blocks in flight on the libuv pool (both cores), the CLI's -b mode single-threaded; decompression single-threaded: dwcp is lz4Decompress (a new buffer per block, one pass), dwcp-into is lz4DecompressInto into one image-sized buffer (best of 3 passes, as the CLI's -i3 into its result buffer)`,
        ratio: {
          dwcp: med("dwcp", "ratio"),
          "lz4-cli-b1": med("lz4-cli", "ratio"),
          "lz4-napi-async": med("lz4-napi", "ratio"),
          "lz4-napi-sync": med("lz4-napi-sync", "ratio"),
        },
        decompressMBps,
        decompressVsCli: {
          dwcp: round(decompressMBps.dwcp / decompressMBps["lz4-cli-b1"], 3),
          "dwcp-into": round(decompressMBps["dwcp-into"] / decompressMBps["lz4-cli-b1"], 3),
        },
        goals: {
          "lz4-cli-b1": 1.0,
          "decompress vs lz4-cli-b1": 0.8,
          "lz4-napi-async": 3,
          ratio: "≥ the CLI's",
          "internet-mode size reduction": "70–85 % (migration plan)",
        },
        sizeReductionByMode: reduction,
        samples,
      },
    },
    nativeInUse(),
  );
  console.log(
    JSON.stringify(
      {
        ours: result.ours,
        peers: result.peers,
        ratios: result.ratios,
        detail: {
          ratio: result.detail?.ratio,
          decompressMBps: result.detail?.decompressMBps,
          decompressVsCli: result.detail?.decompressVsCli,
        },
      },
      null,
      2,
    ),
  );
}

const [flag, kind] = process.argv.slice(2);
if (flag === "--child")
  console.log(JSON.stringify(kind === "modes" ? await modeSizes() : await child(kind!)));
else await main();
