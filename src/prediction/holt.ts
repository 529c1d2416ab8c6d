/**
 * Holt's linear method with a damped trend (Gardner and McKenzie), on
 * continuous time: samples need not be evenly spaced, and the trend fades by
 * `damping` per second, so a ramp is followed without being extrapolated
 * forever.
 */
import { type Estimator, numberIn } from "./estimator.js";
import { isMeasurement, type Sample } from "./sample.js";

/** Options of {@link Holt}. */
export interface HoltOptions {
  /** Weight of a new sample in the level, (0, 1]. @default 0.4 */
  alpha?: number;
  /** Weight of a new slope in the trend, [0, 1]. @default 0.2 */
  beta?: number;
  /** Share of the trend left after one second, (0, 1]; 1 is Holt's undamped trend. @default 0.8 */
  damping?: number;
}

/** Trend accumulated over `t` seconds when it fades at rate `k` per second: ∫₀ᵗ e^(−ks) ds. */
function reach(k: number, t: number): number {
  return k === 0 ? t : -Math.expm1(-k * t) / k;
}

/** Mean of {@link reach} over [0, h] seconds: what the trend adds to the mean rate of the next h. */
function meanReach(k: number, h: number): number {
  if (h <= 0) return 0;
  return k === 0 ? h / 2 : (1 - reach(k, h) / h) / k;
}

/**
 * Level plus damped trend (bits/s per second); the forecast for a horizon is
 * the level plus the trend's mean contribution over it, never below zero.
 *
 * Lower bounds: one above the current level lifts the level as a sample would
 * and leaves the trend alone (a one-sided figure says nothing of the slope), so
 * every horizon's forecast rises; one at or below the level is ignored.
 */
export class Holt implements Estimator {
  readonly name = "holt";
  readonly #alpha: number;
  readonly #beta: number;
  /** Fade rate of the trend, per second. */
  readonly #k: number;
  #level = 0;
  #trend = 0;
  #lastAt: number | undefined;

  constructor(options: HoltOptions = {}) {
    this.#alpha = numberIn("holt.alpha", options.alpha, Number.MIN_VALUE, 1, 0.4);
    this.#beta = numberIn("holt.beta", options.beta, 0, 1, 0.2);
    this.#k = -Math.log(numberIn("holt.damping", options.damping, Number.MIN_VALUE, 1, 0.8));
  }

  add(s: Sample): void {
    if (!isMeasurement(s)) return;
    if (this.#lastAt === undefined) {
      this.#level = s.bps;
      this.#lastAt = s.at;
      return;
    }
    const dt = Math.max(0, (s.at - this.#lastAt) / 1000);
    const prior = this.#level + this.#trend * reach(this.#k, dt);
    const trend = this.#trend * Math.exp(-this.#k * dt);
    if (s.lowerBound && s.bps <= prior) return;
    const level = prior + this.#alpha * (s.bps - prior);
    // Two samples at one instant carry no slope.
    if (!s.lowerBound && dt > 0) {
      this.#trend = trend + this.#beta * ((level - this.#level) / dt - trend);
    } else this.#trend = trend;
    this.#level = level;
    this.#lastAt = s.at;
  }

  predict(at: number, horizonMs: number): number | undefined {
    if (this.#lastAt === undefined) return undefined;
    const dt = Math.max(0, (at - this.#lastAt) / 1000);
    const level = this.#level + this.#trend * reach(this.#k, dt);
    const trend = this.#trend * Math.exp(-this.#k * dt);
    return Math.max(0, level + trend * meanReach(this.#k, horizonMs / 1000));
  }
}
