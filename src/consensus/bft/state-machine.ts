/**
 * The replicated key-value state machine: what committed commands do. It is
 * etcd's MVCC store (the local backend's {@link Store}, with revisions, history
 * and transactions: store-ops.ts) without leases, since replicas share no
 * clock to expire them by. It is deterministic (no time, no randomness, its
 * history compacted by revision count alone), so replicas that apply the same
 * blocks in the same order hold the same state, and the state hash of each
 * height says so in 32 bytes.
 *
 * A command takes effect once per (client, seq): a seq at or below the
 * client's last applied one is skipped, whoever proposed it again. That
 * dedup table is part of the state, so it is the same on every replica.
 */
import { createHash } from "node:crypto";
import { DWCPError } from "../../errors.js";
import type { TxnOp } from "../backend.js";
import { Store } from "../local/store.js";
import {
  applyOps,
  checkLimit,
  checkSelector,
  checkTxn,
  holds,
  readAt,
  type TxnLimits,
} from "../local/txn.js";
import { selects } from "../local/watch.js";
import { Reader, Writer } from "./codec.js";
import { type Command, MAX_OP_BYTES } from "./messages.js";
import {
  changesReply,
  errorReply,
  MAX_BFT_KEY_BYTES,
  MAX_BFT_TXN_OPS,
  MAX_REPLY_BYTES,
  okReply,
  rangeReply,
  readStoreOp,
  type StoreOp,
  txnReply,
} from "./store-ops.js";

/** A decoded key-value operation. */
export type KvOp =
  | { readonly type: "put"; readonly key: string; readonly value: Uint8Array }
  | { readonly type: "delete"; readonly key: string }
  | { readonly type: "read"; readonly key: string }
  | StoreOp;

/**
 * What a committed command returned: for a read, the value at its place in the
 * committed order (`null` when the key was absent); for a store op, its reply
 * (store-ops.ts); `undefined` for a put, a delete or a no-op.
 */
export type KvResult = Uint8Array | null | undefined;

/** Revisions of history the store keeps (for reads at a revision and change pages); older ones are compacted. */
export const BFT_HISTORY_REVISIONS = 10_000;

/** The size limits of a store op's transaction: its encoding must fit in one command op. */
export const BFT_TXN_LIMITS: TxnLimits = {
  maxKeyBytes: MAX_BFT_KEY_BYTES,
  // Room in the op for the transaction's other fields.
  maxValueBytes: MAX_OP_BYTES - 4096,
  maxTxnOps: MAX_BFT_TXN_OPS,
};

const PUT = 1;
const DELETE = 2;
const READ = 3;

/** The op bytes of a put of `value` at `key` (a key of at most 255 bytes of UTF-8). */
export function putOp(key: string, value: Uint8Array): Uint8Array {
  return new Writer().u8(PUT).str8(key).bytes(value).finish();
}

/** The op bytes of a delete of `key`. */
export function deleteOp(key: string): Uint8Array {
  return new Writer().u8(DELETE).str8(key).finish();
}

/** The op bytes of a read of `key`: it changes nothing and returns the value where it commits (a linearizable read). */
export function readOp(key: string): Uint8Array {
  return new Writer().u8(READ).str8(key).finish();
}

/** Reads op bytes; `undefined` for bytes that are no operation (they commit as no-ops on every replica alike). */
export function decodeOp(op: Uint8Array): KvOp | undefined {
  try {
    const r = new Reader(op);
    const type = r.u8();
    if (type > READ) return readStoreOp(type, r);
    const key = r.str8("key");
    if (type === PUT) return { type: "put", key, value: r.bytes(r.left) };
    if (type === DELETE) {
      r.end("delete");
      return { type: "delete", key };
    }
    if (type === READ) {
      r.end("read");
      return { type: "read", key };
    }
  } catch {
    // Not an operation: falls through to undefined.
  }
  return undefined;
}

/** The key-value store and the per-client dedup table, with a hash per applied height. */
export class KvStateMachine {
  readonly #store = new Store();
  readonly #lastSeq = new Map<string, number>();
  #height = 0;
  #hash: Uint8Array = new Uint8Array(createHash("sha256").update("DWCP-BFT state 1").digest());

  /** Heights applied so far. */
  get height(): number {
    return this.#height;
  }

  /** The hash after the last applied height (a fixed value before any). */
  get stateHash(): Uint8Array {
    return this.#hash;
  }

  /** The value at `key`. */
  get(key: string): Uint8Array | undefined {
    return this.#store.get(key)?.value;
  }

  /** Keys held. */
  get size(): number {
    return this.#store.select({ key: "", prefix: true }).length;
  }

  /** The store's revision (1 when empty; one more per command that wrote). */
  get revision(): number {
    return this.#store.revision;
  }

  /** The client's last applied seq (0 if none). */
  lastSeq(client: string): number {
    return this.#lastSeq.get(client) ?? 0;
  }

  /** Whether `c` would take effect if applied now. */
  isNew(c: Command): boolean {
    return c.seq > this.lastSeq(c.client);
  }

  /**
   * Applies one height's commands in order and returns those that took effect,
   * what each returned (aligned with them), and the new state hash. The hash chains the previous one with every effect,
   * so equal hashes at a height mean equal histories, hence equal states,
   * without hashing the whole store each time.
   */
  apply(commands: readonly Command[]): { applied: Command[]; results: KvResult[]; stateHash: Uint8Array } {
    this.#height++;
    const h = createHash("sha256").update(this.#hash);
    const w = new Writer().u64(this.#height);
    const applied: Command[] = [];
    const results: KvResult[] = [];
    for (const c of commands) {
      if (!this.isNew(c)) continue;
      this.#lastSeq.set(c.client, c.seq);
      applied.push(c);
      w.str8(c.client).u64(c.seq).blob32(c.op);
      results.push(this.#run(decodeOp(c.op)));
    }
    this.#hash = new Uint8Array(h.update(w.finish()).digest());
    return { applied, results, stateHash: this.#hash };
  }

  /** Runs one op: what it returns, a failure included (every replica fails it alike). */
  #run(op: KvOp | undefined): KvResult {
    const store = this.#store;
    if (!op) return undefined;
    try {
      switch (op.type) {
        case "put":
          store.apply({ type: "put", key: op.key, value: op.value.slice(), lease: 0 });
          this.#commit();
          return undefined;
        case "delete":
          if (store.get(op.key)) {
            store.apply({ type: "delete", key: op.key });
            this.#commit();
          }
          return undefined;
        case "read":
          return store.get(op.key)?.value.slice() ?? null;
        case "txn": {
          checkTxn(op.compares, op.success, op.failure, BFT_TXN_LIMITS);
          if ([...op.success, ...op.failure].some((o: TxnOp) => o.type === "put" && o.lease))
            throw new DWCPError(
              "ERR_UNSUPPORTED",
              "BFT consensus has no leases (its replicas share no clock)",
            );
          const succeeded = op.compares.every((c) => holds(store, c));
          const { results } = applyOps(store, succeeded ? op.success : op.failure);
          this.#commit();
          return sized(txnReply({ succeeded, revision: store.revision, results }), store.revision);
        }
        case "range": {
          checkSelector(op.selector, "selector", BFT_TXN_LIMITS);
          checkLimit(op.limit);
          if (op.revision > store.revision)
            throw new DWCPError(
              "ERR_INVALID_ARG",
              `revision ${op.revision} is in the future (now ${store.revision})`,
            );
          const rev = op.revision === 0 ? store.revision : op.revision;
          return sized(rangeReply(readAt(store, op.selector, op, rev)));
        }
        case "compact":
          if (op.revision < 1) throw new DWCPError("ERR_INVALID_ARG", "compaction needs a revision");
          if (op.revision <= store.compactRevision)
            throw new DWCPError(
              "ERR_COMPACTED",
              `revision ${op.revision} is already compacted (up to ${store.compactRevision})`,
            );
          if (op.revision > store.revision)
            throw new DWCPError(
              "ERR_INVALID_ARG",
              `revision ${op.revision} is in the future (now ${store.revision})`,
            );
          store.compact(op.revision);
          return okReply();
        case "changes":
          return this.#changes(op);
        case "status":
          return okReply({ revision: store.revision, compactRevision: store.compactRevision });
      }
    } catch (err) {
      return errorReply(
        err instanceof DWCPError
          ? err
          : new DWCPError("ERR_INVALID_ARG", "the operation failed", { cause: err }),
      );
    }
  }

  /** Ends a writing command's revision and keeps the history to its bound. */
  #commit(): void {
    const store = this.#store;
    store.commit();
    if (store.revision - store.compactRevision > BFT_HISTORY_REVISIONS)
      store.compact(store.revision - BFT_HISTORY_REVISIONS);
  }

  /** A change page: the selector's events from `fromRevision`, as many revisions as fit in a reply. */
  #changes(op: Extract<StoreOp, { type: "changes" }>): Uint8Array {
    const store = this.#store;
    checkSelector(op.selector, "selector", BFT_TXN_LIMITS);
    if (op.fromRevision < 1) throw new DWCPError("ERR_INVALID_ARG", "a change page starts at a revision");
    if (op.fromRevision <= store.compactRevision)
      throw new DWCPError(
        "ERR_COMPACTED",
        `revision ${op.fromRevision} is compacted (compacted up to ${store.compactRevision})`,
      );
    const events = [];
    let upTo = op.fromRevision - 1;
    let bytes = 0;
    const last = Math.min(store.revision, op.fromRevision + Math.max(1, op.maxRevisions) - 1);
    for (let rev = op.fromRevision; rev <= last; rev++) {
      const batch = (store.changesAt(rev)?.events ?? []).filter((e) => selects(op.selector, e.kv.key));
      for (const e of batch) bytes += 64 + e.kv.key.length * 3 + e.kv.value.length;
      // A page holds whole revisions; one revision alone may fill it.
      if (bytes > MAX_REPLY_BYTES / 2 && upTo >= op.fromRevision) break;
      if (batch.length > 0) events.push(batch);
      upTo = rev;
    }
    return sized(changesReply({ events, upTo, revision: store.revision }));
  }
}

/** A reply, unless it would exceed {@link MAX_REPLY_BYTES}. */
function sized(reply: Uint8Array, appliedAt?: number): Uint8Array {
  if (reply.length <= MAX_REPLY_BYTES) return reply;
  const applied = appliedAt === undefined ? "" : `the transaction was applied at revision ${appliedAt}, but `;
  throw new DWCPError(
    "ERR_RESOURCE_LIMIT",
    `${applied}its reply of ${reply.length} bytes exceeds ${MAX_REPLY_BYTES} (read less at once: a limit, a narrower prefix)`,
  );
}
