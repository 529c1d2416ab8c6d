/**
 * The dissemination queue: membership updates waiting to be piggybacked. One
 * entry per node (a newer update about a node replaces the queued one, which
 * it makes moot), so the queue is bounded by the member table. Each update is
 * sent a limited number of times, `retransmitMult × ⌈log10(n + 1)⌉`, which
 * reaches every member with high probability in SWIM's epidemic dissemination;
 * the least-sent updates go first.
 */
import { type SignedUpdate, updateSize } from "./messages.js";

interface Entry {
  readonly update: SignedUpdate;
  readonly size: number;
  readonly order: number;
  transmits: number;
}

/** Updates to disseminate, keyed by the node they are about. */
export class BroadcastQueue {
  readonly #entries = new Map<string, Entry>();
  #order = 0;

  constructor(readonly maxEntries: number) {}

  /** Queued updates. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Queues `u`, replacing a queued update about the same node. When full (it
   * cannot be, with one entry per member kept), the most-sent entry makes room.
   */
  push(u: SignedUpdate): void {
    this.#entries.delete(u.node);
    if (this.#entries.size >= this.maxEntries) {
      let worst: [string, Entry] | undefined;
      for (const e of this.#entries) if (!worst || e[1].transmits > worst[1].transmits) worst = e;
      if (worst) this.#entries.delete(worst[0]);
    }
    this.#entries.set(u.node, { update: u, size: updateSize(u), order: this.#order++, transmits: 0 });
  }

  /** Drops what is queued about `node`. */
  drop(node: string): void {
    this.#entries.delete(node);
  }

  /**
   * Takes up to `count` updates within `bytes`, least-sent first, counting a
   * transmission for each; an update sent `limit` times leaves the queue.
   */
  take(count: number, bytes: number, limit: number): SignedUpdate[] {
    if (count <= 0 || this.#entries.size === 0) return [];
    const all = [...this.#entries.values()].sort((a, b) => a.transmits - b.transmits || a.order - b.order);
    const out: SignedUpdate[] = [];
    let used = 0;
    for (const e of all) {
      if (out.length >= count) break;
      if (used + e.size > bytes) continue;
      used += e.size;
      out.push(e.update);
      e.transmits++;
      if (e.transmits >= limit) this.#entries.delete(e.update.node);
    }
    return out;
  }
}
