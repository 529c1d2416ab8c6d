/**
 * An estimator's live error at one horizon: the last resolved predictions, each
 * with the realised rate and the interval it was issued with. From them: MAPE,
 * the coverage of the intervals, and the next interval (the empirical
 * quantiles of realised / predicted).
 */

/** Ratios realised / predicted are capped here: a prediction of zero has no finite ratio. */
const MAX_RATIO = 1000;

/**
 * The `q` quantile of sorted `xs` as a prediction bound (Hyndman and Fan's
 * type 6, rank q·(n + 1)): for exchangeable errors the next one falls below it
 * with probability q, so an interval between two such quantiles covers its
 * nominal share of outcomes. The common rank q·(n − 1) would be narrower and
 * cover less (75 % rather than 80 % at n = 30).
 */
function quantile(xs: readonly number[], q: number): number {
  const rank = q * (xs.length + 1);
  if (rank <= 1) return xs[0]!;
  if (rank >= xs.length) return xs[xs.length - 1]!;
  const lo = Math.floor(rank);
  return xs[lo - 1]! + (xs[lo]! - xs[lo - 1]!) * (rank - lo);
}

/** Settings of an {@link ErrorWindow}, validated by its owner. */
export interface ErrorWindowSettings {
  /** Resolved predictions kept. */
  size: number;
  /** Resolved predictions needed before the interval is empirical. */
  minHistory: number;
  /** Quantiles of realised / predicted that bound the interval, low then high. */
  quantiles: readonly [number, number];
  /** The interval before `minHistory`: the prediction × (1 ± band). */
  band: number;
}

/** A sliding window of scored predictions. */
export class ErrorWindow {
  readonly #s: ErrorWindowSettings;
  readonly #ape: number[] = [];
  readonly #ratio: number[] = [];
  readonly #inside: boolean[] = [];

  constructor(settings: ErrorWindowSettings) {
    this.#s = settings;
  }

  /** Resolved predictions in the window. */
  get n(): number {
    return this.#ape.length;
  }

  /** Scores a prediction of `predicted` that was issued with `[low, high]`; `realised` > 0. */
  add(predicted: number, realised: number, low: number, high: number): void {
    this.#ape.push(Math.abs(realised - predicted) / realised);
    this.#ratio.push(predicted > 0 ? Math.min(realised / predicted, MAX_RATIO) : MAX_RATIO);
    this.#inside.push(realised >= low && realised <= high);
    if (this.#ape.length > this.#s.size) {
      this.#ape.shift();
      this.#ratio.shift();
      this.#inside.shift();
    }
  }

  /** Mean absolute percentage error as a fraction (0.1 is 10 %); undefined before any. */
  mape(): number | undefined {
    return this.n === 0 ? undefined : this.#ape.reduce((a, b) => a + b, 0) / this.n;
  }

  /** Share of the window's realised rates that fell inside their interval; undefined before any. */
  coverage(): number | undefined {
    return this.n === 0 ? undefined : this.#inside.filter(Boolean).length / this.n;
  }

  /** The interval for a prediction of `bps` now. */
  interval(bps: number): { low: number; high: number } {
    if (this.n < this.#s.minHistory) {
      return { low: bps * Math.max(0, 1 - this.#s.band), high: bps * (1 + this.#s.band) };
    }
    const sorted = [...this.#ratio].sort((a, b) => a - b);
    return {
      low: bps * quantile(sorted, this.#s.quantiles[0]),
      high: bps * quantile(sorted, this.#s.quantiles[1]),
    };
  }
}
