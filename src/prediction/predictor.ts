/**
 * PBA's predictor for one path: every estimator runs on the same samples, each
 * prediction is scored against the rate the path then carried, and the forecast
 * for each horizon comes from the estimator with the lowest recent error, with an
 * interval drawn from that estimator's own recent misses.
 *
 * Sans-IO: the caller feeds samples as it measures them; nothing here keeps a
 * timer. Memory is bounded by the settings (windows and pending predictions).
 */
import type { Clock } from "../env/clock.js";
import { nodeEnv } from "../env/index.js";
import { DWCPError, invalidArg } from "../errors.js";
import { Bbr, type BbrOptions } from "./bbr.js";
import { ErrorWindow, type ErrorWindowSettings } from "./error.js";
import {
  ESTIMATORS,
  type Estimator,
  type EstimatorName,
  HORIZON_MS,
  HORIZONS,
  type Horizon,
  integerIn,
  numberIn,
} from "./estimator.js";
import { Ewma, type EwmaOptions } from "./ewma.js";
import { Harmonic, type HarmonicOptions } from "./harmonic.js";
import { Holt, type HoltOptions } from "./holt.js";
import { Kalman, type KalmanOptions } from "./kalman.js";
import { checkSample, isMeasurement, type Sample } from "./sample.js";

/** Options of a {@link Predictor}. */
export interface PredictorOptions {
  /** Clock of {@link Predictor.forecast}'s `at` and horizons; give the session's. @default nodeEnv */
  env?: { readonly clock: Pick<Clock, "now"> };
  /** Resolved predictions each estimator's error is measured over, per horizon, [1, 1000]. @default 30 */
  errorWindow?: number;
  /**
   * Resolved predictions an estimator needs before its error counts in the
   * choice and its interval is empirical, [1, errorWindow]. @default 5
   */
  minHistory?: number;
  /**
   * Quantiles of realised / predicted rate over the error window that bound the
   * interval, low then high, in [0, 1]. Nominally 90 %: on the recorded traces of
   * bench/traces an 80 % band from the last 30 outcomes held only 66–80 % of the
   * next ones where the path changed (the window lags a change), this one 80–89 %.
   * @default [0.05, 0.95]
   */
  interval?: readonly [number, number];
  /** Interval before `minHistory` resolved predictions: the forecast × (1 ± band), [0, 10]. @default 0.5 */
  band?: number;
  /**
   * Least time between two rounds of scored predictions, ms, [50, 60000]. Bounds
   * the predictions awaiting their outcome (ten seconds' worth at most). @default 500
   */
  scoreEveryMs?: number;
  /** The estimator used while none has `minHistory` resolved predictions; first among equals. @default "harmonic" */
  fallback?: EstimatorName;
  /** Settings of the EWMA estimator. */
  ewma?: EwmaOptions;
  /** Settings of the damped Holt estimator. */
  holt?: HoltOptions;
  /** Settings of the Kalman estimator. */
  kalman?: KalmanOptions;
  /** Settings of robustMPC's harmonic mean. */
  harmonic?: HarmonicOptions;
  /** Settings of BBR's windowed max and min RTT. */
  bbr?: BbrOptions;
  /** Called for each prediction as it is scored (a replay's totals, metrics). */
  onScore?: (scored: ScoredPrediction) => void;
}

/** A prediction and the rate the path then carried. */
export interface ScoredPrediction {
  estimator: EstimatorName;
  horizon: Horizon;
  /** When it was made, ms (the time of the sample it followed). */
  at: number;
  /** The predicted mean rate, bits/s. */
  bps: number;
  /** Lower end of the interval it was issued with, bits/s. */
  low: number;
  /** Upper end of the interval it was issued with, bits/s. */
  high: number;
  /** The mean of the measurements taken in `(at, at + horizon]`, bits/s. */
  realised: number;
  /** How many measurements that mean is of. */
  samples: number;
  /** True when this estimator was the one the forecast used at the time. */
  selected: boolean;
}

/** One estimator's figure for one horizon. */
export interface EstimatorForecast {
  /** Predicted mean rate over the horizon, bits/s. */
  bps: number;
  /** MAPE over the error window, as a fraction (0.1 is 10 %); absent before any prediction resolved. */
  mape?: number;
  /** Share of the window's realised rates inside their interval, 0–1; absent before any resolved. */
  coverage?: number;
  /** Resolved predictions in the window. */
  n: number;
}

/** The forecast for one horizon: the chosen estimator's figure and its interval. */
export interface HorizonForecast extends EstimatorForecast {
  /** Lower end of the interval, bits/s. */
  low: number;
  /** Upper end of the interval, bits/s. */
  high: number;
  /** The estimator it came from. */
  estimator: EstimatorName;
}

/** What {@link Predictor.forecast} returns. */
export interface Forecast {
  /** When it was made, ms on the predictor's clock. */
  at: number;
  /** The mean rate over the next second and the next ten. */
  horizons: Record<Horizon, HorizonForecast>;
  /** Every estimator that has a figure, with its live error. */
  estimators: Partial<Record<EstimatorName, Record<Horizon, EstimatorForecast>>>;
  /** Samples taken so far. */
  samples: number;
  /** The latest sample's RTT, ms. */
  rttMs?: number;
  /** The smallest RTT of the last ten seconds (BBR's min-RTT window), ms. */
  minRttMs?: number;
}

interface Issued {
  name: EstimatorName;
  bps: number;
  low: number;
  high: number;
}

interface Pending {
  at: number;
  sum: number;
  n: number;
  selected: EstimatorName;
  issued: Issued[];
}

/** A path's bandwidth predictor. */
export class Predictor {
  readonly #clock: Pick<Clock, "now">;
  readonly #estimators: readonly Estimator[];
  readonly #bbr: Bbr;
  readonly #errors: Record<EstimatorName, Record<Horizon, ErrorWindow>>;
  /** Fallback first, then the rest in {@link ESTIMATORS} order: the order ties are broken in. */
  readonly #order: readonly EstimatorName[];
  readonly #minHistory: number;
  readonly #scoreEveryMs: number;
  readonly #pending: Record<Horizon, Pending[]> = { "1s": [], "10s": [] };
  readonly #onScore: ((s: ScoredPrediction) => void) | undefined;
  #samples = 0;
  #lastAt: number | undefined;
  #lastIssuedAt: number | undefined;
  #rttMs: number | undefined;

  constructor(options: PredictorOptions = {}) {
    this.#clock = (options.env ?? nodeEnv).clock;
    const size = integerIn("errorWindow", options.errorWindow, 1, 1000, 30);
    this.#minHistory = integerIn("minHistory", options.minHistory, 1, size, 5);
    const q = options.interval ?? [0.05, 0.95];
    if (!Array.isArray(q) || q.length !== 2 || !(q[0] >= 0 && q[0] <= q[1] && q[1] <= 1))
      throw invalidArg("interval", "two quantiles 0 ≤ low ≤ high ≤ 1", q);
    const settings: ErrorWindowSettings = {
      size,
      minHistory: this.#minHistory,
      quantiles: [q[0], q[1]],
      band: numberIn("band", options.band, 0, 10, 0.5),
    };
    this.#scoreEveryMs = numberIn("scoreEveryMs", options.scoreEveryMs, 50, 60_000, 500);
    const fallback = options.fallback ?? "harmonic";
    if (!ESTIMATORS.includes(fallback))
      throw invalidArg("fallback", `one of ${ESTIMATORS.join(", ")}`, fallback);
    this.#order = [fallback, ...ESTIMATORS.filter((n) => n !== fallback)];
    this.#bbr = new Bbr(options.bbr);
    this.#estimators = [
      new Harmonic(options.harmonic),
      new Ewma(options.ewma),
      new Holt(options.holt),
      new Kalman(options.kalman),
      this.#bbr,
    ];
    const windows = () => ({ "1s": new ErrorWindow(settings), "10s": new ErrorWindow(settings) });
    this.#errors = {
      harmonic: windows(),
      ewma: windows(),
      holt: windows(),
      kalman: windows(),
      bbr: windows(),
    };
    this.#onScore = options.onScore;
  }

  /** Samples taken so far. */
  get samples(): number {
    return this.#samples;
  }

  /**
   * Takes a sample: scores the predictions whose horizon it closes, updates
   * every estimator, and (at most every `scoreEveryMs`) makes the next round of
   * predictions to score.
   * @throws DWCPError `ERR_INVALID_ARG` for a malformed sample or one older than the previous
   */
  add(sample: Sample): void {
    const s = checkSample(sample);
    if (this.#lastAt !== undefined && s.at < this.#lastAt) {
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `Expected samples in time order but sample.at ${s.at} is before the previous ${this.#lastAt}`,
      );
    }
    this.#lastAt = s.at;
    this.#samples++;
    if (s.rttMs !== undefined) this.#rttMs = s.rttMs;
    // A lower bound is not what the path carried, so it settles no score.
    const realised = isMeasurement(s) && !s.lowerBound;
    for (const h of HORIZONS) this.#resolve(h, s, realised);
    for (const e of this.#estimators) e.add(s);
    if (this.#lastIssuedAt === undefined || s.at - this.#lastIssuedAt >= this.#scoreEveryMs) {
      this.#lastIssuedAt = s.at;
      this.#issue(s.at);
    }
  }

  /** The forecast now (on the predictor's clock); undefined until a sample gave an estimator a figure. */
  forecast(): Forecast | undefined {
    const at = this.#clock.now();
    const estimators: Forecast["estimators"] = {};
    const available = new Set<EstimatorName>();
    for (const e of this.#estimators) {
      const one = this.#predict(e, at, "1s");
      const ten = this.#predict(e, at, "10s");
      if (one === undefined || ten === undefined) continue;
      available.add(e.name);
      estimators[e.name] = { "1s": this.#figure(e.name, "1s", one), "10s": this.#figure(e.name, "10s", ten) };
    }
    const horizons: Partial<Record<Horizon, HorizonForecast>> = {};
    for (const h of HORIZONS) {
      const name = this.#select(h, available);
      if (name === undefined) return undefined;
      const figure = estimators[name]![h];
      horizons[h] = { ...figure, ...this.#errors[name][h].interval(figure.bps), estimator: name };
    }
    const f: Forecast = {
      at,
      horizons: horizons as Record<Horizon, HorizonForecast>,
      estimators,
      samples: this.#samples,
    };
    if (this.#rttMs !== undefined) f.rttMs = this.#rttMs;
    const minRtt = this.#bbr.minRtt(at);
    if (minRtt !== undefined) f.minRttMs = minRtt;
    return f;
  }

  #predict(e: Estimator, at: number, h: Horizon): number | undefined {
    return e.predict(at, HORIZON_MS[h]);
  }

  #figure(name: EstimatorName, h: Horizon, bps: number): EstimatorForecast {
    const w = this.#errors[name][h];
    const f: EstimatorForecast = { bps, n: w.n };
    const mape = w.mape();
    const coverage = w.coverage();
    if (mape !== undefined) f.mape = mape;
    if (coverage !== undefined) f.coverage = coverage;
    return f;
  }

  /** The estimator with the lowest MAPE among those with enough history; else the first available in order. */
  #select(h: Horizon, available: ReadonlySet<EstimatorName>): EstimatorName | undefined {
    let best: EstimatorName | undefined;
    let bestMape = Number.POSITIVE_INFINITY;
    for (const name of this.#order) {
      const w = this.#errors[name][h];
      if (!available.has(name) || w.n < this.#minHistory) continue;
      const mape = w.mape()!;
      if (mape < bestMape) {
        best = name;
        bestMape = mape;
      }
    }
    return best ?? this.#order.find((n) => available.has(n));
  }

  /** Adds `s` to the realised means it falls in, then scores every prediction whose horizon has closed. */
  #resolve(h: Horizon, s: Sample, realised: boolean): void {
    const queue = this.#pending[h];
    const span = HORIZON_MS[h];
    if (realised) {
      for (const p of queue) {
        if (s.at > p.at && s.at <= p.at + span) {
          p.sum += s.bps;
          p.n++;
        }
      }
    }
    // Samples come in time order: none still to come can fall in a closed horizon.
    while (queue.length > 0 && s.at >= queue[0]!.at + span) this.#score(h, queue.shift()!);
  }

  #score(h: Horizon, p: Pending): void {
    // No measurement in the horizon, or a dead path: nothing to score against (MAPE divides by the rate).
    if (p.n === 0 || p.sum <= 0) return;
    const realised = p.sum / p.n;
    for (const i of p.issued) {
      this.#errors[i.name][h].add(i.bps, realised, i.low, i.high);
      this.#onScore?.({
        estimator: i.name,
        horizon: h,
        at: p.at,
        bps: i.bps,
        low: i.low,
        high: i.high,
        realised,
        samples: p.n,
        selected: i.name === p.selected,
      });
    }
  }

  #issue(at: number): void {
    for (const h of HORIZONS) {
      const issued: Issued[] = [];
      const available = new Set<EstimatorName>();
      for (const e of this.#estimators) {
        const bps = this.#predict(e, at, h);
        if (bps === undefined) continue;
        available.add(e.name);
        issued.push({ name: e.name, bps, ...this.#errors[e.name][h].interval(bps) });
      }
      const selected = this.#select(h, available);
      if (selected === undefined) continue;
      const queue = this.#pending[h];
      queue.push({ at, sum: 0, n: 0, selected, issued });
      // Issued at least scoreEveryMs apart, a horizon holds at most this many; the bound is a backstop.
      if (queue.length > Math.ceil(HORIZON_MS[h] / this.#scoreEveryMs) + 1) queue.shift();
    }
  }
}
