/**
 * Pulls bytes from a connection for the handshake (exact-length reads) and then
 * frames (through a {@link FrameDecoder}); one reader serves a connection from
 * its first byte to its last.
 */
import { DWCPError } from "../errors.js";
import { type Frame, FrameDecoder } from "./frame.js";

/**
 * What a reader needs of a connection: its inbound chunks in order, and, on one
 * that lends them, a way to give them back. Every transport's `Conn` is one; the
 * frame layer names only this much so that it sits below the transports.
 */
export interface ByteSource extends AsyncIterable<Uint8Array> {
  /** Gives back every lent chunk older than the one whose memory is `keep` (all when undefined). */
  release?(keep: ArrayBufferLike | undefined): void;
}

export class ConnReader {
  readonly decoder: FrameDecoder;
  readonly #it: AsyncIterator<Uint8Array>;
  readonly #conn: ByteSource;
  #pending: Uint8Array | null = null;

  constructor(conn: ByteSource, maxFrame: number, types?: ReadonlySet<number>) {
    this.#conn = conn;
    this.#it = conn[Symbol.asyncIterator]();
    this.decoder = new FrameDecoder(maxFrame, types);
  }

  async #pull(): Promise<Uint8Array | null> {
    const r = await this.#it.next();
    return r.done ? null : r.value;
  }

  /** Reads exactly `n` bytes (n is small and fixed: the greeting). */
  async readExact(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let fill = 0;
    while (fill < n) {
      const chunk = this.#pending ?? (await this.#pull());
      this.#pending = null;
      if (!chunk) throw new DWCPError("ERR_CLOSED", `connection closed after ${fill} of ${n} greeting bytes`);
      const take = Math.min(n - fill, chunk.length);
      out.set(chunk.subarray(0, take), fill);
      fill += take;
      if (take < chunk.length) this.#pending = chunk.subarray(take);
    }
    return out;
  }

  /** The next verified frame, or null at a clean end of stream. */
  async nextFrame(): Promise<Frame | null> {
    for (;;) {
      const f = this.decoder.next();
      if (f) return f;
      if (!(await this.fill())) return null;
    }
  }

  /**
   * Feeds the decoder one more chunk; false at a clean end of stream. Callers
   * take every frame already decodable with `decoder.next()` first, so the hot
   * path pays one await per chunk rather than one per frame.
   */
  async fill(): Promise<boolean> {
    const chunk = this.#pending ?? (await this.#pull());
    this.#pending = null;
    if (!chunk) {
      if (this.decoder.buffered > 0)
        throw new DWCPError("ERR_CLOSED", "connection closed in the middle of a frame");
      return false;
    }
    this.decoder.push(chunk);
    return true;
  }

  /**
   * On a connection that lends its chunks, gives back every chunk older than
   * `keep` (the oldest view the caller still holds), or all when it holds none;
   * a chunk pulled but not yet decoded is kept.
   */
  release(keep: Uint8Array | undefined): void {
    this.#conn.release?.((keep ?? this.decoder.held ?? this.#pending ?? undefined)?.buffer);
  }

  /** Reads and throws away everything until the stream ends (so a close can complete). */
  async discard(): Promise<void> {
    this.#pending = null;
    try {
      while (await this.#pull()) {
        // Nothing: the peer's bytes after a refusal are not looked at.
      }
    } catch {
      // Reset or aborted: the stream is over either way.
    }
  }

  /** Stops reading (releases the connection's iterator). */
  async cancel(): Promise<void> {
    await this.#it.return?.();
  }
}
