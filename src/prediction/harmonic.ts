/**
 * robustMPC's throughput predictor (Yin et al., SIGCOMM'15, as used in
 * Pensieve's baselines): the harmonic mean of the last few rates, divided by one
 * plus the largest relative error of its recent predictions. The harmonic mean
 * leans toward the low samples and the divisor toward caution after misses: a
 * cheap, conservative baseline that every other estimator has to beat.
 */
import { type Estimator, integerIn } from "./estimator.js";
import { isMeasurement, type Sample } from "./sample.js";

/** Options of {@link Harmonic}. */
export interface HarmonicOptions {
  /** Rates averaged, and past errors the discount looks at, [1, 64]. @default 5 */
  window?: number;
}

/** A relative error is capped here, so a sample of zero gives a finite (and drastic) discount. */
const MAX_ERROR = 1000;

function harmonicMean(xs: readonly number[]): number {
  let inv = 0;
  for (const x of xs) {
    if (x <= 0) return 0;
    inv += 1 / x;
  }
  return xs.length / inv;
}

/**
 * The discounted harmonic mean; the same figure for every horizon.
 *
 * Each new measurement first scores the previous undiscounted mean:
 * |mean − rate| / rate, the error robustMPC keeps.
 *
 * Lower bounds: one enters the window only when that raises the harmonic mean
 * (it evicts the oldest rate, which may be higher); it scores no error, since
 * the true rate is unknown.
 */
export class Harmonic implements Estimator {
  readonly name = "harmonic";
  readonly #window: number;
  readonly #rates: number[] = [];
  readonly #errors: number[] = [];

  constructor(options: HarmonicOptions = {}) {
    this.#window = integerIn("harmonic.window", options.window, 1, 64, 5);
  }

  add(s: Sample): void {
    if (!isMeasurement(s)) return;
    const before = harmonicMean(this.#rates);
    const rates = [...this.#rates, s.bps].slice(-this.#window);
    if (s.lowerBound) {
      if (this.#rates.length > 0 && harmonicMean(rates) <= before) return;
    } else if (this.#rates.length > 0) {
      const error = s.bps > 0 ? Math.abs(before - s.bps) / s.bps : before > 0 ? MAX_ERROR : 0;
      this.#errors.push(Math.min(error, MAX_ERROR));
      if (this.#errors.length > this.#window) this.#errors.shift();
    }
    this.#rates.splice(0, this.#rates.length, ...rates);
  }

  predict(): number | undefined {
    if (this.#rates.length === 0) return undefined;
    return harmonicMean(this.#rates) / (1 + Math.max(0, ...this.#errors));
  }
}
