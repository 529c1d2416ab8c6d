/**
 * What a migration reads from: a VM's memory, a file that backs it, or a
 * simulated guest. The engine needs only this much of a source, so the same
 * pre-copy rounds move an in-memory image, a shared-memory backing file of a
 * QEMU guest, or a worker thread that keeps dirtying pages.
 */

/**
 * A paged image that may change while it is read. Dirty tracking is the
 * source's job: whatever is written after a {@link PageSource.dirty} call must
 * show up in the next one, or the destination misses it (the final hash check
 * then fails the migration rather than report a wrong copy).
 */
export interface PageSource {
  /** Bytes per page (a multiple of 8, 64 … 1 MiB). */
  readonly pageSize: number;
  /** Pages in the image. */
  readonly pageCount: number;
  /**
   * Copies pages `first … first + count - 1` into `into` (`count × pageSize`
   * bytes). The copy may tear while the guest runs: a page written during the
   * read is dirty again and travels in a later round.
   */
  read(first: number, count: number, into: Uint8Array): void | Promise<void>;
  /**
   * The pages written since the previous call, one bit per page (bit `p & 7` of
   * byte `p >> 3`), and starts a new log. The first call reports every page
   * that may differ from zero. The bitmap is the caller's (a new one each call).
   */
  dirty(): Uint8Array | Promise<Uint8Array>;
  /**
   * Optional: every page's hash (as `hashPages` computes it) as the source last
   * saw the page, by its latest {@link dirty} scan or read. A source that finds
   * dirty pages by hashing has them anyway; given them, a migration to a
   * destination that announced its image skips the pages zero on both sides.
   */
  knownHashes?(): BigUint64Array;
  /** Stops the guest's writes; settles once no write is in flight. */
  pause(): void | Promise<void>;
  /** Lets the guest run again (after a cancelled or failed migration). */
  resume(): void | Promise<void>;
  /**
   * Slows the guest to `percent` of its time taken away (0 = full speed), as
   * QEMU's auto-converge does. Optional: a source without it never converges
   * by force.
   */
  throttle?(percent: number): void | Promise<void>;
}

/** Whether page `p`'s bit is set in a dirty bitmap. */
export function isDirty(bitmap: Uint8Array, p: number): boolean {
  return ((bitmap[p >>> 3] ?? 0) & (1 << (p & 7))) !== 0;
}

/** Pages set in a dirty bitmap of `pageCount` pages. */
export function countDirty(bitmap: Uint8Array, pageCount: number): number {
  let n = 0;
  const whole = pageCount >>> 3;
  for (let i = 0; i < whole; i++) {
    let b = bitmap[i]!;
    while (b) {
      b &= b - 1;
      n++;
    }
  }
  for (let p = whole << 3; p < pageCount; p++) if (isDirty(bitmap, p)) n++;
  return n;
}
