/**
 * Scoring the estimators on a trace: a {@link Predictor} is fed the trace's
 * samples on a clock that reads each sample's own time, and every prediction it
 * scores along the way is tallied. The figures are exactly what the live
 * predictor would have reported over the whole trace, not over a sliding window.
 */
import { ESTIMATORS, type EstimatorName, HORIZONS, type Horizon } from "./estimator.js";
import { Predictor, type PredictorOptions } from "./predictor.js";
import type { Trace } from "./trace.js";

/** One estimator's record at one horizon over a trace. */
export interface Score {
  /** Mean absolute percentage error as a fraction (0.1 is 10 %); absent when nothing was scored. */
  mape?: number;
  /** Share of realised rates inside the interval issued with the prediction, 0–1; absent when nothing was scored. */
  coverage?: number;
  /** Predictions scored. */
  n: number;
}

/** What {@link scoreTrace} returns. */
export interface TraceScore {
  /** The trace's name. */
  trace: string;
  /** Samples replayed. */
  samples: number;
  /** Each estimator's record per horizon (`harmonic` is robustMPC's, the baseline). */
  estimators: Record<EstimatorName, Record<Horizon, Score>>;
  /**
   * The forecast's own record per horizon: at each prediction, the estimator
   * the predictor would have used then (lowest recent MAPE), and how often each
   * was the one.
   */
  selected: Record<Horizon, Score & { picks: Partial<Record<EstimatorName, number>> }>;
}

/** Options of {@link scoreTrace}: the predictor's, without its clock and score hook. */
export type ScoreOptions = Omit<PredictorOptions, "env" | "onScore">;

class Tally {
  #ape = 0;
  #inside = 0;
  #n = 0;

  add(bps: number, realised: number, low: number, high: number): void {
    this.#ape += Math.abs(realised - bps) / realised;
    if (realised >= low && realised <= high) this.#inside++;
    this.#n++;
  }

  score(): Score {
    return this.#n === 0
      ? { n: 0 }
      : { mape: this.#ape / this.#n, coverage: this.#inside / this.#n, n: this.#n };
  }
}

/**
 * Replays `trace` through a fresh {@link Predictor} and returns each
 * estimator's MAPE and interval coverage at 1 s and 10 s, with the record of
 * the estimator chosen at each point. Predictions whose horizon the trace does
 * not cover are not scored.
 *
 * @example A bench's loop over saved traces:
 * ```ts
 * for (const file of files) {
 *   const s = scoreTrace(readTrace(file));
 *   for (const e of ESTIMATORS) console.log(s.trace, e, s.estimators[e]["1s"].mape, s.estimators[e]["1s"].coverage);
 *   console.log(s.trace, "chosen", s.selected["1s"].mape, s.selected["1s"].coverage, s.selected["1s"].picks);
 * }
 * ```
 * @throws DWCPError `ERR_INVALID_ARG` for bad options or a sample out of order
 */
export function scoreTrace(trace: Trace, options: ScoreOptions = {}): TraceScore {
  const tallies = Object.fromEntries(
    ESTIMATORS.map((e) => [e, Object.fromEntries(HORIZONS.map((h) => [h, new Tally()]))]),
  ) as Record<EstimatorName, Record<Horizon, Tally>>;
  const selected = { "1s": new Tally(), "10s": new Tally() };
  const picks: Record<Horizon, Partial<Record<EstimatorName, number>>> = { "1s": {}, "10s": {} };
  let now = 0;
  const predictor = new Predictor({
    ...options,
    env: { clock: { now: () => now } },
    onScore: (s) => {
      tallies[s.estimator][s.horizon].add(s.bps, s.realised, s.low, s.high);
      if (s.selected) {
        selected[s.horizon].add(s.bps, s.realised, s.low, s.high);
        picks[s.horizon][s.estimator] = (picks[s.horizon][s.estimator] ?? 0) + 1;
      }
    },
  });
  for (const s of trace.samples) {
    now = s.at;
    predictor.add(s);
  }
  const estimators = Object.fromEntries(
    ESTIMATORS.map((e) => [e, { "1s": tallies[e]["1s"].score(), "10s": tallies[e]["10s"].score() }]),
  ) as Record<EstimatorName, Record<Horizon, Score>>;
  return {
    trace: trace.name,
    samples: trace.samples.length,
    estimators,
    selected: {
      "1s": { ...selected["1s"].score(), picks: picks["1s"] },
      "10s": { ...selected["10s"].score(), picks: picks["10s"] },
    },
  };
}
