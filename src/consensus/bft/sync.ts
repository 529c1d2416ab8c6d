/**
 * Block sync, the asking side: the digests a replica is missing, each asked of
 * one peer at a time (first the one that referred to it, then the others in
 * turn) until it arrives or every peer was asked. Digests come only from
 * verified QCs and blocks, and an answer is accepted only for a digest asked
 * for and only if the block hashes to it, so a peer can neither push blocks
 * nor make the replica ask without end: at most {@link MAX_WANTED} digests
 * are outstanding.
 */
import type { Clock, Timer } from "../../env/index.js";
import { hex } from "./codec.js";

/** Digests outstanding at most. */
export const MAX_WANTED = 32;
/** Wait for an answer before asking the next peer, ms. */
export const FETCH_RETRY_MS = 200;

interface Want {
  readonly digest: Uint8Array;
  next: number;
  asked: number;
  timer: Timer | undefined;
}

/** The missing blocks of one replica. */
export class BlockFetcher {
  readonly #wants = new Map<string, Want>();

  constructor(
    private readonly clock: Clock,
    private readonly self: number,
    private readonly n: number,
    /** Sends a fetch of `digest` to member `to`. */
    private readonly ask: (to: number, digest: Uint8Array) => void,
  ) {}

  /** Starts fetching `digest`, first from `hint`; no effect if already outstanding or too many are. */
  want(digest: Uint8Array, hint: number): void {
    const k = hex(digest);
    if (this.#wants.has(k) || this.#wants.size >= MAX_WANTED) return;
    const w: Want = {
      digest,
      next: hint === this.self ? (hint + 1) % this.n : hint,
      asked: 0,
      timer: undefined,
    };
    this.#wants.set(k, w);
    this.#askNext(k, w);
  }

  #askNext(k: string, w: Want): void {
    if (w.asked >= this.n - 1) {
      // Every peer was asked: give up; the next reference to the digest asks again.
      this.#wants.delete(k);
      return;
    }
    if (w.next === this.self) w.next = (w.next + 1) % this.n;
    const to = w.next;
    w.next = (w.next + 1) % this.n;
    w.asked++;
    w.timer = this.clock.setTimeout(() => this.#askNext(k, w), FETCH_RETRY_MS);
    w.timer.unref();
    this.ask(to, w.digest);
  }

  /** Whether `digest` was asked for. */
  wanted(digest: Uint8Array): boolean {
    return this.#wants.has(hex(digest));
  }

  /** `digest` arrived (or is no longer needed). */
  done(digest: Uint8Array): void {
    const k = hex(digest);
    const w = this.#wants.get(k);
    if (!w) return;
    this.clock.clearTimeout(w.timer);
    this.#wants.delete(k);
  }

  close(): void {
    for (const w of this.#wants.values()) this.clock.clearTimeout(w.timer);
    this.#wants.clear();
  }
}
