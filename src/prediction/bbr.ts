/**
 * BBR's view of a path (Linux tcp_bbr.c): the bottleneck bandwidth is the
 * largest delivery rate of the last ten round trips, and the propagation delay
 * the smallest RTT of the last ten seconds. As an estimator it says what the
 * path carried lately at best: an upper anchor for the smoothing estimators,
 * and the RTT that sizes the stream count.
 */
import { type Estimator, numberIn } from "./estimator.js";
import type { Sample } from "./sample.js";
import { WindowedExtreme } from "./window.js";

/** Options of {@link Bbr}. */
export interface BbrOptions {
  /** Round trips the bandwidth maximum spans. @default 10 (bbr_bw_rtts) */
  bwRtts?: number;
  /**
   * Shortest bandwidth window, ms. Samples arrive every few hundred ms, far more
   * sparsely than BBR's ACKs, and ten round trips of a short path would hold a
   * single sample. @default 1000
   */
  minBwWindowMs?: number;
  /** Span of the min-RTT window, ms. @default 10000 (bbr_min_rtt_win_sec) */
  minRttWindowMs?: number;
}

/**
 * Windowed max of every rate (the kernel's BBR bandwidth included); the same
 * figure for every horizon.
 *
 * Lower bounds: taken like any rate (a maximum can only rise with a value, and
 * the true rate being at least that value makes the maximum at least it too),
 * except that once the window has emptied, one below the newest rate carries
 * that rate forward instead of replacing it. A sample's RTT is a measurement
 * either way: a smaller min RTT shortens the bandwidth window.
 */
export class Bbr implements Estimator {
  readonly name = "bbr";
  readonly #bw = new WindowedExtreme("max");
  readonly #rtt = new WindowedExtreme("min");
  readonly #bwRtts: number;
  readonly #minBwWindowMs: number;
  readonly #rttWindowMs: number;

  constructor(options: BbrOptions = {}) {
    this.#bwRtts = numberIn("bbr.bwRtts", options.bwRtts, 1, 1000, 10);
    this.#minBwWindowMs = numberIn("bbr.minBwWindowMs", options.minBwWindowMs, 0, 3_600_000, 1000);
    this.#rttWindowMs = numberIn("bbr.minRttWindowMs", options.minRttWindowMs, 1, 3_600_000, 10_000);
  }

  add(s: Sample): void {
    // The RTT first: it sizes the bandwidth window this sample is kept in.
    if (s.rttMs !== undefined) this.#rtt.add(s.at, s.rttMs, this.#rttWindowMs);
    // Past the window the figure is the newest rate; a lower bound under it must not replace it.
    const bps = s.lowerBound ? Math.max(s.bps, this.predict(s.at) ?? 0) : s.bps;
    this.#bw.add(s.at, bps, this.#bwWindow(s.at));
  }

  predict(at: number): number | undefined {
    return this.#bw.get(at, this.#bwWindow(at));
  }

  /** The windowed minimum RTT at `at`, ms; undefined before a sample carried one. */
  minRtt(at: number): number | undefined {
    return this.#rtt.get(at, this.#rttWindowMs);
  }

  #bwWindow(at: number): number {
    return Math.max(this.#bwRtts * (this.minRtt(at) ?? 0), this.#minBwWindowMs);
  }
}
