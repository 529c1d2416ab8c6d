/**
 * The pacer: a token bucket on a bundle's aggregate send rate. Apart because
 * how fast a bundle sends is a question of its own, answered with a clock and
 * nothing of streams or segments.
 */
import type { Clock, Timer } from "../../env/index.js";

/** Token bucket over the bytes a bundle sends; off when the rate is not positive. */
export class Pacer {
  readonly #clock: Clock;
  readonly #paceBps: number;
  readonly #chunkBytes: number;
  readonly #wake: () => void;
  #tokens = 0;
  #at = 0;
  #timer: Timer | undefined;

  /**
   * @param paceBps the aggregate rate, bits/s (0: unpaced)
   * @param chunkBytes the largest segment: the bucket holds at least one
   * @param wake called once tokens are there after {@link allows} said no
   */
  constructor(clock: Clock, paceBps: number, chunkBytes: number, wake: () => void) {
    this.#clock = clock;
    this.#paceBps = paceBps;
    this.#chunkBytes = chunkBytes;
    this.#wake = wake;
  }

  /** True when `len` bytes may go now (their tokens are taken); false arms the wake-up. */
  allows(len: number): boolean {
    const rate = this.#paceBps / 8;
    if (!(rate > 0)) return true;
    const now = this.#clock.now();
    // At most one chunk (or 10 ms) of burst.
    const cap = Math.max(this.#chunkBytes, rate / 100);
    this.#tokens = Math.min(cap, this.#tokens + ((now - this.#at) / 1000) * rate);
    this.#at = now;
    if (this.#tokens >= len || this.#tokens >= cap) {
      this.#tokens -= len;
      return true;
    }
    if (!this.#timer) {
      const waitMs = Math.max(1, ((len - this.#tokens) / rate) * 1000);
      this.#timer = this.#clock.setTimeout(() => {
        this.#timer = undefined;
        this.#wake();
      }, waitMs);
    }
    return false;
  }

  /** Cancels a pending wake-up (the bundle is done). */
  stop(): void {
    this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
