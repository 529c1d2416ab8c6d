/**
 * The view timer of the pacemaker, on the replica's `env.clock`. Each expiry
 * without progress doubles the next wait (up to a cap), so that after a
 * period of asynchrony the views grow long enough for the slowest honest
 * replicas to meet in one; a new QC, the sign that views complete again,
 * brings it back to the base.
 */
import type { Clock, Timer } from "../../env/index.js";

/** The view timer with exponential backoff. */
export class ViewTimer {
  #timer: Timer | undefined;
  #streak = 0;

  constructor(
    private readonly clock: Clock,
    private readonly baseMs: number,
    private readonly maxMs: number,
  ) {}

  /** The wait before the next expiry: base × 2^(expiries since the last progress), at most the cap. */
  get durationMs(): number {
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.#streak, 30));
  }

  /** (Re)starts the timer: `onExpire` runs after {@link durationMs} unless re-armed or stopped first. */
  arm(onExpire: () => void): void {
    this.stop();
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#streak++;
      onExpire();
    }, this.durationMs);
    this.#timer.unref();
  }

  /** Whether the timer is running. */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /** Views complete again: back to the base wait. */
  progress(): void {
    this.#streak = 0;
  }

  stop(): void {
    this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
