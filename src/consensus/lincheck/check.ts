/**
 * The linearizability checker for a key-value register: a history is
 * linearizable iff the sub-history of every key is (Herlihy and Wing's
 * locality, which Horn and Kroening call P-compositionality), so each key is
 * searched on its own ({@link searchRegister}).
 *
 * The model: every key starts absent; a read returns the current value (nil
 * when absent); a write sets it; cas(old, new) takes effect iff the current
 * value is `old`. An `ok` cas succeeded; a `fail`ed operation did not happen; an
 * `info` operation may have taken effect at any time after its invocation, or
 * never, so an indeterminate read constrains nothing and is left out.
 *
 * @packageDocumentation
 */
import { type Clock, nodeEnv } from "../../env/index.js";
import { DWCPError } from "../../errors.js";
import { explainKey, type Window } from "./explain.js";
import type { History, Operation } from "./history.js";
import { reduce, ValueTable } from "./reduce.js";
import { type RegOp, searchRegister, type Verdict } from "./search.js";

export type { Verdict } from "./search.js";

/** Options of {@link checkLinearizable}. */
export interface CheckOptions {
  /** Time for the whole check, explanations included; past it, undecided keys are `unknown`. @default 30_000 */
  readonly timeoutMs?: number;
  /** Most configurations memoised for one key before it is `unknown` (bounds memory). @default 2_000_000 */
  readonly maxStates?: number;
  /**
   * Most memory the memo of one key may take (estimated) before the key is
   * `unknown`: a configuration of a key with n operations costs about n/8 bytes.
   * @default 512 MiB
   */
  readonly maxMemoBytes?: number;
  /** Find a minimal non-linearizable window for each illegal key. @default false */
  readonly explain?: boolean;
  /** The clock `timeoutMs` is measured on. @default nodeEnv's */
  readonly clock?: Pick<Clock, "now">;
}

/** The verdict on one key. */
export interface KeyResult {
  readonly key: string;
  readonly result: Verdict;
  /** Operations searched (failed ones and indeterminate reads are left out). */
  readonly operations: number;
  /** Configurations (linearized set, value) the search memoised. */
  readonly states: number;
  /** For `unknown`: the limit reached, time or memoised states (`maxStates`, `maxMemoBytes`). */
  readonly limit?: "time" | "states";
  /** With `explain`, for an illegal key: the smallest window found that is already not linearizable. */
  readonly window?: Window;
}

/** What {@link checkLinearizable} found. */
export interface CheckResult {
  /** `illegal` if any key is; else `unknown` if any key is; else `ok`. */
  readonly result: Verdict;
  /** One per key, in order of first invocation. */
  readonly keys: readonly KeyResult[];
  /** Operations in the history. */
  readonly operations: number;
  readonly elapsedMs: number;
}

/** The history's operations grouped by key, in order of first invocation. */
export function byKey(history: History): Map<string, Operation[]> {
  const keys = new Map<string, Operation[]>();
  for (const op of [...history.operations].sort((a, b) => a.invoke - b.invoke)) {
    let list = keys.get(op.key);
    if (list === undefined) {
      list = [];
      keys.set(op.key, list);
    }
    list.push(op);
  }
  return keys;
}

function validate(history: History): void {
  for (const op of history.operations) {
    if (!(op.invoke <= op.complete) || Number.isNaN(op.invoke))
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `operation of process ${op.process} completes before it is invoked`,
      );
    if (op.status === "ok" && !Number.isFinite(op.complete))
      throw new DWCPError("ERR_INVALID_ARG", `an ok operation of process ${op.process} has no completion`);
  }
}

/**
 * Checks `history` against the key-value register model. The verdict is
 * `unknown` only when the time or state limit was reached; `ok` and `illegal`
 * are always right.
 * @throws DWCPError `ERR_INVALID_ARG` for an operation without a finite
 *   invocation or that completes before it, or an ok operation without
 *   completion or (a read) result
 */
export function checkLinearizable(history: History, options: CheckOptions = {}): CheckResult {
  const clock = options.clock ?? nodeEnv.clock;
  const t0 = clock.now();
  const deadline = t0 + (options.timeoutMs ?? 30_000);
  const limits = {
    now: () => clock.now(),
    deadline,
    maxStates: options.maxStates ?? 2_000_000,
    maxMemoBytes: options.maxMemoBytes ?? 512 * 1024 * 1024,
  };
  validate(history);
  const keys: KeyResult[] = [];
  for (const [key, ops] of byKey(history)) {
    const values = new ValueTable();
    const reduced = ops.map((op) => reduce(op, values)).filter((r): r is RegOp => r !== null);
    const { verdict, states, limit } =
      clock.now() > deadline
        ? { verdict: "unknown" as const, states: 0, limit: "time" as const }
        : searchRegister(reduced, limits);
    const window = verdict === "illegal" && options.explain ? explainKey(key, ops, limits) : undefined;
    keys.push({
      key,
      result: verdict,
      operations: reduced.length,
      states,
      ...(limit ? { limit } : {}),
      ...(window ? { window } : {}),
    });
  }
  const result: Verdict = keys.some((k) => k.result === "illegal")
    ? "illegal"
    : keys.some((k) => k.result === "unknown")
      ? "unknown"
      : "ok";
  return {
    result,
    keys,
    operations: history.operations.length,
    elapsedMs: clock.now() - t0,
  };
}
