/**
 * A cursor over a payload that arrived as several consecutive views (a frame
 * spanning socket reads, see `Frame.parts`): reads lengths and takes entries as
 * views, copying only a length field that straddles two views.
 */
export class PartsCursor {
  #parts: readonly Uint8Array[];
  #i = 0;
  #at = 0;
  remaining: number;

  constructor(parts: readonly Uint8Array[]) {
    this.#parts = parts;
    this.remaining = parts.reduce((n, p) => n + p.length, 0);
  }

  /** Views covering the next `n` bytes (n ≤ remaining). */
  take(n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    this.remaining -= n;
    while (n > 0) {
      const part = this.#parts[this.#i]!;
      const k = Math.min(n, part.length - this.#at);
      out.push(part.subarray(this.#at, this.#at + k));
      n -= k;
      this.#advance(k);
    }
    return out;
  }

  /** Moves past `k` bytes of the current part (k ≤ what it has left). */
  #advance(k: number): void {
    this.#at += k;
    if (this.#at === this.#parts[this.#i]!.length) {
      this.#i++;
      this.#at = 0;
    }
  }

  /** The next little-endian u32 (4 ≤ remaining). */
  u32(): number {
    const part = this.#parts[this.#i]!;
    if (part.length - this.#at >= 4) {
      const v =
        (part[this.#at]! |
          (part[this.#at + 1]! << 8) |
          (part[this.#at + 2]! << 16) |
          (part[this.#at + 3]! << 24)) >>>
        0;
      // Advance without making a view nobody reads (once per batch entry).
      this.remaining -= 4;
      this.#advance(4);
      return v;
    }
    // Split across parts: gather the four bytes first.
    const bytes = Buffer.concat(this.take(4), 4);
    return bytes.readUInt32LE(0);
  }
}
