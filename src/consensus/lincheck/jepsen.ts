/**
 * Jepsen's register logs, read and written. An operation line is
 *
 *     INFO  jepsen.util - <process>\t:<invoke|ok|fail|info>\t:<read|write|cas>\t<value>
 *
 * (`INFO`, whitespace, `jepsen.util - `, then four tab-separated fields). Every
 * other line is ignored, and so are the nemesis's (process `:nemesis`).
 *
 * Values are EDN atoms (any run of characters other than whitespace and
 * brackets; `nil` is absent) or vectors of them: a cas's is `[old new]`.
 *
 * **Keyed histories** (Jepsen's independent keys) wrap every value in
 * `[key value]`: `[k nil]` for a read's invocation, `[k 3]` for a write,
 * `[k [old new]]` for a cas. The first operation line's value decides the form
 * for the whole log: a read's or write's value that is a vector, or a cas's
 * whose second element is a vector, makes it keyed. A later invocation or `:ok`
 * of the other form is an error.
 *
 * An `:ok` read's value is its result; an `:ok` write's or cas's must be its
 * invocation's. A `:fail` or `:info` line's value must be well-formed but is not
 * otherwise read (Jepsen may put an error keyword there, `:timed-out`). An
 * invocation still pending when the log ends is indeterminate (`info`).
 *
 * @packageDocumentation
 */
import { DWCPError } from "../../errors.js";
import type { Call, History, Operation, Status, Value } from "./history.js";

/** Limits on a log; anything beyond them is an error. */
export interface ParseOptions {
  /** Longest operation line, in characters. @default 4096 */
  readonly maxLineLength?: number;
  /** Most operations. @default 1_000_000 */
  readonly maxOperations?: number;
  /** Largest log, in characters. @default 256 MiB */
  readonly maxLength?: number;
}

const DEFAULTS = { maxLineLength: 4096, maxOperations: 1_000_000, maxLength: 256 * 1024 * 1024 };

const PREFIX = /^INFO[ \t]+jepsen\.util - /;
const ATOM = /^[^\s[\]]+$/;
/** Vectors nest no deeper than a keyed cas's `[k [old new]]`. */
const MAX_DEPTH = 2;

type Edn = Value | Edn[];

function bad(line: number, message: string): DWCPError {
  return new DWCPError("ERR_INVALID_ARG", `line ${line}: ${message}`);
}

/** Parses one value: an atom or a vector (of atoms or vectors). */
function parseEdn(text: string, line: number): Edn {
  const tokens = text.match(/\[|\]|[^\s[\]]+/g) ?? [];
  let i = 0;
  const one = (depth: number): Edn => {
    const t = tokens[i++];
    if (t === undefined) throw bad(line, `incomplete value ${JSON.stringify(text)}`);
    if (t === "]") throw bad(line, `unexpected "]" in ${JSON.stringify(text)}`);
    if (t !== "[") return t === "nil" ? null : t;
    if (depth >= MAX_DEPTH) throw bad(line, `value nested too deep: ${JSON.stringify(text)}`);
    const v: Edn[] = [];
    while (tokens[i] !== "]") v.push(one(depth + 1));
    i++;
    return v;
  };
  const v = one(0);
  if (i !== tokens.length) throw bad(line, `trailing text after the value ${JSON.stringify(text)}`);
  return v;
}

function atom(e: Edn | undefined, line: number, what: string): Value {
  if (e === undefined || Array.isArray(e)) throw bad(line, `${what} must be a single value`);
  return e;
}

function pair(e: Edn, line: number, what: string): [Edn, Edn] {
  if (!Array.isArray(e) || e.length !== 2) throw bad(line, `${what} must be a pair [a b]`);
  return [e[0]!, e[1]!];
}

/** True when a first operation's value is in the keyed form. */
function looksKeyed(f: string, v: Edn): boolean {
  if (f === "cas") return Array.isArray(v) && Array.isArray(v[1]);
  return Array.isArray(v);
}

/** The key and the register-level value of a line's value, in the log's form. */
function unwrap(v: Edn, keyed: boolean, line: number): { key: string; inner: Edn } {
  if (!keyed) return { key: "", inner: v };
  const [k, inner] = pair(v, line, "a keyed value");
  const key = atom(k, line, "a key");
  if (key === null) throw bad(line, "a key cannot be nil");
  return { key, inner };
}

function callOf(f: string, inner: Edn, line: number): Call {
  if (f === "read") return { f };
  if (f === "write") return { f, value: atom(inner, line, "a write's value") };
  const [from, to] = pair(inner, line, "a cas's value");
  return { f: "cas", from: atom(from, line, "a cas's old value"), to: atom(to, line, "a cas's new value") };
}

function sameCall(a: Call, b: Call): boolean {
  if (a.f === "write" && b.f === "write") return a.value === b.value;
  if (a.f === "cas" && b.f === "cas") return a.from === b.from && a.to === b.to;
  return a.f === b.f;
}

interface Open {
  readonly process: number;
  readonly key: string;
  readonly call: Call;
  readonly invoke: number;
  readonly line: number;
}

/**
 * Parses a Jepsen register log.
 * @throws DWCPError `ERR_INVALID_ARG` ("line N: …") on a malformed operation
 *   line, an inconsistent history (a completion with no pending invocation, a
 *   second invocation from a process with one pending, an invocation after a
 *   process's `info`, a completion of another function or key than its
 *   invocation's), or a log beyond {@link ParseOptions}' limits
 */
export function parseJepsen(text: string, options: ParseOptions = {}): History {
  const o = { ...DEFAULTS, ...options };
  if (text.length > o.maxLength)
    throw new DWCPError("ERR_INVALID_ARG", `the log is longer than ${o.maxLength} characters`);
  const operations: Operation[] = [];
  const open = new Map<number, Open>();
  const crashed = new Set<number>();
  let keyed: boolean | undefined;
  let events = 0;
  let lineNo = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    lineNo++;
    const head = text.slice(start, Math.min(end, start + 64));
    const from = start;
    start = end + 1;
    const m = PREFIX.exec(head);
    if (m === null) continue;
    if (end - from > o.maxLineLength) throw bad(lineNo, `longer than ${o.maxLineLength} characters`);
    const fields = text
      .slice(from + m[0].length, end)
      .replace(/\r$/, "")
      .split("\t");
    if (fields.length !== 4)
      throw bad(lineNo, `expected 4 tab-separated fields after "jepsen.util - ", got ${fields.length}`);
    const [proc, type, fn, valueText] = fields as [string, string, string, string];
    if (proc === ":nemesis") continue;
    if (!/^\d{1,15}$/.test(proc))
      throw bad(lineNo, `process must be an integer, got ${JSON.stringify(proc)}`);
    const process = Number(proc);
    if (!/^:(invoke|ok|fail|info)$/.test(type))
      throw bad(lineNo, `type must be :invoke, :ok, :fail or :info, got ${JSON.stringify(type)}`);
    if (!/^:(read|write|cas)$/.test(fn))
      throw bad(lineNo, `function must be :read, :write or :cas, got ${JSON.stringify(fn)}`);
    const f = fn.slice(1);
    const value = parseEdn(valueText, lineNo);
    keyed ??= looksKeyed(f, value);
    if (type === ":invoke") {
      if (open.has(process))
        throw bad(
          lineNo,
          `process ${process} invokes while its operation of line ${open.get(process)!.line} is pending`,
        );
      if (crashed.has(process))
        throw bad(lineNo, `process ${process} invokes after its indeterminate (:info) operation`);
      if (operations.length + open.size >= o.maxOperations)
        throw bad(lineNo, `more than ${o.maxOperations} operations`);
      if (looksKeyed(f, value) !== keyed)
        throw bad(
          lineNo,
          `${keyed ? "an unkeyed" : "a keyed"} value in ${keyed ? "a keyed" : "an unkeyed"} history`,
        );
      const { key, inner } = unwrap(value, keyed, lineNo);
      open.set(process, { process, key, call: callOf(f, inner, lineNo), invoke: events++, line: lineNo });
      continue;
    }
    const inv = open.get(process);
    if (inv === undefined)
      throw bad(lineNo, `${type} for process ${process}, which has no pending invocation`);
    if (inv.call.f !== f) throw bad(lineNo, `${type} ${fn} completes a :${inv.call.f} (line ${inv.line})`);
    open.delete(process);
    const status = type.slice(1) as Status;
    let result: Value | undefined;
    if (status === "ok") {
      const { key, inner } = unwrap(value, keyed, lineNo);
      if (key !== inv.key) throw bad(lineNo, `completes key ${inv.key} (line ${inv.line}) with key ${key}`);
      if (f === "read") result = atom(inner, lineNo, "a read's result");
      else if (!sameCall(callOf(f, inner, lineNo), inv.call))
        throw bad(lineNo, `the value differs from the invocation's (line ${inv.line})`);
    } else if (status === "info") crashed.add(process);
    operations.push({
      process,
      key: inv.key,
      call: inv.call,
      status,
      ...(result !== undefined ? { result } : {}),
      invoke: inv.invoke,
      complete: events++,
      lines: [inv.line, lineNo],
    });
  }
  for (const inv of open.values())
    operations.push({
      process: inv.process,
      key: inv.key,
      call: inv.call,
      status: "info",
      invoke: inv.invoke,
      complete: Number.POSITIVE_INFINITY,
      lines: [inv.line, 0],
    });
  operations.sort((a, b) => a.invoke - b.invoke);
  return { keyed: keyed ?? false, operations };
}

function atomText(v: Value, what: string): string {
  if (v === null) return "nil";
  if (!ATOM.test(v) || v === "nil")
    throw new DWCPError("ERR_INVALID_ARG", `${what} ${JSON.stringify(v)} cannot be written as a Jepsen atom`);
  return v;
}

/**
 * Renders a history as a Jepsen log that {@link parseJepsen} reads back to the
 * same operations. Indeterminate operations that never completed get their
 * `:info` line at the end.
 * @throws DWCPError `ERR_INVALID_ARG` for a key or value that is not an atom
 *   (empty, with whitespace or brackets, or the string "nil")
 */
export function formatJepsen(history: History): string {
  const lines: { at: number; text: string }[] = [];
  const end = history.operations.reduce(
    (m, op) => Math.max(m, op.invoke, Number.isFinite(op.complete) ? op.complete : 0),
    0,
  );
  for (const op of history.operations) {
    const wrap = (inner: string) => (history.keyed ? `[${atomText(op.key, "the key")} ${inner}]` : inner);
    const c = op.call;
    const call =
      c.f === "read"
        ? "nil"
        : c.f === "write"
          ? atomText(c.value, "the value")
          : `[${atomText(c.from, "the value")} ${atomText(c.to, "the value")}]`;
    const line = (type: string, value: string) =>
      `INFO  jepsen.util - ${op.process}\t:${type}\t:${c.f}\t${wrap(value)}`;
    lines.push({ at: op.invoke, text: line("invoke", call) });
    const done = op.status === "ok" && op.result !== undefined ? atomText(op.result, "the result") : call;
    lines.push({
      at: Number.isFinite(op.complete) ? op.complete : end + 1 + op.invoke,
      text: line(op.status, done),
    });
  }
  lines.sort((a, b) => a.at - b.at);
  return lines.map((l) => `${l.text}\n`).join("");
}
