/**
 * Equivocation detection: the first signed statement of each member per
 * (kind, view) is remembered, and a second, validly signed one that says
 * something else is proof that the key signed two conflicting messages.
 * Only messages whose signature verified reach this point, so an honest
 * replica is never accused on forged or unsigned input, and an honest
 * replica never signs two different statements in one slot (it re-sends
 * its stored timeout rather than signing a new one).
 *
 * Memory is bounded: only views in a window around the replica's own are
 * tracked, one entry per (member, kind, view).
 */
import type { MessageKind } from "./messages.js";

/** The kinds of statement one key may sign once per view. */
export type EquivocationKind = Extract<MessageKind, "proposal" | "vote" | "timeout">;

/** Two conflicting signed messages of one member in one slot. */
export interface Evidence {
  /** The member whose key signed both. */
  readonly member: number;
  readonly kind: EquivocationKind;
  readonly view: number;
  /** The first message seen, as encoded (anyone can re-verify it). */
  readonly first: Uint8Array;
  /** The conflicting one, as encoded. */
  readonly second: Uint8Array;
}

interface Seen {
  readonly content: string;
  readonly bytes: Uint8Array;
  accused: boolean;
}

/** The detector of one replica. */
export class EquivocationDetector {
  readonly #seen = new Map<string, Seen>();
  readonly #byView = new Map<number, string[]>();

  /**
   * Records `member`'s statement `content` for (`kind`, `view`); returns
   * evidence the first time a different statement of that slot is seen.
   */
  observe(
    kind: EquivocationKind,
    member: number,
    view: number,
    content: string,
    bytes: Uint8Array,
  ): Evidence | undefined {
    const key = `${kind}:${member}:${view}`;
    const prior = this.#seen.get(key);
    if (!prior) {
      this.#seen.set(key, { content, bytes, accused: false });
      const keys = this.#byView.get(view) ?? [];
      keys.push(key);
      this.#byView.set(view, keys);
      return undefined;
    }
    if (prior.content === content || prior.accused) return undefined;
    prior.accused = true;
    return { member, kind, view, first: prior.bytes, second: bytes };
  }

  /** Forgets every view below `view`. */
  forgetBelow(view: number): void {
    for (const [v, keys] of this.#byView)
      if (v < view) {
        for (const k of keys) this.#seen.delete(k);
        this.#byView.delete(v);
      }
  }
}
