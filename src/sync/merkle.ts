/**
 * The bucketed Merkle tree of ASS anti-entropy (Dynamo / Cassandra style): a
 * tree of fixed shape over the keys of a replica, so two replicas find the keys
 * on which they differ by comparing hashes from the root down, at a cost that
 * grows with the difference and not with the number of keys.
 *
 * Shape: `2^leafBits` leaf buckets; a key falls in the bucket named by the first
 * `leafBits` bits of SHA-256 of its UTF-8 bytes. Every internal node has
 * `2^fanoutBits` children, so the tree has `leafBits / fanoutBits` levels below
 * the root (level 0 is the root, the last level the leaves).
 *
 * Default shape: 4,096 leaves (`leafBits` 12) under a fanout of 16
 * (`fanoutBits` 4), three levels below the root. At 100,000 keys a leaf holds
 * about 24 entries, so one differing key costs three rounds of 16 hashes and
 * one leaf of about 24 (key, digest) pairs (≈ 3 KB), while the whole tree is
 * 4,369 hashes (140 KB) and a full key list is megabytes. A wide fanout keeps
 * the round trips at four; 8 bits of leaves (the low end of the anchors'
 * 8–10) would make each differing leaf ~16 times larger at 100k keys.
 *
 * Hashes (all SHA-256, with a domain string, never XOR or sums, which a
 * byzantine peer could forge):
 * - leaf = H("DWCP-ASS leaf 1\0" ‖ for each entry in key order: u16 length ‖ key UTF-8 ‖ digest 32);
 * - node = H("DWCP-ASS node 1\0" ‖ the hashes of its children in index order).
 *
 * Keys are ordered by their UTF-8 bytes (= Unicode code point order), which
 * {@link compareKeys} computes without encoding.
 *
 * Incremental: {@link MerkleTree.touch} only files the key in its bucket and
 * marks the bucket dirty; the dirty leaves and their ancestors are rehashed on
 * the next read, so a burst of writes costs one rehash per touched bucket.
 */
import * as nodeCrypto from "node:crypto";
import { DWCPError } from "../errors.js";

/** Bytes of an entry digest and of every tree hash. */
export const DIGEST_BYTES = 32;
/** Longest key the tree takes, bytes of UTF-8 (keys travel behind a two-byte length). */
export const MAX_KEY_BYTES = 1024;
/** Most leaf bits a tree may have (2^20 buckets). */
export const MAX_LEAF_BITS = 20;
/** The default number of leaf bits: 4,096 buckets (see the module's description). */
export const DEFAULT_LEAF_BITS = 12;
/** The default number of fanout bits: 16 children per node. */
export const DEFAULT_FANOUT_BITS = 4;

const { createHash } = nodeCrypto;
// The one-shot hash (Node ≥ 20.12) is twice as fast as createHash for short keys; older Node 20 lacks it.
const oneShot = (nodeCrypto as { hash?: (alg: string, data: string | Uint8Array, enc: "buffer") => Buffer })
  .hash;

const LEAF_DOMAIN = Buffer.from("DWCP-ASS leaf 1\0", "latin1");
const NODE_DOMAIN = Buffer.from("DWCP-ASS node 1\0", "latin1");
// With the `u` flag a surrogate class matches only unpaired surrogates: such a
// key has no UTF-8 form, and two of them would encode to the same bytes.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** What the tree needs of a replica's store: the CRDT layer implements it. */
export interface AntiEntropyStore {
  /** Digest ({@link DIGEST_BYTES} bytes) of the entry at `key`, or `undefined` if absent. */
  entryDigest(key: string): Uint8Array | undefined;
  /** Every key present. */
  keys(): Iterable<string>;
}

/** Shape of a {@link MerkleTree}. */
export interface MerkleOptions {
  /** Bits of the key hash that name a leaf (2^leafBits leaves); a multiple of `fanoutBits`. @default 12 */
  readonly leafBits?: number;
  /** Bits per level (2^fanoutBits children per node), 1 to 8. @default 4 */
  readonly fanoutBits?: number;
}

/** One entry of a leaf. */
export interface LeafEntry {
  readonly key: string;
  readonly digest: Uint8Array;
}

interface Leaf {
  /** The keys filed in this bucket since the last rehash (some may have been deleted since). */
  readonly members: Set<string>;
  /** At the last rehash: the present keys in key order, and their digests, 32 bytes each, concatenated. */
  keys: string[];
  digests: Uint8Array;
}

/**
 * Orders two keys by their UTF-8 bytes (which is code point order), without
 * encoding them: UTF-16 order differs only where a surrogate pair meets a code
 * unit of U+E000–U+FFFF, which the fix-up below puts back in code point order.
 */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800) x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
    if (y >= 0xd800) y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    return x - y;
  }
  return a.length - b.length;
}

/** Throws `ERR_INVALID_ARG` unless `key` can be a tree key (well-formed, at most {@link MAX_KEY_BYTES}). */
export function checkKey(key: string): void {
  if (typeof key !== "string") throw new DWCPError("ERR_INVALID_ARG", "a key is a string");
  if (key.length > MAX_KEY_BYTES || Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES)
    throw new DWCPError("ERR_INVALID_ARG", `a key is at most ${MAX_KEY_BYTES} bytes of UTF-8`);
  if (LONE_SURROGATE.test(key)) throw new DWCPError("ERR_INVALID_ARG", "a key has an unpaired surrogate");
}

/** The leaf bucket of `key` in a tree of `leafBits`: the first `leafBits` bits of SHA-256 of its UTF-8 bytes. */
export function bucketOf(key: string, leafBits: number): number {
  const h = oneShot ? oneShot("sha256", key, "buffer") : createHash("sha256").update(key, "utf8").digest();
  const top = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
  return leafBits === 0 ? 0 : top >>> (32 - leafBits);
}

/** A fixed-depth bucketed Merkle tree over an {@link AntiEntropyStore}; see the module's description. */
export class MerkleTree {
  /** Bits of the key hash that name a leaf. */
  readonly leafBits: number;
  /** Bits per level. */
  readonly fanoutBits: number;
  /** Children per internal node. */
  readonly fanout: number;
  /** Levels below the root: the leaves are level `depth`. */
  readonly depth: number;
  /** Number of leaves. */
  readonly leafCount: number;
  readonly #store: AntiEntropyStore;
  readonly #leaves: Leaf[];
  /** Hashes per level, 32 bytes per node, concatenated: `#levels[0]` is the root. */
  readonly #levels: Uint8Array[];
  readonly #dirty = new Set<number>();
  readonly #bucket = new Map<string, number>();

  constructor(store: AntiEntropyStore, options: MerkleOptions = {}) {
    const fanoutBits = options.fanoutBits ?? DEFAULT_FANOUT_BITS;
    const leafBits = options.leafBits ?? DEFAULT_LEAF_BITS;
    if (!Number.isInteger(fanoutBits) || fanoutBits < 1 || fanoutBits > 8)
      throw new DWCPError("ERR_INVALID_ARG", `fanoutBits must be an integer in [1, 8], not ${fanoutBits}`);
    if (
      !Number.isInteger(leafBits) ||
      leafBits < fanoutBits ||
      leafBits > MAX_LEAF_BITS ||
      leafBits % fanoutBits !== 0
    )
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `leafBits must be a multiple of fanoutBits (${fanoutBits}) in [${fanoutBits}, ${MAX_LEAF_BITS}], not ${leafBits}`,
      );
    this.#store = store;
    this.leafBits = leafBits;
    this.fanoutBits = fanoutBits;
    this.fanout = 1 << fanoutBits;
    this.depth = leafBits / fanoutBits;
    this.leafCount = 1 << leafBits;
    this.#leaves = Array.from({ length: this.leafCount }, () => ({
      members: new Set<string>(),
      keys: [],
      digests: new Uint8Array(0),
    }));
    this.#levels = [];
    for (let l = 0; l <= this.depth; l++)
      this.#levels.push(new Uint8Array((1 << (l * fanoutBits)) * DIGEST_BYTES));
    // Every leaf starts empty: hash them all once, then the tree is consistent.
    for (let i = 0; i < this.leafCount; i++) this.#dirty.add(i);
  }

  /** Keys currently filed in the tree (including ones deleted from the store since the last read). */
  get size(): number {
    return this.#bucket.size;
  }

  /** The leaf bucket of `key` in this tree. */
  bucketOf(key: string): number {
    return this.#bucket.get(key) ?? bucketOf(key, this.leafBits);
  }

  /**
   * Records that the entry at `key` changed (written, merged or deleted): its
   * bucket is rehashed on the next read. Call it on every change of the store.
   */
  touch(key: string): void {
    let b = this.#bucket.get(key);
    if (b === undefined) {
      checkKey(key);
      b = bucketOf(key, this.leafBits);
      this.#bucket.set(key, b);
      this.#leaves[b]!.members.add(key);
    }
    this.#dirty.add(b);
  }

  /** Forgets everything and files every key of the store again (after loading a snapshot, say). */
  rebuild(): void {
    for (const leaf of this.#leaves) leaf.members.clear();
    this.#bucket.clear();
    for (let i = 0; i < this.leafCount; i++) this.#dirty.add(i);
    for (const key of this.#store.keys()) this.touch(key);
  }

  /** The root hash. */
  root(): Uint8Array {
    return this.node(0, 0);
  }

  /** The hash of node `index` of `level` (0 is the root, {@link depth} the leaves). */
  node(level: number, index: number): Uint8Array {
    this.#checkNode(level, index);
    this.#flush();
    const off = index * DIGEST_BYTES;
    return this.#levels[level]!.slice(off, off + DIGEST_BYTES);
  }

  /** The hashes of the {@link fanout} children of node `index` of `level` (`level < depth`). */
  children(level: number, index: number): Uint8Array[] {
    this.#checkNode(level, index);
    if (level >= this.depth) throw new DWCPError("ERR_INVALID_ARG", "a leaf has no children");
    this.#flush();
    const below = this.#levels[level + 1]!;
    const out: Uint8Array[] = [];
    for (let c = 0; c < this.fanout; c++) {
      const off = (index * this.fanout + c) * DIGEST_BYTES;
      out.push(below.slice(off, off + DIGEST_BYTES));
    }
    return out;
  }

  /** The hashes of the children of node `index` of `level`, concatenated (what goes on the wire). */
  childrenBytes(level: number, index: number): Uint8Array {
    this.#checkNode(level, index);
    if (level >= this.depth) throw new DWCPError("ERR_INVALID_ARG", "a leaf has no children");
    this.#flush();
    const span = this.fanout * DIGEST_BYTES;
    return this.#levels[level + 1]!.subarray(index * span, (index + 1) * span);
  }

  /** The digest of `key`'s entry as of the last rehash (what the tree covers), or `undefined`. */
  entry(key: string): Uint8Array | undefined {
    const b = this.#bucket.get(key);
    if (b === undefined) return undefined;
    this.#flush();
    const leaf = this.#leaves[b]!;
    const i = upperBound(leaf.keys, key) - 1;
    if (i < 0 || leaf.keys[i] !== key) return undefined;
    return leaf.digests.slice(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  /** The entries of leaf `index`, in key order (what its hash covers). */
  leafEntries(index: number): LeafEntry[] {
    return this.entriesAfter(index, undefined, Number.POSITIVE_INFINITY).entries;
  }

  /**
   * At most `max` entries of leaf `index` whose key comes after `after` (all
   * when `undefined`), in key order; `more` when entries are left after them.
   */
  entriesAfter(
    index: number,
    after: string | undefined,
    max: number,
  ): { entries: LeafEntry[]; more: boolean } {
    this.#checkNode(this.depth, index);
    this.#flush();
    const leaf = this.#leaves[index]!;
    let i = after === undefined ? 0 : upperBound(leaf.keys, after);
    const entries: LeafEntry[] = [];
    for (; i < leaf.keys.length && entries.length < max; i++)
      entries.push({
        key: leaf.keys[i]!,
        digest: leaf.digests.slice(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES),
      });
    return { entries, more: i < leaf.keys.length };
  }

  #checkNode(level: number, index: number): void {
    if (!Number.isInteger(level) || level < 0 || level > this.depth)
      throw new DWCPError("ERR_INVALID_ARG", `level must be in [0, ${this.depth}], not ${level}`);
    const width = 1 << (level * this.fanoutBits);
    if (!Number.isInteger(index) || index < 0 || index >= width)
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `index must be in [0, ${width}) at level ${level}, not ${index}`,
      );
  }

  /** Rehashes the dirty leaves, then their ancestors level by level. */
  #flush(): void {
    if (this.#dirty.size === 0) return;
    let parents = new Set<number>();
    for (const b of this.#dirty) {
      this.#hashLeaf(b);
      parents.add(b >>> this.fanoutBits);
    }
    this.#dirty.clear();
    for (let level = this.depth - 1; level >= 0; level--) {
      const next = new Set<number>();
      const row = this.#levels[level]!;
      const below = this.#levels[level + 1]!;
      const span = this.fanout * DIGEST_BYTES;
      for (const p of parents) {
        const h = createHash("sha256")
          .update(NODE_DOMAIN)
          .update(below.subarray(p * span, (p + 1) * span))
          .digest();
        row.set(h, p * DIGEST_BYTES);
        next.add(p >>> this.fanoutBits);
      }
      parents = next;
    }
  }

  #hashLeaf(b: number): void {
    const leaf = this.#leaves[b]!;
    const present: { key: string; digest: Uint8Array }[] = [];
    for (const key of leaf.members) {
      const digest = this.#store.entryDigest(key);
      if (digest === undefined) {
        // Deleted from the store: unfile it, so the tree stays the size of the store.
        leaf.members.delete(key);
        this.#bucket.delete(key);
        continue;
      }
      if (!(digest instanceof Uint8Array) || digest.length !== DIGEST_BYTES)
        throw new DWCPError("ERR_INVALID_ARG", `the store's digest of a key must be ${DIGEST_BYTES} bytes`);
      present.push({ key, digest });
    }
    present.sort((x, y) => compareKeys(x.key, y.key));
    // One buffer per leaf, hashed in one call: many small updates cost more than the hashing.
    const lengths = present.map((e) => Buffer.byteLength(e.key, "utf8"));
    let size = LEAF_DOMAIN.length;
    for (const n of lengths) size += 2 + n + DIGEST_BYTES;
    const buf = Buffer.allocUnsafe(size);
    let off = LEAF_DOMAIN.copy(buf, 0);
    const digests = new Uint8Array(present.length * DIGEST_BYTES);
    present.forEach((e, i) => {
      digests.set(e.digest, i * DIGEST_BYTES);
      off = buf.writeUInt16BE(lengths[i]!, off);
      off += buf.write(e.key, off, "utf8");
      buf.set(e.digest, off);
      off += DIGEST_BYTES;
    });
    const h = oneShot ? oneShot("sha256", buf, "buffer") : createHash("sha256").update(buf).digest();
    leaf.keys = present.map((e) => e.key);
    leaf.digests = digests;
    this.#levels[this.depth]!.set(h, b * DIGEST_BYTES);
  }
}

/** Index of the first key of the sorted `keys` after `key`. */
function upperBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareKeys(keys[mid]!, key) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
