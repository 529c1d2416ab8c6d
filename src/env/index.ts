/**
 * The environment protocol code runs in: its only door to time and randomness
 * (DESIGN §5). {@link nodeEnv} is the real one; the simulator of `dwcp/testing`
 * gives each simulated node its own, on virtual time with seeded randomness.
 *
 * @packageDocumentation
 */
import { randomBytes, randomInt } from "node:crypto";
import { performance } from "node:perf_hooks";
import { DWCPError, type DWCPErrorCode } from "../errors.js";
import type { Clock, Timer } from "./clock.js";
import type { Random } from "./random.js";

export type { Clock, Timer } from "./clock.js";
export { type Random, seededRandom } from "./random.js";

/** Time and randomness for protocol code. */
export interface Env {
  readonly clock: Clock;
  readonly random: Random;
}

const RANDOM_SPAN = 2 ** 48 - 1;

/** The real environment: `performance.now()`, Node's timers, the OS's randomness. */
export const nodeEnv: Env = Object.freeze({
  clock: Object.freeze({
    now: () => performance.now(),
    wall: () => Date.now(),
    setTimeout: (fn: () => void, ms: number): Timer => setTimeout(fn, ms),
    clearTimeout: (t: Timer | undefined) => clearTimeout(t as NodeJS.Timeout | undefined),
    setImmediate: (fn: () => void) => {
      setImmediate(fn);
    },
  }),
  random: Object.freeze({
    // randomInt's range must be below 2^48.
    next: () => randomInt(RANDOM_SPAN) / RANDOM_SPAN,
    int: (n: number) =>
      n <= 1 ? 0 : n <= RANDOM_SPAN ? randomInt(n) : Math.floor((randomInt(RANDOM_SPAN) / RANDOM_SPAN) * n),
    bytes: (n: number) => new Uint8Array(randomBytes(n)),
  }),
});

/** A time limit as an `AbortSignal`: see {@link deadline}. */
export interface Deadline {
  /** Aborts when the time is up, with a {@link DWCPError} of the deadline's code as its reason. */
  readonly signal: AbortSignal;
  /** Cancels the timer (call it once the work is done, or it keeps running). */
  clear(): void;
}

/**
 * A deadline `ms` from now on `env`'s clock: its signal aborts with
 * `DWCPError(code, "<what> did not finish within <ms> ms")`. Pass the signal to
 * any wait that takes one; `clear()` once done. `ms` of `Infinity` never fires.
 */
export function deadline(
  env: Env,
  ms: number,
  code: DWCPErrorCode = "ERR_TIMEOUT",
  what = "operation",
): Deadline {
  const ac = new AbortController();
  const timer = Number.isFinite(ms)
    ? env.clock.setTimeout(
        () => ac.abort(new DWCPError(code, `${what} did not finish within ${ms} ms`)),
        Math.max(0, ms),
      )
    : undefined;
  timer?.unref();
  return {
    signal: ac.signal,
    clear: () => env.clock.clearTimeout(timer),
  };
}
