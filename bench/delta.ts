// `npm run bench -- delta`: a 5 %-dirty snapshot of the 256 MiB corpus sent as a
// delta against the previous one. DWCP (page frames of 256 pages against the
// acknowledged baseline, both images in memory, as in a migration round) against,
// in the same run and interleaved rounds:
//   xdelta3 -e -9 -s (VCDIFF), and zstd -3 --long=28 --patch-from, each its own process
//   reading the two snapshots from the page cache.
// Reported: delta bytes and encode time; DWCP's decode is verified bit for bit.
// Goals (#6): size ≤ 1.05× xdelta3's; ≥ 30× faster than zstd --patch-from.
import { spawnSync } from "node:child_process";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeImage, makeSnapshot } from "./corpus.js";
import { median, nativeInUse, round, WORK_DIR, writeResult } from "./lib/result.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MIB = Number(process.env.BENCH_CORPUS_MIB ?? 256);
const PAGE = 4096;
const BATCH = 256;

interface Measure {
  bytes: number;
  encodeS: number;
  decodeS?: number;
}

async function child(name: string): Promise<Measure> {
  const { encodePages, encodePagesAsync, decodePages, decodePagesAsync, BaselineStore, PageCodec } =
    await import("../src/codec/public.js");
  const { hashPages } = await import("../src/index.js");
  const { image: v1 } = makeImage({ bytes: MIB << 20, seed: 1 });
  const { image: v2 } = makeSnapshot(v1, { dirtyFraction: 0.05, seed: 1 });
  const [codecName, engine] = name.split("-") as [string, string];
  const policy =
    codecName === "lz4"
      ? { codec: PageCodec.LZ4, level: 1 }
      : { codec: PageCodec.ZSTD, level: codecName === "zstd1" ? 1 : 3 };
  // The sender hashed v1's pages when it sent v1: a migration keeps them for the next round.
  const hashes = hashPages(v1, PAGE);
  const baseline = { version: 1, image: v1, hashes };
  const pages = v2.length / PAGE;
  const batch = (p: number) => ({ imageId: 1, version: 2, firstPage: p, pageCount: BATCH, policy, baseline });
  const encodeAll = async () => {
    const frames: Uint8Array[] = new Array(pages / BATCH);
    if (engine === "ts") {
      for (let p = 0; p < pages; p += BATCH) frames[p / BATCH] = encodePages(v2, batch(p)).frame;
      return frames;
    }
    // Native: batches on the libuv pool, a few in flight so both cores work.
    let next = 0;
    const worker = async () => {
      for (let p = next; p < pages; p = next) {
        next += BATCH;
        frames[p / BATCH] = await encodePagesAsync(v2, batch(p));
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    return frames;
  };
  await encodeAll(); // warm-up
  // Five passes, the median kept: one pass is tens of milliseconds.
  const times: number[] = [];
  let frames: Uint8Array[] = [];
  for (let k = 0; k < 5; k++) {
    const t0 = performance.now();
    frames = await encodeAll();
    times.push((performance.now() - t0) / 1000);
  }
  const encodeS = median(times);
  const store = new BaselineStore();
  store.put(1, 1, v1);
  const target = new Uint8Array(v2.length);
  const t1 = performance.now();
  if (engine === "ts") for (const f of frames) decodePages(f, { target, baselines: store });
  else {
    let next = 0;
    const worker = async () => {
      while (next < frames.length) await decodePagesAsync(frames[next++]!, { target, baselines: store });
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  }
  const decodeS = (performance.now() - t1) / 1000;
  if (Buffer.compare(target, v2) !== 0) throw new Error("decoded snapshot differs");
  return { bytes: frames.reduce((n, f) => n + f.length, 0), encodeS, decodeS };
}

function timed(cmd: string, args: string[], out: string): Measure {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  const encodeS = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr}`);
  return { bytes: statSync(out).size, encodeS };
}

function runChild(policy: string): Measure {
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, ["--import", "tsx", self, "--child", policy], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Measure;
}

async function main(): Promise<void> {
  for (const tool of ["xdelta3", "zstd"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) {
      console.error(`${tool} is required (Debian: ${tool})`);
      process.exit(1);
    }
  }
  mkdirSync(WORK_DIR, { recursive: true });
  const { image: v1 } = makeImage({ bytes: MIB << 20, seed: 1 });
  const { image: v2, dirty } = makeSnapshot(v1, { dirtyFraction: 0.05, seed: 1 });
  const f1 = join(WORK_DIR, "snap1.bin");
  const f2 = join(WORK_DIR, "snap2.bin");
  writeFileSync(f1, v1);
  writeFileSync(f2, v2);
  let changed = 0;
  for (let i = 0; i < v1.length; i++) if (v1[i] !== v2[i]) changed++;
  const samples: Record<string, Measure[]> = {
    "dwcp-zstd-native": [],
    "dwcp-zstd1-native": [],
    "dwcp-lz4-native": [],
    "dwcp-zstd-ts": [],
    xdelta3: [],
    "zstd-patch-from": [],
  };
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of Object.keys(samples)) {
      let m: Measure;
      if (c === "xdelta3")
        m = timed(
          "xdelta3",
          // -9: xdelta3's smallest output (smaller here than with a whole-file -B window).
          ["-e", "-9", "-f", "-s", f1, f2, join(WORK_DIR, "d.xd3")],
          join(WORK_DIR, "d.xd3"),
        );
      else if (c === "zstd-patch-from")
        m = timed(
          "zstd",
          ["-3", "-q", "-f", "--long=28", `--patch-from=${f1}`, f2, "-o", join(WORK_DIR, "d.zst")],
          join(WORK_DIR, "d.zst"),
        );
      else m = runChild(c.slice(5));
      samples[c]!.push(m);
      console.log(
        `round ${r + 1} ${c.padEnd(16)} ${m.bytes} bytes  encode ${(m.encodeS * 1000).toFixed(0)} ms${m.decodeS ? `  decode ${(m.decodeS * 1000).toFixed(0)} ms` : ""}`,
      );
    }
  }
  const bytes = (c: string) => median(samples[c]!.map((m) => m.bytes));
  const secs = (c: string) => median(samples[c]!.map((m) => m.encodeS));
  const best = bytes("dwcp-zstd-native") <= bytes("dwcp-lz4-native") ? "dwcp-zstd-native" : "dwcp-lz4-native";
  const result = writeResult(
    {
      name: "delta",
      unit: "delta bytes (5 % dirty pages of a 256 MiB snapshot)",
      ours: bytes(best),
      peers: { xdelta3: bytes("xdelta3"), "zstd-patch-from": bytes("zstd-patch-from") },
      detail: {
        method: `${ROUNDS} interleaved rounds; CLIs timed as processes on files in the page cache; DWCP timed in-process (median of 5 passes) with both snapshots in memory and the baseline's page hashes kept from the previous round (pages of ${PAGE} bytes, batches of ${BATCH}; native: 4 batches in flight on the libuv pool; ts: the TypeScript encoder on the main thread)`,
        floor: { changedBytes: changed, dirtyPages: dirty.length },
        encodeSeconds: Object.fromEntries(Object.keys(samples).map((c) => [c, round(secs(c), 4)])),
        speedup: {
          "dwcp-zstd-native vs zstd-patch-from": round(secs("zstd-patch-from") / secs("dwcp-zstd-native"), 2),
          "dwcp-lz4-native vs zstd-patch-from": round(secs("zstd-patch-from") / secs("dwcp-lz4-native"), 2),
          "dwcp-zstd1-native vs zstd-patch-from": round(
            secs("zstd-patch-from") / secs("dwcp-zstd1-native"),
            2,
          ),
          "dwcp-zstd-ts vs zstd-patch-from": round(secs("zstd-patch-from") / secs("dwcp-zstd-ts"), 2),
        },
        bytes: Object.fromEntries(Object.keys(samples).map((c) => [c, bytes(c)])),
        decodeSeconds: {
          "dwcp-zstd-native": round(median(samples["dwcp-zstd-native"]!.map((m) => m.decodeS!)), 4),
          "dwcp-lz4-native": round(median(samples["dwcp-lz4-native"]!.map((m) => m.decodeS!)), 4),
        },
        goals: { "size vs xdelta3": "≤ 1.05×", "speed vs zstd --patch-from": "≥ 30×" },
      },
    },
    nativeInUse(),
  );
  console.log(
    JSON.stringify(
      { ours: result.ours, peers: result.peers, ratios: result.ratios, detail: result.detail },
      null,
      2,
    ),
  );
}

const [flag, policy] = process.argv.slice(2);
if (flag === "--child") console.log(JSON.stringify(await child(policy!)));
else await main();
