/**
 * etcd's transaction semantics on a {@link Store}, without I/O, time or
 * leases' clocks: the argument checks, the compares, the ops and the reads.
 * The local backend runs them behind its log; the BFT state machine runs them
 * on every replica alike, so both give one answer to one transaction.
 */
import { DWCPError, invalidArg } from "../../errors.js";
import type { Compare, KeySelector, RangeOptions, RangeResult, TxnOp, TxnOpResult } from "../backend.js";
import type { Change, Store } from "./store.js";
import { copyKeyValue } from "./watch.js";

/** The size limits a transaction is checked against. */
export interface TxnLimits {
  /** Largest key, in UTF-8 bytes. */
  readonly maxKeyBytes: number;
  /** Largest value, in bytes. */
  readonly maxValueBytes: number;
  /** Most compares or ops in one branch. */
  readonly maxTxnOps: number;
}

const TARGETS = new Set(["version", "createRevision", "modRevision", "value", "lease"]);
const OPS = new Set(["=", "!=", "<", ">"]);
/** A key must have a UTF-8 form, as etcd's keys are bytes. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Checks a whole transaction before anything runs.
 * @throws DWCPError `ERR_INVALID_ARG` naming the first bad part
 */
export function checkTxn(
  compares: readonly Compare[],
  success: readonly TxnOp[],
  failure: readonly TxnOp[],
  limits: TxnLimits,
): void {
  if (!Array.isArray(compares)) throw invalidArg("compares", "an array", compares);
  if (!Array.isArray(success)) throw invalidArg("success", "an array", success);
  if (!Array.isArray(failure)) throw invalidArg("failure", "an array", failure);
  if (Math.max(compares.length, success.length, failure.length) > limits.maxTxnOps) {
    throw new DWCPError(
      "ERR_INVALID_ARG",
      `a transaction has at most ${limits.maxTxnOps} compares or ops a branch`,
    );
  }
  for (const c of compares) checkCompare(c);
  checkOps(success, "success", limits);
  checkOps(failure, "failure", limits);
}

function checkCompare(c: Compare): void {
  if (c === null || typeof c !== "object") throw invalidArg("compare", "an object", c);
  if (typeof c.key !== "string") throw invalidArg("compare.key", "a string", c.key);
  if (!TARGETS.has(c.target)) throw invalidArg("compare.target", "a compare target", c.target);
  if (!OPS.has(c.op)) throw invalidArg("compare.op", "=, !=, < or >", c.op);
  if (c.target === "value") {
    if (!(c.value instanceof Uint8Array)) throw invalidArg("compare.value", "a Uint8Array", c.value);
  } else if (!Number.isSafeInteger(c.value)) {
    throw invalidArg("compare.value", "an integer", c.value);
  }
}

/** Validates a branch, and refuses one that writes a key twice (as etcd does, whether or not it runs). */
function checkOps(ops: readonly TxnOp[], branch: string, limits: TxnLimits): void {
  const puts = new Set<string>();
  const deletes: KeySelector[] = [];
  for (const op of ops) {
    if (op === null || typeof op !== "object") throw invalidArg(branch, "transaction ops", op);
    if (op.type === "put") {
      checkKey(op.key, `${branch} put key`, limits);
      if (!(op.value instanceof Uint8Array))
        throw invalidArg(`${branch} put value`, "a Uint8Array", op.value);
      if (op.value.length > limits.maxValueBytes) {
        throw new DWCPError(
          "ERR_INVALID_ARG",
          `a value of ${op.value.length} bytes exceeds ${limits.maxValueBytes}`,
        );
      }
      if (op.lease !== undefined) checkLeaseId(op.lease);
      if (puts.has(op.key)) throw new DWCPError("ERR_INVALID_ARG", `a transaction puts ${op.key} twice`);
      puts.add(op.key);
    } else if (op.type === "delete") {
      checkSelector(op, `${branch} delete`, limits);
      deletes.push(op);
    } else if (op.type === "range") {
      checkSelector(op, `${branch} range`, limits);
      checkLimit(op.limit);
    } else {
      throw invalidArg(`${branch} op type`, "put, delete or range", (op as { type: unknown }).type);
    }
  }
  for (const key of puts) {
    if (deletes.some((d) => (d.prefix ? key.startsWith(d.key) : key === d.key))) {
      throw new DWCPError("ERR_INVALID_ARG", `a transaction both puts and deletes ${key}`);
    }
  }
}

/** @throws DWCPError `ERR_INVALID_ARG` for a selector that is not one */
export function checkSelector(sel: KeySelector, name: string, limits: Pick<TxnLimits, "maxKeyBytes">): void {
  if (sel === null || typeof sel !== "object") throw invalidArg(name, "a key selector", sel);
  if (sel.prefix !== undefined && typeof sel.prefix !== "boolean")
    throw invalidArg(`${name}.prefix`, "a boolean", sel.prefix);
  if (sel.prefix && sel.key === "") return;
  checkKey(sel.key, `${name}.key`, limits);
}

function checkKey(key: string, name: string, limits: Pick<TxnLimits, "maxKeyBytes">): void {
  if (typeof key !== "string" || key === "" || LONE_SURROGATE.test(key)) {
    throw invalidArg(name, "a non-empty well-formed string", key);
  }
  const bytes = Buffer.byteLength(key);
  if (bytes > limits.maxKeyBytes)
    throw new DWCPError("ERR_INVALID_ARG", `a key of ${bytes} bytes exceeds ${limits.maxKeyBytes}`);
}

/** @throws DWCPError `ERR_INVALID_ARG` unless undefined or a non-negative integer */
export function checkLimit(limit: number | undefined): void {
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) {
    throw invalidArg("limit", "a non-negative integer", limit);
  }
}

/** @throws DWCPError `ERR_INVALID_ARG` unless a non-negative integer */
export function checkLeaseId(id: number): void {
  if (!Number.isSafeInteger(id) || id < 0) throw invalidArg("lease", "a lease id", id);
}

/** Whether `c` holds on the store as it is. */
export function holds(store: Store, c: Compare): boolean {
  const kv = store.get(c.key);
  if (c.target === "value") {
    // etcd: a value compare on an absent key is false whatever the operator.
    if (!kv) return false;
    return test(compareBytes(kv.value, c.value), c.op);
  }
  const field = kv ? kv[c.target] : 0;
  return test(field < c.value ? -1 : field > c.value ? 1 : 0, c.op);
}

/** Reads at `rev` (`revision + 1` inside a transaction: its own writes included). */
export function readAt(
  store: Store,
  sel: KeySelector,
  options: Pick<RangeOptions, "limit" | "countOnly">,
  rev: number,
): RangeResult {
  if (rev < store.compactRevision) {
    throw new DWCPError("ERR_COMPACTED", `revision ${rev} is compacted (up to ${store.compactRevision})`);
  }
  const all = store.select(sel, rev);
  const limit = options.limit ?? 0;
  const kvs = options.countOnly ? [] : (limit > 0 ? all.slice(0, limit) : all).map(copyKeyValue);
  return {
    kvs,
    count: all.length,
    more: !options.countOnly && limit > 0 && all.length > limit,
    revision: store.revision,
  };
}

/**
 * Applies a branch's ops to the revision under way (the caller commits it):
 * what each returned, and the writes it made, as the log records them.
 */
export function applyOps(store: Store, ops: readonly TxnOp[]): { results: TxnOpResult[]; changes: Change[] } {
  const results: TxnOpResult[] = [];
  const changes: Change[] = [];
  for (const op of ops) {
    if (op.type === "put") {
      const prev = store.get(op.key);
      const change: Change = { type: "put", key: op.key, value: op.value.slice(), lease: op.lease ?? 0 };
      store.apply(change);
      changes.push(change);
      results.push(prev && op.prevKv ? { type: "put", prev: copyKeyValue(prev) } : { type: "put" });
    } else if (op.type === "delete") {
      const gone = store.select(op);
      for (const kv of gone) {
        const change: Change = { type: "delete", key: kv.key };
        store.apply(change);
        changes.push(change);
      }
      results.push({ type: "delete", deleted: gone.length });
    } else {
      const r = readAt(store, op, op, store.revision + 1);
      results.push({ type: "range", kvs: r.kvs, count: r.count, more: r.more });
    }
  }
  return { results, changes };
}

function test(cmp: number, op: Compare["op"]): boolean {
  switch (op) {
    case "=":
      return cmp === 0;
    case "!=":
      return cmp !== 0;
    case "<":
      return cmp < 0;
    case ">":
      return cmp > 0;
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}
