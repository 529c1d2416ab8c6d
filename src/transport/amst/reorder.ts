/**
 * The reorder buffer: segments that arrived ahead of a gap wait here, checked
 * against each other, until the bytes before them are delivered. Apart because
 * it is what a hostile peer aims at: its bounds (the receive window, and the
 * read memory its views keep alive) are the bundle's memory safety.
 */
import { DWCPError } from "../../errors.js";
import { SEGMENT_OVERHEAD } from "./protocol.js";
import type { LentSegment, Stream } from "./stream.js";

/** A segment waiting in the reorder buffer. */
export interface HeldSegment {
  parts: Uint8Array[];
  length: number;
  /** Lending: the lent segment each part is a view of; undefined for a copied part. */
  owners: (LentSegment | undefined)[] | undefined;
  /** Bytes of the read buffers its views keep alive (each counted whole). */
  pinned: number;
}

/** The counters the reorder buffer keeps (the bundle's {@link AmstStats}). */
export interface ReorderCounters {
  reorderBytes: number;
  reorderBytesMax: number;
  reorderSegments: number;
  reorderBytesCopied: number;
}

/** Out-of-order segments of one bundle, by offset. */
export class ReorderBuffer {
  readonly #stats: ReorderCounters;
  readonly #held = new Map<number, HeldSegment>();
  /** Read-buffer bytes the held segments keep alive (an upper bound: shared buffers count once per view). */
  #pinned = 0;
  /** Offsets of the held segments, ascending, from `#startsHead` (for the overlap check). */
  #starts: number[] = [];
  #startsHead = 0;
  #bytes = 0;

  constructor(stats: ReorderCounters) {
    this.#stats = stats;
  }

  /**
   * Keeps a segment read from `s` that arrived ahead of a gap, after checking
   * it against those already held and against `window`.
   * @param trusted the peer is authenticated (before, every held byte is copied)
   * @param lending parts kept as views are lent from `s` (see {@link LentSegment})
   * @returns false for an exact resend of a segment already held (nothing kept)
   */
  hold(
    s: Stream,
    offset: number,
    length: number,
    parts: Uint8Array[],
    window: number,
    trusted: boolean,
    lending: boolean,
  ): boolean {
    const same = this.#held.get(offset);
    if (same) {
      if (same.length !== length)
        throw new DWCPError("ERR_PROTOCOL", `segment at ${offset} overlaps a segment already received`);
      // An exact resend of a segment waiting here.
      return false;
    }
    const starts = this.#starts;
    // The first held segment starting after `offset`; its predecessor starts before.
    let lo = this.#startsHead;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid]! < offset) lo = mid + 1;
      else hi = mid;
    }
    const prev = lo > this.#startsHead ? starts[lo - 1]! : -1;
    if (
      (prev >= 0 && prev + this.#held.get(prev)!.length > offset) ||
      (lo < starts.length && starts[lo]! < offset + length)
    )
      throw new DWCPError("ERR_PROTOCOL", `segment at ${offset} overlaps a segment already received`);
    const charge = length + SEGMENT_OVERHEAD;
    if (this.#bytes + charge > window)
      throw new DWCPError(
        "ERR_PROTOCOL",
        `the reorder buffer would hold ${this.#bytes + charge} bytes, over the receive window of ${window}`,
      );
    // Held bytes are views that keep their whole read buffer alive: a peer could
    // make each held byte pin a 64 KiB read (or a 256 KiB lent one). Before
    // authentication everything held is copied (the window is small), so the
    // memory behind the buffer is what it counts. After, views are kept while the
    // buffers they pin stay within twice the window (honest traffic: about the
    // held bytes, plus the reads' edges); beyond, a part that pins more than four
    // times its size is copied. So the memory behind the reorder buffer stays
    // within 2 × window + 4 × held bytes <= 6 × window.
    let viewed = 0;
    for (const p of parts) viewed += p.buffer.byteLength;
    const squeeze = !trusted || this.#pinned + viewed > 2 * window;
    const kept: Uint8Array[] = [];
    const owners: (LentSegment | undefined)[] | undefined = lending ? [] : undefined;
    let lent: LentSegment | undefined;
    let pinned = 0;
    for (const p of parts) {
      if (p.length === 0) continue;
      if (squeeze && (!trusted || p.byteLength * 4 < p.buffer.byteLength)) {
        kept.push(new Uint8Array(p));
        owners?.push(undefined);
        this.#stats.reorderBytesCopied += p.length;
      } else {
        kept.push(p);
        pinned += p.buffer.byteLength;
        if (owners) {
          lent ??= { stream: s, first: p, parts: 0 };
          lent.parts++;
          owners.push(lent);
        }
      }
    }
    if (lent) s.held.push(lent);
    this.#held.set(offset, { parts: kept, length, owners, pinned });
    this.#pinned += pinned;
    starts.splice(lo, 0, offset);
    this.#bytes += charge;
    this.#stats.reorderBytes = this.#bytes;
    this.#stats.reorderSegments = this.#held.size;
    if (this.#bytes > this.#stats.reorderBytesMax) this.#stats.reorderBytesMax = this.#bytes;
    return true;
  }

  /** Removes and returns the segment held at `offset` (the next to deliver), if any; {@link settle} after the last. */
  take(offset: number): HeldSegment | undefined {
    const next = this.#held.get(offset);
    if (!next) return undefined;
    this.#held.delete(offset);
    this.#startsHead++;
    this.#bytes -= next.length + SEGMENT_OVERHEAD;
    this.#pinned -= next.pinned;
    return next;
  }

  /** After a run of {@link take}: compacts the offsets and updates the counters. */
  settle(): void {
    if (this.#startsHead === this.#starts.length) {
      this.#starts = [];
      this.#startsHead = 0;
    } else if (this.#startsHead > 1024 && this.#startsHead * 2 > this.#starts.length) {
      this.#starts = this.#starts.slice(this.#startsHead);
      this.#startsHead = 0;
    }
    this.#stats.reorderBytes = this.#bytes;
    this.#stats.reorderSegments = this.#held.size;
  }

  /** Where the last held segment ends (0 when none is held). */
  heldEnd(): number {
    if (this.#startsHead >= this.#starts.length) return 0;
    const last = this.#starts[this.#starts.length - 1]!;
    return last + this.#held.get(last)!.length;
  }

  /** Drops everything held (the bundle is done). */
  clear(): void {
    this.#held.clear();
    this.#pinned = 0;
    this.#starts = [];
    this.#startsHead = 0;
    this.#bytes = this.#stats.reorderBytes = this.#stats.reorderSegments = 0;
  }
}
