/**
 * The replicated key-value state machine: what committed commands do. It is
 * deterministic (string keys in a `Map`, no time, no randomness), so replicas
 * that apply the same blocks in the same order hold the same state, and the
 * state hash of each height says so in 32 bytes.
 *
 * A command takes effect once per (client, seq): a seq at or below the
 * client's last applied one is skipped, whoever proposed it again. That
 * dedup table is part of the state, so it is the same on every replica.
 */
import { createHash } from "node:crypto";
import { Reader, Writer } from "./codec.js";
import type { Command } from "./messages.js";

/** A decoded key-value operation. */
export type KvOp =
  | { readonly type: "put"; readonly key: string; readonly value: Uint8Array }
  | { readonly type: "delete"; readonly key: string }
  | { readonly type: "read"; readonly key: string };

/**
 * What a committed command returned: for a read, the value at its place in the
 * committed order (`null` when the key was absent); `undefined` for the others.
 */
export type KvResult = Uint8Array | null | undefined;

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
  readonly #data = new Map<string, Uint8Array>();
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
    return this.#data.get(key);
  }

  /** Keys held. */
  get size(): number {
    return this.#data.size;
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
      const op = decodeOp(c.op);
      if (op?.type === "put") this.#data.set(op.key, op.value.slice());
      else if (op?.type === "delete") this.#data.delete(op.key);
      results.push(op?.type === "read" ? (this.#data.get(op.key)?.slice() ?? null) : undefined);
    }
    this.#hash = new Uint8Array(h.update(w.finish()).digest());
    return { applied, results, stateHash: this.#hash };
  }
}
