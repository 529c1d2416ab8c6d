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

/** The classifier's defaults: datacenter under 10 ms RTT and from 1 Gbit/s, internet from 50 ms; 20 % hysteresis, 3 s dwell. */
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
  /**
   * True when the bandwidth figure is only a lower bound: a host, not the path,
   * limited the measurements behind it (an event loop busy the whole time). Such
   * a path is never called slow; its bandwidth is at least what these hosts can use.
   */
  bandwidthAtLeast?: boolean;
}

/** Bandwidth below `line`, as far as the estimate can tell. */
function below(e: PathEstimate, line: number): boolean {
  return !e.bandwidthAtLeast && e.bandwidthBps < line;
}

/**
 * datacenter: RTT < datacenterRttMs and bandwidth > bandwidthBps;
 * internet: RTT > internetRttMs or bandwidth < bandwidthBps; hybrid otherwise.
 * A lower-bound bandwidth counts as not below the line.
 */
export function classify(
  e: PathEstimate,
  t: Pick<ModeThresholds, "datacenterRttMs" | "internetRttMs" | "bandwidthBps">,
): Mode {
  if (e.rttMs > t.internetRttMs || below(e, t.bandwidthBps)) return "internet";
  if (e.rttMs < t.datacenterRttMs && (e.bandwidthAtLeast || e.bandwidthBps > t.bandwidthBps))
    return "datacenter";
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
      return e.rttMs < t.datacenterRttMs * up && !below(e, t.bandwidthBps * down);
    case "internet":
      return e.rttMs > t.internetRttMs * down || below(e, t.bandwidthBps * up);
    case "hybrid":
      return (
        e.rttMs >= t.datacenterRttMs * down &&
        e.rttMs <= t.internetRttMs * up &&
        !below(e, t.bandwidthBps * down)
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
  #bwAtLeast = false;
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
      : { rttMs: this.#rtt, bandwidthBps: this.#bw, ...(this.#bwAtLeast ? { bandwidthAtLeast: true } : {}) };
  }

  /**
   * Feeds an RTT sample (ms). With `atMost`, the sample is an upper bound (a
   * ping that waited for a busy host): it can lower the estimate but never raise it.
   */
  addRtt(rttMs: number, atMost = false): void {
    if (atMost && this.#rtt !== undefined && rttMs >= this.#rtt) return;
    this.#rtt = this.#rtt === undefined ? rttMs : this.#rtt + this.thresholds.smoothing * (rttMs - this.#rtt);
  }

  /**
   * Feeds a bandwidth sample (bits/s). With `atLeast`, the sample is a lower bound
   * (host-limited): it can raise the estimate but never lower it.
   */
  addBandwidth(bps: number, atLeast = false): void {
    if (this.#bw === undefined) {
      this.#bw = bps;
      this.#bwAtLeast = atLeast;
    } else if (!atLeast || bps > this.#bw) {
      this.#bw += this.thresholds.smoothing * (bps - this.#bw);
      if (!atLeast) this.#bwAtLeast = false;
    }
  }

  /** Replaces the bandwidth estimate (the result of a full probe). */
  setBandwidth(bps: number, atLeast = false): void {
    this.#bw = bps;
    this.#bwAtLeast = atLeast;
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
