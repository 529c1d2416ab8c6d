/**
 * What the predictor is fed: one rate measured on a path, with the round trip
 * and loss seen at the time. Samples come from the path prober and the mode
 * detector (goodput, the kernel's delivery rate and BBR bandwidth, probes).
 */
import { invalidArg } from "../errors.js";

/**
 * Where a rate came from. `bbrBw` is the kernel's BBR bottleneck estimate: a
 * windowed maximum already, so it feeds only the windowed-max estimator and is
 * never the realised rate a prediction is scored against.
 */
export type SampleKind = "goodput" | "deliveryRate" | "bbrBw" | "probe";

/** Every {@link SampleKind}. */
export const SAMPLE_KINDS: readonly SampleKind[] = Object.freeze([
  "goodput",
  "deliveryRate",
  "bbrBw",
  "probe",
]);

/** One rate measurement. */
export interface Sample {
  /** When it was taken, ms on the Env's clock (`env.clock.now()`); samples come in time order. */
  at: number;
  /** The rate, bits per second (≥ 0). */
  bps: number;
  /** Where it came from. */
  kind: SampleKind;
  /**
   * True when the true rate is at least `bps`: the sender was application-limited,
   * an event loop was saturated, or the ends (receive window, send buffer) held
   * the rate back. Such a sample never pulls a forecast down; it may raise it.
   * @default false
   */
  lowerBound?: boolean;
  /** Round-trip time at the time, ms. */
  rttMs?: number;
  /** Segment loss rate at the time, 0–1. */
  lossRate?: number;
}

/** True for a rate the path actually carried (every kind but `bbrBw`). */
export function isMeasurement(s: Sample): boolean {
  return s.kind !== "bbrBw";
}

function finiteAtLeast(v: unknown, min: number): v is number {
  return typeof v === "number" && Number.isFinite(v) && v >= min;
}

/**
 * `value` as a {@link Sample}, copied field by field (nothing else is kept), or
 * DWCPError `ERR_INVALID_ARG` naming `name` and the bad field.
 */
export function checkSample(value: unknown, name = "sample"): Sample {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw invalidArg(name, "an object", value);
  const v = value as Record<string, unknown>;
  if (typeof v.at !== "number" || !Number.isFinite(v.at))
    throw invalidArg(`${name}.at`, "a finite number", v.at);
  if (!finiteAtLeast(v.bps, 0)) throw invalidArg(`${name}.bps`, "a finite number ≥ 0", v.bps);
  if (!SAMPLE_KINDS.includes(v.kind as SampleKind))
    throw invalidArg(`${name}.kind`, `one of ${SAMPLE_KINDS.join(", ")}`, v.kind);
  const s: Sample = { at: v.at, bps: v.bps, kind: v.kind as SampleKind };
  if (v.lowerBound !== undefined) {
    if (typeof v.lowerBound !== "boolean") throw invalidArg(`${name}.lowerBound`, "a boolean", v.lowerBound);
    if (v.lowerBound) s.lowerBound = true;
  }
  if (v.rttMs !== undefined) {
    if (!finiteAtLeast(v.rttMs, 0)) throw invalidArg(`${name}.rttMs`, "a finite number ≥ 0", v.rttMs);
    s.rttMs = v.rttMs;
  }
  if (v.lossRate !== undefined) {
    if (!finiteAtLeast(v.lossRate, 0) || v.lossRate > 1)
      throw invalidArg(`${name}.lossRate`, "a number in [0, 1]", v.lossRate);
    s.lossRate = v.lossRate;
  }
  return s;
}
