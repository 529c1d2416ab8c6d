/**
 * Lending: with `lend`, delivered bytes are views of the streams' own reads,
 * and each stream gets its read memory back once the bundle's consumer has
 * released every segment in it, as a single TCP connection's reads are reused.
 * Apart because it is the only place the consumer's releases meet the streams'
 * readers; a bundle without `lend` has none of it.
 */
import type { LentSegment, Stream } from "./stream.js";

/** The parts a lending bundle delivered, oldest first, with the lent segment each belongs to. */
export class Lending {
  readonly #out: { part: Uint8Array; seg: LentSegment | undefined }[] = [];
  /** How many of `#out`, from the oldest, the consumer has taken. */
  #handedOut = 0;

  /** A segment delivered straight from a read of `s`: every part is lent from `s`. @returns each part's owner */
  lendInOrder(s: Stream, parts: Uint8Array[]): LentSegment[] {
    const lent = { stream: s, first: parts[0]!, parts: parts.filter((p) => p.length > 0).length };
    s.held.push(lent);
    return parts.map(() => lent);
  }

  /** `part` went to the consumer; `seg` is what it is a view of (undefined: a copy, lending nothing). */
  delivered(part: Uint8Array, seg: LentSegment | undefined): void {
    this.#out.push({ part, seg });
  }

  /** The consumer took the oldest part not yet taken. */
  consumed(): void {
    this.#handedOut++;
  }

  /**
   * The consumer gave back every part handed out before `keep`'s memory (all of
   * them when undefined): each stream then gives back its reads older than the
   * oldest segment it still holds for the bundle (delivered and unreleased, or
   * waiting in the reorder buffer), so the streams' lent reads are reused as they
   * are on a single TCP connection.
   */
  release(keep: ArrayBufferLike | undefined): void {
    const out = this.#out;
    let n = 0;
    const touched = new Set<Stream>();
    while (n < this.#handedOut && out[n]!.part.buffer !== keep) {
      const seg = out[n++]!.seg;
      // A copied part (held before authentication, or small) lends nothing.
      if (seg && --seg.parts === 0) touched.add(seg.stream);
    }
    if (n === 0) return;
    out.splice(0, n);
    this.#handedOut -= n;
    for (const s of touched) {
      // Segments are released out of order across a stream's reads (a resend
      // is read after later bytes): give back only up to the oldest one in use.
      let head = 0;
      while (head < s.held.length && s.held[head]!.parts === 0) head++;
      s.held.splice(0, head);
      s.reader.release(s.held[0]?.first);
    }
  }
}
