/**
 * The records of the local backend's write-ahead log, in a compact binary
 * form: each state change is logged as its effect (the writes it made at its
 * revision), so replay needs no compare and no clock. A log that has been
 * rewritten starts with one snapshot record.
 *
 * Every record read back is hostile until decoded: a record that does not
 * parse, or that does not follow from the state before it, fails recovery with
 * `ERR_BAD_FRAME`.
 */
import { DWCPError } from "../../errors.js";
import type { KeyValue } from "../backend.js";
import type { Change } from "./store.js";

/** The writes of one revision. */
export interface LoggedRevision {
  readonly revision: number;
  readonly changes: readonly Change[];
}

/** The whole state of a store: what it looked like at its compacted revision, and every revision since. */
export interface Snapshot {
  readonly revision: number;
  readonly compactRevision: number;
  readonly nextLease: number;
  readonly leases: readonly { readonly id: number; readonly ttl: number }[];
  /** The keys alive at the compacted revision, in key order. */
  readonly alive: readonly KeyValue[];
  readonly revisions: readonly LoggedRevision[];
}

/** One record of the log. */
export type WalRecord =
  | ({ readonly type: "txn" } & LoggedRevision)
  | { readonly type: "grant"; readonly id: number; readonly ttl: number }
  /** A revoked or expired lease; `changes` deletes its keys at `revision` (none: no new revision). */
  | ({ readonly type: "revoke"; readonly id: number } & LoggedRevision)
  | { readonly type: "compact"; readonly revision: number }
  | { readonly type: "snapshot"; readonly snapshot: Snapshot };

const TAG = { txn: 1, grant: 2, revoke: 3, compact: 4, snapshot: 5 } as const;
const PUT = 1;
const DELETE = 2;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

class Writer {
  #buf = new Uint8Array(256);
  #pos = 0;

  #room(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#pos + n));
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
  }

  /** An unsigned integer below 2^53, 7 bits a byte. */
  uint(n: number): void {
    this.#room(8);
    while (n >= 0x80) {
      this.#buf[this.#pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.#buf[this.#pos++] = n;
  }

  bytes(b: Uint8Array): void {
    this.uint(b.length);
    this.#room(b.length);
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
  }

  string(s: string): void {
    this.bytes(utf8.encode(s));
  }

  done(): Uint8Array {
    return this.#buf.slice(0, this.#pos);
  }
}

class Reader {
  #pos = 0;
  constructor(private readonly buf: Uint8Array) {}

  uint(): number {
    let n = 0;
    let scale = 1;
    for (;;) {
      if (this.#pos >= this.buf.length) throw bad("a record ends inside a number");
      const b = this.buf[this.#pos++]!;
      n += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 53) throw bad("a number of a record is too large");
    }
    if (!Number.isSafeInteger(n)) throw bad("a number of a record is too large");
    return n;
  }

  bytes(): Uint8Array {
    const n = this.uint();
    if (n > this.buf.length - this.#pos) throw bad("a record ends inside a byte string");
    const out = this.buf.slice(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  string(): string {
    try {
      return fromUtf8.decode(this.bytes());
    } catch (err) {
      if (err instanceof DWCPError) throw err;
      throw bad("a key of a record is not UTF-8");
    }
  }

  /** A count of items that each take at least `min` bytes: bounded by what is left. */
  count(min = 1): number {
    const n = this.uint();
    if (n * min > this.buf.length - this.#pos) throw bad("a record's count exceeds its length");
    return n;
  }

  end(): void {
    if (this.#pos !== this.buf.length) throw bad("a record has trailing bytes");
  }
}

function bad(what: string): DWCPError {
  return new DWCPError("ERR_BAD_FRAME", `write-ahead log: ${what}`);
}

function writeChanges(w: Writer, changes: readonly Change[]): void {
  w.uint(changes.length);
  for (const c of changes) {
    w.uint(c.type === "put" ? PUT : DELETE);
    w.string(c.key);
    if (c.type === "put") {
      w.bytes(c.value);
      w.uint(c.lease);
    }
  }
}

function readChanges(r: Reader): Change[] {
  const n = r.count(2);
  const out: Change[] = [];
  for (let i = 0; i < n; i++) {
    const type = r.uint();
    const key = r.string();
    if (type === PUT) out.push({ type: "put", key, value: r.bytes(), lease: r.uint() });
    else if (type === DELETE) out.push({ type: "delete", key });
    else throw bad(`unknown change type ${type}`);
  }
  return out;
}

/** Encodes a record. */
export function encodeRecord(rec: WalRecord): Uint8Array {
  const w = new Writer();
  w.uint(TAG[rec.type]);
  switch (rec.type) {
    case "txn":
      w.uint(rec.revision);
      writeChanges(w, rec.changes);
      break;
    case "grant":
      w.uint(rec.id);
      w.uint(rec.ttl);
      break;
    case "revoke":
      w.uint(rec.id);
      w.uint(rec.revision);
      writeChanges(w, rec.changes);
      break;
    case "compact":
      w.uint(rec.revision);
      break;
    case "snapshot": {
      const s = rec.snapshot;
      w.uint(s.revision);
      w.uint(s.compactRevision);
      w.uint(s.nextLease);
      w.uint(s.leases.length);
      for (const l of s.leases) {
        w.uint(l.id);
        w.uint(l.ttl);
      }
      w.uint(s.alive.length);
      for (const kv of s.alive) {
        w.string(kv.key);
        w.bytes(kv.value);
        w.uint(kv.createRevision);
        w.uint(kv.modRevision);
        w.uint(kv.version);
        w.uint(kv.lease);
      }
      w.uint(s.revisions.length);
      for (const r of s.revisions) {
        w.uint(r.revision);
        writeChanges(w, r.changes);
      }
      break;
    }
  }
  return w.done();
}

/** Decodes a record; `ERR_BAD_FRAME` when it is malformed. */
export function decodeRecord(buf: Uint8Array): WalRecord {
  const r = new Reader(buf);
  const tag = r.uint();
  let rec: WalRecord;
  switch (tag) {
    case TAG.txn:
      rec = { type: "txn", revision: r.uint(), changes: readChanges(r) };
      break;
    case TAG.grant:
      rec = { type: "grant", id: r.uint(), ttl: r.uint() };
      break;
    case TAG.revoke:
      rec = { type: "revoke", id: r.uint(), revision: r.uint(), changes: readChanges(r) };
      break;
    case TAG.compact:
      rec = { type: "compact", revision: r.uint() };
      break;
    case TAG.snapshot: {
      const revision = r.uint();
      const compactRevision = r.uint();
      const nextLease = r.uint();
      const leases: { id: number; ttl: number }[] = [];
      for (let i = r.count(2); i > 0; i--) leases.push({ id: r.uint(), ttl: r.uint() });
      const alive: KeyValue[] = [];
      for (let i = r.count(6); i > 0; i--) {
        alive.push({
          key: r.string(),
          value: r.bytes(),
          createRevision: r.uint(),
          modRevision: r.uint(),
          version: r.uint(),
          lease: r.uint(),
        });
      }
      const revisions: LoggedRevision[] = [];
      for (let i = r.count(2); i > 0; i--) revisions.push({ revision: r.uint(), changes: readChanges(r) });
      rec = {
        type: "snapshot",
        snapshot: { revision, compactRevision, nextLease, leases, alive, revisions },
      };
      break;
    }
    default:
      throw bad(`unknown record type ${tag}`);
  }
  r.end();
  return rec;
}
