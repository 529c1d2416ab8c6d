/**
 * The store operations a BFT command carries beyond put, delete and read
 * (state-machine.ts): etcd's transactions, ranges at a revision, compaction, the
 * change feed a watch polls, and the status, with the replies every replica
 * computes alike (PROTOCOL.md §17.4). They let the replicated state machine
 * stand behind the {@link ConsensusBackend} contract (backend.ts).
 *
 * Ops arrive from clients, so they are decoded as hostile input: every count
 * and length is checked before anything is allocated, and a malformed op
 * decodes as `undefined` (a no-op on every replica alike).
 */
import { DWCPError, isErrorCode } from "../../errors.js";
import type {
  Compare,
  CompareOp,
  KeySelector,
  KeyValue,
  RangeResult,
  TxnOp,
  TxnOpResult,
  TxnResult,
  WatchEvent,
} from "../backend.js";
import { Reader, Writer } from "./codec.js";
import { MAX_OP_BYTES } from "./messages.js";

/** Tags of the ops of this file (after put 1, delete 2, read 3 of state-machine.ts). */
export const OP_TXN = 4;
export const OP_RANGE = 5;
export const OP_COMPACT = 6;
export const OP_CHANGES = 7;
export const OP_STATUS = 8;

/** A decoded store op. */
export type StoreOp =
  | {
      readonly type: "txn";
      readonly compares: readonly Compare[];
      readonly success: readonly TxnOp[];
      readonly failure: readonly TxnOp[];
    }
  | {
      readonly type: "range";
      readonly selector: KeySelector;
      readonly limit: number;
      readonly countOnly: boolean;
      /** 0: the current revision. */
      readonly revision: number;
    }
  | { readonly type: "compact"; readonly revision: number }
  | {
      readonly type: "changes";
      readonly selector: KeySelector;
      readonly fromRevision: number;
      /** Revisions to look at, at most. */
      readonly maxRevisions: number;
    }
  | { readonly type: "status" };

/** A change feed's page: the matching events of revisions `from … upTo`, and the store's revision. */
export interface ChangesReply {
  readonly events: readonly (readonly WatchEvent[])[];
  /** Revisions up to this one were looked at (the next poll starts after it). */
  readonly upTo: number;
  readonly revision: number;
}

/** The store's revisions, as {@link OP_STATUS} replies them. */
export interface StatusReply {
  readonly revision: number;
  readonly compactRevision: number;
}

/** Largest key, in UTF-8 bytes (etcd's default request limits allow more; BFT ops are smaller). */
export const MAX_BFT_KEY_BYTES = 1536;
/** Most compares or ops in one branch of a transaction. */
export const MAX_BFT_TXN_OPS = 128;
/** Largest reply: a range or change page that would be larger fails with `ERR_RESOURCE_LIMIT`. */
export const MAX_REPLY_BYTES = 1 << 20;
/** Most revisions one change page looks at. */
export const MAX_CHANGE_REVISIONS = 1000;

const TARGETS = ["version", "createRevision", "modRevision", "value", "lease"] as const;
const COMPARE_OPS: readonly CompareOp[] = ["=", "!=", "<", ">"];
const PUT = 1;
const DELETE = 2;
const RANGE = 3;

// --- ops ---

function writeSelector(w: Writer, s: KeySelector): void {
  w.str16(s.key).u8(s.prefix ? 1 : 0);
}

function readSelector(r: Reader): KeySelector {
  const key = r.str16("key");
  return { key, prefix: flag(r, "prefix") };
}

function flag(r: Reader, what: string): boolean {
  const b = r.u8(what);
  if (b > 1) throw new DWCPError("ERR_BAD_FRAME", `${what} is not a flag`);
  return b === 1;
}

/** A signed safe integer as a sign byte and a magnitude (compare values may be negative). */
function writeInt(w: Writer, n: number): void {
  w.u8(n < 0 ? 1 : 0).u64(Math.abs(n));
}

function readInt(r: Reader, what: string): number {
  const negative = flag(r, what);
  const m = r.u64(what);
  return negative ? -m : m;
}

function writeOps(w: Writer, ops: readonly TxnOp[]): void {
  w.u16(ops.length);
  for (const op of ops) {
    if (op.type === "put") {
      w.u8(PUT)
        .str16(op.key)
        .blob32(op.value)
        .u64(op.lease ?? 0)
        .u8(op.prevKv ? 1 : 0);
    } else if (op.type === "delete") {
      w.u8(DELETE);
      writeSelector(w, op);
    } else {
      w.u8(RANGE);
      writeSelector(w, op);
      w.u64(op.limit ?? 0).u8(op.countOnly ? 1 : 0);
    }
  }
}

function readOps(r: Reader, what: string): TxnOp[] {
  const n = r.u16(what);
  if (n > MAX_BFT_TXN_OPS) throw new DWCPError("ERR_BAD_FRAME", `${n} ${what} exceed ${MAX_BFT_TXN_OPS}`);
  const ops: TxnOp[] = [];
  for (let i = 0; i < n; i++) {
    const type = r.u8("op type");
    if (type === PUT) {
      const key = r.str16("key");
      const value = r.blob32(MAX_OP_BYTES, "value");
      const lease = r.u64("lease");
      const prevKv = flag(r, "prevKv");
      ops.push({ type: "put", key, value, ...(lease ? { lease } : {}), ...(prevKv ? { prevKv } : {}) });
    } else if (type === DELETE) {
      ops.push({ type: "delete", ...readSelector(r) });
    } else if (type === RANGE) {
      const sel = readSelector(r);
      const limit = r.u64("limit");
      ops.push({ type: "range", ...sel, limit, countOnly: flag(r, "countOnly") });
    } else throw new DWCPError("ERR_BAD_FRAME", `unknown op type ${type}`);
  }
  return ops;
}

/** The op bytes of a transaction. */
export function txnOp(
  compares: readonly Compare[],
  success: readonly TxnOp[],
  failure: readonly TxnOp[],
): Uint8Array {
  const w = new Writer().u8(OP_TXN).u16(compares.length);
  for (const c of compares) {
    w.str16(c.key).u8(TARGETS.indexOf(c.target)).u8(COMPARE_OPS.indexOf(c.op));
    if (c.target === "value") w.blob32(c.value);
    else writeInt(w, c.value);
  }
  writeOps(w, success);
  writeOps(w, failure);
  return w.finish();
}

/** The op bytes of a read of `selector` (at `revision`; 0 for the current one). */
export function rangeOp(
  selector: KeySelector,
  o: { limit?: number; countOnly?: boolean; revision?: number },
): Uint8Array {
  const w = new Writer().u8(OP_RANGE);
  writeSelector(w, selector);
  return w
    .u64(o.limit ?? 0)
    .u8(o.countOnly ? 1 : 0)
    .u64(o.revision ?? 0)
    .finish();
}

/** The op bytes of a compaction up to `revision`. */
export function compactOp(revision: number): Uint8Array {
  return new Writer().u8(OP_COMPACT).u64(revision).finish();
}

/** The op bytes of a change page: `selector`'s events from `fromRevision`, looking at `maxRevisions` at most. */
export function changesOp(selector: KeySelector, fromRevision: number, maxRevisions: number): Uint8Array {
  const w = new Writer().u8(OP_CHANGES);
  writeSelector(w, selector);
  return w.u64(fromRevision).u16(maxRevisions).finish();
}

/** The op bytes of a status read. */
export function statusOp(): Uint8Array {
  return new Writer().u8(OP_STATUS).finish();
}

/** Reads a store op whose tag has been read; `ERR_BAD_FRAME` when malformed. */
export function readStoreOp(tag: number, r: Reader): StoreOp {
  switch (tag) {
    case OP_TXN: {
      const n = r.u16("compares");
      if (n > MAX_BFT_TXN_OPS)
        throw new DWCPError("ERR_BAD_FRAME", `${n} compares exceed ${MAX_BFT_TXN_OPS}`);
      const compares: Compare[] = [];
      for (let i = 0; i < n; i++) {
        const key = r.str16("compare key");
        const target = TARGETS[r.u8("compare target")];
        const op = COMPARE_OPS[r.u8("compare op")];
        if (!target || !op) throw new DWCPError("ERR_BAD_FRAME", "unknown compare");
        if (target === "value")
          compares.push({ key, target, op, value: r.blob32(MAX_OP_BYTES, "compare value") });
        else compares.push({ key, target, op, value: readInt(r, "compare value") });
      }
      const success = readOps(r, "success ops");
      const failure = readOps(r, "failure ops");
      r.end("txn");
      return { type: "txn", compares, success, failure };
    }
    case OP_RANGE: {
      const selector = readSelector(r);
      const limit = r.u64("limit");
      const countOnly = flag(r, "countOnly");
      const revision = r.u64("revision");
      r.end("range");
      return { type: "range", selector, limit, countOnly, revision };
    }
    case OP_COMPACT: {
      const revision = r.u64("revision");
      r.end("compact");
      return { type: "compact", revision };
    }
    case OP_CHANGES: {
      const selector = readSelector(r);
      const fromRevision = r.u64("from revision");
      const maxRevisions = Math.min(r.u16("revisions"), MAX_CHANGE_REVISIONS);
      r.end("changes");
      return { type: "changes", selector, fromRevision, maxRevisions };
    }
    case OP_STATUS:
      r.end("status");
      return { type: "status" };
    default:
      throw new DWCPError("ERR_BAD_FRAME", `unknown op ${tag}`);
  }
}

// --- replies ---

const OK = 0;
const FAILED = 1;

function writeKv(w: Writer, kv: KeyValue): void {
  w.str16(kv.key).blob32(kv.value).u64(kv.createRevision).u64(kv.modRevision).u64(kv.version).u64(kv.lease);
}

function readKv(r: Reader): KeyValue {
  return {
    key: r.str16("key"),
    value: r.blob32(MAX_REPLY_BYTES, "value"),
    createRevision: r.u64("create revision"),
    modRevision: r.u64("mod revision"),
    version: r.u64("version"),
    lease: r.u64("lease"),
  };
}

function writeKvs(w: Writer, kvs: readonly KeyValue[]): void {
  w.u32(kvs.length);
  for (const kv of kvs) writeKv(w, kv);
}

/** At least 36 bytes per key-value: a count above what is left is refused before anything is allocated. */
function readKvs(r: Reader): KeyValue[] {
  const n = r.u32("key count");
  if (n * 36 > r.left) throw new DWCPError("ERR_BAD_FRAME", `${n} keys cannot fit in ${r.left} bytes`);
  const out: KeyValue[] = [];
  for (let i = 0; i < n; i++) out.push(readKv(r));
  return out;
}

/** A failure every replica computes alike (its code and message). */
export function errorReply(err: DWCPError): Uint8Array {
  return new Writer()
    .u8(FAILED)
    .str8(err.code)
    .blob32(new TextEncoder().encode(err.message.slice(0, 1024)))
    .finish();
}

/** A transaction's result. */
export function txnReply(t: TxnResult): Uint8Array {
  const w = new Writer()
    .u8(OK)
    .u8(t.succeeded ? 1 : 0)
    .u64(t.revision)
    .u16(t.results.length);
  for (const res of t.results) {
    if (res.type === "put") {
      w.u8(PUT).u8(res.prev ? 1 : 0);
      if (res.prev) writeKv(w, res.prev);
    } else if (res.type === "delete") w.u8(DELETE).u64(res.deleted);
    else {
      w.u8(RANGE)
        .u64(res.count)
        .u8(res.more ? 1 : 0);
      writeKvs(w, res.kvs);
    }
  }
  return w.finish();
}

/** A range's result. */
export function rangeReply(res: RangeResult): Uint8Array {
  const w = new Writer()
    .u8(OK)
    .u64(res.revision)
    .u64(res.count)
    .u8(res.more ? 1 : 0);
  writeKvs(w, res.kvs);
  return w.finish();
}

/** A change page. */
export function changesReply(c: ChangesReply): Uint8Array {
  const w = new Writer().u8(OK).u64(c.upTo).u64(c.revision).u32(c.events.length);
  for (const batch of c.events) {
    w.u32(batch.length);
    for (const e of batch) {
      w.u8(e.type === "put" ? PUT : DELETE);
      writeKv(w, e.kv);
    }
  }
  return w.finish();
}

/** A status, or the empty success of a compaction (`status` undefined). */
export function okReply(status?: StatusReply): Uint8Array {
  const w = new Writer().u8(OK);
  if (status) w.u64(status.revision).u64(status.compactRevision);
  return w.finish();
}

/**
 * Reads a reply: the failure as a `DWCPError` thrown with its code, else
 * `read(r)` of the success's body.
 * @throws DWCPError the replicas' failure, or `ERR_BAD_FRAME` for a reply that is not one
 */
export function readReply<T>(bytes: Uint8Array, read: (r: Reader) => T): T {
  const r = new Reader(bytes);
  const tag = r.u8("reply");
  if (tag === FAILED) {
    const code = r.str8("error code");
    const message = new TextDecoder().decode(r.blob32(4096, "error message"));
    if (!isErrorCode(code)) throw new DWCPError("ERR_BAD_FRAME", `unknown error code in a reply: ${code}`);
    throw new DWCPError(code, message, { remote: true });
  }
  if (tag !== OK) throw new DWCPError("ERR_BAD_FRAME", `unknown reply tag ${tag}`);
  const out = read(r);
  r.end("reply");
  return out;
}

/** The body of a {@link txnReply}. */
export function readTxn(r: Reader): TxnResult {
  const succeeded = flag(r, "succeeded");
  const revision = r.u64("revision");
  const n = r.u16("results");
  const results: TxnOpResult[] = [];
  for (let i = 0; i < n; i++) {
    const type = r.u8("result type");
    if (type === PUT) results.push(flag(r, "prev") ? { type: "put", prev: readKv(r) } : { type: "put" });
    else if (type === DELETE) results.push({ type: "delete", deleted: r.u64("deleted") });
    else if (type === RANGE) {
      const count = r.u64("count");
      const more = flag(r, "more");
      results.push({ type: "range", count, more, kvs: readKvs(r) });
    } else throw new DWCPError("ERR_BAD_FRAME", `unknown result type ${type}`);
  }
  return { succeeded, revision, results };
}

/** The body of a {@link rangeReply}. */
export function readRange(r: Reader): RangeResult {
  const revision = r.u64("revision");
  const count = r.u64("count");
  const more = flag(r, "more");
  return { revision, count, more, kvs: readKvs(r) };
}

/** The body of a {@link changesReply}. */
export function readChanges(r: Reader): ChangesReply {
  const upTo = r.u64("up to");
  const revision = r.u64("revision");
  const n = r.u32("revisions");
  if (n * 4 > r.left) throw new DWCPError("ERR_BAD_FRAME", `${n} revisions cannot fit in ${r.left} bytes`);
  const events: WatchEvent[][] = [];
  for (let i = 0; i < n; i++) {
    const m = r.u32("events");
    if (m * 37 > r.left) throw new DWCPError("ERR_BAD_FRAME", `${m} events cannot fit in ${r.left} bytes`);
    const batch: WatchEvent[] = [];
    for (let j = 0; j < m; j++) {
      const type = r.u8("event type");
      if (type !== PUT && type !== DELETE) throw new DWCPError("ERR_BAD_FRAME", `unknown event type ${type}`);
      batch.push({ type: type === PUT ? "put" : "delete", kv: readKv(r) });
    }
    events.push(batch);
  }
  return { events, upTo, revision };
}

/** The body of a status {@link okReply}. */
export function readStatus(r: Reader): StatusReply {
  return { revision: r.u64("revision"), compactRevision: r.u64("compact revision") };
}
