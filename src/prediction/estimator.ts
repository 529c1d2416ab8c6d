/**
 * The one interface every bandwidth estimator implements, so they run side by
 * side on the same samples and are scored the same way.
 */
import { invalidArg } from "../errors.js";
import type { Sample } from "./sample.js";

/** The estimators a {@link Predictor} runs. */
export type EstimatorName = "harmonic" | "ewma" | "holt" | "kalman" | "bbr";

/** Every {@link EstimatorName}, the default (`harmonic`) first: ties go to the earlier. */
export const ESTIMATORS: readonly EstimatorName[] = Object.freeze([
  "harmonic",
  "ewma",
  "holt",
  "kalman",
  "bbr",
]);

/** A forecast horizon. */
export type Horizon = "1s" | "10s";

/** Each {@link Horizon}'s length, ms. */
export const HORIZON_MS: Readonly<Record<Horizon, number>> = Object.freeze({ "1s": 1000, "10s": 10_000 });

/** Every {@link Horizon}, shortest first. */
export const HORIZONS: readonly Horizon[] = Object.freeze(["1s", "10s"]);

/** A bandwidth estimator: fed samples in time order, asked for the mean rate ahead. */
export interface Estimator {
  readonly name: EstimatorName;
  /** Takes one sample (kinds it does not use are ignored; lower bounds as the estimator documents). */
  add(sample: Sample): void;
  /** The mean rate over `[at, at + horizonMs]`, bits/s; undefined before the first sample it uses. */
  predict(at: number, horizonMs: number): number | undefined;
}

/** `value` when it is a number in `[lo, hi]` (or `fallback` when undefined); else DWCPError `ERR_INVALID_ARG`. */
export function numberIn(name: string, value: unknown, lo: number, hi: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= lo && value <= hi))
    throw invalidArg(name, `a number in [${lo}, ${hi}]`, value);
  return value;
}

/** As {@link numberIn}, for an integer. */
export function integerIn(name: string, value: unknown, lo: number, hi: number, fallback: number): number {
  const v = numberIn(name, value, lo, hi, fallback);
  if (!Number.isInteger(v)) throw invalidArg(name, `an integer in [${lo}, ${hi}]`, value);
  return v;
}
