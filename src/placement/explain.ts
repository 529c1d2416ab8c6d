/**
 * Explanations of placement decisions, in the manner of Nomad's AllocMetrics:
 * per VM, how many hosts were evaluated, how many each filter removed, how many
 * were scored, and (when asked) per candidate either the filter that removed
 * it and why, or its score breakdown and weighted total.
 */
import { FILTERS, type FilterName } from "./filters.js";
import { SCORES, type ScoreName } from "./scores.js";

/** One host as a placement saw it. */
export interface CandidateExplanation {
  readonly host: string;
  /** The filter that removed it, when it was removed. */
  readonly filter?: FilterName;
  /** Why, in one line ("memory: needs 4096 MiB, 1024 free"). */
  readonly reason?: string;
  /** Each score (0–100), when it passed every filter. */
  readonly scores?: Readonly<Record<ScoreName, number>>;
  /** The weighted total, when it passed every filter. */
  readonly total?: number;
}

/** Counts of one placement (cheap: kept for every VM). */
export interface PlacementMetrics {
  /** Hosts the filters ran on. */
  readonly evaluated: number;
  /** Hosts removed, per filter (only filters that removed some). */
  readonly filtered: Readonly<Partial<Record<FilterName, number>>>;
  /** Hosts that passed every filter and were scored. */
  readonly scored: number;
}

/** One VM's placement explained. */
export interface VmExplanation {
  readonly vm: string;
  /** Where it went; absent when unplaced. */
  readonly host?: string;
  readonly metrics: PlacementMetrics;
  /** Every host considered, in the order considered. */
  readonly candidates: readonly CandidateExplanation[];
}

/** Turns the per-filter counters (indexed like {@link FILTERS}) into metrics. */
export function metricsOf(evaluated: number, scored: number, counters: Int32Array): PlacementMetrics {
  const filtered: Partial<Record<FilterName, number>> = {};
  FILTERS.forEach((f, i) => {
    if (counters[i]! > 0) filtered[f] = counters[i]!;
  });
  return { evaluated, filtered, scored };
}

/** A score vector (indexed like {@link SCORES}) as a record. */
export function scoreRecord(v: Float64Array): Record<ScoreName, number> {
  const r = {} as Record<ScoreName, number>;
  SCORES.forEach((s, i) => {
    r[s] = Math.round(v[i]! * 100) / 100;
  });
  return r;
}

/** The one-line reason a VM found no host: "no feasible host among 1000 evaluated: memory 600, zone 400". */
export function unplacedReason(vm: string, m: PlacementMetrics): string {
  const parts = Object.entries(m.filtered)
    .sort((a, b) => b[1] - a[1])
    .map(([f, c]) => `${f} ${c}`);
  return `vm ${vm}: no feasible host among ${m.evaluated} evaluated${parts.length ? `: ${parts.join(", ")}` : ""}`;
}
