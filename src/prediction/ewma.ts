/**
 * Exponentially weighted moving average: the detector's own smoothing, as a
 * baseline that follows a level and ignores trends.
 */
import { type Estimator, numberIn } from "./estimator.js";
import { isMeasurement, type Sample } from "./sample.js";

/** Options of {@link Ewma}. */
export interface EwmaOptions {
  /** Weight of a new sample, (0, 1]. @default 0.3 (the mode classifier's smoothing) */
  alpha?: number;
}

/**
 * EWMA of the measured rates; the same figure for every horizon.
 *
 * Lower bounds: one above the average is taken as a sample (it raises the
 * average); one at or below it is ignored.
 */
export class Ewma implements Estimator {
  readonly name = "ewma";
  readonly #alpha: number;
  #value: number | undefined;

  constructor(options: EwmaOptions = {}) {
    this.#alpha = numberIn("ewma.alpha", options.alpha, Number.MIN_VALUE, 1, 0.3);
  }

  add(s: Sample): void {
    if (!isMeasurement(s)) return;
    if (this.#value === undefined) this.#value = s.bps;
    else if (!s.lowerBound || s.bps > this.#value) this.#value += this.#alpha * (s.bps - this.#value);
  }

  predict(): number | undefined {
    return this.#value;
  }
}
