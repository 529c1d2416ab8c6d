/**
 * Lifeguard's two local-health mechanisms (Dadgar, Phillips, Currey 2018, as
 * HashiCorp memberlist runs them):
 *
 * - **Local Health Multiplier.** A node that misses acks and nacks it should
 *   have had, or has to refute a suspicion of itself, is more likely slow than
 *   its peers dead; its awareness score rises, and its probe interval and
 *   timeout stretch by `score + 1`, so a sick node stops accusing healthy ones.
 * - **Local-health-aware suspicion.** A suspicion starts with a long timeout
 *   and shrinks, on a log scale, with each independent confirmation: a lone
 *   (possibly sick) accuser waits long, many agreeing ones act fast.
 */

/** The awareness score in [0, max]. */
export class Awareness {
  #score = 0;
  #peak = 0;

  constructor(readonly max: number) {}

  /** The current score. */
  get score(): number {
    return this.#score;
  }

  /** The highest score reached so far. */
  get peak(): number {
    return this.#peak;
  }

  /** Adds `delta` (negative: health improved), clamped to [0, max]. */
  apply(delta: number): void {
    this.#score = Math.min(this.max, Math.max(0, this.#score + delta));
    if (this.#score > this.#peak) this.#peak = this.#score;
  }

  /** `ms` stretched by the score. */
  scale(ms: number): number {
    return ms * (this.#score + 1);
  }
}

/** The bounds of a suspicion in a cluster of `n` members (this node included). */
export interface SuspicionBounds {
  /** Shortest timeout (every expected confirmation came), ms. */
  readonly minMs: number;
  /** Longest timeout (no confirmation), ms. */
  readonly maxMs: number;
  /** Independent confirmations that bring the timeout down to {@link minMs}. */
  readonly confirmations: number;
}

/**
 * The suspicion bounds: min = `mult × max(1, log10 n) × interval`, max =
 * `maxMult × min`; `mult − 2` confirmations expected, none when the cluster has
 * too few other members to give them (then the timeout is min at once).
 */
export function suspicionBounds(
  n: number,
  mult: number,
  maxMult: number,
  probeIntervalMs: number,
): SuspicionBounds {
  const scale = Math.max(1, Math.log10(Math.max(1, n)));
  const minMs = mult * scale * probeIntervalMs;
  const k = mult - 2;
  return { minMs, maxMs: maxMult * minMs, confirmations: n - 2 < k ? 0 : Math.max(0, k) };
}

/**
 * The timeout of a suspicion with `c` independent confirmations so far: from
 * max down to min as `log(c + 1) / log(k + 1)` goes from 0 to 1.
 */
export function suspicionTimeout(b: SuspicionBounds, c: number): number {
  if (b.confirmations < 1) return b.minMs;
  const frac = Math.log(c + 1) / Math.log(b.confirmations + 1);
  return Math.max(b.minMs, Math.floor(b.maxMs - frac * (b.maxMs - b.minMs)));
}
