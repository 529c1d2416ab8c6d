/**
 * An {@link Env} whose clock moves only when told: for code that reads the
 * time but does not wait on it (clocks, timestamps), driven step by step by a
 * test or a benchmark. Its timers never fire; use the {@link Simulator} for
 * code that waits.
 */
import { type Env, seededRandom } from "../env/index.js";

/** A manual environment and the hand that moves its clock. */
export interface ManualEnv {
  readonly env: Env;
  /** Sets both `now()` and `wall()` to `ms`. */
  set(ms: number): void;
  /** The clock's reading. */
  get(): number;
}

/** A {@link ManualEnv} starting at `start` ms, its randomness seeded with `seed`. */
export function manualEnv(start: number, seed = 1): ManualEnv {
  let wall = start;
  return {
    env: {
      clock: {
        now: () => wall,
        wall: () => wall,
        setTimeout: () => ({ unref() {} }),
        clearTimeout() {},
        setImmediate() {},
      },
      random: seededRandom(seed),
    },
    set: (ms) => {
      wall = ms;
    },
    get: () => wall,
  };
}
