// A simulated node's Env whose timers fire through a gate: the harness decides
// whether a due callback runs now, waits (a stalled node), or never runs (a
// crashed one). Cancelling a timer holds wherever its callback waits.
import type { Clock, Env, Timer } from "../../src/env/index.js";

interface Handle extends Timer {
  cancelled: boolean;
  inner?: Timer;
}

/** `base` with every timer's callback handed to `gate` when due. */
export function gatedEnv(base: Env, gate: (run: () => void) => void): Env {
  const clock: Clock = {
    ...base.clock,
    setTimeout: (fn, ms) => {
      const h: Handle = {
        cancelled: false,
        unref() {
          return this;
        },
      };
      h.inner = base.clock.setTimeout(
        () =>
          gate(() => {
            if (!h.cancelled) fn();
          }),
        ms,
      );
      return h;
    },
    clearTimeout: (t) => {
      const h = t as Handle | undefined;
      if (!h) return;
      h.cancelled = true;
      base.clock.clearTimeout(h.inner);
    },
  };
  return { clock, random: base.random };
}
