/**
 * Per-peer delta tracking for the delta-state CRDTs of ASS (Almeida, Shoker,
 * Baquero, "delta-interval" propagation), and tombstone GC after causal
 * stability. Generic over keys: it never sees a value, only which keys of the
 * replica changed when.
 *
 * **Streams and acks.** Each replica numbers the changes of its own state
 * (local writes and merges that changed something) 1, 2, 3…: `seq` is its
 * position. A change names a key and a *part* of it (for the LWW-map, one
 * field or the tombstone, see `lwwParts`; `""` for a CRDT shipped whole), and
 * every part remembers the `seq` of its last change. Each sync message carries
 * a {@link SyncHeader}: the sender's `seq` and its `ack` of the receiver's
 * stream. A peer that has acked `a` is sent the *current* value of the parts
 * changed after `a` (never an old delta, so a write hidden since by a delete
 * is never shipped again), so one field written is one field shipped, however
 * large the record; an unknown peer, or one so far behind that the interval
 * exceeds `maxDeltaKeys` parts, gets the full state. A message is
 * acked only when merged *completely* (nothing refused), so refused entries
 * are sent again. An ack of `s` therefore means: the peer holds this
 * replica's state as of `s` (or a later state of each part).
 *
 * **No sending back.** A merge names the peer its parts came from
 * (`touch(parts, from)`); while a part's last change is that merge, the plan
 * for that peer leaves it out, since the peer holds the value it sent (its
 * state only grows by joins) — the "avoid back-propagation" rule of
 * delta-state CRDTs. Without it, with 3 replicas every write crossed 6 links
 * instead of 4 (the origin's 2, and each relay's copy to the other). The
 * peer's ack stays truthful: it holds those parts, so acking a position past
 * them claims nothing it lacks, and GC's reasoning below is unchanged. So that
 * the ack can move, a peer owed only left-out parts gets a `delta` plan with
 * no parts (send it, empty, so it acks), never `none`, which means the peer
 * has acked everything. The mark belongs to the peer's tracked incarnation:
 * `forget` (or an exclusion) voids it, and a peer unknown at `touch` gets no
 * mark, so a peer that comes back with an empty state is sent everything.
 * The full-state fallback ignores the marks (it is the state, whole).
 *
 * **Order.** Messages from one peer whose `seq` is below one already seen are
 * stale and dropped (`receive` returns false): nothing is lost, since unacked
 * changes are sent again from the ack. This makes each peer's stream FIFO over
 * a network that reorders, which tombstone GC relies on.
 *
 * **Tombstone GC.** A tombstone whose key (any part) last changed at `s` is dropped only
 * when every live member has acked `s` or later. Such a member has merged the
 * key's entry as of `s` or later, so it holds the tombstone (or a newer state)
 * and its merge hides every older write to the key; any message it composed
 * before holding it has a lower `seq` than the message that carried its ack
 * (merging the tombstone moved its stream on), so it is dropped as stale. So
 * no live member can bring the key back. This needs every message that carries
 * CRDT entries from a peer (anti-entropy replies included) to pass
 * {@link DeltaTracker.receive} first, and `liveMembers` to name every member
 * that may still hold state. A member that was *not* live
 * during a GC may still hold older writes: it is marked excluded, and every
 * message from it is dropped from then on (it must rejoin under a new node id
 * with an empty state).
 *
 * @packageDocumentation
 */
import { DWCPError, invalidArg } from "../errors.js";
import { checkNodeId } from "./hlc.js";

/** Carried by every sync message between two replicas. */
export interface SyncHeader {
  /** The sender's stream position: its payload, if any, is its state as of this. */
  readonly seq: number;
  /** The highest `seq` of the receiver's stream that the sender merged completely (0: none). */
  readonly ack: number;
}

/** What to send a peer, from {@link DeltaTracker.plan}. */
export type DeltaPlan =
  /** The peer has acked this replica's whole stream: send a header only. */
  | { readonly kind: "none"; readonly seq: number }
  /**
   * The current value of these parts, by key (the LWW-map's `deltaForParts(parts)`).
   * May hold no parts (all those changed came from the peer itself): send it
   * anyway, empty, so the peer acks `seq`.
   */
  | { readonly kind: "delta"; readonly seq: number; readonly parts: ReadonlyMap<string, readonly string[]> }
  /** The whole state (the peer is unknown or too far behind). */
  | { readonly kind: "full"; readonly seq: number };

/** A CRDT whose tombstones the tracker can collect (the LWW-map). */
export interface GcTarget {
  /** Keys that carry a tombstone. */
  tombstones(): Iterable<string>;
  /** Forgets the tombstone of `key` (and the key, when nothing else is left); true when it had one. */
  dropTombstone(key: string): boolean;
  /** The parts `key` holds now (none once it is gone): the tracker forgets the others. */
  partsOf(key: string): Iterable<string>;
}

/** Options of a {@link DeltaTracker}. */
export interface DeltaTrackerOptions {
  /** Peers tracked at once (a peer can be named by anyone). @default 1024 */
  maxPeers?: number;
  /** An interval of more changed parts than this is sent as the full state instead. @default 10000 */
  maxDeltaKeys?: number;
}

/** One change in the log: a part, the seq of the change, and the peer it was merged from. */
interface LogItem {
  key: string;
  part: string;
  seq: number;
  /** The tracked state of the peer the value came from (it holds it); undefined for a local write. */
  src: PeerState | undefined;
}

interface PeerState {
  /** Highest seq of our stream the peer merged completely, once known. */
  acked: number | undefined;
  /** Highest seq of the peer's stream seen in any header (the FIFO guard). */
  seen: number;
  /** Highest seq of the peer's stream we merged completely (what we ack). */
  merged: number;
}

/** Tracks one replica's changes and what each peer has of them. */
export class DeltaTracker {
  /** This replica's node id (ignored among the live members). */
  readonly self: string;
  readonly #maxPeers: number;
  readonly #maxDeltaKeys: number;
  #seq = 0;
  /** Key → part → seq of its last change. */
  readonly #last = new Map<string, Map<string, number>>();
  /** Parts tracked (the sum of `#last`'s sizes). */
  #parts = 0;
  /** Changes in seq order; an item is current when `#last` still has its seq. */
  #log: LogItem[] = [];
  readonly #peers = new Map<string, PeerState>();
  readonly #excluded = new Set<string>();

  constructor(self: string, options: DeltaTrackerOptions = {}) {
    this.self = checkNodeId(self, "self");
    this.#maxPeers = options.maxPeers ?? 1024;
    this.#maxDeltaKeys = options.maxDeltaKeys ?? 10_000;
    if (!(this.#maxPeers >= 1)) throw invalidArg("maxPeers", "a number ≥ 1", this.#maxPeers);
    if (!(this.#maxDeltaKeys >= 0)) throw invalidArg("maxDeltaKeys", "a number ≥ 0", this.#maxDeltaKeys);
  }

  /** This replica's stream position: the number of changes so far. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Records one change of the replica: the `[key, part]` pairs it touched (a
   * local write's `lwwParts(delta)`, or a merge's `parts`). Returns the new
   * position (unchanged when nothing was touched).
   *
   * `from` names the peer a merge's parts came from (the peer whose message
   * passed {@link DeltaTracker.receive}); until they change again, plans for
   * that peer leave them out. Pass it only when each listed part now holds
   * exactly the value the peer sent, as the LWW-map's merge `parts` do (a part
   * changes only when the incoming value wins); not for a CRDT shipped whole
   * whose join mixes both sides. A peer not tracked yet gets no mark.
   */
  touch(changes: Iterable<readonly [key: string, part: string]>, from?: string): number {
    const src = from === undefined ? undefined : this.#peers.get(from);
    let bumped = false;
    for (const [key, part] of changes) {
      if (!bumped) {
        this.#seq++;
        bumped = true;
      }
      let parts = this.#last.get(key);
      if (!parts) {
        parts = new Map();
        this.#last.set(key, parts);
      }
      const prev = parts.get(part);
      // Listed twice in one change: one log item is enough (and keeps plans free of duplicates).
      if (prev === this.#seq) continue;
      if (prev === undefined) this.#parts++;
      parts.set(part, this.#seq);
      this.#log.push({ key, part, seq: this.#seq, src });
    }
    if (this.#log.length > 2 * this.#parts + 64) this.#compact();
    return this.#seq;
  }

  /** Keeps only the current log items (one per part), so the log stays within twice their number. */
  #compact(): void {
    this.#log = this.#log.filter((x) => this.#last.get(x.key)?.get(x.part) === x.seq);
  }

  /** The seq of the last change of any part of `key`, if tracked. */
  #keySeq(key: string): number | undefined {
    const parts = this.#last.get(key);
    if (!parts) return undefined;
    let s = 0;
    for (const v of parts.values()) s = Math.max(s, v);
    return s;
  }

  #peer(peer: string, create: boolean): PeerState | undefined {
    let p = this.#peers.get(peer);
    if (!p && create) {
      checkNodeId(peer, "peer");
      if (this.#peers.size >= this.#maxPeers)
        throw new DWCPError("ERR_RESOURCE_LIMIT", `tracking its limit of ${this.#maxPeers} peers`);
      p = { acked: undefined, seen: 0, merged: 0 };
      this.#peers.set(peer, p);
    }
    return p;
  }

  /**
   * What to send `peer` now: the parts changed after its ack, except those
   * whose last change was a merge from `peer` itself (possibly none: send the
   * empty delta so the peer acks), or the full state.
   */
  plan(peer: string): DeltaPlan {
    const p = this.#peers.get(peer);
    const acked = p?.acked;
    if (acked === undefined) return { kind: "full", seq: this.#seq };
    if (acked >= this.#seq) return { kind: "none", seq: this.#seq };
    // First change after the ack, by binary search over the seq-ordered log.
    let lo = 0;
    let hi = this.#log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#log[mid]!.seq <= acked) lo = mid + 1;
      else hi = mid;
    }
    const parts = new Map<string, string[]>();
    let n = 0;
    for (let i = lo; i < this.#log.length; i++) {
      const { key, part, seq, src } = this.#log[i]!;
      if (this.#last.get(key)?.get(part) !== seq) continue;
      // The peer sent this value: it holds it (or a later one).
      if (src === p) continue;
      if (++n > this.#maxDeltaKeys) return { kind: "full", seq: this.#seq };
      let list = parts.get(key);
      if (!list) {
        list = [];
        parts.set(key, list);
      }
      list.push(part);
    }
    return { kind: "delta", seq: this.#seq, parts };
  }

  /** The header of a message to `peer`. */
  header(peer: string): SyncHeader {
    return { seq: this.#seq, ack: this.#peers.get(peer)?.merged ?? 0 };
  }

  /**
   * Takes the header of a message from `peer`. Returns false when the message
   * must be dropped whole (payload and ack): stale (a lower `seq` than one
   * already seen from the peer) or from an excluded peer.
   *
   * @throws DWCPError `ERR_PROTOCOL` when the peer acks a position this replica never reached,
   *   or a header field is not an integer ≥ 0; `ERR_RESOURCE_LIMIT` at the peer limit
   */
  receive(peer: string, header: SyncHeader): boolean {
    if (this.#excluded.has(peer)) return false;
    const { seq, ack } = header;
    if (!Number.isSafeInteger(seq) || seq < 0 || !Number.isSafeInteger(ack) || ack < 0)
      throw new DWCPError("ERR_PROTOCOL", "sync header positions must be integers ≥ 0");
    if (ack > this.#seq)
      throw new DWCPError("ERR_PROTOCOL", `peer acks ${ack}, beyond this replica's ${this.#seq}`);
    const p = this.#peer(peer, true)!;
    if (seq < p.seen) return false;
    p.seen = seq;
    if (ack > (p.acked ?? -1)) p.acked = ack;
    return true;
  }

  /**
   * Records that the payload of `peer`'s message at `seq` was merged; only a
   * `complete` merge (nothing refused) moves the ack this replica sends back.
   */
  merged(peer: string, seq: number, complete: boolean): void {
    const p = this.#peer(peer, true)!;
    if (complete && seq > p.merged) p.merged = seq;
  }

  /** Highest seq of this replica's stream that `peer` has acked, if it has acked anything. */
  acked(peer: string): number | undefined {
    return this.#peers.get(peer)?.acked;
  }

  /** True when messages from `peer` are dropped for good (it missed a GC; see the module notes). */
  isExcluded(peer: string): boolean {
    return this.#excluded.has(peer);
  }

  /** Forgets `peer` (it left); an exclusion stays. */
  forget(peer: string): void {
    this.#peers.delete(peer);
  }

  /** The position every live member (other than this replica) has acked: the causally stable prefix. */
  stableSeq(liveMembers: Iterable<string>): number {
    let s = this.#seq;
    for (const m of liveMembers) {
      if (m === this.self) continue;
      s = Math.min(s, this.#peers.get(m)?.acked ?? 0);
    }
    return s;
  }

  /**
   * Drops the tombstones of `target` whose key last changed within the stable
   * prefix of `liveMembers`; returns their keys. Known peers outside
   * `liveMembers` that had not acked those changes are excluded from then on.
   */
  gc(liveMembers: Iterable<string>, target: GcTarget): string[] {
    const live = new Set(liveMembers);
    const stable = this.stableSeq(live);
    const dropped: string[] = [];
    let newest = 0;
    for (const key of [...target.tombstones()]) {
      const s = this.#keySeq(key);
      // A tombstone the tracker never saw change has no position to test: keep it.
      if (s === undefined || s > stable) continue;
      if (!target.dropTombstone(key)) continue;
      dropped.push(key);
      newest = Math.max(newest, s);
      // Forget the parts the key no longer holds (fields its tombstone hid, the tombstone itself).
      const parts = this.#last.get(key)!;
      const held = new Set(target.partsOf(key));
      for (const part of [...parts.keys()])
        if (!held.has(part)) {
          parts.delete(part);
          this.#parts--;
        }
      if (parts.size === 0) this.#last.delete(key);
    }
    if (dropped.length === 0) return dropped;
    for (const [peer, p] of this.#peers) {
      if (live.has(peer) || peer === this.self || (p.acked ?? 0) >= newest) continue;
      this.#excluded.add(peer);
      this.#peers.delete(peer);
      // Exclusions are bounded like peers; the oldest goes first.
      if (this.#excluded.size > this.#maxPeers) this.#excluded.delete(this.#excluded.values().next().value!);
    }
    return dropped;
  }
}
