// Small shared pieces of the PBA tests.
import type { Sample } from "../../src/prediction/index.js";

/** One megabit per second. */
export const M = 1e6;

/** A goodput sample at `at` ms of `bps`, with `extra` fields. */
export const g = (at: number, bps: number, extra: Partial<Sample> = {}): Sample => ({
  at,
  bps,
  kind: "goodput",
  ...extra,
});

/** The `code` of what `fn` throws, or "no error". */
export function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return "no error";
}
