/**
 * Which stream carries what: a segment goes to the open stream with the least
 * queued (round robin among equals), a control frame to the one least likely
 * to hold it back. Apart because it is the striping policy, and the sender's
 * reliability does not depend on it.
 */
import type { Stream } from "./stream.js";

/** Pull-based choice of the stream for the next segment. */
export class StreamPicker {
  #rr = 0;

  /** The open, unblocked stream with the least queued, round robin among equals; undefined when none. */
  pick(streams: ReadonlyMap<number, Stream>): Stream | undefined {
    let best: Stream | undefined;
    let bestQueued = Number.POSITIVE_INFINITY;
    const all = [...streams.values()];
    for (let i = 0; i < all.length; i++) {
      const s = all[(this.#rr + i) % all.length]!;
      if (s.state !== "open" || s.blocked || s.conn.status !== "open") continue;
      const q = s.conn.bufferedAmount;
      if (q < bestQueued) {
        best = s;
        bestQueued = q;
        if (q === 0) break;
      }
    }
    this.#rr++;
    return best;
  }
}

/** The stream least likely to hold a small control frame back (retiring ones still carry them). */
export function controlStream(streams: ReadonlyMap<number, Stream>): Stream | undefined {
  let best: Stream | undefined;
  for (const s of streams.values()) {
    if ((s.state !== "open" && s.state !== "retiring") || s.conn.status !== "open") continue;
    if (!best || s.conn.bufferedAmount < best.conn.bufferedAmount) best = s;
  }
  return best;
}
