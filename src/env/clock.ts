/**
 * Time, as protocol code sees it. Every wait, timer and timestamp of the
 * library goes through a {@link Clock}, so the same code runs on the real
 * clock ({@link nodeEnv}) and under the simulator's virtual time
 * (`dwcp/testing`).
 */

/** A scheduled callback; `unref()` lets the process exit while it is pending (no effect under simulation). */
export interface Timer {
  unref(): unknown;
}

/** Monotonic time and timers. */
export interface Clock {
  /** Milliseconds on a monotonic clock (fractional; its origin is arbitrary). */
  now(): number;
  /**
   * Milliseconds since the Unix epoch, for comparing with times from outside
   * (a file's mtime). Not monotonic: never measure intervals with it.
   */
  wall(): number;
  /** Calls `fn` once after `ms` milliseconds (at least; never before). */
  setTimeout(fn: () => void, ms: number): Timer;
  /** Cancels a timer; `undefined` or an already fired timer is ignored. */
  clearTimeout(timer: Timer | undefined): void;
  /**
   * Calls `fn` after the callbacks already due (I/O included) have run: later
   * than a microtask, sooner than any timer. What Node's `setImmediate` gives.
   */
  setImmediate(fn: () => void): void;
}
