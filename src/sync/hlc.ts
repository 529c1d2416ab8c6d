/**
 * Hybrid logical clocks (Kulkarni et al.) for ASS: a timestamp is
 * `(wall, counter, node)`, totally ordered in that order, so every replica
 * resolves a last-writer-wins conflict the same way and a write made after
 * seeing another always carries a larger timestamp.
 *
 * **Too-far-ahead rule (refuse, not clamp).** A remote timestamp whose wall
 * part is more than `maxAheadMs` ahead of this node's wall clock is *refused*:
 * {@link Hlc.receive} leaves the clock untouched and says `"refused"`, and the
 * CRDT merge layers store nothing stamped with it. Refusing rather than
 * rewriting the timestamp keeps the origin's bytes intact, so a signed delta
 * can still be verified and relayed, and every replica that stores the entry
 * stores the same one. The entry is not lost: it was not acknowledged, so
 * delta sync resends it and anti-entropy offers it again, and it is accepted
 * once the receiver's wall clock is within `maxAheadMs` of it. Hence a node
 * that lies about time gains at most `maxAheadMs` (plus the honest clocks'
 * skew) over honest writers: an entry stamped `T` is stored only where the
 * local wall clock has reached `T.wall - maxAheadMs`, and any honest write made
 * once its writer's wall clock passes `T.wall` beats it. The verdict depends
 * only on the timestamp and the local wall time, so it is the same on every
 * receiver at the same local time.
 *
 * Also here, because every CRDT codec of ASS shares them: the compact binary
 * form of a timestamp, the node-id table that lets an encoding name each node
 * once, the byte order of strings, and the bounded-decoding wrapper that turns
 * any malformed input into a `DWCPError`.
 *
 * @packageDocumentation
 */
import { Reader, Writer } from "../consensus/bft/codec.js";
import type { Env } from "../env/index.js";
import { DWCPError, invalidArg } from "../errors.js";

/** A hybrid logical clock timestamp. */
export interface HlcTimestamp {
  /** Milliseconds since the Unix epoch (an integer in [0, 2^53)). */
  readonly wall: number;
  /** Logical counter within one `wall` millisecond (an integer in [0, 2^32)). */
  readonly counter: number;
  /** The node that made it (1 to 255 bytes of UTF-8); breaks ties so the order is total. */
  readonly node: string;
}

/** Options of an {@link Hlc}. */
export interface HlcOptions {
  /** Remote timestamps further ahead of the local wall clock than this are refused (ms). @default 5000 */
  maxAheadMs?: number;
}

/** What {@link Hlc.receive} did with a remote timestamp. */
export type HlcVerdict = "accepted" | "refused";

/** Default of {@link HlcOptions.maxAheadMs}. */
export const DEFAULT_MAX_AHEAD_MS = 5000;

const MAX_COUNTER = 0xffff_ffff;
const MAX_WALL = Number.MAX_SAFE_INTEGER;
const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is kept as a character, so every accepted string
// re-encodes to the bytes it came from (the codec's own reader drops it).
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Reads a string behind a one-byte length, byte-exact (invalid UTF-8 is `ERR_PROTOCOL`). */
export function readStr8(r: Reader, what = "string"): string {
  const b = r.bytes(r.u8(what), what);
  try {
    return decoder.decode(b);
  } catch {
    throw new DWCPError("ERR_PROTOCOL", `${what} is not valid UTF-8`);
  }
}

/**
 * Orders strings by their UTF-8 bytes (which is code-point order), not by
 * JavaScript's UTF-16 units, so a peer in another language sorts the same way.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // UTF-16 units order code points correctly except that surrogates (astral
    // code points) must sort after U+E000..U+FFFF: shift both ranges.
    if (x >= 0xd800) x = x <= 0xdfff ? x + 0x2000 : x - 0x800;
    if (y >= 0xd800) y = y <= 0xdfff ? y + 0x2000 : y - 0x800;
    return x < y ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** Total order of timestamps: by wall time, then counter, then node id. Negative, zero or positive. */
export function compareHlc(a: HlcTimestamp, b: HlcTimestamp): number {
  if (a.wall !== b.wall) return a.wall < b.wall ? -1 : 1;
  if (a.counter !== b.counter) return a.counter < b.counter ? -1 : 1;
  return compareUtf8(a.node, b.node);
}

/** Checks that `node` can be a node id: 1 to 255 bytes of UTF-8. */
export function checkNodeId(node: string, name = "node"): string {
  const n = typeof node === "string" ? encoder.encode(node).length : 0;
  if (n < 1 || n > 255) throw invalidArg(name, "a node id of 1 to 255 UTF-8 bytes", node);
  return node;
}

/**
 * The clock of one node. `now()` stamps a local event; `receive()` takes in a
 * timestamp seen on a remote entry so that later local stamps exceed it.
 */
export class Hlc {
  /** This node's id, the tie-breaker of its timestamps. */
  readonly node: string;
  /** See {@link HlcOptions.maxAheadMs}. */
  readonly maxAheadMs: number;
  readonly #env: Env;
  #wall = 0;
  #counter = 0;

  constructor(env: Env, node: string, options: HlcOptions = {}) {
    this.#env = env;
    this.node = checkNodeId(node);
    const ahead = options.maxAheadMs ?? DEFAULT_MAX_AHEAD_MS;
    if (!(ahead >= 0)) throw invalidArg("maxAheadMs", "a non-negative number", ahead);
    this.maxAheadMs = ahead;
  }

  /** The local wall clock, whole milliseconds. */
  #physical(): number {
    const w = Math.floor(this.#env.clock.wall());
    return Number.isFinite(w) && w > 0 ? Math.min(w, MAX_WALL) : 0;
  }

  /** A timestamp for a local event: larger than every timestamp made or accepted before. */
  now(): HlcTimestamp {
    const pt = this.#physical();
    if (pt > this.#wall) {
      this.#wall = pt;
      this.#counter = 0;
    } else if (this.#counter < MAX_COUNTER) {
      this.#counter++;
    } else {
      // The counter is spent within one millisecond: borrow the next one, which
      // keeps the order strict at the cost of running a millisecond ahead.
      this.#wall++;
      this.#counter = 0;
    }
    return { wall: this.#wall, counter: this.#counter, node: this.node };
  }

  /** The last timestamp made or accepted (the clock's state), without advancing it. */
  last(): HlcTimestamp {
    return { wall: this.#wall, counter: this.#counter, node: this.node };
  }

  /** True when `remote` is not too far ahead of the local wall clock to be accepted now. */
  admissible(remote: HlcTimestamp): boolean {
    return remote.wall <= this.#physical() + this.maxAheadMs;
  }

  /**
   * Takes in a remote timestamp. Accepted: the clock moves up to it, so the
   * next {@link now} is larger. Refused (more than `maxAheadMs` ahead of the
   * local wall clock): the clock is unchanged and the caller must not store
   * the entry that carried it.
   */
  receive(remote: HlcTimestamp): HlcVerdict {
    if (!this.admissible(remote)) return "refused";
    if (remote.wall > this.#wall || (remote.wall === this.#wall && remote.counter > this.#counter)) {
      this.#wall = remote.wall;
      this.#counter = remote.counter;
    }
    return "accepted";
  }
}

/** Writes a timestamp: wall (8 bytes), counter (4), node id (1-byte length + UTF-8). 13 + id bytes. */
export function writeHlc(w: Writer, ts: HlcTimestamp): void {
  w.u64(ts.wall).u32(ts.counter).str8(ts.node);
}

/** Reads a timestamp written by {@link writeHlc}; an empty node id is `ERR_PROTOCOL`. */
export function readHlc(r: Reader): HlcTimestamp {
  const wall = r.u64("hlc wall");
  const counter = r.u32("hlc counter");
  const node = readStr8(r, "hlc node");
  if (node.length === 0) throw new DWCPError("ERR_PROTOCOL", "empty node id in a timestamp");
  return { wall, counter, node };
}

/** Checks a timestamp made by a caller (not decoded): integer fields in range, a valid node id. */
export function checkHlc(ts: HlcTimestamp, name = "timestamp"): HlcTimestamp {
  if (!Number.isSafeInteger(ts.wall) || ts.wall < 0)
    throw invalidArg(`${name}.wall`, "an integer ≥ 0", ts.wall);
  if (!Number.isInteger(ts.counter) || ts.counter < 0 || ts.counter > MAX_COUNTER)
    throw invalidArg(`${name}.counter`, "an integer in [0, 2^32)", ts.counter);
  checkNodeId(ts.node, `${name}.node`);
  return ts;
}

/** A timestamp as bytes (see {@link writeHlc}). */
export function encodeHlc(ts: HlcTimestamp): Uint8Array {
  return encodeWith((w) => writeHlc(w, checkHlc(ts)));
}

/** Decodes {@link encodeHlc}'s bytes; anything malformed is `ERR_PROTOCOL`. */
export function decodeHlc(bytes: Uint8Array): HlcTimestamp {
  return decodeWith(bytes, 13 + 255, "timestamp", readHlc);
}

/**
 * The node ids named by one encoding, each written once (in UTF-8 byte order,
 * so the encoding is canonical) and then referred to by a two-byte index: a
 * delta of many entries from three nodes names three ids, not one per entry.
 */
export class NodeTable {
  readonly #index = new Map<string, number>();
  readonly #ids: string[];

  /** A table of `nodes` (each validated; repeats are fine). */
  constructor(nodes: Iterable<string>) {
    this.#ids = [...new Set(nodes)].sort(compareUtf8);
    if (this.#ids.length > 0xffff)
      throw new DWCPError("ERR_RESOURCE_LIMIT", "more than 65535 node ids in one encoding");
    this.#ids.forEach((id, i) => {
      checkNodeId(id);
      this.#index.set(id, i);
    });
  }

  /** Index of a node of the table. */
  indexOf(node: string): number {
    const i = this.#index.get(node);
    if (i === undefined) throw new DWCPError("ERR_INVALID_ARG", `node ${node} not in the table`);
    return i;
  }

  /** Writes the table: a two-byte count, then each id (1-byte length + UTF-8). */
  write(w: Writer): void {
    w.u16(this.#ids.length);
    for (const id of this.#ids) w.str8(id);
  }

  /** Writes `ts` as wall, counter and the two-byte index of its node. */
  writeTs(w: Writer, ts: HlcTimestamp): void {
    w.u64(ts.wall).u32(ts.counter).u16(this.indexOf(ts.node));
  }
}

/** The node ids of an encoding, read back; indexes are checked. */
export class NodeTableReader {
  readonly ids: readonly string[];

  private constructor(ids: string[]) {
    this.ids = ids;
  }

  readonly #used = new Set<number>();

  /**
   * Reads a table written by {@link NodeTable.write}: more than `max` ids is
   * `ERR_RESOURCE_LIMIT`; an empty id or ids out of order is `ERR_PROTOCOL`.
   */
  static read(r: Reader, max: number): NodeTableReader {
    const n = r.u16("node count");
    if (n > max) throw new DWCPError("ERR_RESOURCE_LIMIT", `${n} node ids exceed the limit of ${max}`);
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = readStr8(r, "node id");
      const prev = ids[ids.length - 1];
      if (id.length === 0 || (prev !== undefined && compareUtf8(prev, id) >= 0))
        throw new DWCPError("ERR_PROTOCOL", "node ids empty, out of order or repeated");
      ids.push(id);
    }
    return new NodeTableReader(ids);
  }

  /** Reads a two-byte node index. */
  node(r: Reader): string {
    const i = r.u16("node index");
    const id = this.ids[i];
    if (id === undefined) throw new DWCPError("ERR_PROTOCOL", `node index ${i} outside the table`);
    this.#used.add(i);
    return id;
  }

  /** Fails unless every id was referred to: an unused one would give a second encoding of the same value. */
  checkAllUsed(): void {
    if (this.#used.size !== this.ids.length)
      throw new DWCPError("ERR_PROTOCOL", "unused node id in the table");
  }

  /** Reads a timestamp written by {@link NodeTable.writeTs}. */
  ts(r: Reader): HlcTimestamp {
    const wall = r.u64("hlc wall");
    const counter = r.u32("hlc counter");
    return { wall, counter, node: this.node(r) };
  }
}

/** Runs `fn` on a fresh writer and returns the bytes (a helper of every ASS encoder). */
export function encodeWith(fn: (w: Writer) => void): Uint8Array {
  const w = new Writer();
  fn(w);
  return w.finish();
}

/**
 * Decodes `bytes` with `fn`, bounded and strict: input longer than `maxBytes`
 * is `ERR_RESOURCE_LIMIT`; trailing bytes, truncation and any other malformation
 * are `ERR_PROTOCOL` (the codec's `ERR_BAD_FRAME` is reported as that, so a
 * sync peer sees one code for "this peer sent garbage"). No other exception
 * escapes, whatever the bytes.
 */
export function decodeWith<T>(bytes: Uint8Array, maxBytes: number, what: string, fn: (r: Reader) => T): T {
  if (!(bytes instanceof Uint8Array)) throw invalidArg(what, "a Uint8Array", bytes);
  if (bytes.length > maxBytes)
    throw new DWCPError("ERR_RESOURCE_LIMIT", `${what} of ${bytes.length} bytes exceeds ${maxBytes}`);
  try {
    const r = new Reader(bytes);
    const out = fn(r);
    r.end(what);
    return out;
  } catch (err) {
    if (err instanceof DWCPError && (err.code === "ERR_PROTOCOL" || err.code === "ERR_RESOURCE_LIMIT"))
      throw err;
    const message = err instanceof Error ? err.message : String(err);
    throw new DWCPError("ERR_PROTOCOL", `malformed ${what}: ${message}`, { cause: err });
  }
}
