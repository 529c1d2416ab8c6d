/**
 * The soft scores: each rates a feasible host from 0 (worst) to 100 (best)
 * for the prepared VM, and the total is their sum weighted by
 * {@link ScoreWeights}. A score the VM does not ask for (no spread, no
 * affinity, no peers, not a move) is 0 on every host, so it cannot change
 * the ranking.
 */
import { invalidArg } from "../errors.js";
import type { VmContext } from "./filters.js";
import type { ClusterState, ScoreWeights } from "./model.js";
import type { Usage } from "./usage.js";

/** The soft scores, in report order (the keys of {@link ScoreWeights}). */
export const SCORES = [
  "binpack",
  "balance",
  "spread",
  "affinity",
  "antiAffinity",
  "network",
  "migration",
  "price",
] as const;
/** One soft score's name. */
export type ScoreName = (typeof SCORES)[number];

/** Nomad's BestFit v3 tops out at 18 (both resources full: 20 − (1 + 1)). */
const BESTFIT_MAX = 18;

/**
 * Google's BestFit v3 as Nomad scores bin packing: `20 − (10^freeCpu + 10^freeMem)`
 * with the free fractions (0..1) after placing, clamped to [0, 18]. Full hosts score high.
 */
export function bestFitV3(freeCpuFraction: number, freeMemFraction: number): number {
  const raw = 20 - (10 ** freeCpuFraction + 10 ** freeMemFraction);
  return raw < 0 ? 0 : raw > BESTFIT_MAX ? BESTFIT_MAX : raw;
}

/** Validates weights (each finite) and returns them as an array in {@link SCORES} order. */
export function weightVector(w: ScoreWeights): Float64Array {
  const out = new Float64Array(SCORES.length);
  SCORES.forEach((s, i) => {
    const v = w[s];
    if (typeof v !== "number" || !Number.isFinite(v)) throw invalidArg(`weights.${s}`, "a finite number", v);
    out[i] = v;
  });
  return out;
}

/** What the scores read beyond the usage: the RTT matrix and its largest entry. */
export interface ScoreInputs {
  readonly rtt: ClusterState["rttMs"];
  /** Largest RTT in the matrix (the network score's yardstick); 0 when there is none. */
  readonly maxRtt: number;
}

/** Prepares the RTT matrix for scoring. */
export function scoreInputs(state: ClusterState): ScoreInputs {
  let maxRtt = 0;
  for (const row of Object.values(state.rttMs ?? {})) {
    for (const v of Object.values(row)) if (Number.isFinite(v) && v > maxRtt) maxRtt = v;
  }
  return { rtt: state.rttMs, maxRtt };
}

function freeFraction(alloc: number, used: number): number {
  if (alloc <= 0) return 0;
  const f = 1 - used / alloc;
  return f < 0 ? 0 : f > 1 ? 1 : f;
}

function rttBetween(rtt: ClusterState["rttMs"], a: string, b: string): number {
  if (a === b) return 0;
  const v = rtt?.[a]?.[b] ?? rtt?.[b]?.[a] ?? 0;
  return Number.isFinite(v) && v > 0 ? v : 0;
}

/**
 * Scores host `h` for the prepared VM as if it were placed there: writes each
 * score (0–100) into `out` (indexed like {@link SCORES}) when given, and
 * returns the weighted total. A zero weight skips its score's work.
 */
export function scoreHost(
  ctx: VmContext,
  usage: Usage,
  inputs: ScoreInputs,
  h: number,
  w: Float64Array,
  out?: Float64Array,
): number {
  const host = usage.hosts[h]!;
  let total = 0;
  // Written out per score rather than through a helper closure: this runs once
  // per candidate per VM, and a closure per call shows in the profile.
  let s = 0;
  if (w[0] !== 0 || out) {
    const fc = freeFraction(usage.allocCpu[h]!, usage.usedCpu[h]! + ctx.cpu);
    const fm = freeFraction(usage.allocMemory[h]!, usage.usedMemory[h]! + ctx.memory);
    s = (bestFitV3(fc, fm) / BESTFIT_MAX) * 100;
    if (out) out[0] = s;
    total += w[0]! * s;
  }
  if (w[1] !== 0 || out) {
    // Balanced allocation: the spread (standard deviation) of the used
    // fractions after placing; a host whose resources run out together wastes least.
    const c = 1 - freeFraction(usage.allocCpu[h]!, usage.usedCpu[h]! + ctx.cpu);
    const m = 1 - freeFraction(usage.allocMemory[h]!, usage.usedMemory[h]! + ctx.memory);
    let sum = c + m;
    let sq = c * c + m * m;
    let k = 2;
    if (ctx.disk > 0) {
      const d = 1 - freeFraction(usage.allocDisk[h]!, usage.usedDisk[h]! + ctx.disk);
      sum += d;
      sq += d * d;
      k++;
    }
    if (ctx.gpu > 0) {
      const g = 1 - freeFraction(usage.allocGpu[h]!, usage.usedGpu[h]! + ctx.gpu);
      sum += g;
      sq += g * g;
      k++;
    }
    const mean = sum / k;
    const sd = Math.sqrt(Math.max(0, sq / k - mean * mean));
    s = (1 - sd) * 100;
    if (out) out[1] = s;
    total += w[1]! * s;
  }
  const sp = ctx.spread;
  if (sp && (w[2] !== 0 || out)) {
    // Rated by how far the host's domain sits above the least loaded eligible
    // one: at the minimum 100, at maxSkew + 1 above it (or no label) 0.
    const d = sp.domains.ofHost[h]!;
    const excess = d < 0 ? Number.POSITIVE_INFINITY : sp.counts[d]! - sp.min;
    s = Math.max(0, 1 - excess / (sp.constraint.maxSkew + 1)) * 100;
    if (out) out[2] = s;
    total += w[2]! * s;
  }
  const aff = ctx.vm.affinity;
  if (aff && (w[3] !== 0 || out)) {
    let n = 0;
    let hit = 0;
    for (const k in aff) {
      n++;
      if (host.labels?.[k] === aff[k]) hit++;
    }
    s = n === 0 ? 0 : (hit / n) * 100;
    if (out) out[3] = s;
    total += w[3]! * s;
  }
  if (ctx.vm.antiAffinity === "soft" && ctx.vm.group !== undefined && (w[4] !== 0 || out)) {
    s = 100 / (1 + usage.groupOnHost(ctx.vm.group, h));
    if (out) out[4] = s;
    total += w[4]! * s;
  }
  const peers = ctx.vm.talksTo;
  if (peers && peers.length > 0 && (w[5] !== 0 || out)) {
    let sum = 0;
    for (const p of peers) sum += rttBetween(inputs.rtt, host.id, p);
    const mean = sum / peers.length;
    s = inputs.maxRtt > 0 ? (1 - Math.min(1, mean / inputs.maxRtt)) * 100 : 100;
    if (out) out[5] = s;
    total += w[5]! * s;
  }
  const cur = ctx.vm.currentHost;
  if (cur !== undefined && (w[6] !== 0 || out)) {
    // Moving costs in proportion to the memory copied, against the largest host's memory.
    const cost = cur === host.id ? 0 : usage.maxMemory > 0 ? Math.min(1, ctx.memory / usage.maxMemory) : 1;
    s = (1 - cost) * 100;
    if (out) out[6] = s;
    total += w[6]! * s;
  }
  if (w[7] !== 0 || out) {
    s = usage.maxPrice > 0 ? (1 - (host.price ?? 0) / usage.maxPrice) * 100 : 100;
    if (out) out[7] = s;
    total += w[7]! * s;
  }
  return total;
}
