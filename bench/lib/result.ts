// Shared by every benchmark: the result file format of DESIGN §7 and small stats.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { nativeStatus } from "../../src/index.js";

export const BENCH_DIR = fileURLToPath(new URL("..", import.meta.url));
export const RESULTS_DIR = join(BENCH_DIR, "results");
/** Scratch space for benchmark-built helpers (git-ignored). */
export const WORK_DIR = join(BENCH_DIR, ".work");

export interface BenchResult {
  name: string;
  unit: string;
  ours: number;
  peers: Record<string, number>;
  /** ours ÷ peer, each pair measured in the same interleaved rounds. */
  ratios: Record<string, number>;
  /** Where and when it ran; `date` is an ISO timestamp of the end of the run. */
  env: { node: string; cpus: number; cpu: string; native: boolean; loadavg: number[]; date: string };
  /** Anything else worth keeping: per-round samples, method, goals. */
  detail?: Record<string, unknown>;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function writeResult(r: Omit<BenchResult, "env" | "ratios">, native: boolean): BenchResult {
  const ratios: Record<string, number> = {};
  for (const [k, v] of Object.entries(r.peers)) ratios[k] = round(r.ours / v);
  const full: BenchResult = {
    ...r,
    ratios,
    env: {
      node: process.version,
      cpus: cpus().length,
      cpu: cpus()[0]?.model ?? "unknown",
      native,
      loadavg: loadavg().map((x) => round(x, 2)),
      date: new Date().toISOString(),
    },
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, `${r.name}.json`), `${JSON.stringify(full, null, 2)}\n`);
  return full;
}

export function nativeInUse(): boolean {
  return nativeStatus().features.hash.native;
}
