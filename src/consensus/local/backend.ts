/**
 * The embedded consensus backend: etcd's KV, watch and lease semantics in
 * process, for one machine (nothing is replicated). Every change is applied in
 * memory at once, in call order, and logged; no result, read or watch event
 * that reflects a change is released before the change's log record is
 * synced, so after a crash (kill -9, power loss) every acknowledged write is
 * there, and nothing a caller saw is missing.
 *
 * There is one copy of the state, so every read is linearizable and
 * `serializable` changes nothing; `status().leader` is undefined.
 */

import { type Env, nodeEnv, type Timer } from "../../env/index.js";
import type { Storage } from "../../env/storage.js";
import { DWCPError, invalidArg } from "../../errors.js";
import type {
  BackendStatus,
  Compare,
  ConsensusBackend,
  KeySelector,
  Lease,
  RangeOptions,
  RangeResult,
  TxnOp,
  TxnResult,
  Watch,
  WatchOptions,
} from "../backend.js";
import { type FileStorage, fileStorage } from "./file-storage.js";
import { memoryStorage } from "./memory-storage.js";
import { decodeRecord, encodeRecord, type LoggedRevision, type WalRecord } from "./records.js";
import { type Change, compareKeys, type RevisionChanges, Store } from "./store.js";
import {
  applyOps,
  checkLeaseId,
  checkLimit,
  checkSelector,
  checkTxn,
  holds,
  readAt,
  type TxnLimits,
} from "./txn.js";
import { Wal } from "./wal.js";
import { LocalWatch, type WatchFeed } from "./watch.js";

/** Options of {@link LocalBackend}. */
export interface LocalBackendOptions {
  /** Clock for leases. @default nodeEnv */
  readonly env?: Env;
  /**
   * Where the write-ahead log lives. @default a {@link fileStorage} in `dir`
   * when `dir` is given, else an in-memory storage (nothing survives the process)
   */
  readonly storage?: Storage;
  /**
   * A directory for the log, on files the backend opens and closes itself,
   * locked while it is open (a second backend on it fails with `ERR_LOCKED`).
   */
  readonly dir?: string;
  /** The log's name in the storage. @default "acp" */
  readonly log?: string;
  /**
   * Revisions of history kept for reads at a revision and for watches from
   * one; older ones are compacted by themselves. @default 10000
   */
  readonly historyRevisions?: number;
  /**
   * The log is rewritten as one snapshot once more than this many bytes were
   * appended after its last snapshot, and more than that snapshot's size. @default 64 MiB
   */
  readonly snapshotBytes?: number;
  /** Largest key, in UTF-8 bytes. @default 1536 */
  readonly maxKeyBytes?: number;
  /** Largest value, in bytes (etcd's request limit). @default 1.5 MiB */
  readonly maxValueBytes?: number;
  /** Most compares or ops in one branch of a transaction (etcd's `--max-txn-ops`). @default 128 */
  readonly maxTxnOps?: number;
  /** Shortest lease TTL, in seconds: shorter requests get it. @default 1 */
  readonly minLeaseTtl?: number;
}

/** etcd's largest lease TTL (seconds). */
const MAX_LEASE_TTL = 9_000_000_000;
interface LeaseTimer {
  expiresAt: number;
  timer: Timer;
}

/** The local backend; see the module's description. */
export class LocalBackend implements ConsensusBackend {
  readonly kind = "local";
  readonly #env: Env;
  readonly #store = new Store();
  readonly #wal: Wal;
  readonly #ownStorage: FileStorage | undefined;
  readonly #history: number;
  readonly #limits: TxnLimits;
  readonly #minTtl: number;
  readonly #timers = new Map<number, LeaseTimer>();
  /** Revisions logged but not yet durable, with their record numbers, oldest first. */
  readonly #unsynced: { lsn: number; revision: number }[] = [];
  #visible: number;
  #closed = false;
  #ended: { error?: unknown } | undefined;
  #changed = signal();

  /**
   * Opens the store, replaying its log; a lease found there starts its TTL
   * afresh (as etcd does after a restart).
   * @throws DWCPError `ERR_BAD_FRAME` or `ERR_CHECKSUM` when the log is damaged, `ERR_SYSCALL` when it cannot be read
   */
  constructor(options: LocalBackendOptions = {}) {
    this.#env = options.env ?? nodeEnv;
    this.#history = positive(options.historyRevisions ?? 10_000, "historyRevisions");
    this.#limits = {
      maxKeyBytes: positive(options.maxKeyBytes ?? 1536, "maxKeyBytes"),
      maxValueBytes: positive(options.maxValueBytes ?? 1.5 * 1024 * 1024, "maxValueBytes"),
      maxTxnOps: positive(options.maxTxnOps ?? 128, "maxTxnOps"),
    };
    this.#minTtl = positive(options.minLeaseTtl ?? 1, "minLeaseTtl");
    this.#ownStorage =
      options.storage === undefined && options.dir !== undefined ? fileStorage(options.dir) : undefined;
    const storage = options.storage ?? this.#ownStorage ?? memoryStorage();
    this.#wal = new Wal(
      storage,
      options.log ?? "acp",
      positive(options.snapshotBytes ?? 64 * 1024 * 1024, "snapshotBytes"),
      () => encodeRecord({ type: "snapshot", snapshot: this.#snapshot() }),
      () => this.#onDurable(),
    );
    this.#wal.read().forEach((buf, i) => {
      try {
        this.#replay(decodeRecord(buf), i);
      } catch (err) {
        if (err instanceof DWCPError && err.code === "ERR_BAD_FRAME") throw err;
        throw new DWCPError("ERR_BAD_FRAME", `write-ahead log: record ${i} does not apply`, { cause: err });
      }
    });
    this.#visible = this.#store.revision;
    for (const id of this.#store.leases.keys()) this.#arm(id);
  }

  async txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure: readonly TxnOp[] = [],
  ): Promise<TxnResult> {
    this.#usable();
    checkTxn(compares, success, failure, this.#limits);
    // A lease past its time expires before the compares read the keys it deletes.
    for (const op of [...success, ...failure]) if (op.type === "put" && op.lease) this.#liveLease(op.lease);
    const store = this.#store;
    const succeeded = compares.every((c) => holds(store, c));
    const ops = succeeded ? success : failure;
    for (const op of ops) {
      if (op.type === "put" && op.lease && !store.leases.has(op.lease)) {
        throw new DWCPError("ERR_LEASE_NOT_FOUND", `lease ${op.lease} not found`);
      }
    }
    const { results, changes } = applyOps(store, ops);
    const committed = store.commit();
    const lsn = committed
      ? this.#log({ type: "txn", revision: committed.revision, changes }, committed)
      : this.#wal.lsn;
    // The revision the transaction saw, taken before others move it while this one waits.
    const revision = store.revision;
    await this.#wal.durable(lsn);
    return { succeeded, revision, results };
  }

  async range(selector: KeySelector, options: RangeOptions = {}): Promise<RangeResult> {
    this.#usable();
    checkSelector(selector, "selector", this.#limits);
    if (options === null || typeof options !== "object") throw invalidArg("options", "an object", options);
    checkLimit(options.limit);
    const rev = options.revision ?? 0;
    if (!Number.isSafeInteger(rev) || rev < 0) throw invalidArg("revision", "a revision", rev);
    if (rev > this.#store.revision) {
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `revision ${rev} is in the future (now ${this.#store.revision})`,
      );
    }
    const result = readAt(this.#store, selector, options, rev === 0 ? this.#store.revision : rev);
    await this.#wal.durable(this.#wal.lsn);
    return result;
  }

  async put(key: string, value: Uint8Array, options: { lease?: number } = {}): Promise<number> {
    const r = await this.txn(
      [],
      [{ type: "put", key, value, ...(options.lease === undefined ? {} : { lease: options.lease }) }],
    );
    return r.revision;
  }

  async delete(selector: KeySelector): Promise<number> {
    checkSelector(selector, "selector", this.#limits);
    const r = await this.txn([], [{ type: "delete", key: selector.key, prefix: selector.prefix ?? false }]);
    return (r.results[0] as { deleted: number }).deleted;
  }

  watch(selector: KeySelector, options: WatchOptions = {}): Watch {
    const feed = this.#feed();
    let error: DWCPError | undefined;
    try {
      this.#usable();
      checkSelector(selector, "selector", this.#limits);
      const from = options.fromRevision;
      if (from !== undefined && (!Number.isSafeInteger(from) || from < 1)) {
        throw invalidArg("fromRevision", "a revision", from);
      }
    } catch (err) {
      error = err as DWCPError;
    }
    const sel = error ? { key: "" } : { key: selector.key, prefix: selector.prefix ?? false };
    return new LocalWatch(feed, sel, options.fromRevision ?? this.#visible + 1, error);
  }

  async compact(revision: number): Promise<void> {
    this.#usable();
    if (!Number.isSafeInteger(revision) || revision < 1) throw invalidArg("revision", "a revision", revision);
    if (revision <= this.#store.compactRevision) {
      throw new DWCPError(
        "ERR_COMPACTED",
        `revision ${revision} is already compacted (up to ${this.#store.compactRevision})`,
      );
    }
    if (revision > this.#store.revision) {
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `revision ${revision} is in the future (now ${this.#store.revision})`,
      );
    }
    this.#store.compact(revision);
    const lsn = this.#wal.append(encodeRecord({ type: "compact", revision }));
    this.#notify();
    await this.#wal.durable(lsn);
  }

  async grant(ttlSeconds: number): Promise<Lease> {
    this.#usable();
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds > MAX_LEASE_TTL) {
      throw invalidArg("ttlSeconds", `an integer up to ${MAX_LEASE_TTL}`, ttlSeconds);
    }
    const ttl = Math.max(ttlSeconds, this.#minTtl);
    const id = this.#store.nextLease++;
    this.#store.leases.set(id, { id, ttl, keys: new Set() });
    this.#arm(id);
    const lsn = this.#wal.append(encodeRecord({ type: "grant", id, ttl }));
    await this.#wal.durable(lsn);
    return { id, ttl };
  }

  async keepAlive(lease: number): Promise<number> {
    this.#usable();
    checkLeaseId(lease);
    const l = this.#liveLease(lease);
    if (!l) throw new DWCPError("ERR_LEASE_NOT_FOUND", `lease ${lease} not found`);
    // Renewals are not logged: after a restart every lease starts its full TTL anyway.
    this.#arm(lease);
    await this.#wal.durable(this.#wal.lsn);
    return l.ttl;
  }

  async revoke(lease: number): Promise<void> {
    this.#usable();
    checkLeaseId(lease);
    if (!this.#liveLease(lease)) throw new DWCPError("ERR_LEASE_NOT_FOUND", `lease ${lease} not found`);
    await this.#wal.durable(this.#revokeNow(lease));
  }

  async timeToLive(lease: number): Promise<number> {
    this.#usable();
    checkLeaseId(lease);
    const l = this.#liveLease(lease);
    const left = l
      ? Math.max(0, Math.ceil((this.#timers.get(lease)!.expiresAt - this.#env.clock.now()) / 1000))
      : -1;
    await this.#wal.durable(this.#wal.lsn);
    return left;
  }

  async status(): Promise<BackendStatus> {
    this.#usable();
    const status = {
      revision: this.#store.revision,
      compactRevision: this.#store.compactRevision,
      leaderChanges: 0,
    };
    await this.#wal.durable(this.#wal.lsn);
    return status;
  }

  /** Waits for the log's last sync, ends every watch and closes the log's files if the backend opened them. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers.values()) this.#env.clock.clearTimeout(t.timer);
    this.#timers.clear();
    await this.#wal.drain();
    this.#ended ??= {};
    this.#notify();
    await this.#ownStorage?.close();
  }

  // --- checks ---

  #usable(): void {
    if (this.#closed) throw new DWCPError("ERR_CLOSED", "the local consensus backend is closed");
    const failure = this.#wal.failure;
    if (failure) throw failure;
  }

  // --- leases ---

  /** The lease, if it exists and has not run out (one whose timer is late expires now). */
  #liveLease(id: number) {
    const lease = this.#store.leases.get(id);
    if (!lease) return undefined;
    if (this.#timers.get(id)!.expiresAt <= this.#env.clock.now()) {
      this.#revokeNow(id);
      return undefined;
    }
    return lease;
  }

  /** Starts (or restarts) the lease's full TTL. */
  #arm(id: number): void {
    const lease = this.#store.leases.get(id)!;
    const old = this.#timers.get(id);
    if (old) this.#env.clock.clearTimeout(old.timer);
    const ms = lease.ttl * 1000;
    const timer = this.#env.clock.setTimeout(() => this.#expire(id), ms);
    timer.unref();
    this.#timers.set(id, { expiresAt: this.#env.clock.now() + ms, timer });
  }

  #expire(id: number): void {
    if (this.#closed || this.#wal.failure) return;
    const t = this.#timers.get(id);
    if (!t) return;
    const left = t.expiresAt - this.#env.clock.now();
    if (left > 0) {
      t.timer = this.#env.clock.setTimeout(() => this.#expire(id), left);
      t.timer.unref();
      return;
    }
    this.#revokeNow(id);
  }

  /** Deletes the lease's keys at one revision and drops it. @returns the log record's number */
  #revokeNow(id: number): number {
    const lease = this.#store.leases.get(id)!;
    const t = this.#timers.get(id);
    if (t) this.#env.clock.clearTimeout(t.timer);
    this.#timers.delete(id);
    const changes: Change[] = [...lease.keys].sort(compareKeys).map((key) => ({ type: "delete", key }));
    for (const c of changes) this.#store.apply(c);
    this.#store.leases.delete(id);
    const committed = this.#store.commit();
    return this.#log({ type: "revoke", id, revision: this.#store.revision, changes }, committed);
  }

  // --- the log ---

  /** Logs a state change; a new revision also bounds the history and is released to watches once durable. */
  #log(record: WalRecord, committed: RevisionChanges | undefined): number {
    const lsn = this.#wal.append(encodeRecord(record));
    if (committed) {
      this.#unsynced.push({ lsn, revision: committed.revision });
      this.#bound();
    }
    return lsn;
  }

  #bound(): void {
    const store = this.#store;
    if (store.revision - store.compactRevision > this.#history) store.compact(store.revision - this.#history);
  }

  #onDurable(): void {
    const durable = this.#wal.durableLsn;
    while (this.#unsynced.length > 0 && this.#unsynced[0]!.lsn <= durable) {
      this.#visible = this.#unsynced.shift()!.revision;
    }
    if (this.#wal.failure) this.#ended ??= { error: this.#wal.failure };
    this.#notify();
  }

  #notify(): void {
    this.#changed.fire();
    this.#changed = signal();
  }

  #feed(): WatchFeed {
    const self = this;
    const store = this.#store;
    return {
      get visibleRevision() {
        return self.#visible;
      },
      get compactRevision() {
        return store.compactRevision;
      },
      changesAt: (rev) => store.changesAt(rev),
      get ended() {
        return self.#ended;
      },
      changed: () => self.#changed.promise,
    };
  }

  #snapshot() {
    const store = this.#store;
    return {
      revision: store.revision,
      compactRevision: store.compactRevision,
      nextLease: store.nextLease,
      leases: [...store.leases.values()].map((l) => ({ id: l.id, ttl: l.ttl })),
      alive: store.aliveAtCompaction(),
      revisions: store.changesSinceCompaction().map(
        (r): LoggedRevision => ({
          revision: r.revision,
          changes: r.events.map(
            (e): Change =>
              e.type === "put"
                ? { type: "put", key: e.kv.key, value: e.kv.value, lease: e.kv.lease }
                : { type: "delete", key: e.kv.key },
          ),
        }),
      ),
    };
  }

  /** Applies one record of the log to the state it follows from. */
  #replay(rec: WalRecord, index: number): void {
    const store = this.#store;
    const bad = (what: string) => new DWCPError("ERR_BAD_FRAME", `write-ahead log: record ${index}: ${what}`);
    const revision = (r: LoggedRevision, mustChange: boolean) => {
      if (r.changes.length === 0 && !mustChange) return;
      if (r.revision !== store.revision + 1) throw bad(`revision ${r.revision} after ${store.revision}`);
      for (const c of r.changes) if (!store.apply(c)) throw bad(`deletes ${c.key}, which is absent`);
      if (!store.commit() || store.revision !== r.revision)
        throw bad(`revision ${r.revision} changes nothing`);
    };
    switch (rec.type) {
      case "snapshot": {
        const s = rec.snapshot;
        if (index !== 0) throw bad("a snapshot after the log's start");
        if (s.compactRevision > s.revision) throw bad("compacted past its revision");
        store.resetTo(Math.max(1, s.compactRevision), s.compactRevision);
        store.nextLease = s.nextLease;
        for (const l of s.leases) {
          if (l.id >= s.nextLease || store.leases.has(l.id)) throw bad(`lease ${l.id} is out of place`);
          store.leases.set(l.id, { id: l.id, ttl: l.ttl, keys: new Set() });
        }
        let last = "";
        for (const kv of s.alive) {
          if (last !== "" && compareKeys(last, kv.key) >= 0) throw bad("keys out of order");
          if (kv.lease && !store.leases.has(kv.lease)) throw bad(`key ${kv.key} has an unknown lease`);
          if (kv.modRevision > s.compactRevision || kv.createRevision > kv.modRevision || kv.version < 1) {
            throw bad(`key ${kv.key} has impossible revisions`);
          }
          store.restore(kv);
          last = kv.key;
        }
        for (const r of s.revisions) revision(r, true);
        if (store.revision !== s.revision) throw bad(`ends at revision ${store.revision}, not ${s.revision}`);
        break;
      }
      case "txn":
        revision(rec, true);
        break;
      case "grant":
        if (store.leases.has(rec.id) || rec.id < store.nextLease || rec.id === 0) {
          throw bad(`lease ${rec.id} granted twice`);
        }
        store.leases.set(rec.id, { id: rec.id, ttl: rec.ttl, keys: new Set() });
        store.nextLease = rec.id + 1;
        break;
      case "revoke": {
        const lease = store.leases.get(rec.id);
        if (!lease) throw bad(`revokes unknown lease ${rec.id}`);
        revision(rec, false);
        if (lease.keys.size > 0) throw bad(`revoking lease ${rec.id} leaves keys bound to it`);
        store.leases.delete(rec.id);
        break;
      }
      case "compact":
        if (rec.revision > store.revision) throw bad(`compacts the future revision ${rec.revision}`);
        store.compact(rec.revision);
        break;
    }
    this.#bound();
  }
}

/** A one-shot wake-up for the watches waiting on the backend. */
function signal(): { promise: Promise<void>; fire(): void } {
  let fire!: () => void;
  const promise = new Promise<void>((resolve) => {
    fire = resolve;
  });
  return { promise, fire };
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw invalidArg(name, "a positive integer", n);
  return n;
}
