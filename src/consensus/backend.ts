/**
 * The ACP contract: one key-value store with etcd's semantics, so that the
 * etcd implementation is thin and the embedded one can be held to the same
 * conformance suite (test/consensus/conformance.ts).
 *
 * The model, as etcd has it:
 * - A store-wide **revision** starts at 1 (the empty store) and grows by one with
 *   every transaction that changes something; a transaction that changes nothing
 *   (reads, a failed compare with only reads) does not move it.
 * - Every key has a **create revision** (the transaction that created it since
 *   it last did not exist), a **mod revision** (the last one that wrote it) and a
 *   **version** (writes since creation, 1 after the first). Deleting a key ends
 *   its life; a later put starts a new one with version 1.
 * - A **lease** has a TTL in seconds; keys put with it are deleted, in one
 *   revision, when it expires or is revoked.
 * - Watches deliver every change after a revision in revision order, and fail
 *   with `ERR_COMPACTED` when that history has been compacted away (re-list with
 *   `range`, then watch from the header revision + 1: the list-then-watch
 *   pattern).
 *
 * Reads are linearizable by default. Elections and lease keep-alive are built
 * on this contract once, for every backend (election.ts, lease-keeper.ts).
 *
 * @packageDocumentation
 */

/** A stored key and its metadata (etcd's `mvccpb.KeyValue`). */
export interface KeyValue {
  readonly key: string;
  readonly value: Uint8Array;
  /** Revision of the transaction that created the key (in its current life). */
  readonly createRevision: number;
  /** Revision of the transaction that last wrote it. */
  readonly modRevision: number;
  /** Writes since creation: 1 after the first put. */
  readonly version: number;
  /** The lease the key is bound to; 0 for none. Lease ids are below 2^53 (etcd's are int64: a backend refuses one a number cannot hold). */
  readonly lease: number;
}

/** Which of a key's fields a {@link Compare} reads. */
export type CompareTarget = "version" | "createRevision" | "modRevision" | "value" | "lease";

/** The comparison of a {@link Compare}. */
export type CompareOp = "=" | "!=" | "<" | ">";

/**
 * One condition of a transaction, on one key. A key that does not exist has
 * version, create revision, mod revision and lease 0, and no value: comparing
 * its value is false with every operator (as in etcd). Values compare bytewise.
 */
export type Compare =
  | {
      readonly key: string;
      readonly target: "version" | "createRevision" | "modRevision" | "lease";
      readonly op: CompareOp;
      readonly value: number;
    }
  | { readonly key: string; readonly target: "value"; readonly op: CompareOp; readonly value: Uint8Array };

/** Selects one key, or with `prefix` every key that starts with it. */
export interface KeySelector {
  readonly key: string;
  /** All keys starting with `key` (an empty `key` with `prefix` is the whole store). Default false. */
  readonly prefix?: boolean;
}

/** Options of a read. */
export interface RangeOptions {
  /** At most this many keys (in key order); `more` says whether some were left out. Default: all. */
  readonly limit?: number;
  /**
   * Read the store as of this revision: `ERR_COMPACTED` when compacted,
   * `ERR_INVALID_ARG` when still in the future. Default: the current one.
   */
  readonly revision?: number;
  /**
   * Allow a read served by one member without a quorum round (etcd's serializable
   * read): faster, possibly stale. Default false: linearizable.
   */
  readonly serializable?: boolean;
  /** Only count the keys; `kvs` is empty. */
  readonly countOnly?: boolean;
}

/** An operation inside a transaction. */
export type TxnOp =
  | {
      readonly type: "put";
      readonly key: string;
      readonly value: Uint8Array;
      readonly lease?: number;
      /** Return the key as it was before the put (etcd's `prev_kv`): it costs a read. Default false. */
      readonly prevKv?: boolean;
    }
  | ({ readonly type: "delete" } & KeySelector)
  | ({ readonly type: "range" } & KeySelector & Pick<RangeOptions, "limit" | "countOnly">);

/** The result of a read. */
export interface RangeResult {
  readonly kvs: readonly KeyValue[];
  /** Keys that matched (before `limit`). */
  readonly count: number;
  /** True when `limit` left some out. */
  readonly more: boolean;
  /** The store's revision the read saw. */
  readonly revision: number;
}

/** The result of one {@link TxnOp}, in order. */
export type TxnOpResult =
  | {
      readonly type: "put";
      /** The key before the put, when asked for with `prevKv` and it existed. */
      readonly prev?: KeyValue;
    }
  | { readonly type: "delete"; readonly deleted: number }
  | ({ readonly type: "range" } & Omit<RangeResult, "revision">);

/** The result of {@link ConsensusBackend.txn}. */
export interface TxnResult {
  /** Whether every compare held (and so `success` ran, else `failure`). */
  readonly succeeded: boolean;
  /** The store's revision after the transaction. */
  readonly revision: number;
  readonly results: readonly TxnOpResult[];
}

/** A change delivered by a watch. */
export interface WatchEvent {
  readonly type: "put" | "delete";
  /** For a delete: the key, empty value, and the delete's revision as its mod revision. */
  readonly kv: KeyValue;
}

/** Options of {@link ConsensusBackend.watch}. */
export interface WatchOptions {
  /**
   * Deliver changes from this revision on (inclusive). Default: the store's
   * revision when the watch starts + 1 (only what happens next).
   */
  readonly fromRevision?: number;
}

/**
 * A running watch: an async iterable of event batches, each batch one
 * revision's changes that match, in revision order. The iteration ends when the
 * watch is closed, and throws `ERR_COMPACTED` when its next revision has been
 * compacted (re-list with `range`, then watch from the read's revision + 1), or
 * the backend's error when it fails for good. A backend that reconnects resumes the
 * watch from {@link Watch.revision} + 1 by itself: no event is lost or repeated.
 */
export interface Watch extends AsyncIterable<readonly WatchEvent[]> {
  /** The last revision delivered (or `fromRevision - 1` before any). */
  readonly revision: number;
  /** Stops the watch; an iteration under way ends. */
  close(): void;
}

/** A granted lease. */
export interface Lease {
  readonly id: number;
  /** Its TTL in seconds, as granted (a backend may raise a request to its minimum). */
  readonly ttl: number;
}

/** State a backend reports about itself, for metrics and operators. */
export interface BackendStatus {
  /** The store's current revision. */
  readonly revision: number;
  /** The compacted revision: history below it is gone; reads at it still work. */
  readonly compactRevision: number;
  /** The member that leads now, when the backend has members (etcd); undefined for the embedded one. */
  readonly leader?: string;
  /** Leader changes this backend has seen since it was opened. */
  readonly leaderChanges: number;
}

/**
 * The consensus backend of ACP: etcd's KV, watch and lease API. Every call
 * rejects with a `DWCPError`: `ERR_COMPACTED` for a compacted revision,
 * `ERR_LEASE_NOT_FOUND` for an unknown or expired lease, `ERR_UNAVAILABLE` when
 * no quorum answered within the backend's request timeout (the operation may or
 * may not have taken effect: the caller must treat it as indeterminate),
 * `ERR_INVALID_ARG` for a malformed request, `ERR_CLOSED` after {@link close}.
 */
export interface ConsensusBackend {
  /** A short name for reports: "local", "etcd". */
  readonly kind: string;
  /**
   * If every compare holds, applies `success`, else `failure`, atomically at one
   * new revision (no new revision when nothing was written). Every key an op
   * writes is written once per transaction at most (etcd rejects a txn that
   * writes one key twice: `ERR_INVALID_ARG`).
   */
  txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure?: readonly TxnOp[],
  ): Promise<TxnResult>;
  /** Reads keys. */
  range(selector: KeySelector, options?: RangeOptions): Promise<RangeResult>;
  /** Writes one key (a txn of one put). Resolves with the new revision. */
  put(key: string, value: Uint8Array, options?: { lease?: number }): Promise<number>;
  /** Deletes keys (a txn of one delete). Resolves with how many were deleted. */
  delete(selector: KeySelector): Promise<number>;
  /** Watches keys; see {@link Watch}. */
  watch(selector: KeySelector, options?: WatchOptions): Watch;
  /**
   * Drops the history below `revision` (reads and watches before it fail with
   * `ERR_COMPACTED`); `ERR_COMPACTED` when already compacted past it,
   * `ERR_INVALID_ARG` when it is in the future.
   */
  compact(revision: number): Promise<void>;
  /** Grants a lease of `ttlSeconds`. */
  grant(ttlSeconds: number): Promise<Lease>;
  /** Renews a lease for its full TTL; resolves with the TTL left (seconds). `ERR_LEASE_NOT_FOUND` when it is gone. */
  keepAlive(lease: number): Promise<number>;
  /** Revokes a lease, deleting its keys at one revision. Revoking an unknown lease is `ERR_LEASE_NOT_FOUND`. */
  revoke(lease: number): Promise<void>;
  /** Seconds a lease has left, or -1 when it does not exist (expired or revoked). */
  timeToLive(lease: number): Promise<number>;
  /** The backend's own state. */
  status(): Promise<BackendStatus>;
  /** Ends every watch and releases resources; later calls reject with `ERR_CLOSED`. */
  close(): Promise<void>;
}
