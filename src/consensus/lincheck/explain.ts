/**
 * Why a key is not linearizable: the smallest window of its operations, by
 * time, that is already not linearizable, whatever the operations outside it
 * did.
 *
 * A window is cut in two ways, each of which can only add linearizations, so a
 * window found illegal proves the whole history illegal:
 * - At its end, at an event T: operations invoked later are left out, and one
 *   still running at T becomes indeterminate (a running read is left out).
 *   Linearizability is prefix-closed, so this cut is exact.
 * - At its start: the operations invoked before the window are left out, and the
 *   values they write (a write's, a cas's new one) may appear in the register at
 *   any moment, any number of times. That over-approximates anything they did.
 *
 * Both cuts are monotone (a later end or an earlier start never makes an illegal
 * window legal), so each is found by bisection. Then each operation inside the
 * window is left out in the same way, in turn, when the rest stays illegal: what
 * remains are the operations that show the violation. A search that runs out of
 * time counts as legal, which only leaves the window larger.
 *
 * @packageDocumentation
 */
import type { KeyResult } from "./check.js";
import { type Operation, showCall, showValue, type Value } from "./history.js";
import { reduce, ValueTable } from "./reduce.js";
import { type RegOp, type SearchLimits, searchRegister } from "./search.js";

/** A minimal non-linearizable window of one key's operations. */
export interface Window {
  readonly key: string;
  /**
   * The operations that make it illegal, by invocation: leaving out any one of
   * them makes the rest linearizable (or undecided in time). Those running at
   * its end count as indeterminate.
   */
  readonly operations: readonly Operation[];
  /** Operations in the window, those left out included. */
  readonly span: number;
  /** The event the window ends at (the completion that cannot be placed). */
  readonly end: number;
  /** Operations of this key invoked before the window. */
  readonly before: number;
  /** Values of the operations left out (before the window or within it), free to appear at any moment. */
  readonly looseValues: readonly Value[];
  /** Operations of this key in all (failed ones excluded). */
  readonly of: number;
}

type Limits = Omit<SearchLimits, "chaos">;

/**
 * True when `ops` cut at event `end`, with the operations `loose` marks left out
 * (their values free to appear at any moment), is proven illegal.
 */
function illegal(
  ops: readonly Operation[],
  loose: (i: number) => boolean,
  end: number,
  limits: Limits,
): boolean {
  const values = new ValueTable();
  const chaos = new Set<number>();
  const reduced: RegOp[] = [];
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.invoke > end) break;
    if (loose(i)) {
      const c = op.call;
      if (c.f === "write") chaos.add(values.id(c.value));
      else if (c.f === "cas") chaos.add(values.id(c.to));
      continue;
    }
    const r = reduce(op, values);
    if (r === null) continue;
    if (r.complete > end) {
      if (r.f !== 0) reduced.push({ ...r, complete: Number.POSITIVE_INFINITY });
    } else reduced.push(r);
  }
  return searchRegister(reduced, { ...limits, chaos }).verdict === "illegal";
}

/**
 * The smallest window found for a key whose operations `all` (by invocation)
 * are not linearizable, and within it the operations none of which can be left
 * out (each tried once, in order).
 */
export function explainKey(key: string, all: readonly Operation[], limits: Limits): Window {
  const ops = all.filter((op) => op.status !== "fail");
  const ends = ops
    .filter((op) => op.status === "ok")
    .map((op) => op.complete)
    .sort((a, b) => a - b);
  const none = () => false;
  // Earliest end: ends[hi] is illegal, for the whole history is.
  let lo = -1;
  let hi = ends.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (illegal(ops, none, ends[mid]!, limits)) hi = mid;
    else lo = mid;
  }
  const end = ends[hi] ?? Number.POSITIVE_INFINITY;
  const cut = ops.filter((op) => op.invoke <= end && !(op.call.f === "read" && op.complete > end));
  // Latest start: `a` is illegal; `b` (nothing) is not.
  let a = 0;
  let b = cut.length;
  while (b - a > 1) {
    const mid = (a + b) >> 1;
    if (illegal(cut, (i) => i < mid, end, limits)) a = mid;
    else b = mid;
  }
  const loose = new Set<number>();
  for (let i = 0; i < a; i++) loose.add(i);
  for (let i = a; i < cut.length; i++) {
    loose.add(i);
    if (!illegal(cut, (j) => loose.has(j), end, limits)) loose.delete(i);
  }
  const looseValues = new Set<Value>();
  for (const i of loose) {
    const c = cut[i]!.call;
    if (c.f === "write") looseValues.add(c.value);
    else if (c.f === "cas") looseValues.add(c.to);
  }
  return {
    key,
    operations: cut.filter((_, i) => !loose.has(i)),
    span: cut.length - a,
    end,
    before: a,
    looseValues: [...looseValues],
    of: ops.length,
  };
}

const MAX_TIMELINE = 40;

/** A window as text: its operations, a timeline, and what was assumed of the rest. */
export function renderWindow(w: Window): string {
  const name = w.key === "" ? "the register" : `key ${w.key}`;
  const n = w.operations.length;
  const left = w.of - n;
  const whose = w.key === "" ? "its" : "the key's";
  const lines = [
    `${name}: ${n === 1 ? "this operation has" : `these ${n} operations have`} no linearization${left > 0 ? `, whatever ${whose} other ${left} operations did` : ""}:`,
  ];
  // Running at the window's end, or indeterminate: it may take effect at any later moment.
  const open = (op: Operation) => op.complete > w.end || op.status === "info";
  const rows = w.operations.map((op) => {
    const where = op.lines ? `line ${op.lines[0]}${op.lines[1] ? `-${op.lines[1]}` : ""}` : "";
    const status = op.status === "info" ? "info" : op.complete > w.end ? "running" : op.status;
    return { op, label: `p${op.process} ${showCall(op)}`, status, where };
  });
  const width = Math.max(...rows.map((r) => r.label.length));
  const statusWidth = Math.max(...rows.map((r) => r.status.length));
  // The timeline's columns: these operations' events, in order.
  const times = [
    ...new Set(w.operations.flatMap((op) => (open(op) ? [op.invoke] : [op.invoke, op.complete]))),
  ].sort((x, y) => x - y);
  const col = new Map(times.map((t, i) => [t, i]));
  const bars = rows.map((r) => {
    if (times.length > MAX_TIMELINE) return "";
    const from = col.get(r.op.invoke)!;
    const to = open(r.op) ? times.length : col.get(r.op.complete)!;
    return `${" ".repeat(2 * from)}|${"-".repeat(Math.max(0, 2 * (to - from) - 1))}${open(r.op) ? ">" : "|"}`;
  });
  const barWidth = Math.max(...bars.map((b) => b.length));
  rows.forEach((r, i) => {
    const where = r.where ? `  (${r.where})` : "";
    lines.push(
      `  ${r.label.padEnd(width)}  ${r.status.padEnd(statusWidth)}  ${bars[i]!.padEnd(barWidth)}${where}`.trimEnd(),
    );
  });
  if (w.operations.some(open))
    lines.push("  (>: running at the end, or indeterminate: may take effect at any later moment, or never)");
  if (left > 0) {
    const values = w.looseValues.map(showValue).join(", ");
    lines.push(
      `  (${whose} other operations are taken to write their values${values ? ` (${values})` : ""} at any moment, any number of times; ${w.span - n} of them fall within this window)`,
    );
  }
  return lines.join("\n");
}

/** The text of every explained key of a check. */
export function renderExplanation(keys: readonly KeyResult[]): string {
  return keys
    .filter((k) => k.window !== undefined)
    .map((k) => renderWindow(k.window!))
    .join("\n\n");
}
