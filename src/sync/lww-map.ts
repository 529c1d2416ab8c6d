/**
 * The LWW-element map of ASS: `key → record of fields`, each field with its own
 * hybrid-logical-clock timestamp, so two nodes updating different fields of one
 * VM record both survive. A delete is a tombstone timestamp on the key: it
 * hides every field written before it and none written after, so a field
 * written after a delete brings the key back with only the newer fields.
 *
 * It is a delta-state CRDT (Almeida, Shoker, Baquero): the state is a join
 * semilattice (per field the larger `(timestamp, value)`, per key the larger
 * tombstone), a delta has the same shape as a state, and every local mutation
 * returns its join-irreducible delta. Fields hidden by the key's tombstone are
 * dropped on the spot (they can never be seen again, since a tombstone only
 * grows), so equal states have equal encodings and digests.
 *
 * Merging refuses entries stamped too far ahead of the local wall clock (see
 * `hlc.ts`) and reports how many, so the caller can withhold its ack and get
 * them again later.
 *
 * @packageDocumentation
 */
import { createHash } from "node:crypto";
import { type Reader, Writer } from "../consensus/bft/codec.js";
import { DWCPError, invalidArg } from "../errors.js";
import {
  compareHlc,
  compareUtf8,
  decodeWith,
  encodeWith,
  type Hlc,
  type HlcTimestamp,
  NodeTable,
  NodeTableReader,
  readStr8,
  writeHlc,
} from "./hlc.js";

/** One field's value and the timestamp of the write that set it. */
export interface LwwField {
  readonly ts: HlcTimestamp;
  /** The value (treat as read-only: it is shared with the map's state). */
  readonly value: Uint8Array;
}

/** What the map holds for one key: its live fields and, once deleted, its tombstone. */
export interface LwwEntry {
  /** Fields written after the tombstone (all of them when there is none). */
  readonly fields: ReadonlyMap<string, LwwField>;
  /** Timestamp of the latest delete of the key, if any. */
  readonly tomb: HlcTimestamp | undefined;
}

/** A delta, or a whole state: entries by key. */
export type LwwDelta = ReadonlyMap<string, LwwEntry>;

/** Size limits of a map and of the deltas it decodes (each one a peer could otherwise grow). */
export interface LwwLimits {
  /** Keys held, tombstoned ones included. @default 1_000_000 */
  maxKeys: number;
  /** Fields of one key. @default 256 */
  maxFieldsPerKey: number;
  /** Bytes of one field value. @default 65536 */
  maxValueBytes: number;
  /** Keys in one decoded delta or state. @default 1_000_000 */
  maxDeltaKeys: number;
  /** Bytes of one encoded delta or state. @default 64 MiB */
  maxDeltaBytes: number;
  /** Distinct node ids in one encoding. @default 4096 */
  maxNodes: number;
}

/** The limits used when none are given. */
export const DEFAULT_LWW_LIMITS: Readonly<LwwLimits> = Object.freeze({
  maxKeys: 1_000_000,
  maxFieldsPerKey: 256,
  maxValueBytes: 65536,
  maxDeltaKeys: 1_000_000,
  maxDeltaBytes: 64 * 1024 * 1024,
  maxNodes: 4096,
});

/** What a {@link LwwMap.merge} did. */
export interface LwwMergeResult {
  /** Keys whose entry changed, in the delta's order (the anti-entropy's dirty keys). */
  readonly changed: string[];
  /** The `[key, part]` pairs that changed (for the delta tracker; see {@link lwwParts}). */
  readonly parts: [key: string, part: string][];
  /** Entries (fields or tombstones) refused as stamped too far ahead; not stored. */
  readonly refused: number;
}

const VERSION = 1;
const FLAG_TOMB = 1;

/** The delta tracker's part name of a key's tombstone. */
export const LWW_TOMB_PART = "t";

/** The delta tracker's part name of a field (prefixed, so no field name collides with the tombstone's). */
export function lwwFieldPart(field: string): string {
  return `f${field}`;
}

/** The `[key, part]` pairs a delta carries: what the delta tracker records for a local mutation. */
export function lwwParts(delta: LwwDelta): [key: string, part: string][] {
  const out: [string, string][] = [];
  for (const [k, e] of delta) {
    if (e.tomb) out.push([k, LWW_TOMB_PART]);
    for (const f of e.fields.keys()) out.push([k, lwwFieldPart(f)]);
  }
  return out;
}
const encoder = new TextEncoder();

/** Lexicographic order of bytes, shorter first on a common prefix. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return a.length - b.length;
}

/**
 * True when `a` beats `b`: the larger timestamp, and on the same timestamp
 * (possible only if a node stamped two values alike, e.g. a lying one) the
 * larger value, so every replica still picks the same one.
 */
function beats(a: LwwField, b: LwwField): boolean {
  const c = compareHlc(a.ts, b.ts);
  return c > 0 || (c === 0 && compareBytes(a.value, b.value) > 0);
}

/** True when a field stamped `ts` is hidden by tombstone `tomb` (a delete wins a tie). */
function hidden(ts: HlcTimestamp, tomb: HlcTimestamp | undefined): boolean {
  return tomb !== undefined && compareHlc(ts, tomb) <= 0;
}

function utf8Length(s: string): number {
  return encoder.encode(s).length;
}

interface MutableEntry {
  fields: Map<string, LwwField>;
  tomb: HlcTimestamp | undefined;
}

function snapshot(e: MutableEntry): LwwEntry {
  return { fields: new Map(e.fields), tomb: e.tomb };
}

/** A replica of the map. Its clock stamps local writes and vets remote ones. */
export class LwwMap {
  /** The limits in force. */
  readonly limits: Readonly<LwwLimits>;
  readonly #hlc: Hlc;
  readonly #entries = new Map<string, MutableEntry>();

  constructor(hlc: Hlc, limits: Partial<LwwLimits> = {}) {
    this.#hlc = hlc;
    this.limits = Object.freeze({ ...DEFAULT_LWW_LIMITS, ...limits });
  }

  /** Keys held, tombstone-only ones included. */
  get size(): number {
    return this.#entries.size;
  }

  #checkKey(key: string): void {
    if (typeof key !== "string" || utf8Length(key) > 255)
      throw invalidArg("key", "a string of ≤ 255 UTF-8 bytes", key);
  }

  #entryFor(key: string): MutableEntry {
    let e = this.#entries.get(key);
    if (!e) {
      if (this.#entries.size >= this.limits.maxKeys)
        throw new DWCPError("ERR_RESOURCE_LIMIT", `the map holds its limit of ${this.limits.maxKeys} keys`);
      e = { fields: new Map(), tomb: undefined };
      this.#entries.set(key, e);
    }
    return e;
  }

  /** Sets one field of `key`; returns the delta to ship. */
  set(key: string, field: string, value: Uint8Array): LwwDelta {
    return this.setFields(key, { [field]: value });
  }

  /** Sets several fields of `key` under one timestamp; returns the delta to ship. */
  setFields(key: string, fields: Readonly<Record<string, Uint8Array>>): LwwDelta {
    this.#checkKey(key);
    const names = Object.keys(fields);
    if (names.length === 0) throw invalidArg("fields", "at least one field", "{}");
    for (const f of names) {
      if (utf8Length(f) > 255) throw invalidArg("field", "a string of ≤ 255 UTF-8 bytes", f);
      const v = fields[f];
      if (!(v instanceof Uint8Array)) throw invalidArg(`fields.${f}`, "a Uint8Array", v);
      if (v.length > this.limits.maxValueBytes)
        throw new DWCPError(
          "ERR_RESOURCE_LIMIT",
          `value of ${v.length} bytes exceeds ${this.limits.maxValueBytes}`,
        );
    }
    const existing = this.#entries.get(key);
    const after = new Set([...(existing?.fields.keys() ?? []), ...names]).size;
    if (after > this.limits.maxFieldsPerKey)
      throw new DWCPError(
        "ERR_RESOURCE_LIMIT",
        `key would have ${after} fields, over ${this.limits.maxFieldsPerKey}`,
      );
    const e = this.#entryFor(key);
    // The clock has accepted every stored timestamp, so this one beats them all
    // and beats the tombstone: the write is visible.
    const ts = this.#hlc.now();
    const out = new Map<string, LwwField>();
    for (const f of names) {
      const field = { ts, value: fields[f]!.slice() };
      e.fields.set(f, field);
      out.set(f, field);
    }
    return new Map([[key, { fields: out, tomb: undefined }]]);
  }

  /** Deletes `key` (present or not: an absent key's tombstone still beats older writes arriving later). */
  delete(key: string): LwwDelta {
    this.#checkKey(key);
    const e = this.#entryFor(key);
    const tomb = this.#hlc.now();
    e.tomb = tomb;
    e.fields.clear();
    return new Map([[key, { fields: new Map(), tomb }]]);
  }

  /** The live fields of `key`, or `undefined` when it is absent or deleted. Values are shared: do not modify. */
  get(key: string): Record<string, Uint8Array> | undefined {
    const e = this.#entries.get(key);
    if (!e || e.fields.size === 0) return undefined;
    // fromEntries defines own properties, so a field named "__proto__" stays a field.
    return Object.fromEntries([...e.fields].map(([f, v]) => [f, v.value]));
  }

  /** True when `key` has a live field. */
  has(key: string): boolean {
    return (this.#entries.get(key)?.fields.size ?? 0) > 0;
  }

  /** Keys with a live field, in UTF-8 byte order. */
  keys(): string[] {
    const out: string[] = [];
    for (const [k, e] of this.#entries) if (e.fields.size > 0) out.push(k);
    return out.sort(compareUtf8);
  }

  /** Every key held (tombstone-only ones included), in insertion order; for anti-entropy and GC. */
  storedKeys(): IterableIterator<string> {
    return this.#entries.keys();
  }

  /** The raw entry of `key` (fields and tombstone), or `undefined` when nothing is held for it. */
  entry(key: string): LwwEntry | undefined {
    const e = this.#entries.get(key);
    return e ? snapshot(e) : undefined;
  }

  /** Keys that carry a tombstone (the candidates of tombstone GC). */
  tombstones(): string[] {
    const out: string[] = [];
    for (const [k, e] of this.#entries) if (e.tomb) out.push(k);
    return out;
  }

  /**
   * Forgets the tombstone of `key` (and the key, when no field is left). Only
   * the delta tracker's GC may call this, once every live member holds it:
   * dropped early, an older write still travelling would bring the key back.
   */
  dropTombstone(key: string): boolean {
    const e = this.#entries.get(key);
    if (!e?.tomb) return false;
    e.tomb = undefined;
    if (e.fields.size === 0) this.#entries.delete(key);
    return true;
  }

  /** The whole state, as a delta (a snapshot: later writes do not change it). */
  state(): LwwDelta {
    const out = new Map<string, LwwEntry>();
    for (const [k, e] of this.#entries) out.set(k, snapshot(e));
    return out;
  }

  /** The current entries of `keys` (those held), as a delta: what delta sync ships for changed keys. */
  deltaFor(keys: Iterable<string>): LwwDelta {
    const out = new Map<string, LwwEntry>();
    for (const k of keys) {
      const e = this.#entries.get(k);
      if (e) out.set(k, snapshot(e));
    }
    return out;
  }

  /**
   * The current value of the given parts (field parts and the tombstone part,
   * see {@link lwwParts}) of each key, as a delta: what delta sync ships for a
   * tracker's plan. Parts no longer held (a field hidden by a delete since) are
   * left out.
   */
  deltaForParts(parts: ReadonlyMap<string, Iterable<string>>): LwwDelta {
    const out = new Map<string, LwwEntry>();
    for (const [k, names] of parts) {
      const e = this.#entries.get(k);
      if (!e) continue;
      const fields = new Map<string, LwwField>();
      let tomb: HlcTimestamp | undefined;
      for (const part of names) {
        if (part === LWW_TOMB_PART) tomb = e.tomb;
        else if (part.startsWith("f")) {
          const f = part.slice(1);
          const v = e.fields.get(f);
          if (v) fields.set(f, v);
        }
      }
      if (tomb || fields.size > 0) out.set(k, { fields, tomb });
    }
    return out;
  }

  /** The parts `key` holds now (its fields' and its tombstone's), for the tracker's GC. */
  partsOf(key: string): string[] {
    const e = this.#entries.get(key);
    if (!e) return [];
    const out = [...e.fields.keys()].map(lwwFieldPart);
    if (e.tomb) out.push(LWW_TOMB_PART);
    return out;
  }

  /** SHA-256 of the entry of `key` (see {@link entryDigest}), or `undefined` when nothing is held. */
  digest(key: string): Uint8Array | undefined {
    const e = this.#entries.get(key);
    return e ? entryDigest(key, e) : undefined;
  }

  /**
   * Joins a delta (or a whole state) into this replica. Entries stamped more
   * than the clock's `maxAheadMs` ahead are refused and counted, never stored.
   *
   * @throws DWCPError `ERR_RESOURCE_LIMIT` when the result would exceed the
   *   key or field limits (checked before anything changes)
   */
  merge(delta: LwwDelta): LwwMergeResult {
    let added = 0;
    for (const [k, d] of delta) {
      const e = this.#entries.get(k);
      if (!e) added++;
      if (d.fields.size > 0) {
        let n = e?.fields.size ?? 0;
        for (const f of d.fields.keys()) if (!e?.fields.has(f)) n++;
        if (n > this.limits.maxFieldsPerKey)
          throw new DWCPError(
            "ERR_RESOURCE_LIMIT",
            `key ${k} would have ${n} fields, over ${this.limits.maxFieldsPerKey}`,
          );
      }
    }
    if (this.#entries.size + added > this.limits.maxKeys)
      throw new DWCPError("ERR_RESOURCE_LIMIT", `merge would exceed ${this.limits.maxKeys} keys`);

    const changed: string[] = [];
    const parts: [string, string][] = [];
    let refused = 0;
    for (const [k, d] of delta) {
      let e = this.#entries.get(k);
      const fresh = !e;
      e ??= { fields: new Map(), tomb: undefined };
      let touched = false;
      if (d.tomb && (!e.tomb || compareHlc(d.tomb, e.tomb) > 0)) {
        if (this.#hlc.receive(d.tomb) === "refused") refused++;
        else {
          e.tomb = d.tomb;
          for (const [f, v] of e.fields) if (hidden(v.ts, e.tomb)) e.fields.delete(f);
          parts.push([k, LWW_TOMB_PART]);
          touched = true;
        }
      }
      for (const [f, v] of d.fields) {
        if (hidden(v.ts, e.tomb)) continue;
        const cur = e.fields.get(f);
        if (cur && !beats(v, cur)) continue;
        if (this.#hlc.receive(v.ts) === "refused") {
          refused++;
          continue;
        }
        e.fields.set(f, v);
        parts.push([k, lwwFieldPart(f)]);
        touched = true;
      }
      if (touched) {
        if (fresh) this.#entries.set(k, e);
        changed.push(k);
      }
    }
    return { changed, parts, refused };
  }
}

/** Writes a key's entry in its canonical form (fields in byte order), naming nodes through `table`. */
function writeEntry(w: Writer, e: LwwEntry, ts: (w: Writer, t: HlcTimestamp) => void): void {
  w.u8(e.tomb ? FLAG_TOMB : 0);
  if (e.tomb) ts(w, e.tomb);
  const names = [...e.fields.keys()].sort(compareUtf8);
  w.u16(names.length);
  for (const f of names) {
    const v = e.fields.get(f)!;
    w.str8(f);
    ts(w, v.ts);
    w.blob32(v.value);
  }
}

/**
 * SHA-256 of one key's entry, the leaf input of Merkle anti-entropy: the key,
 * the tombstone, and every field's name, timestamp and value in byte order of
 * the names. The value is covered too, so two replicas holding different values
 * under one timestamp (a node that equivocated) differ and get reconciled.
 */
export function entryDigest(key: string, entry: LwwEntry): Uint8Array {
  const w = new Writer();
  w.str8("DWCP-ASS lww-entry 1").str8(key);
  writeEntry(w, entry, writeHlc);
  return new Uint8Array(createHash("sha256").update(w.finish()).digest());
}

/**
 * Encodes a delta or state canonically: version byte, node-id table, key count
 * (4 bytes), then per key in UTF-8 byte order its name, a flag byte (bit 0:
 * tombstone), the tombstone, the field count (2 bytes) and per field its name,
 * timestamp (wall 8, counter 4, node index 2) and value (4-byte length).
 * Equal deltas give equal bytes.
 */
export function encodeLwwDelta(delta: LwwDelta): Uint8Array {
  const keys = [...delta.keys()].sort(compareUtf8);
  const nodes: string[] = [];
  for (const e of delta.values()) {
    if (e.tomb) nodes.push(e.tomb.node);
    for (const v of e.fields.values()) nodes.push(v.ts.node);
  }
  const table = new NodeTable(nodes);
  return encodeWith((w) => {
    w.u8(VERSION);
    table.write(w);
    w.u32(keys.length);
    for (const k of keys) {
      w.str8(k);
      writeEntry(w, delta.get(k)!, (x, t) => table.writeTs(x, t));
    }
  });
}

/**
 * Decodes {@link encodeLwwDelta}'s bytes from a peer, strictly and within
 * `limits`: over a limit is `ERR_RESOURCE_LIMIT`; anything malformed or not
 * canonical (node ids, keys or fields out of order or repeated, an unused node id, an empty entry, a field
 * hidden by its own tombstone, unknown flags, trailing bytes) is `ERR_PROTOCOL`.
 */
export function decodeLwwDelta(bytes: Uint8Array, limits: Partial<LwwLimits> = {}): LwwDelta {
  const lim = { ...DEFAULT_LWW_LIMITS, ...limits };
  return decodeWith(bytes, lim.maxDeltaBytes, "lww delta", (r: Reader) => {
    const version = r.u8("version");
    if (version !== VERSION) throw new DWCPError("ERR_PROTOCOL", `lww delta version ${version} unknown`);
    const nodes = NodeTableReader.read(r, lim.maxNodes);
    const count = r.u32("key count");
    if (count > lim.maxDeltaKeys)
      throw new DWCPError("ERR_RESOURCE_LIMIT", `${count} keys exceed the limit of ${lim.maxDeltaKeys}`);
    const out = new Map<string, LwwEntry>();
    let prev: string | undefined;
    for (let i = 0; i < count; i++) {
      const key = readStr8(r, "key");
      if (prev !== undefined && compareUtf8(prev, key) >= 0)
        throw new DWCPError("ERR_PROTOCOL", "lww delta keys out of order or repeated");
      prev = key;
      const flags = r.u8("flags");
      if ((flags & ~FLAG_TOMB) !== 0) throw new DWCPError("ERR_PROTOCOL", `unknown entry flags ${flags}`);
      const tomb = flags & FLAG_TOMB ? nodes.ts(r) : undefined;
      const n = r.u16("field count");
      if (n > lim.maxFieldsPerKey)
        throw new DWCPError("ERR_RESOURCE_LIMIT", `${n} fields exceed the limit of ${lim.maxFieldsPerKey}`);
      if (n === 0 && !tomb) throw new DWCPError("ERR_PROTOCOL", "empty lww entry");
      const fields = new Map<string, LwwField>();
      let prevField: string | undefined;
      for (let j = 0; j < n; j++) {
        const f = readStr8(r, "field");
        if (prevField !== undefined && compareUtf8(prevField, f) >= 0)
          throw new DWCPError("ERR_PROTOCOL", "lww fields out of order or repeated");
        prevField = f;
        const ts = nodes.ts(r);
        if (hidden(ts, tomb)) throw new DWCPError("ERR_PROTOCOL", "field hidden by its own tombstone");
        const len = r.u32("value length");
        if (len > lim.maxValueBytes)
          throw new DWCPError("ERR_RESOURCE_LIMIT", `value of ${len} bytes exceeds ${lim.maxValueBytes}`);
        fields.set(f, { ts, value: r.bytes(len, "value") });
      }
      out.set(key, { fields, tomb });
    }
    nodes.checkAllUsed();
    return out;
  });
}
