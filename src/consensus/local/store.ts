/**
 * The in-memory MVCC state of the local backend, without I/O or time: a sorted
 * key space whose keys keep their versions back to the compacted revision, the
 * log of every revision's changes since then (what watches read), and the
 * leases with the keys bound to them. The backend drives it; recovery replays
 * the write-ahead log into it through the same {@link Store.apply}.
 */
import { DWCPError } from "../../errors.js";
import type { KeySelector, KeyValue, WatchEvent } from "../backend.js";

/** One write of a transaction, as the log records it. */
export type Change =
  | { readonly type: "put"; readonly key: string; readonly value: Uint8Array; readonly lease: number }
  | { readonly type: "delete"; readonly key: string };

/** A key's state from one revision on: its value then, or `undefined` when it was deleted then. */
interface Version {
  readonly rev: number;
  readonly kv: KeyValue | undefined;
}

/** The changes of one revision, in the order the transaction made them. */
export interface RevisionChanges {
  readonly revision: number;
  readonly events: readonly WatchEvent[];
}

/** A lease as the store knows it: its TTL and its keys (expiry is the backend's). */
export interface StoredLease {
  readonly id: number;
  readonly ttl: number;
  readonly keys: Set<string>;
}

/** Orders keys as etcd does, by their UTF-8 bytes (UTF-16 order differs above U+D7FF). */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return utf8Rank(x) - utf8Rank(y);
  }
  return a.length - b.length;
}

/** Surrogates (code points above U+FFFF) sort after U+E000–U+FFFF in UTF-8. */
function utf8Rank(c: number): number {
  if (c < 0xd800) return c;
  return c >= 0xe000 ? c - 0x800 : c + 0x2000;
}

const EMPTY = new Uint8Array(0);

/**
 * The state. Writes go through {@link Store.apply} at the revision under way
 * and become one revision at {@link Store.commit}; reads at any revision from
 * the compacted one on.
 */
export class Store {
  /** The current revision: 1 for the empty store. */
  revision = 1;
  /** History at and below it is gone. */
  compactRevision = 0;
  /** The next lease id to grant: ids are never reused, even across restarts. */
  nextLease = 1;
  readonly leases = new Map<number, StoredLease>();
  /** Every key that has a version after the compacted revision or is alive at it, sorted. */
  readonly #keys: string[] = [];
  readonly #versions = new Map<string, Version[]>();
  /** Revisions `#logStart` … `revision`, each with its changes. */
  #log: RevisionChanges[] = [];
  #logHead = 0;
  /** Changes of the transaction under way (at `revision + 1`). */
  #open: WatchEvent[] = [];

  /** The revision the first entry of the change log has. */
  get #logStart(): number {
    return this.revision - (this.#log.length - this.#logHead) + 1;
  }

  /** The key's value at `rev` (default: now, including the open transaction's writes). */
  get(key: string, rev = this.revision + 1): KeyValue | undefined {
    const vs = this.#versions.get(key);
    if (!vs) return undefined;
    for (let i = vs.length - 1; i >= 0; i--) if (vs[i]!.rev <= rev) return vs[i]!.kv;
    return undefined;
  }

  /** The keys `sel` selects that exist at `rev`, in key order. */
  select(sel: KeySelector, rev = this.revision + 1): KeyValue[] {
    if (!sel.prefix) {
      const kv = this.get(sel.key, rev);
      return kv ? [kv] : [];
    }
    const out: KeyValue[] = [];
    for (let i = this.#lowerBound(sel.key); i < this.#keys.length; i++) {
      const key = this.#keys[i]!;
      if (!key.startsWith(sel.key)) break;
      const kv = this.get(key, rev);
      if (kv) out.push(kv);
    }
    return out;
  }

  /**
   * Applies one write at `revision + 1`, the revision of the transaction under
   * way. A delete of an absent key changes nothing and returns undefined.
   */
  apply(change: Change): WatchEvent | undefined {
    const rev = this.revision + 1;
    const prev = this.get(change.key);
    let event: WatchEvent;
    if (change.type === "put") {
      const kv: KeyValue = {
        key: change.key,
        value: change.value,
        createRevision: prev ? prev.createRevision : rev,
        modRevision: rev,
        version: prev ? prev.version + 1 : 1,
        lease: change.lease,
      };
      const lease = change.lease ? this.leases.get(change.lease) : undefined;
      if (change.lease && !lease)
        throw new DWCPError("ERR_LEASE_NOT_FOUND", `lease ${change.lease} not found`);
      if (prev?.lease && prev.lease !== change.lease) this.leases.get(prev.lease)?.keys.delete(change.key);
      lease?.keys.add(change.key);
      this.#push(change.key, { rev, kv });
      event = { type: "put", kv };
    } else {
      if (!prev) return undefined;
      if (prev.lease) this.leases.get(prev.lease)?.keys.delete(change.key);
      this.#push(change.key, { rev, kv: undefined });
      event = {
        type: "delete",
        kv: { key: change.key, value: EMPTY, createRevision: 0, modRevision: rev, version: 0, lease: 0 },
      };
    }
    this.#open.push(event);
    return event;
  }

  /** Ends the transaction under way: a new revision when it wrote something. */
  commit(): RevisionChanges | undefined {
    if (this.#open.length === 0) return undefined;
    const entry: RevisionChanges = { revision: this.revision + 1, events: this.#open };
    this.#open = [];
    this.#log.push(entry);
    this.revision = entry.revision;
    return entry;
  }

  /** The changes of `rev`, or undefined when it is compacted, changed nothing (1) or is to come. */
  changesAt(rev: number): RevisionChanges | undefined {
    const start = this.#logStart;
    if (rev < start || rev > this.revision) return undefined;
    return this.#log[this.#logHead + rev - start];
  }

  /** The changes of every revision after the compacted one, oldest first. */
  changesSinceCompaction(): RevisionChanges[] {
    return this.#log.slice(this.#logHead);
  }

  /** The keys alive at the compacted revision (where a snapshot's history starts). */
  aliveAtCompaction(): KeyValue[] {
    const out: KeyValue[] = [];
    for (const key of this.#keys) {
      const kv = this.get(key, this.compactRevision);
      if (kv) out.push(kv);
    }
    return out;
  }

  /**
   * Drops the history at and below `rev`: each key keeps its state at `rev` (if
   * alive) and what came after. Cost is proportional to the changes dropped.
   */
  compact(rev: number): void {
    if (rev <= this.compactRevision) return;
    const touched = new Set<string>();
    for (let r = Math.max(this.#logStart, this.compactRevision + 1); r <= rev; r++) {
      const entry = this.changesAt(r);
      if (entry) for (const e of entry.events) touched.add(e.kv.key);
    }
    const drop = Math.max(0, Math.min(rev, this.revision) - this.#logStart + 1);
    this.#logHead += drop;
    if (this.#logHead > 1024 && this.#logHead * 2 > this.#log.length) {
      this.#log = this.#log.slice(this.#logHead);
      this.#logHead = 0;
    }
    this.compactRevision = rev;
    for (const key of touched) {
      const vs = this.#versions.get(key)!;
      let keep = vs.length - 1;
      while (keep > 0 && vs[keep]!.rev > rev) keep--;
      if (vs[keep]!.rev > rev) continue;
      const from = vs[keep]!.kv ? keep : keep + 1;
      if (from > 0) vs.splice(0, from);
      if (vs.length === 0) {
        this.#versions.delete(key);
        this.#keys.splice(this.#lowerBound(key), 1);
      }
    }
  }

  /**
   * Installs a key as it was at the compacted revision (restoring a snapshot,
   * in key order, before any change after it is applied).
   */
  restore(kv: KeyValue): void {
    if (this.#versions.has(kv.key)) throw new DWCPError("ERR_BAD_FRAME", `snapshot repeats key ${kv.key}`);
    this.#keys.splice(this.#lowerBound(kv.key), 0, kv.key);
    this.#versions.set(kv.key, [{ rev: kv.modRevision, kv }]);
    if (kv.lease) this.leases.get(kv.lease)?.keys.add(kv.key);
  }

  /** Starts the history at `rev` (restoring a snapshot: nothing before it is kept). */
  resetTo(rev: number, compactRevision: number): void {
    this.revision = rev;
    this.compactRevision = compactRevision;
  }

  #push(key: string, v: Version): void {
    const vs = this.#versions.get(key);
    if (vs) {
      vs.push(v);
      return;
    }
    this.#keys.splice(this.#lowerBound(key), 0, key);
    this.#versions.set(key, [v]);
  }

  /** The index of the first key not ordered before `key`. */
  #lowerBound(key: string): number {
    let lo = 0;
    let hi = this.#keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareKeys(this.#keys[mid]!, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
