/**
 * A one-dimensional Kalman filter on a random walk: the rate drifts by process
 * noise Q between samples and each sample adds measurement noise R. Neither is
 * a constant: both are estimated from the recent samples by the method of
 * moments. For a random walk observed with noise, successive differences d
 * have Var(d) = Q + 2R and Cov(dᵢ, dᵢ₋₁) = −R, so a steady noisy rate gives a
 * small Q (heavy smoothing) and a window holding a step gives a large Q (the
 * filter follows the step).
 */
import { type Estimator, integerIn } from "./estimator.js";
import { isMeasurement, type Sample } from "./sample.js";

/** Options of {@link Kalman}. */
export interface KalmanOptions {
  /** Samples the noise estimates are taken over, [4, 1024]. @default 20 */
  window?: number;
}

/** Noise variances never go below this share of the level, squared: keeps the gain defined. */
const NOISE_FLOOR = 1e-3;
/** Before the window holds enough samples, both noises are this share of the level, squared. */
const NOISE_START = 0.1;

/**
 * The filtered rate; the same figure for every horizon (a random walk's best
 * forecast is where it is now).
 *
 * Lower bounds: one above the estimate is taken as a measurement (the estimate
 * moves toward it, so rises); one at or below is ignored. Neither enters the
 * noise estimates, which assume unbiased measurements.
 */
export class Kalman implements Estimator {
  readonly name = "kalman";
  readonly #window: number;
  readonly #recent: number[] = [];
  #x: number | undefined;
  #p = 0;
  #q = 0;
  #r = 0;

  constructor(options: KalmanOptions = {}) {
    this.#window = integerIn("kalman.window", options.window, 4, 1024, 20);
  }

  add(s: Sample): void {
    if (!isMeasurement(s)) return;
    const y = s.bps;
    if (this.#x === undefined) {
      this.#x = y;
      this.#remember(y);
      this.#p = this.#r;
      return;
    }
    if (s.lowerBound && y <= this.#x) return;
    if (!s.lowerBound) this.#remember(y);
    this.#p += this.#q;
    const gain = this.#p / (this.#p + this.#r);
    this.#x += gain * (y - this.#x);
    this.#p *= 1 - gain;
  }

  predict(): number | undefined {
    return this.#x;
  }

  /** Keeps `y` in the window and re-estimates Q and R from it. */
  #remember(y: number): void {
    this.#recent.push(y);
    if (this.#recent.length > this.#window) this.#recent.shift();
    const level = Math.max(Math.abs(this.#x ?? y), 1);
    const floor = (NOISE_FLOOR * level) ** 2;
    const n = this.#recent.length - 1;
    if (n < 3) {
      this.#q = this.#r = (NOISE_START * level) ** 2;
      return;
    }
    const d: number[] = [];
    for (let i = 1; i <= n; i++) d.push(this.#recent[i]! - this.#recent[i - 1]!);
    const mean = d.reduce((a, b) => a + b, 0) / n;
    let v = 0;
    let c = 0;
    for (let i = 0; i < n; i++) {
      v += (d[i]! - mean) ** 2;
      if (i > 0) c += (d[i]! - mean) * (d[i - 1]! - mean);
    }
    v /= n;
    c /= n - 1;
    this.#r = Math.max(-c, floor);
    this.#q = Math.max(v - 2 * this.#r, floor);
  }
}
