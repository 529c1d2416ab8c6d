/**
 * The blocks a replica holds: the committed chain (by height, kept to serve
 * peers that sync) and the uncommitted tree above it. A block enters the tree
 * only once its parent is held, so every held block's ancestry is complete;
 * a block whose parent is missing waits among a bounded set of orphans until
 * block sync brings the parent.
 */
import { hex } from "./codec.js";
import type { Block } from "./messages.js";

/** Orphans held at most: a peer cannot make a replica hold more by sending blocks of unknown parents. */
export const MAX_ORPHANS = 64;

/** Committed chain and uncommitted tree. */
export class BlockStore {
  readonly #committed = new Map<string, Block>();
  readonly #byHeight: string[] = [];
  readonly #pending = new Map<string, Block>();
  readonly #orphans = new Map<string, Block>();

  constructor(readonly genesis: Uint8Array) {
    this.#byHeight.push(hex(genesis));
  }

  /** Height of the last committed block (0: genesis). */
  get committedHeight(): number {
    return this.#byHeight.length - 1;
  }

  /** Digest of the last committed block. */
  get committedDigest(): string {
    return this.#byHeight[this.#byHeight.length - 1]!;
  }

  /** Whether `digest` is held (genesis included); orphans are not. */
  has(digest: Uint8Array | string): boolean {
    const k = typeof digest === "string" ? digest : hex(digest);
    return k === this.#byHeight[0] || this.#committed.has(k) || this.#pending.has(k);
  }

  /** A held block (not genesis, which has no body). */
  get(digest: Uint8Array | string): Block | undefined {
    const k = typeof digest === "string" ? digest : hex(digest);
    return this.#pending.get(k) ?? this.#committed.get(k);
  }

  /** Whether the block of `digest` is committed (genesis is). */
  isCommitted(digest: Uint8Array | string): boolean {
    const k = typeof digest === "string" ? digest : hex(digest);
    return k === this.#byHeight[0] || this.#committed.has(k);
  }

  /** Height of a held block (0 for genesis). */
  heightOf(digest: Uint8Array): number | undefined {
    const k = hex(digest);
    if (k === this.#byHeight[0]) return 0;
    return this.get(k)?.height;
  }

  /**
   * Adds `b` to the tree if its parent is held and its height follows the
   * parent's (else false: the caller fetches the parent or drops it). Orphans
   * waiting for `b` are added in turn; every block added is returned.
   */
  add(b: Block): Block[] | false {
    const parentHeight = this.heightOf(b.parent);
    if (parentHeight === undefined || b.height !== parentHeight + 1) return false;
    const added: Block[] = [];
    const queue = [b];
    for (let next = queue.shift(); next; next = queue.shift()) {
      const k = hex(next.digest);
      if (this.has(k)) continue;
      // Below the committed height a block can only be a fork of the committed chain: never kept.
      if (next.height > this.committedHeight) {
        this.#pending.set(k, next);
        added.push(next);
      }
      for (const [ok, o] of this.#orphans)
        if (hex(o.parent) === k && o.height === next.height + 1) {
          this.#orphans.delete(ok);
          queue.push(o);
        }
    }
    return added;
  }

  /** Holds `b` until its parent arrives; the oldest orphan gives way when full. */
  addOrphan(b: Block): void {
    const k = hex(b.digest);
    if (this.#orphans.has(k) || this.has(k)) return;
    if (this.#orphans.size >= MAX_ORPHANS) this.#orphans.delete(this.#orphans.keys().next().value!);
    this.#orphans.set(k, b);
  }

  /**
   * The uncommitted blocks from the committed tip up to `b`, lowest first, or
   * the digest of the first missing ancestor. `undefined` when `b` does not
   * extend the committed chain (a fork below it, which the safety rules exclude).
   */
  chainTo(b: Block): Block[] | { missing: Uint8Array } | undefined {
    const out: Block[] = [];
    let cur: Block | undefined = b;
    while (cur && cur.height > this.committedHeight) {
      out.push(cur);
      if (cur.height === this.committedHeight + 1) {
        if (hex(cur.parent) !== this.committedDigest) return undefined;
        return out.reverse();
      }
      const parent: Block | undefined = this.#pending.get(hex(cur.parent));
      if (!parent) return { missing: cur.parent };
      cur = parent;
    }
    return cur && hex(cur.digest) === this.#byHeight[cur.height] ? [] : undefined;
  }

  /** Moves `b` (the child of the committed tip) to the committed chain, and drops the forks it excludes. */
  commit(b: Block): void {
    const k = hex(b.digest);
    this.#pending.delete(k);
    this.#committed.set(k, b);
    this.#byHeight.push(k);
    for (const [pk, p] of this.#pending) if (p.height <= b.height) this.#pending.delete(pk);
    for (const [ok, o] of this.#orphans) if (o.height <= b.height) this.#orphans.delete(ok);
  }

  /** The commands of the uncommitted ancestors of `digest`, itself included (what a new block must not repeat). */
  uncommittedCommandKeys(digest: Uint8Array): Set<string> {
    const keys = new Set<string>();
    for (let b = this.#pending.get(hex(digest)); b; b = this.#pending.get(hex(b.parent)))
      for (const c of b.commands) keys.add(commandKey(c.client, c.seq));
    return keys;
  }

  /** The uncommitted blocks, parents before children (the snapshot of the voted-blocks log). */
  pendingBlocks(): Block[] {
    return [...this.#pending.values()].sort((x, y) => x.height - y.height);
  }

  /** Whether some held uncommitted block carries commands. */
  get pendingCommands(): boolean {
    for (const b of this.#pending.values()) if (b.commands.length > 0) return true;
    return false;
  }

  /** Whether a held uncommitted block on the way from `digest` down to the committed tip carries commands. */
  uncommittedWork(digest: Uint8Array): boolean {
    for (let b = this.#pending.get(hex(digest)); b; b = this.#pending.get(hex(b.parent)))
      if (b.commands.length > 0) return true;
    return false;
  }
}

/** The dedup key of a command. */
export function commandKey(client: string, seq: number): string {
  return `${seq}:${client}`;
}
