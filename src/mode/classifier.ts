/**
 * Path classification, without I/O: a pure function of smoothed measurements,
 * plus a tracker that adds hysteresis and a minimum dwell time so the mode does
 * not flap around a threshold.
 */

/** The three kinds of path. */
export type Mode = "datacenter" | "internet" | "hybrid";

/** Classification thresholds (DESIGN §1). */
export interface ModeThresholds {
  /** Below this RTT (and above `bandwidthBps`) a path is datacenter. @default 10 */
  datacenterRttMs: number;
  /** Above this RTT a path is internet. @default 50 */
  internetRttMs: number;
  /** The bandwidth line between internet and the rest, bits/s. @default 1e9 */
  bandwidthBps: number;
  /** Relative margin a measurement must cross to leave the current mode. @default 0.2 */
  hysteresis: number;
  /** Time a new mode must be indicated continuously before it is adopted, ms. @default 3000 */
  minDwellMs: number;
  /** EWMA weight of a new sample. @default 0.3 */
  smoothing: number;
}

export const DEFAULT_THRESHOLDS: Readonly<ModeThresholds> = Object.freeze({
  datacenterRttMs: 10,
  internetRttMs: 50,
  bandwidthBps: 1e9,
  hysteresis: 0.2,
  minDwellMs: 3000,
  smoothing: 0.3,
});

/** What the classifier looks at. */
export interface PathEstimate {
  rttMs: number;
  bandwidthBps: number;
}

/**
 * datacenter: RTT < datacenterRttMs and bandwidth > bandwidthBps;
 * internet: RTT > internetRttMs or bandwidth < bandwidthBps; hybrid otherwise.
 */
export function classify(
  e: PathEstimate,
  t: Pick<ModeThresholds, "datacenterRttMs" | "internetRttMs" | "bandwidthBps">,
): Mode {
  if (e.rttMs > t.internetRttMs || e.bandwidthBps < t.bandwidthBps) return "internet";
  if (e.rttMs < t.datacenterRttMs && e.bandwidthBps > t.bandwidthBps) return "datacenter";
  return "hybrid";
}

/**
 * True when `e` is still inside `mode`'s region widened by the hysteresis
 * margin, i.e. not far enough out to justify leaving it.
 */
export function withinBand(mode: Mode, e: PathEstimate, t: ModeThresholds): boolean {
  const up = 1 + t.hysteresis;
  const down = 1 - t.hysteresis;
  switch (mode) {
    case "datacenter":
      return e.rttMs < t.datacenterRttMs * up && e.bandwidthBps > t.bandwidthBps * down;
    case "internet":
      return e.rttMs > t.internetRttMs * down || e.bandwidthBps < t.bandwidthBps * up;
    case "hybrid":
      return (
        e.rttMs >= t.datacenterRttMs * down &&
        e.rttMs <= t.internetRttMs * up &&
        e.bandwidthBps >= t.bandwidthBps * down
      );
  }
}

/** A mode decision and what it was based on. */
export interface ModeDecision {
  mode: Mode;
  previous: Mode | undefined;
  estimate: PathEstimate;
  at: number;
}

/**
 * Smooths samples and decides the mode. The first decision is immediate; after
 * that a change needs the smoothed estimate outside the current mode's widened
 * band, pointing at the same new mode, for `minDwellMs`.
 */
export class ModeTracker {
  readonly thresholds: ModeThresholds;
  #rtt: number | undefined;
  #bw: number | undefined;
  #mode: Mode | undefined;
  #candidate: { mode: Mode; since: number } | undefined;

  constructor(thresholds: Partial<ModeThresholds> = {}) {
    this.thresholds = { ...DEFAULT_THRESHOLDS, ...thresholds };
  }

  get mode(): Mode | undefined {
    return this.#mode;
  }

  get estimate(): PathEstimate | undefined {
    return this.#rtt === undefined || this.#bw === undefined
      ? undefined
      : { rttMs: this.#rtt, bandwidthBps: this.#bw };
  }

  /** Feeds an RTT sample (ms). */
  addRtt(rttMs: number): void {
    this.#rtt = this.#rtt === undefined ? rttMs : this.#rtt + this.thresholds.smoothing * (rttMs - this.#rtt);
  }

  /** Feeds a bandwidth sample (bits/s). */
  addBandwidth(bps: number): void {
    this.#bw = this.#bw === undefined ? bps : this.#bw + this.thresholds.smoothing * (bps - this.#bw);
  }

  /** Resets the bandwidth estimate (e.g. after a lower bound is superseded by a full probe). */
  setBandwidth(bps: number): void {
    this.#bw = bps;
  }

  /**
   * Re-evaluates at time `now` (ms).
   * @returns a decision when the mode is set or changes, otherwise undefined
   */
  evaluate(now: number): ModeDecision | undefined {
    const e = this.estimate;
    if (!e) return undefined;
    if (this.#mode === undefined) {
      this.#mode = classify(e, this.thresholds);
      return { mode: this.#mode, previous: undefined, estimate: e, at: now };
    }
    if (withinBand(this.#mode, e, this.thresholds)) {
      this.#candidate = undefined;
      return undefined;
    }
    const next = classify(e, this.thresholds);
    if (next === this.#mode) {
      this.#candidate = undefined;
      return undefined;
    }
    if (!this.#candidate || this.#candidate.mode !== next) {
      this.#candidate = { mode: next, since: now };
    }
    if (now - this.#candidate.since < this.thresholds.minDwellMs) return undefined;
    const previous = this.#mode;
    this.#mode = next;
    this.#candidate = undefined;
    return { mode: next, previous, estimate: e, at: now };
  }
}
