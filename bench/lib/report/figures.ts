// The figures the plots draw, taken from a result: ratios against each peer, CPU
// seconds per GB, and mode-detection decisions and timelines. `detail` is free
// form, so every field is checked before it is used; what is absent or of
// another shape yields no rows and no plot.
import type { BenchResult } from "../result.js";

export interface RatioRow {
  peer: string;
  /** ours ÷ peer. */
  ratio: number;
  /** The goal for this ratio when `detail.goals` gives one as a number. */
  goal: number | undefined;
}

export interface CpuRow {
  contender: string;
  senderCpuSecondsPerGB: number;
  receiverCpuSecondsPerGB: number;
}

export interface ModeEventPoint {
  /** Milliseconds since the detector started. */
  atMs: number;
  mode: string;
}

/** The smoothed path estimate at one moment. */
export interface EstimatePoint {
  /** Milliseconds since the detector started. */
  atMs: number;
  rttMs: number;
  mbps: number;
}

export interface ModeRow {
  profile: string;
  expected: string;
  decided: string;
  decisionMs: number;
  goalMs: number;
  changesDuringSteady: number;
  /** Every mode event, the first decision included; empty when the result predates recording them. */
  events: ModeEventPoint[];
  /** Empty when the result predates recording it. */
  trace: EstimatePoint[];
}

/** Which way is better, read from the unit; undefined when the unit does not say. */
export type Direction = "higher" | "lower" | undefined;

/** Traces longer than this are thinned: a plot has a few hundred pixels across. */
const MAX_TRACE = 2000;

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function finite(x: unknown): x is number {
  return typeof x === "number" && Number.isFinite(x);
}

export function direction(unit: string): Direction {
  // A unit that says so, then rates: "MB/s … (uncompressed bytes …)" is a rate, not a size.
  if (/lower is better/i.test(unit)) return "lower";
  if (/higher is better/i.test(unit)) return "higher";
  if (/\/s\b|per second/i.test(unit)) return "higher";
  if (/\bbytes\b|\bseconds\b|\bms\b|fraction of its goal/i.test(unit)) return "lower";
  return undefined;
}

export function ratioRows(r: BenchResult): RatioRow[] {
  const goals = isRecord(r.detail?.goals) ? r.detail.goals : {};
  return Object.keys(r.peers)
    .filter((peer) => finite(r.ratios[peer]))
    .map((peer) => {
      const goal = goals[peer];
      return { peer, ratio: r.ratios[peer]!, goal: finite(goal) ? goal : undefined };
    });
}

/** `detail.cpu`: per contender, CPU seconds per GB moved on each side. */
export function cpuRows(r: BenchResult): CpuRow[] {
  const cpu = r.detail?.cpu;
  if (!isRecord(cpu)) return [];
  const rows: CpuRow[] = [];
  for (const [contender, v] of Object.entries(cpu)) {
    if (!isRecord(v)) continue;
    const { senderCpuSecondsPerGB: tx, receiverCpuSecondsPerGB: rx } = v;
    if (finite(tx) && finite(rx) && tx >= 0 && rx >= 0)
      rows.push({ contender, senderCpuSecondsPerGB: tx, receiverCpuSecondsPerGB: rx });
  }
  return rows;
}

function events(x: unknown): ModeEventPoint[] {
  if (!Array.isArray(x)) return [];
  return x
    .filter(
      (e): e is { atMs: number; mode: string } => isRecord(e) && finite(e.atMs) && typeof e.mode === "string",
    )
    .map((e) => ({ atMs: e.atMs, mode: e.mode }));
}

function trace(x: unknown): EstimatePoint[] {
  if (!Array.isArray(x)) return [];
  const points = x
    .filter((p): p is [number, number, number] => Array.isArray(p) && p.length === 3 && p.every(finite))
    .map(([atMs, rttMs, mbps]) => ({ atMs, rttMs, mbps }));
  if (points.length <= MAX_TRACE) return points;
  const step = points.length / MAX_TRACE;
  return Array.from({ length: MAX_TRACE }, (_, i) => points[Math.floor(i * step)]!);
}

/** `detail.rows` of the mode-detect benchmark: one per network profile. */
export function modeRows(r: BenchResult): ModeRow[] {
  const rows = r.detail?.rows;
  if (!Array.isArray(rows)) return [];
  const out: ModeRow[] = [];
  for (const row of rows) {
    if (!isRecord(row)) continue;
    const { profile, expected, decided, decisionMs, goalMs, changesDuringSteady } = row;
    if (
      typeof profile !== "string" ||
      typeof expected !== "string" ||
      typeof decided !== "string" ||
      !finite(decisionMs) ||
      !finite(goalMs) ||
      !finite(changesDuringSteady)
    )
      continue;
    out.push({
      profile,
      expected,
      decided,
      decisionMs,
      goalMs,
      changesDuringSteady,
      events: events(row.events),
      trace: trace(row.trace),
    });
  }
  return out;
}

/** Flat objects of numbers or strings in `detail` (by key), for the report's list of other figures. */
export function otherFigures(r: BenchResult): [string, [string, string][]][] {
  const skip = new Set(["method", "cpu", "rows", "samples"]);
  const out: [string, [string, string][]][] = [];
  for (const [key, v] of Object.entries(r.detail ?? {})) {
    if (skip.has(key)) continue;
    if (finite(v) || typeof v === "string" || typeof v === "boolean") {
      out.push([key, [["", String(v)]]]);
      continue;
    }
    if (!isRecord(v)) continue;
    const pairs = Object.entries(v)
      .filter(([, x]) => finite(x) || typeof x === "string" || typeof x === "boolean")
      .map(([k, x]): [string, string] => [k, String(x)]);
    if (pairs.length > 0) out.push([key, pairs]);
  }
  return out;
}
