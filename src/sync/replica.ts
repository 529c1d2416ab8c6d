/**
 * The sync replica of ASS: one node's replicated LWW map of cluster metadata,
 * sans-IO on an {@link Env}. It ties together the LWW map (`lww-map.ts`), the
 * per-peer delta tracker (`delta-tracker.ts`), Merkle anti-entropy
 * (`merkle.ts`, `anti-entropy.ts`) and, in internet mode, signed envelopes
 * (`signed.ts`). The caller delivers what peers send ({@link SyncReplica.receive})
 * and ships what it hands to `send`; who the peers are is the caller's
 * `peers()` (SWIM's `liveMembers()` in internet mode, a static list otherwise).
 *
 * **Delta push.** Every `pushIntervalMs` (default 200 ms, ±25 % jitter) the
 * replica sends each peer the tracker's plan: the current value of every part
 * changed since the peer's ack (the whole state to a peer that never acked), in
 * one `delta` frame with the tracker's header; a peer owed only an ack gets an
 * `ack` frame. A plan already sent is not sent again before `retransmitMs`
 * (default 1 s) unless something new joined it. The fan-out is *every* peer
 * (at most `maxPushPerTick` per tick, chosen at random beyond that): with
 * per-peer delta tracking each link must carry each change once anyway (a
 * peer acks only what it received on that link, and tombstone GC needs every
 * member's ack), so a smaller random fan-out would mostly add hops of latency,
 * not save bytes; batching per tick bounds messages to one per peer per tick.
 * The one saving taken: a part whose current value a peer sent here is left out
 * of that peer's plan (echo suppression, `#noteHeld`), which spares the echo
 * to the origin and about half of the relays between peers that heard a
 * change at the same time. The price of the design is still ≈ n² frames'
 * worth of entries per change on a cluster of n (see the report of
 * `scripts/sync-sim.ts`).
 *
 * **Anti-entropy.** Every `antiEntropyIntervalMs` (T, default 1 s, ±50 %
 * jitter) one random peer is compared through the Merkle exchange; keys found
 * different are shipped both ways as `repair` frames: the initiator pushes
 * its entries of them, the responder answers the closing `pull`. A repair
 * carries the tracker header (so the FIFO guard that tombstone GC needs drops a
 * stale one) but is never acked: it holds some keys, not an interval of the
 * stream. Delta push converges on its own once the network delivers; anti-
 * entropy is the backstop for whatever a bug, a cap or a lost ack left behind.
 *
 * **Tombstone GC.** Every `gcIntervalMs` (default 2 s) `tracker.gc(peers())`
 * drops the tombstones every listed peer has acked. Per the tracker's rules,
 * every frame carrying entries passes `tracker.receive` first, and `peers()`
 * must list every member that may still hold state: a known peer left out of
 * it during a GC is excluded for good (it must rejoin under a new id, empty).
 * Replicas collect at different times, so a repair may offer a tombstone
 * already collected here; it is taken only when it hides a field held here
 * (otherwise collection would undo itself forever, see `#mergePayload`).
 *
 * **Internet mode** (`signing`). Granularity: *one envelope per originating
 * write*. A local write (one key: some fields under one timestamp, or a
 * delete) is encoded as an LWW delta and signed by its origin; the replica
 * keeps, for every part it stores (a field or the tombstone of a key), the
 * envelope that carried it, and every replica ships a part by forwarding that
 * envelope unchanged. A relay therefore cannot alter or forge another node's
 * entry: a receiver verifies each envelope against the registered key of its
 * origin, and rejects the envelope whole when any entry in it is stamped by
 * another node id than the origin, before merging anything of it. Signing per
 * write (not per message) is what lets relays forward: a message-level
 * signature would be the relay's, and a receiver could not tell the origin's
 * entries from the relay's inventions. The cost is one envelope (≈ 90 B + the
 * origin id) per shipped write. An envelope whose every entry is already
 * dominated by the local state (a merge would change nothing, and an equal
 * timestamp comes with an equal value) is skipped without verifying: most
 * relayed copies are, and skipping them cannot let a forgery in. No replay
 * guard: merging is idempotent, so a replayed envelope changes nothing (but
 * see "Limits" on GC).
 *
 * **Too far ahead.** Entries stamped more than `maxAheadMs` ahead of the local
 * wall clock are refused (never stored, counted), so the message is not
 * acked and the entry comes again until the local clock has caught up.
 *
 * **Limits and hostility.** `receive` never throws: a frame refused is counted
 * by reason in `stats().rejected` (a `DWCPError` code, `stale`, `closed`, or
 * `origin-mismatch`). Frames are capped at `maxFrameBytes`, envelopes per
 * frame at `maxEnvelopesPerFrame`; nothing is queued per peer (a plan is
 * computed from the tracker when a tick comes), the per-peer state is a few
 * numbers for at most `maxPeers` peers, the peers known to hold a part are at
 * most `maxHoldersPerPart`, and the map has its own limits.
 * Every wait has a timeout on the Env's clock (anti-entropy requests and
 * exchanges; resends after `retransmitMs`). GC assumes members ack honestly:
 * a byzantine member that acks what it does not hold and later replays an old
 * signed write could bring a collected key back.
 *
 * @packageDocumentation
 */
import { createHash, type KeyObject } from "node:crypto";
import { bytesEqual } from "../consensus/bft/codec.js";
import type { Env, Timer } from "../env/index.js";
import { DWCPError, invalidArg } from "../errors.js";
import { AntiEntropy, AntiEntropyScheduler, type ExchangeResult } from "./anti-entropy.js";
import { DeltaTracker, type SyncHeader } from "./delta-tracker.js";
import { checkNodeId, compareHlc, compareUtf8, Hlc, type HlcTimestamp } from "./hlc.js";
import {
  DEFAULT_LWW_LIMITS,
  decodeLwwDelta,
  encodeLwwDelta,
  entryDigest,
  type LwwDelta,
  type LwwEntry,
  type LwwField,
  type LwwLimits,
  LwwMap,
  lwwParts,
} from "./lww-map.js";
import { type MerkleOptions, MerkleTree } from "./merkle.js";
import {
  DEFAULT_MAX_FRAME_BYTES,
  decodeEnvelopeList,
  decodeSyncFrame,
  encodeEnvelopeList,
  encodeSyncFrame,
  type SyncFrame,
} from "./replica-wire.js";
import {
  CONTEXT_DELTA,
  decodeEnvelope,
  EnvelopeSigner,
  type KeyRegistry,
  MAX_ENVELOPE_PAYLOAD,
  verifyEnvelope,
} from "./signed.js";

/** Internet mode: this node's signing key and whom it believes. */
export interface SyncSigning {
  /** This node's Ed25519 private key (its public key must be in every peer's registry under its id). */
  readonly privateKey: KeyObject;
  /** Origin id → public key: envelopes of other origins are refused. */
  readonly registry: KeyRegistry;
  /** The signer's epoch (raise it when the node restarts without its counter). @default 0 */
  readonly epoch?: number;
}

/** Tunables of a {@link SyncReplica}. */
export interface SyncReplicaOptions {
  /** Delta push period, ms (the batch window of local writes). @default 200 */
  readonly pushIntervalMs?: number;
  /** A plan not acked is sent again after this, ms. @default 1000 */
  readonly retransmitMs?: number;
  /** Peers messaged per push tick at most (a random subset beyond it). @default 64 */
  readonly maxPushPerTick?: number;
  /** False: no delta push at all (anti-entropy alone; for tests of the backstop). @default true */
  readonly deltaPush?: boolean;
  /** Anti-entropy period T, ms. @default 1000 */
  readonly antiEntropyIntervalMs?: number;
  /** Each anti-entropy interval is drawn from `T × [1 - jitter, 1 + jitter]`. @default 0.5 */
  readonly antiEntropyJitter?: number;
  /** Timeout of each anti-entropy request, ms (the exchange's deadline is 10 times this). @default 1000 */
  readonly requestTimeoutMs?: number;
  /** Keys one anti-entropy exchange reconciles at most (the rest waits for the next). @default 8192 */
  readonly maxDiffKeys?: number;
  /** Tombstone GC period, ms. @default 2000 */
  readonly gcIntervalMs?: number;
  /** Remote timestamps further ahead of the local wall clock are refused, ms. @default 5000 */
  readonly maxAheadMs?: number;
  /** Peers tracked at most (listed ones and senders). @default 1024 */
  readonly maxPeers?: number;
  /** Largest frame sent or accepted, bytes. @default 16 MiB */
  readonly maxFrameBytes?: number;
  /** Envelopes per internet-mode frame at most. @default 65536 */
  readonly maxEnvelopesPerFrame?: number;
  /** Keys per repair frame at most. @default 512 */
  readonly maxKeysPerRepair?: number;
  /**
   * Leave out of a peer's plan the parts whose current value that peer sent
   * here (it holds them, or newer). @default true
   */
  readonly suppressEchoes?: boolean;
  /** Peers remembered as holding one part's current value, at most. @default 64 */
  readonly maxHoldersPerPart?: number;
  /** Limits of the map. */
  readonly lww?: Partial<LwwLimits>;
  /** Shape of the Merkle tree (every replica of a cluster must use the same). */
  readonly merkle?: MerkleOptions;
  /** Internet mode: sign every local write, verify every remote one. */
  readonly signing?: SyncSigning;
}

/** What a {@link SyncReplica} is built from. */
export interface SyncReplicaConfig {
  /** This node's id (1 to 255 bytes of UTF-8; the tie-breaker of its timestamps and its signing origin). */
  readonly id: string;
  readonly env: Env;
  /** Hands a frame to the transport for peer `to` (fire and forget; loss is expected). */
  readonly send: (to: string, bytes: Uint8Array) => void;
  /** The current live members (self may be listed; it is skipped). */
  readonly peers: () => readonly string[];
  readonly options?: SyncReplicaOptions;
}

/** A change of the visible state of one key, for {@link SyncReplica.onChange}. */
export interface SyncChange {
  readonly key: string;
  /** The key's live fields now, or `undefined` when it is deleted. */
  readonly fields: Readonly<Record<string, Uint8Array>> | undefined;
  /** A local write, or a merge of what `from` sent. */
  readonly origin: "local" | "remote";
  readonly from?: string;
}

/** Counters of a {@link SyncReplica} (a snapshot). */
export interface SyncReplicaStats {
  /** Local writes and deletes. */
  localUpdates: number;
  /** Frames and bytes handed to `send`, and received (before decoding). */
  framesSent: number;
  bytesSent: number;
  framesReceived: number;
  bytesReceived: number;
  /** `bytesSent / localUpdates` (every frame counted, anti-entropy and acks included). */
  bytesPerUpdate: number;
  /** Bytes sent by frame kind. */
  bytesSentByKind: Record<SyncFrame["kind"], number>;
  deltasSent: number;
  deltasReceived: number;
  acksSent: number;
  repairsSent: number;
  repairsReceived: number;
  /** Remote parts (fields, tombstones) merged that changed the state. */
  partsMerged: number;
  /** Parts left out of plans because the peer had sent their current value here. */
  echoesSuppressed: number;
  /** Parts (fields, tombstones) shipped in delta frames, resends included. */
  partsSent: number;
  /** Remote entries refused as stamped too far ahead (sent again later). */
  refusedEntries: number;
  /** Frames or envelopes refused, by reason. */
  rejected: Record<string, number>;
  /** Internet mode: envelopes verified, and skipped as already dominated. */
  envelopesVerified: number;
  envelopesSkipped: number;
  /** Anti-entropy exchanges started here and their outcomes; keys shipped (push) and asked for (pull). */
  antiEntropyStarted: number;
  antiEntropyInSync: number;
  antiEntropyFailed: number;
  antiEntropyPushedKeys: number;
  antiEntropyPulledKeys: number;
  /** Anti-entropy messages refused, by reason (see `AntiEntropyStats.rejected`). */
  antiEntropyRejected: Record<string, number>;
  /** Tombstones dropped by GC. */
  tombstonesCollected: number;
  /** This replica's stream position, and the prefix every listed peer has acked. */
  seq: number;
  stableSeq: number;
  /** Listed peers that have not acked the current position (0: every change is everywhere). */
  unackedPeers: number;
  /** Env-clock time of the last change of the visible or stored state (local or remote). */
  lastChangeAt: number;
  /** Live keys, keys held (tombstone-only ones included), tombstones. */
  keys: number;
  storedKeys: number;
  tombstones: number;
}

interface PeerSend {
  /** The stream position of the last plan sent (data), and when. */
  sentSeq: number;
  sentAt: number;
  /** The ack last sent (-1: none yet). */
  ackSent: number;
  /** A header from the peer has been seen (so it is owed an ack). */
  heard: boolean;
}

const TOMB_PART = "t";

/**
 * One node's replica of the cluster-metadata map: local writes, delta push,
 * anti-entropy, tombstone GC and (internet mode) signed writes. See the module
 * description.
 */
export class SyncReplica {
  /** This node's id. */
  readonly id: string;
  readonly #env: Env;
  readonly #sendFn: (to: string, bytes: Uint8Array) => void;
  readonly #peersFn: () => readonly string[];
  readonly #o: Required<Omit<SyncReplicaOptions, "signing" | "lww" | "merkle">>;
  readonly #hlc: Hlc;
  readonly #map: LwwMap;
  readonly #tracker: DeltaTracker;
  readonly #tree: MerkleTree;
  readonly #ae: AntiEntropy;
  readonly #aeScheduler: AntiEntropyScheduler;
  readonly #signer: EnvelopeSigner | undefined;
  readonly #registry: KeyRegistry | undefined;
  /** Internet mode: key → part → the envelope that carried the stored value. */
  readonly #proofs = new Map<string, Map<string, Uint8Array>>();
  /** Key → part → peers that sent this replica the part's current value (so hold it, or newer). */
  readonly #holders = new Map<string, Map<string, Set<string>>>();
  readonly #peerSend = new Map<string, PeerSend>();
  readonly #listeners = new Set<(c: SyncChange) => void>();
  #pushTimer: Timer | undefined;
  #gcTimer: Timer | undefined;
  #started = false;
  #closed = false;
  #version = 0;
  #digestCache: { version: number; digest: Uint8Array } | undefined;
  readonly #stats: Omit<
    SyncReplicaStats,
    | "bytesPerUpdate"
    | "antiEntropyRejected"
    | "seq"
    | "stableSeq"
    | "unackedPeers"
    | "keys"
    | "storedKeys"
    | "tombstones"
  > = {
    localUpdates: 0,
    framesSent: 0,
    bytesSent: 0,
    framesReceived: 0,
    bytesReceived: 0,
    deltasSent: 0,
    deltasReceived: 0,
    acksSent: 0,
    repairsSent: 0,
    repairsReceived: 0,
    partsMerged: 0,
    echoesSuppressed: 0,
    partsSent: 0,
    refusedEntries: 0,
    rejected: {},
    bytesSentByKind: { delta: 0, ack: 0, ae: 0, repair: 0 },
    envelopesVerified: 0,
    envelopesSkipped: 0,
    antiEntropyStarted: 0,
    antiEntropyInSync: 0,
    antiEntropyFailed: 0,
    antiEntropyPushedKeys: 0,
    antiEntropyPulledKeys: 0,
    tombstonesCollected: 0,
    lastChangeAt: 0,
  };

  constructor(config: SyncReplicaConfig) {
    this.id = checkNodeId(config.id, "id");
    this.#env = config.env;
    this.#sendFn = config.send;
    this.#peersFn = config.peers;
    const o = config.options ?? {};
    this.#o = {
      pushIntervalMs: positive(o.pushIntervalMs ?? 200, "pushIntervalMs"),
      retransmitMs: positive(o.retransmitMs ?? 1000, "retransmitMs"),
      maxPushPerTick: count(o.maxPushPerTick ?? 64, "maxPushPerTick"),
      deltaPush: o.deltaPush ?? true,
      antiEntropyIntervalMs: positive(o.antiEntropyIntervalMs ?? 1000, "antiEntropyIntervalMs"),
      antiEntropyJitter: o.antiEntropyJitter ?? 0.5,
      requestTimeoutMs: positive(o.requestTimeoutMs ?? 1000, "requestTimeoutMs"),
      maxDiffKeys: count(o.maxDiffKeys ?? 8192, "maxDiffKeys"),
      gcIntervalMs: positive(o.gcIntervalMs ?? 2000, "gcIntervalMs"),
      maxAheadMs: o.maxAheadMs ?? 5000,
      maxPeers: count(o.maxPeers ?? 1024, "maxPeers"),
      maxFrameBytes: count(o.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES, "maxFrameBytes"),
      maxEnvelopesPerFrame: count(o.maxEnvelopesPerFrame ?? 65_536, "maxEnvelopesPerFrame"),
      maxKeysPerRepair: count(o.maxKeysPerRepair ?? 512, "maxKeysPerRepair"),
      suppressEchoes: o.suppressEchoes ?? true,
      maxHoldersPerPart: count(o.maxHoldersPerPart ?? 64, "maxHoldersPerPart"),
    };
    this.#hlc = new Hlc(this.#env, this.id, { maxAheadMs: this.#o.maxAheadMs });
    // A frame bounds what one delta may hold; the map's own limits bound the state.
    this.#map = new LwwMap(this.#hlc, {
      maxDeltaBytes: Math.min(this.#o.maxFrameBytes, DEFAULT_LWW_LIMITS.maxDeltaBytes),
      ...o.lww,
    });
    this.#tracker = new DeltaTracker(this.id, { maxPeers: this.#o.maxPeers });
    const map = this.#map;
    this.#tree = new MerkleTree(
      { entryDigest: (k) => map.digest(k), keys: () => map.storedKeys() },
      o.merkle ?? {},
    );
    this.#ae = new AntiEntropy({
      env: this.#env,
      tree: this.#tree,
      send: (to, body) => this.#sendFrame(to, { kind: "ae", body }),
      onResult: (r) => this.#onExchange(r),
      onPullRequest: (peer, keys) => {
        this.#stats.antiEntropyPulledKeys += keys.length;
        this.#repair(peer, keys);
      },
      requestTimeoutMs: this.#o.requestTimeoutMs,
      exchangeTimeoutMs: 10 * this.#o.requestTimeoutMs,
      maxDiffKeys: this.#o.maxDiffKeys,
    });
    this.#aeScheduler = new AntiEntropyScheduler({
      env: this.#env,
      peers: () => this.#peerList(),
      onTick: (peer) => {
        if (this.#ae.start(peer)) this.#stats.antiEntropyStarted++;
      },
      intervalMs: this.#o.antiEntropyIntervalMs,
      jitter: this.#o.antiEntropyJitter,
    });
    if (o.signing) {
      this.#signer = new EnvelopeSigner(this.id, o.signing.privateKey, o.signing.epoch ?? 0);
      this.#registry = o.signing.registry;
    }
  }

  /** True in internet mode (writes signed, remote writes verified). */
  /** The last seq of this replica's own stream (one more per local update batch it ships). */
  get seq(): number {
    return this.#tracker.seq;
  }

  get signed(): boolean {
    return this.#signer !== undefined;
  }

  /** Starts the timers (delta push, anti-entropy, GC). Idempotent. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    if (this.#o.deltaPush) this.#schedulePush();
    this.#aeScheduler.start();
    this.#scheduleGc();
  }

  /** Stops every timer and exchange; frames received afterwards are ignored. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#env.clock.clearTimeout(this.#pushTimer);
    this.#env.clock.clearTimeout(this.#gcTimer);
    this.#aeScheduler.stop();
    this.#ae.close();
  }

  // ---------------------------------------------------------------- the map API

  /** Sets one field of `key`; returns the write's timestamp. */
  set(key: string, field: string, value: Uint8Array): HlcTimestamp {
    return this.setFields(key, { [field]: value });
  }

  /** Sets several fields of `key` under one timestamp (one signed write); returns it. */
  setFields(key: string, fields: Readonly<Record<string, Uint8Array>>): HlcTimestamp {
    this.#checkOpen();
    const d = this.#map.setFields(key, fields);
    this.#local(key, d);
    return d.get(key)!.fields.values().next().value!.ts;
  }

  /** Deletes `key` (a tombstone, collected once every peer has it); returns the delete's timestamp. */
  delete(key: string): HlcTimestamp {
    this.#checkOpen();
    const d = this.#map.delete(key);
    this.#local(key, d);
    return d.get(key)!.tomb!;
  }

  /** The live fields of `key`, or `undefined` (absent or deleted). Values are shared: do not modify. */
  get(key: string): Record<string, Uint8Array> | undefined {
    return this.#map.get(key);
  }

  /** Keys with a live field, in UTF-8 byte order. */
  keys(): string[] {
    return this.#map.keys();
  }

  /** The stored entry of `key` (fields with their timestamps, and the tombstone), if any. */
  entry(key: string): LwwEntry | undefined {
    return this.#map.entry(key);
  }

  /** Calls `listener` on every change of a key's visible state; returns the unsubscribe function. */
  onChange(listener: (c: SyncChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * SHA-256 over the visible state (every live key in byte order with its
   * fields, timestamps and values; tombstones left out, since GC drops them at
   * different times on different replicas): equal on replicas that agree.
   */
  stateDigest(): Uint8Array {
    if (this.#digestCache?.version === this.#version) return this.#digestCache.digest;
    const h = createHash("sha256");
    for (const k of this.#map.keys()) {
      const e = this.#map.entry(k)!;
      h.update(entryDigest(k, { fields: e.fields, tomb: undefined }));
    }
    const digest = new Uint8Array(h.digest());
    this.#digestCache = { version: this.#version, digest };
    return digest;
  }

  /** The Merkle root over every stored entry (tombstones included): what anti-entropy compares. */
  root(): Uint8Array {
    return this.#tree.root();
  }

  /** A snapshot of the counters. */
  stats(): SyncReplicaStats {
    const s = this.#stats;
    const peers = this.#peerList();
    const seq = this.#tracker.seq;
    let unacked = 0;
    for (const p of peers) if ((this.#tracker.acked(p) ?? -1) < seq) unacked++;
    return {
      ...s,
      rejected: { ...s.rejected },
      bytesSentByKind: { ...s.bytesSentByKind },
      antiEntropyRejected: this.#ae.stats().rejected,
      bytesPerUpdate: s.localUpdates === 0 ? 0 : s.bytesSent / s.localUpdates,
      seq,
      stableSeq: this.#tracker.stableSeq(peers),
      unackedPeers: unacked,
      keys: this.#map.keys().length,
      storedKeys: this.#map.size,
      tombstones: this.#map.tombstones().length,
    };
  }

  // ---------------------------------------------------------------- input

  /** A frame from peer `from` (as the transport names it). Never throws: what is refused is counted. */
  receive(from: string, bytes: Uint8Array): void {
    if (this.#closed) {
      this.#reject("closed");
      return;
    }
    try {
      this.#stats.framesReceived++;
      this.#stats.bytesReceived += bytes.length;
      const f = decodeSyncFrame(bytes, this.#o.maxFrameBytes);
      switch (f.kind) {
        case "ae":
          this.#ae.receive(from, f.body);
          return;
        case "ack":
          if (!this.#tracker.receive(from, f.header)) this.#reject("stale");
          else this.#heard(from);
          return;
        case "delta": {
          this.#stats.deltasReceived++;
          if (!this.#tracker.receive(from, f.header)) {
            this.#reject("stale");
            return;
          }
          this.#heard(from);
          const complete = this.#mergePayload(from, f.payload, false);
          this.#tracker.merged(from, f.header.seq, complete);
          return;
        }
        case "repair":
          this.#stats.repairsReceived++;
          if (!this.#tracker.receive(from, f.header)) {
            this.#reject("stale");
            return;
          }
          this.#heard(from);
          // Some keys, not an interval of the stream: merged, never acked.
          this.#mergePayload(from, f.payload, true);
          return;
      }
    } catch (e) {
      this.#reject(e instanceof DWCPError ? e.code : "ERR_PROTOCOL");
    }
  }

  // ---------------------------------------------------------------- internals

  #checkOpen(): void {
    if (this.#closed) throw new DWCPError("ERR_CLOSED", `sync replica ${this.id} is closed`);
  }

  #reject(reason: string): void {
    this.#stats.rejected[reason] = (this.#stats.rejected[reason] ?? 0) + 1;
  }

  #heard(from: string): void {
    const st = this.#peerSend.get(from);
    if (st) st.heard = true;
    else if (this.#peerSend.size < this.#o.maxPeers)
      this.#peerSend.set(from, { sentSeq: -1, sentAt: Number.NEGATIVE_INFINITY, ackSent: -1, heard: true });
  }

  /** The listed peers, self left out, deduplicated, at most `maxPeers`. */
  #peerList(): string[] {
    const out: string[] = [];
    const seen = new Set<string>();
    for (const p of this.#peersFn()) {
      if (p === this.id || seen.has(p)) continue;
      seen.add(p);
      out.push(p);
      if (out.length >= this.#o.maxPeers) break;
    }
    return out;
  }

  #changed(key: string, origin: "local" | "remote", from?: string): void {
    this.#version++;
    this.#stats.lastChangeAt = this.#env.clock.now();
    this.#tree.touch(key);
    if (this.#listeners.size === 0) return;
    const c: SyncChange =
      from === undefined
        ? { key, fields: this.#map.get(key), origin }
        : { key, fields: this.#map.get(key), origin, from };
    for (const l of this.#listeners) {
      try {
        l(c);
      } catch {
        // A listener's failure is its own; the replica's state is already consistent.
      }
    }
  }

  /** Records a local write: tracker, tree, (internet mode) its signed envelope, listeners. */
  #local(key: string, d: LwwDelta): void {
    const parts = lwwParts(d);
    this.#tracker.touch(parts);
    const held = this.#holders.get(key);
    if (held) for (const [, part] of parts) held.delete(part);
    this.#pruneHolders(key);
    if (this.#signer) {
      const envelope = this.#signer.sign(CONTEXT_DELTA, encodeLwwDelta(d));
      const proofs = this.#proofsOf(key);
      for (const [, part] of parts) proofs.set(part, envelope);
      this.#pruneProofs(key);
    }
    this.#stats.localUpdates++;
    this.#changed(key, "local");
  }

  #proofsOf(key: string): Map<string, Uint8Array> {
    let p = this.#proofs.get(key);
    if (!p) {
      p = new Map();
      this.#proofs.set(key, p);
    }
    return p;
  }

  /** Forgets the holders of parts `key` no longer holds. */
  #pruneHolders(key: string): void {
    const h = this.#holders.get(key);
    if (!h) return;
    const held = new Set(this.#map.partsOf(key));
    for (const part of [...h.keys()]) if (!held.has(part)) h.delete(part);
    if (h.size === 0) this.#holders.delete(key);
  }

  /**
   * Records that `from` holds the current value of every part of `delta` that
   * equals what is stored here (same timestamp and value): `from` sent it.
   * Its state only grows (a field hidden by a tombstone is dominated by it, a
   * collected tombstone is one every member held), so a plan to it may leave
   * those parts out and its ack still means it holds them; and it held them
   * before composing the frame that acks, so the FIFO guard GC relies on holds.
   */
  #noteHeld(from: string, delta: LwwDelta): void {
    if (!this.#o.suppressEchoes) return;
    for (const [k, d] of delta) {
      const cur = this.#map.entry(k);
      if (!cur) continue;
      if (d.tomb && cur.tomb && compareHlc(d.tomb, cur.tomb) === 0) this.#addHolder(k, TOMB_PART, from);
      for (const [f, v] of d.fields) {
        const c = cur.fields.get(f);
        if (c && compareHlc(c.ts, v.ts) === 0 && bytesEqual(c.value, v.value))
          this.#addHolder(k, `f${f}`, from);
      }
    }
  }

  #addHolder(key: string, part: string, peer: string): void {
    let h = this.#holders.get(key);
    if (!h) {
      h = new Map();
      this.#holders.set(key, h);
    }
    let set = h.get(part);
    if (!set) {
      set = new Set();
      h.set(part, set);
    }
    if (set.size < this.#o.maxHoldersPerPart) set.add(peer);
  }

  /** `delta` without the parts `peer` is known to hold (see {@link #noteHeld}); the same object when none. */
  #withoutHeld(peer: string, delta: LwwDelta): LwwDelta {
    if (!this.#o.suppressEchoes || this.#holders.size === 0) return delta;
    let out: Map<string, LwwEntry> | undefined;
    for (const [k, e] of delta) {
      const h = this.#holders.get(k);
      if (!h) continue;
      const tombHeld = e.tomb !== undefined && h.get(TOMB_PART)?.has(peer) === true;
      let fields: Map<string, LwwField> | undefined;
      for (const f of e.fields.keys())
        if (h.get(`f${f}`)?.has(peer)) {
          fields ??= new Map(e.fields);
          fields.delete(f);
        }
      if (!tombHeld && !fields) continue;
      out ??= new Map(delta);
      const tomb = tombHeld ? undefined : e.tomb;
      const left = fields ?? e.fields;
      this.#stats.echoesSuppressed += (tombHeld ? 1 : 0) + (e.fields.size - left.size);
      if (!tomb && left.size === 0) out.delete(k);
      else out.set(k, { fields: left, tomb });
    }
    return out ?? delta;
  }

  /** Forgets the envelopes of parts `key` no longer holds (hidden by a delete, collected by GC). */
  #pruneProofs(key: string): void {
    const p = this.#proofs.get(key);
    if (!p) return;
    const held = new Set(this.#map.partsOf(key));
    for (const part of [...p.keys()]) if (!held.has(part)) p.delete(part);
    if (p.size === 0) this.#proofs.delete(key);
  }

  /**
   * Merges a delta or repair payload; true when every entry was merged (nothing
   * refused or rejected). A repair's tombstone that would hide nothing held
   * here is left out: this replica has collected it (or never held what it
   * hides), and taking it back from a peer whose GC has not run yet would undo
   * the collection and start it over, forever when GC timers are out of phase.
   * Nothing is lost: an older write it hides that still travels arrives as a
   * field held here, and the next repair's tombstone then hides something and
   * is taken; delta push (acked, so GC-safe) never leaves a tombstone out.
   */
  #mergePayload(from: string, payload: Uint8Array, repair: boolean): boolean {
    if (!this.#signer) {
      let delta: LwwDelta;
      try {
        delta = decodeLwwDelta(payload, this.#map.limits);
      } catch (e) {
        this.#reject(e instanceof DWCPError ? e.code : "ERR_PROTOCOL");
        return false;
      }
      return this.#apply(from, repair ? this.#unlessCollected(delta) : delta, undefined);
    }
    let list: Uint8Array[];
    try {
      list = decodeEnvelopeList(
        payload,
        this.#o.maxEnvelopesPerFrame,
        Math.min(this.#o.maxFrameBytes, MAX_ENVELOPE_PAYLOAD + 512),
      );
    } catch (e) {
      this.#reject(e instanceof DWCPError ? e.code : "ERR_PROTOCOL");
      return false;
    }
    let complete = true;
    for (const bytes of list) if (!this.#mergeEnvelope(from, bytes, repair)) complete = false;
    return complete;
  }

  /** `delta` without the tombstones that would hide nothing held here (see {@link #mergePayload}). */
  #unlessCollected(delta: LwwDelta): LwwDelta {
    let out: Map<string, LwwEntry> | undefined;
    for (const [k, e] of delta) {
      const tomb = e.tomb;
      if (!tomb) continue;
      const cur = this.#map.entry(k);
      let hides = false;
      if (cur) for (const v of cur.fields.values()) if (compareHlc(v.ts, tomb) <= 0) hides = true;
      if (hides) continue;
      out ??= new Map(delta);
      if (e.fields.size === 0) out.delete(k);
      else out.set(k, { fields: e.fields, tomb: undefined });
    }
    return out ?? delta;
  }

  /** Verifies one envelope and merges it; false when refused in part or whole. */
  #mergeEnvelope(from: string, bytes: Uint8Array, repair: boolean): boolean {
    let delta: LwwDelta;
    try {
      // Decoded before verifying only to see whether it could change anything; nothing is merged yet.
      const unverified = decodeEnvelope(bytes);
      delta = decodeLwwDelta(unverified.payload, this.#map.limits);
      if (repair) delta = this.#unlessCollected(delta);
      if (!stampedBy(delta, unverified.origin)) {
        this.#reject("origin-mismatch");
        return false;
      }
      if (this.#dominated(delta)) {
        this.#stats.envelopesSkipped++;
        this.#noteHeld(from, delta);
        return true;
      }
      verifyEnvelope(bytes, this.#registry!, CONTEXT_DELTA);
      this.#stats.envelopesVerified++;
    } catch (e) {
      this.#reject(e instanceof DWCPError ? e.code : "ERR_PROTOCOL");
      return false;
    }
    return this.#apply(from, delta, bytes);
  }

  /** True when merging `delta` would change nothing here (so its signature need not be checked). */
  #dominated(delta: LwwDelta): boolean {
    for (const [k, d] of delta) {
      const cur = this.#map.entry(k);
      if (!cur) return false;
      if (d.tomb && (!cur.tomb || compareHlc(d.tomb, cur.tomb) > 0)) return false;
      for (const [f, v] of d.fields) {
        if (cur.tomb && compareHlc(v.ts, cur.tomb) <= 0) continue;
        const c = cur.fields.get(f);
        if (!c) return false;
        const order = compareHlc(c.ts, v.ts);
        if (order < 0 || (order === 0 && !bytesEqual(c.value, v.value))) return false;
      }
    }
    return true;
  }

  /** Joins a verified delta; `envelope` (internet mode) becomes the proof of every part it changed. */
  #apply(from: string, delta: LwwDelta, envelope: Uint8Array | undefined): boolean {
    let res: ReturnType<LwwMap["merge"]>;
    try {
      res = this.#map.merge(delta);
    } catch (e) {
      this.#reject(e instanceof DWCPError ? e.code : "ERR_PROTOCOL");
      return false;
    }
    this.#tracker.touch(res.parts);
    this.#stats.partsMerged += res.parts.length;
    this.#stats.refusedEntries += res.refused;
    if (envelope) for (const [k, part] of res.parts) this.#proofsOf(k).set(part, envelope);
    // A new value: nobody is known to hold it yet (from is, just below).
    for (const [k, part] of res.parts) this.#holders.get(k)?.delete(part);
    for (const k of res.changed) {
      if (envelope) this.#pruneProofs(k);
      this.#pruneHolders(k);
      this.#changed(k, "remote", from);
    }
    this.#noteHeld(from, delta);
    return res.refused === 0;
  }

  /** The bytes that ship `delta`: the delta itself, or (internet mode) the envelopes of its parts. */
  #payloadFor(delta: LwwDelta): Uint8Array {
    if (!this.#signer) return encodeLwwDelta(delta);
    const out = new Set<Uint8Array>();
    for (const [k, e] of delta) {
      const p = this.#proofs.get(k);
      if (!p) continue;
      if (e.tomb) {
        const t = p.get(TOMB_PART);
        if (t) out.add(t);
      }
      for (const f of e.fields.keys()) {
        const v = p.get(`f${f}`);
        if (v) out.add(v);
      }
    }
    return encodeEnvelopeList([...out]);
  }

  #sendFrame(to: string, f: SyncFrame): void {
    const bytes = encodeSyncFrame(f);
    if (bytes.length > this.#o.maxFrameBytes) {
      this.#reject("oversized-out");
      return;
    }
    this.#stats.framesSent++;
    this.#stats.bytesSent += bytes.length;
    this.#stats.bytesSentByKind[f.kind] += bytes.length;
    try {
      this.#sendFn(to, bytes);
    } catch {
      // The transport's failure is a lost frame: resends and anti-entropy cover it.
    }
  }

  // ---------------------------------------------------------------- delta push

  #schedulePush(): void {
    const delay = this.#o.pushIntervalMs * (0.75 + 0.5 * this.#env.random.next());
    this.#pushTimer = this.#env.clock.setTimeout(() => {
      if (this.#closed) return;
      this.#schedulePush();
      this.#push();
    }, delay);
    this.#pushTimer.unref();
  }

  /** One push tick: a plan to every peer that has something new or unacked past the resend time, acks to the rest. */
  #push(): void {
    const now = this.#env.clock.now();
    const peers = this.#peerList();
    const listed = new Set(peers);
    // Send state only for listed peers: a sender that is not listed is never pushed to.
    for (const p of [...this.#peerSend.keys()]) if (!listed.has(p)) this.#peerSend.delete(p);
    const seq = this.#tracker.seq;
    const due: { peer: string; data: boolean }[] = [];
    for (const p of peers) {
      let st = this.#peerSend.get(p);
      if (!st) {
        st = { sentSeq: -1, sentAt: Number.NEGATIVE_INFINITY, ackSent: -1, heard: false };
        this.#peerSend.set(p, st);
      }
      const acked = this.#tracker.acked(p);
      const data =
        (acked === undefined || acked < seq) && (seq > st.sentSeq || now - st.sentAt >= this.#o.retransmitMs);
      const ack = st.heard && this.#tracker.header(p).ack > st.ackSent;
      if (data || ack) due.push({ peer: p, data });
    }
    // Beyond the per-tick cap, a random subset (Fisher-Yates prefix); the rest wait a tick.
    const n = Math.min(due.length, this.#o.maxPushPerTick);
    for (let i = 0; i < n; i++) {
      const j = i + this.#env.random.int(due.length - i);
      [due[i], due[j]] = [due[j]!, due[i]!];
    }
    // Peers at the same ack get the same plan: build and encode it once per tick (again only when some of it is left out).
    const plans = new Map<number, { delta: LwwDelta; payload: Uint8Array }>();
    for (let i = 0; i < n; i++) {
      const { peer, data } = due[i]!;
      const st = this.#peerSend.get(peer)!;
      const header: SyncHeader = this.#tracker.header(peer);
      st.ackSent = header.ack;
      if (data) {
        const acked = this.#tracker.acked(peer) ?? -1;
        let base = plans.get(acked);
        if (!base) {
          const plan = this.#tracker.plan(peer);
          const delta =
            plan.kind === "full"
              ? this.#map.state()
              : plan.kind === "delta"
                ? this.#map.deltaForParts(plan.parts)
                : new Map<string, LwwEntry>();
          base = { delta, payload: this.#payloadFor(delta) };
          plans.set(acked, base);
        }
        const mine = this.#withoutHeld(peer, base.delta);
        const payload = mine === base.delta ? base.payload : this.#payloadFor(mine);
        st.sentSeq = seq;
        st.sentAt = now;
        this.#stats.deltasSent++;
        for (const e of mine.values()) this.#stats.partsSent += e.fields.size + (e.tomb ? 1 : 0);
        this.#sendFrame(peer, { kind: "delta", header, payload });
      } else {
        this.#stats.acksSent++;
        this.#sendFrame(peer, { kind: "ack", header });
      }
    }
  }

  // ---------------------------------------------------------------- anti-entropy

  #onExchange(r: ExchangeResult): void {
    if (r.error) {
      this.#stats.antiEntropyFailed++;
      return;
    }
    if (r.inSync) this.#stats.antiEntropyInSync++;
    if (r.push.length > 0) {
      this.#stats.antiEntropyPushedKeys += r.push.length;
      this.#repair(r.peer, r.push);
    }
  }

  /** Ships the current entries of `keys` to `peer` as repair frames. */
  #repair(peer: string, keys: readonly string[]): void {
    if (this.#closed) return;
    const held = keys.filter((k) => this.#map.entry(k) !== undefined).sort(compareUtf8);
    for (let i = 0; i < held.length; i += this.#o.maxKeysPerRepair) {
      const delta = this.#map.deltaFor(held.slice(i, i + this.#o.maxKeysPerRepair));
      this.#stats.repairsSent++;
      this.#sendFrame(peer, {
        kind: "repair",
        header: this.#tracker.header(peer),
        payload: this.#payloadFor(delta),
      });
    }
  }

  // ---------------------------------------------------------------- tombstone GC

  #scheduleGc(): void {
    this.#gcTimer = this.#env.clock.setTimeout(() => {
      if (this.#closed) return;
      this.#scheduleGc();
      this.#gc();
    }, this.#o.gcIntervalMs);
    this.#gcTimer.unref();
  }

  #gc(): void {
    const dropped = this.#tracker.gc(this.#peerList(), this.#map);
    for (const k of dropped) {
      this.#pruneProofs(k);
      this.#pruneHolders(k);
      this.#version++;
      this.#tree.touch(k);
    }
    this.#stats.tombstonesCollected += dropped.length;
  }
}

/** True when every entry of `delta` is stamped by `origin` (a node signs only its own writes). */
function stampedBy(delta: LwwDelta, origin: string): boolean {
  for (const e of delta.values()) {
    if (e.tomb && e.tomb.node !== origin) return false;
    for (const v of e.fields.values()) if (v.ts.node !== origin) return false;
  }
  return true;
}

function positive(v: number, name: string): number {
  if (!(typeof v === "number" && v > 0 && Number.isFinite(v))) throw invalidArg(name, "a positive number", v);
  return v;
}

function count(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 1) throw invalidArg(name, "an integer ≥ 1", v);
  return v;
}
