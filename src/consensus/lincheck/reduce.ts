/** From a history's operations to the search's: values interned, what cannot matter left out. */
import { DWCPError } from "../../errors.js";
import type { Operation, Value } from "./history.js";
import type { RegOp } from "./search.js";

/** Interns a key's values as small integers, 0 being absent. */
export class ValueTable {
  readonly #ids = new Map<string, number>();
  id(v: Value): number {
    if (v === null) return 0;
    let id = this.#ids.get(v);
    if (id === undefined) {
      id = this.#ids.size + 1;
      this.#ids.set(v, id);
    }
    return id;
  }
}

/**
 * The operations of one key that the search must place, reduced; `null` for
 * one it leaves out (failed, or an indeterminate read).
 */
export function reduce(op: Operation, values: ValueTable): RegOp | null {
  if (op.status === "fail") return null;
  const complete = op.status === "info" ? Number.POSITIVE_INFINITY : op.complete;
  const c = op.call;
  if (c.f === "read") {
    if (op.status !== "ok") return null;
    if (op.result === undefined) throw new DWCPError("ERR_INVALID_ARG", "an ok read has no result");
    return { f: 0, a: values.id(op.result), b: 0, invoke: op.invoke, complete };
  }
  if (c.f === "write") return { f: 1, a: values.id(c.value), b: 0, invoke: op.invoke, complete };
  return { f: 2, a: values.id(c.from), b: values.id(c.to), invoke: op.invoke, complete };
}
