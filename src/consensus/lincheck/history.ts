/**
 * Histories of a key-value register, as a linearizability checker reads them:
 * every operation with its process, its call, its outcome and the positions of
 * its invocation and completion among the history's events, and a recorder that
 * builds one from a running workload.
 *
 * @packageDocumentation
 */
import { DWCPError } from "../../errors.js";

/** A register's value; `null` is absent (Jepsen's `nil`). */
export type Value = string | null;

/** What an operation asked for. A read's result is the operation's {@link Operation.result}. */
export type Call =
  | { readonly f: "read" }
  | { readonly f: "write"; readonly value: Value }
  /** Compare-and-set: takes effect iff the register holds `from`, then holds `to`. */
  | { readonly f: "cas"; readonly from: Value; readonly to: Value };

/**
 * How an operation ended.
 * - `ok`: it took effect (a cas: it succeeded) between its invocation and its completion.
 * - `fail`: it certainly did not take effect.
 * - `info`: indeterminate. It may have taken effect at any moment after its
 *   invocation, or never; its process invokes nothing after it.
 */
export type Status = "ok" | "fail" | "info";

/** One operation of a history. */
export interface Operation {
  readonly process: number;
  /** The register it acts on; `""` in an unkeyed history. */
  readonly key: string;
  readonly call: Call;
  readonly status: Status;
  /** What an `ok` read returned; absent otherwise. */
  readonly result?: Value;
  /** Position of the invocation among the history's events (invocations and completions). */
  readonly invoke: number;
  /**
   * Position of the completion. `Infinity` for an operation that never
   * completed (the history ended first: it is `info`).
   */
  readonly complete: number;
  /** The lines of a parsed log that invoked and completed it (1-based; 0 for none). */
  readonly lines?: readonly [number, number];
}

/**
 * A history: operations in invocation order. `keyed` histories act on several
 * registers (Jepsen's independent keys); unkeyed ones on one, whose key is `""`.
 */
export interface History {
  readonly keyed: boolean;
  readonly operations: readonly Operation[];
}

/** An operation as {@link HistoryRecorder.invoke} takes it: a {@link Call}, and its key in a keyed history. */
export type RecordedCall = Call & { readonly key?: string };

/** A pending operation of a {@link HistoryRecorder}. */
export interface Token {
  readonly id: number;
}

interface Pending {
  readonly process: number;
  readonly key: string;
  readonly call: Call;
  readonly invoke: number;
  status?: Status;
  result?: Value;
  complete?: number;
}

/**
 * Records a workload's operations as they happen, in the order the calls to it
 * are made: call {@link invoke} just before sending a request and
 * {@link ok}/{@link fail}/{@link info} as soon as its outcome is known, so that
 * each operation's interval contains the moment it took effect.
 *
 * A process has one operation in flight at a time and invokes nothing after an
 * `info` (a client that timed out continues as a new process, as Jepsen's do).
 */
export class HistoryRecorder {
  readonly #ops: Pending[] = [];
  readonly #busy = new Set<number>();
  readonly #crashed = new Set<number>();
  #events = 0;
  #keyed: boolean | undefined;

  /** Records the invocation of `call` by `process`. @throws ERR_INVALID_ARG on a misuse */
  invoke(process: number, call: RecordedCall): Token {
    if (!Number.isSafeInteger(process) || process < 0)
      throw new DWCPError("ERR_INVALID_ARG", `process must be a non-negative integer, got ${process}`);
    if (this.#busy.has(process))
      throw new DWCPError("ERR_INVALID_ARG", `process ${process} already has an operation in flight`);
    if (this.#crashed.has(process))
      throw new DWCPError("ERR_INVALID_ARG", `process ${process} ended with an indeterminate operation`);
    const keyed = call.key !== undefined;
    if (this.#keyed !== undefined && this.#keyed !== keyed)
      throw new DWCPError("ERR_INVALID_ARG", "every recorded operation has a key, or none does");
    this.#keyed = keyed;
    const { key = "", ...rest } = call;
    this.#busy.add(process);
    this.#ops.push({ process, key, call: rest as Call, invoke: this.#events++ });
    return { id: this.#ops.length - 1 };
  }

  /** The operation took effect; `result` is what a read returned. */
  ok(token: Token, result?: Value): void {
    const f = this.#pending(token).call.f;
    if (f === "read" && result === undefined)
      throw new DWCPError("ERR_INVALID_ARG", "an ok read needs its result");
    const op = this.#settle(token, "ok");
    if (f === "read") op.result = result!;
  }

  /** The operation certainly did not take effect (a cas whose compare failed, a refused request). */
  fail(token: Token): void {
    this.#settle(token, "fail");
  }

  /** The outcome is unknown (a timeout, a lost connection); the process invokes nothing more. */
  info(token: Token): void {
    const op = this.#settle(token, "info");
    this.#crashed.add(op.process);
  }

  /** The history so far; operations still in flight are indeterminate in it. */
  history(): History {
    return {
      keyed: this.#keyed ?? false,
      operations: this.#ops.map((p) => {
        const base = { process: p.process, key: p.key, call: p.call, invoke: p.invoke };
        if (p.status === undefined) return { ...base, status: "info", complete: Number.POSITIVE_INFINITY };
        return {
          ...base,
          status: p.status,
          complete: p.complete!,
          ...(p.result !== undefined ? { result: p.result } : {}),
        };
      }),
    };
  }

  #pending(token: Token): Pending {
    const op = this.#ops[token.id];
    if (op === undefined || op.status !== undefined)
      throw new DWCPError("ERR_INVALID_ARG", `operation ${token.id} is not in flight`);
    return op;
  }

  #settle(token: Token, status: Status): Pending {
    const op = this.#pending(token);
    op.status = status;
    op.complete = this.#events++;
    this.#busy.delete(op.process);
    return op;
  }
}

/** A value as the Jepsen log and the explanations write it. */
export function showValue(v: Value): string {
  return v === null ? "nil" : v;
}

/** An operation's call and outcome in a few words: `read -> 3`, `cas 1 -> 4`, `write 2`. */
export function showCall(op: Operation): string {
  const c = op.call;
  if (c.f === "read") return op.result !== undefined ? `read -> ${showValue(op.result)}` : "read";
  if (c.f === "write") return `write ${showValue(c.value)}`;
  return `cas ${showValue(c.from)} -> ${showValue(c.to)}`;
}
