/**
 * `CircuitBreaker`: the automatic rollback of one component's v3 for one peer.
 *
 * It is told of every call the guarded generation carries, every failure, and
 * latency samples, and judges them when asked: too many failures, or latency
 * grown well past the baseline the generation itself set once it carried
 * traffic, open it; after a cool-down it is half-open (the generation is tried
 * again with fresh counts and a fresh baseline), and it closes once the
 * generation has carried enough traffic without tripping again.
 */
import type { Clock } from "../env/index.js";

/** Thresholds of a {@link CircuitBreaker}. */
export interface BreakerPolicy {
  /** Share of failed calls that trips the breaker. @default 0.01 */
  maxErrorRate: number;
  /** Latency above this multiple of the baseline trips the breaker. @default 2 */
  maxLatencyFactor: number;
  /**
   * ...and only when it is also this much above the baseline, ms: doubling a
   * sub-millisecond latency is scheduling noise, not a degraded path. @default 1
   */
  minLatencyIncreaseMs: number;
  /** Calls observed before the error rate is judged (unless the generation has lost its way to the peer). @default 50 */
  minSamples: number;
  /** Time open before the generation is tried again, ms. @default 30000 */
  coolDownMs: number;
}

/** Defaults of {@link BreakerPolicy}. */
export const DEFAULT_BREAKER: Readonly<BreakerPolicy> = Object.freeze({
  maxErrorRate: 0.01,
  maxLatencyFactor: 2,
  minLatencyIncreaseMs: 1,
  minSamples: 50,
  coolDownMs: 30_000,
});

/** `closed`: the generation is used; `open`: rolled back; `half-open`: tried again after the cool-down. */
export type BreakerState = "closed" | "open" | "half-open";

/** A change of a breaker's state, and why. */
export interface BreakerTransition {
  state: BreakerState;
  reason: string;
}

/** What the breaker is told about the guarded generation when it judges. */
export interface BreakerContext {
  /** The generation carries traffic now: nothing is judged while it does not and nothing failed. */
  inUse: boolean;
  /** The generation still has a way to the peer; without one, failures are judged before `minSamples`. */
  connected: boolean;
}

/** A breaker's state and the figures it judges. */
export interface BreakerSnapshot {
  state: BreakerState;
  /** Calls and failures since the breaker was created or last went half-open. */
  calls: number;
  failures: number;
  /** Latency samples held (at most {@link MAX_SAMPLES}). */
  samples: number;
  /** The median of the first {@link BASELINE_SAMPLES} samples, ms; 0 until there are that many. */
  baselineMs: number;
  /** The median of the last {@link BASELINE_SAMPLES} samples, ms; 0 without samples. */
  recentMs: number;
  /** When an open breaker goes half-open, on its clock (ms); 0 unless open. */
  retryAt: number;
}

/** Samples that set the baseline, and that the recent latency is the median of. */
export const BASELINE_SAMPLES = 16;
/** Samples needed before latency can trip the breaker, or close a half-open one. */
export const JUDGED_SAMPLES = 32;
/** Latency samples kept (the oldest go first). */
export const MAX_SAMPLES = 256;

/** One breaker: one component's v3 towards one peer. */
export class CircuitBreaker {
  readonly #policy: Readonly<BreakerPolicy>;
  readonly #clock: Clock;
  readonly #subject: string;
  #state: BreakerState = "closed";
  #retryAt = 0;
  #calls = 0;
  #failures = 0;
  #latency: number[] = [];
  #baseline = 0;

  /**
   * @param policy thresholds, each defaulting to {@link DEFAULT_BREAKER}
   * @param clock the clock of the cool-down
   * @param subject what the breaker guards, as its reasons name it. @default "v3"
   */
  constructor(policy: Partial<BreakerPolicy>, clock: Clock, subject = "v3") {
    this.#policy = { ...DEFAULT_BREAKER, ...policy };
    this.#clock = clock;
    this.#subject = subject;
  }

  /** The current state. */
  get state(): BreakerState {
    return this.#state;
  }

  /** A call the guarded generation carried. */
  recordCall(): void {
    this.#calls++;
  }

  /** A failure of the guarded generation (a failed call, or its way to the peer failing). */
  recordFailure(): void {
    this.#failures++;
  }

  /** A latency sample, ms. */
  recordLatency(ms: number): void {
    this.#latency.push(ms);
    if (this.#latency.length > MAX_SAMPLES) this.#latency.shift();
  }

  /**
   * Judges what was recorded and moves the state: open → half-open once the
   * cool-down is over (counts and baseline start afresh); closed or half-open →
   * open on too many failures or too much latency; half-open → closed once the
   * generation has carried {@link JUDGED_SAMPLES} samples without tripping.
   *
   * @returns the transition, or undefined when the state stays
   */
  evaluate(ctx: BreakerContext): BreakerTransition | undefined {
    const p = this.#policy;
    const now = this.#clock.now();
    if (this.#state === "open") {
      if (now < this.#retryAt) return undefined;
      this.#state = "half-open";
      this.#retryAt = 0;
      this.#calls = 0;
      this.#failures = 0;
      this.#latency = [];
      this.#baseline = 0;
      return { state: "half-open", reason: `cool-down over: retrying ${this.#subject}` };
    }
    if (!ctx.inUse && !(this.#failures > 0)) return undefined;
    const lat = this.#latency;
    // The baseline is the generation's own latency once it has a few samples after
    // (re)activation: the breaker catches it getting worse, not it being a different
    // path than the other generation.
    if (this.#baseline === 0 && lat.length >= BASELINE_SAMPLES)
      this.#baseline = median(lat.slice(0, BASELINE_SAMPLES));
    const errorRate = this.#calls > 0 ? this.#failures / this.#calls : 0;
    const recent = median(lat.slice(-BASELINE_SAMPLES));
    let reason = "";
    if (this.#failures > 0 && (this.#calls >= p.minSamples || !ctx.connected) && errorRate > p.maxErrorRate) {
      reason = `${this.#subject} error rate ${(errorRate * 100).toFixed(2)}% > ${p.maxErrorRate * 100}%`;
    } else if (
      this.#baseline > 0 &&
      lat.length >= JUDGED_SAMPLES &&
      recent > p.maxLatencyFactor * this.#baseline &&
      recent - this.#baseline > p.minLatencyIncreaseMs
    ) {
      reason = `${this.#subject} latency ${recent.toFixed(2)} ms > ${p.maxLatencyFactor}× baseline ${this.#baseline.toFixed(2)} ms`;
    }
    if (reason) {
      this.#state = "open";
      this.#retryAt = now + p.coolDownMs;
      return { state: "open", reason };
    }
    if (this.#state === "half-open" && ctx.inUse && lat.length >= JUDGED_SAMPLES) {
      this.#state = "closed";
      return { state: "closed", reason: `${this.#subject} healthy again` };
    }
    return undefined;
  }

  /** The state and the figures it is judged on. */
  snapshot(): BreakerSnapshot {
    return {
      state: this.#state,
      calls: this.#calls,
      failures: this.#failures,
      samples: this.#latency.length,
      baselineMs: this.#baseline,
      recentMs: median(this.#latency.slice(-BASELINE_SAMPLES)),
      retryAt: this.#retryAt,
    };
  }
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}
