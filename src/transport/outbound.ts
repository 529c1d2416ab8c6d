/**
 * The outbound queue of a transport that writes in units of its own (AMST
 * segments, RDMA registered buffers) rather than handing each `send()` to a
 * socket: sends append, and one pump per tick of the event loop cuts what has
 * accumulated into those units, so many small sends share one unit.
 */
export class OutboundQueue {
  /** Bytes queued and not yet taken. */
  bytes = 0;
  /** Queued chunks from `#head` on; taken ones are cleared and the array compacted now and then. */
  #chunks: Uint8Array[] = [];
  #head = 0;
  readonly #highWater: number;
  readonly #pump: () => void;
  #scheduled = false;
  #full = false;

  /**
   * @param highWater queued bytes at which `push` starts returning false
   * @param pump runs once on the next tick after any push; it calls `take`
   */
  constructor(highWater: number, pump: () => void) {
    this.#highWater = highWater;
    this.#pump = pump;
  }

  /** Appends a chunk (kept as is, not copied). @returns false while the queue is at its high-water mark */
  push(chunk: Uint8Array): boolean {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.bytes += chunk.length;
      if (!this.#scheduled) {
        this.#scheduled = true;
        process.nextTick(() => {
          this.#scheduled = false;
          this.#pump();
        });
      }
    }
    if (this.bytes >= this.#highWater) this.#full = true;
    return !this.#full;
  }

  /** True from a push that found the queue full until {@link drained} reports it. */
  get full(): boolean {
    return this.#full;
  }

  /** The next `max` bytes at most, as views of the queued chunks, in order. */
  take(max: number): Uint8Array[] {
    const parts: Uint8Array[] = [];
    let n = 0;
    // An index, not shift(): a peer that makes us queue 100,000 small answers would
    // otherwise make each take() move the whole array (O(n^2) drained, seconds
    // of a blocked event loop).
    const chunks = this.#chunks;
    while (n < max && this.#head < chunks.length) {
      const b = chunks[this.#head]!;
      const k = Math.min(b.length, max - n);
      if (k === b.length) {
        parts.push(b);
        chunks[this.#head++] = EMPTY;
      } else {
        parts.push(b.subarray(0, k));
        chunks[this.#head] = b.subarray(k);
      }
      n += k;
    }
    if (this.#head === chunks.length) {
      this.#chunks = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > chunks.length) {
      this.#chunks = chunks.slice(this.#head);
      this.#head = 0;
    }
    this.bytes -= n;
    return parts;
  }

  /**
   * True once when a full queue has fallen below half its mark (the owner then
   * emits `drain`): the hysteresis keeps a sender from waking for every unit.
   */
  drained(): boolean {
    if (!this.#full || this.bytes >= this.#highWater / 2) return false;
    this.#full = false;
    return true;
  }
}

const EMPTY = new Uint8Array(0);
