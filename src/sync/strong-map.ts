/**
 * ASS's strong mode (the datacenter generation): the replicated map of cluster
 * metadata — keys holding records of named fields — kept in ACP instead of
 * gossiped. Every write is a compare-and-swap on the key's mod revision,
 * retried on a lost race, so concurrent writers of different fields of one
 * record both survive (the per-field merge the eventual map does by
 * timestamps, done here by the store's order), and a write is acknowledged
 * only once ACP committed it: none is lost, whatever crashes after.
 *
 * A record is stored at `<prefix><key>` as fields u16 | (name str16 | value
 * blob32)…, names sorted. Changes are followed with one watch (list, then
 * watch from the list's revision, resumed after a compaction).
 */

import type { ConsensusBackend, KeyValue, Watch } from "../consensus/backend.js";
import { Reader, Writer } from "../consensus/bft/codec.js";
import { type Env, nodeEnv } from "../env/index.js";
import { DWCPError, invalidArg } from "../errors.js";
import type { ClusterMap } from "./cluster-map.js";

/** A record: field name → value. */
export type SyncRecord = Readonly<Record<string, Uint8Array>>;

/** Options of {@link StrongMap}. */
export interface StrongMapOptions {
  /** Where records live in the store. @default "/dwcp/sync/" */
  readonly prefix?: string;
  /** How long one write may retry lost races before `ERR_TIMEOUT`, ms. @default 10000 */
  readonly writeTimeoutMs?: number;
  /** Time for the write deadline. @default nodeEnv */
  readonly env?: Env;
}

/** Most fields one record holds (a record is one value in the store). */
export const MAX_RECORD_FIELDS = 1024;
/** Largest field name, in UTF-8 bytes. */
export const MAX_FIELD_NAME_BYTES = 1024;

/** The map in strong mode; see the module's description. */
export class StrongMap implements ClusterMap {
  readonly mode = "strong";
  readonly #backend: ConsensusBackend;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #env: Env;
  readonly #listeners = new Set<(key: string) => void>();
  #watch: Watch | undefined;
  #closed = false;

  constructor(backend: ConsensusBackend, options: StrongMapOptions = {}) {
    this.#backend = backend;
    this.#prefix = options.prefix ?? "/dwcp/sync/";
    if (typeof this.#prefix !== "string" || this.#prefix === "")
      throw invalidArg("prefix", "a non-empty string", this.#prefix);
    this.#timeoutMs = options.writeTimeoutMs ?? 10_000;
    if (!(this.#timeoutMs > 0)) throw invalidArg("writeTimeoutMs", "a positive number", this.#timeoutMs);
    this.#env = options.env ?? nodeEnv;
  }

  /** Sets one field of `key`'s record (creating it). Resolves once committed, with the store's revision. */
  set(key: string, field: string, value: Uint8Array): Promise<number> {
    return this.setFields(key, { [field]: value });
  }

  /** Sets several fields of `key`'s record at once. Resolves once committed, with the store's revision. */
  setFields(key: string, fields: SyncRecord): Promise<number> {
    checkFields(fields);
    return this.#update(key, (old) => ({ ...old, ...fields }));
  }

  /** Deletes `key`'s record. Resolves once committed, with the store's revision (unchanged when absent). */
  async delete(key: string): Promise<number> {
    this.#usable();
    const r = await this.#backend.txn([], [{ type: "delete", key: this.#path(key) }]);
    return r.revision;
  }

  /** `key`'s record as the store holds it now (a linearizable read); undefined when absent. */
  async get(key: string): Promise<SyncRecord | undefined> {
    this.#usable();
    const kv = (await this.#backend.range({ key: this.#path(key) })).kvs[0];
    return kv && decodeRecord(kv.value);
  }

  /** Every key, in the store's order. */
  async keys(): Promise<string[]> {
    this.#usable();
    const r = await this.#backend.range({ key: this.#prefix, prefix: true });
    return r.kvs.map((kv) => kv.key.slice(this.#prefix.length));
  }

  /**
   * Calls `fn` with each key changed after now (by any writer), in commit
   * order. The first listener starts the map's one watch. @returns a function
   * that removes the listener
   */
  onChange(fn: (key: string) => void): () => void {
    this.#usable();
    this.#listeners.add(fn);
    if (!this.#watch) void this.#follow();
    return () => {
      this.#listeners.delete(fn);
    };
  }

  /** Stops following changes; later calls fail with `ERR_CLOSED`. The backend stays open (it is ACP's). */
  close(): void {
    this.#closed = true;
    this.#watch?.close();
  }

  async #update(key: string, change: (old: SyncRecord) => SyncRecord): Promise<number> {
    this.#usable();
    const path = this.#path(key);
    const started = this.#env.clock.now();
    for (let attempt = 0; ; attempt++) {
      const kv: KeyValue | undefined = (await this.#backend.range({ key: path })).kvs[0];
      const next = encodeRecord(change(kv ? decodeRecord(kv.value) : {}));
      const r = await this.#backend.txn(
        [{ key: path, target: "modRevision", op: "=", value: kv?.modRevision ?? 0 }],
        [{ type: "put", key: path, value: next }],
      );
      if (r.succeeded) return r.revision;
      // Another writer committed first: read its record and apply the change to it.
      if (this.#env.clock.now() - started > this.#timeoutMs)
        throw new DWCPError(
          "ERR_TIMEOUT",
          `a write of ${key} lost ${attempt + 1} races in ${this.#timeoutMs} ms`,
        );
    }
  }

  async #follow(): Promise<void> {
    let from: number | undefined;
    while (!this.#closed) {
      if (from === undefined)
        from = (await this.#backend.range({ key: this.#prefix, prefix: true })).revision + 1;
      const w = this.#backend.watch({ key: this.#prefix, prefix: true }, { fromRevision: from });
      this.#watch = w;
      try {
        for await (const batch of w) {
          for (const e of batch)
            for (const fn of [...this.#listeners]) fn(e.kv.key.slice(this.#prefix.length));
          from = w.revision + 1;
        }
        return;
      } catch (err) {
        // Compacted past us: start again from now (what changed meanwhile is in the store).
        if (err instanceof DWCPError && err.code === "ERR_COMPACTED") from = undefined;
        else return;
      }
    }
  }

  #path(key: string): string {
    if (typeof key !== "string" || key === "") throw invalidArg("key", "a non-empty string", key);
    return this.#prefix + key;
  }

  #usable(): void {
    if (this.#closed) throw new DWCPError("ERR_CLOSED", "the strong map is closed");
  }
}

function checkFields(fields: SyncRecord): void {
  if (fields === null || typeof fields !== "object")
    throw invalidArg("fields", "an object of byte values", fields);
  for (const [name, value] of Object.entries(fields)) {
    if (Buffer.byteLength(name) > MAX_FIELD_NAME_BYTES)
      throw invalidArg("field", `a name of at most ${MAX_FIELD_NAME_BYTES} bytes`, name);
    if (!(value instanceof Uint8Array)) throw invalidArg(`fields.${name}`, "a Uint8Array", value);
  }
}

/** A record's bytes: fields u16 | (name str16 | value blob32)…, names in sorted order (one encoding per record). */
export function encodeRecord(r: SyncRecord): Uint8Array {
  const names = Object.keys(r).sort();
  if (names.length > MAX_RECORD_FIELDS)
    throw new DWCPError(
      "ERR_RESOURCE_LIMIT",
      `a record of ${names.length} fields exceeds ${MAX_RECORD_FIELDS}`,
    );
  const w = new Writer().u16(names.length);
  for (const n of names) w.str16(n).blob32(r[n]!);
  return w.finish();
}

/** Reads a record's bytes; `ERR_BAD_FRAME` when they are not one. */
export function decodeRecord(bytes: Uint8Array): SyncRecord {
  const r = new Reader(bytes);
  const n = r.u16("fields");
  if (n > MAX_RECORD_FIELDS) throw new DWCPError("ERR_BAD_FRAME", `${n} fields exceed ${MAX_RECORD_FIELDS}`);
  const out: Record<string, Uint8Array> = Object.create(null);
  for (let i = 0; i < n; i++) {
    const name = r.str16("field name");
    out[name] = r.blob32(bytes.length, "field value");
  }
  r.end("record");
  return out;
}
