/**
 * Anti-entropy between two replicas over their {@link MerkleTree}s, sans-IO:
 * the caller hands in the bytes a peer sent ({@link AntiEntropy.receive}) and
 * ships the bytes {@link AntiEntropyOptions.send} gives it; the clock and
 * randomness come from the {@link Env}.
 *
 * One exchange, driven by its initiator (one request outstanding at a time, so
 * the responder keeps no state for it and a peer cannot make it hold any):
 *
 * 1. `open` carries the tree's shape and root. The responder answers `in-sync`
 *    when its root is equal, else `children` with the hashes under its root.
 * 2. The initiator compares them with its own and asks, with `query`, for the
 *    children of every differing node of the next level (many subtrees in one
 *    message), down to the leaves.
 * 3. For the differing leaves it asks, with `fetch`, for the responder's
 *    (key, digest) entries; `entries` answers in key order, in chunks, and the
 *    initiator compares each chunk with its own entries of the same key range.
 * 4. The result: `push`, the keys the peer lacks or holds another version of
 *    (the caller sends those entries), and `pull`, the keys the peer holds and
 *    this replica lacks or holds another version of. A closing `pull` message
 *    asks the peer for them ({@link AntiEntropyOptions.onPullRequest} on its side).
 *
 * Wire format of a message (big-endian; str16 = u16 length ‖ UTF-8):
 *
 * ```
 * version u8 = 1 | kind u8 | exchange u32 | seq u32 | body
 * 1 open      leafBits u8 | fanoutBits u8 | root 32
 * 2 in-sync   -
 * 3 query     level u8 | count u16 | index u32 × count
 * 4 children  fanout u16 | count u16 | hash 32 × (count × fanout)
 * 5 fetch     count u16 | (leaf u32 | hasAfter u8 | [after str16]) × count
 * 6 entries   count u16 | (more u8 | n u16 | (key str16 | digest 32) × n) × count
 * 7 pull      count u16 | key str16 × count
 * 8 refuse    reason u8 (1: another tree shape)
 * ```
 *
 * Every wait has a timeout on the Env's clock, and the whole exchange a
 * deadline: a peer that stalls costs the exchange (`ERR_TIMEOUT`) and nothing
 * more. Every count is checked against a cap before anything is read, and every
 * key the peer names is checked to belong where it says it does.
 */

import { bytesEqual, Reader, Writer } from "../consensus/bft/codec.js";
import type { Env, Timer } from "../env/index.js";
import { DWCPError } from "../errors.js";
import {
  bucketOf,
  checkKey,
  compareKeys,
  DIGEST_BYTES,
  type LeafEntry,
  MAX_KEY_BYTES,
  type MerkleTree,
} from "./merkle.js";

/** Largest anti-entropy message accepted, bytes. */
export const MAX_AE_MESSAGE_BYTES = 1 << 20;
/** Most hashes one `children` message may carry (and so one `query` may ask for). */
export const MAX_NODES_PER_MESSAGE = 4096;
/** Most leaves one `fetch` may ask for. */
export const MAX_LEAVES_PER_FETCH = 1024;
/** Most keys one `entries` or `pull` message may carry. */
export const MAX_KEYS_PER_MESSAGE = 4096;

const VERSION = 1;
const HEADER = 1 + 1 + 4 + 4;
/** Refusal reason: the peers' trees have different shapes. */
export const REFUSE_SHAPE = 1;

const KIND = Object.freeze({
  open: 1,
  "in-sync": 2,
  query: 3,
  children: 4,
  fetch: 5,
  entries: 6,
  pull: 7,
  refuse: 8,
} as const);
const KIND_NAME = [
  undefined,
  "open",
  "in-sync",
  "query",
  "children",
  "fetch",
  "entries",
  "pull",
  "refuse",
] as const;

const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** Fields of every message: the exchange it belongs to and the request it is or answers. */
interface Header {
  /** The exchange's id, chosen at random by its initiator. */
  readonly xid: number;
  /** The request's number within the exchange (an answer repeats it). */
  readonly seq: number;
}

/** One leaf asked for by a `fetch`: its entries after `after` (all when absent). */
export interface FetchLeaf {
  readonly leaf: number;
  readonly after?: string | undefined;
}

/** One leaf's chunk in an `entries` answer. */
export interface EntriesChunk {
  /** Entries of the leaf remain after these (ask again from the last key). */
  readonly more: boolean;
  readonly entries: readonly LeafEntry[];
}

/** A decoded anti-entropy message. */
export type AntiEntropyMessage =
  | (Header & {
      readonly kind: "open";
      readonly leafBits: number;
      readonly fanoutBits: number;
      readonly root: Uint8Array;
    })
  | (Header & { readonly kind: "in-sync" })
  | (Header & { readonly kind: "query"; readonly level: number; readonly indices: readonly number[] })
  | (Header & {
      readonly kind: "children";
      readonly fanout: number;
      readonly count: number;
      /** `count × fanout` hashes of 32 bytes, concatenated. */
      readonly hashes: Uint8Array;
    })
  | (Header & { readonly kind: "fetch"; readonly leaves: readonly FetchLeaf[] })
  | (Header & { readonly kind: "entries"; readonly leaves: readonly EntriesChunk[] })
  | (Header & { readonly kind: "pull"; readonly keys: readonly string[] })
  | (Header & { readonly kind: "refuse"; readonly reason: number });

function writeKey(w: Writer, key: string): void {
  const b = Buffer.from(key, "utf8");
  if (b.length > MAX_KEY_BYTES)
    throw new DWCPError("ERR_INVALID_ARG", `key longer than ${MAX_KEY_BYTES} bytes`);
  w.u16(b.length).bytes(b);
}

function readKey(r: Reader, what: string): string {
  const n = r.u16(what);
  if (n > MAX_KEY_BYTES)
    throw new DWCPError("ERR_PROTOCOL", `${what} of ${n} bytes exceeds ${MAX_KEY_BYTES}`);
  try {
    return textDecoder.decode(r.bytes(n, what));
  } catch (e) {
    if (e instanceof DWCPError) throw e;
    throw new DWCPError("ERR_PROTOCOL", `${what} is not valid UTF-8`);
  }
}

/** Encodes `m` (throws `ERR_INVALID_ARG` for a value outside the format's caps). */
export function encodeAntiEntropyMessage(m: AntiEntropyMessage): Uint8Array {
  const w = new Writer().u8(VERSION).u8(KIND[m.kind]).u32(m.xid).u32(m.seq);
  switch (m.kind) {
    case "open":
      w.u8(m.leafBits).u8(m.fanoutBits).bytes(m.root);
      break;
    case "in-sync":
      break;
    case "query":
      if (m.indices.length > MAX_NODES_PER_MESSAGE) throw new DWCPError("ERR_INVALID_ARG", "query too large");
      w.u8(m.level).u16(m.indices.length);
      for (const i of m.indices) w.u32(i);
      break;
    case "children":
      if (m.count * m.fanout > MAX_NODES_PER_MESSAGE || m.hashes.length !== m.count * m.fanout * DIGEST_BYTES)
        throw new DWCPError("ERR_INVALID_ARG", "children of the wrong size");
      w.u16(m.fanout).u16(m.count).bytes(m.hashes);
      break;
    case "fetch":
      if (m.leaves.length > MAX_LEAVES_PER_FETCH) throw new DWCPError("ERR_INVALID_ARG", "fetch too large");
      w.u16(m.leaves.length);
      for (const l of m.leaves) {
        w.u32(l.leaf);
        if (l.after === undefined) w.u8(0);
        else writeKey(w.u8(1), l.after);
      }
      break;
    case "entries": {
      if (m.leaves.length > MAX_LEAVES_PER_FETCH) throw new DWCPError("ERR_INVALID_ARG", "entries too large");
      let total = 0;
      w.u16(m.leaves.length);
      for (const l of m.leaves) {
        total += l.entries.length;
        if (total > MAX_KEYS_PER_MESSAGE) throw new DWCPError("ERR_INVALID_ARG", "entries too large");
        w.u8(l.more ? 1 : 0).u16(l.entries.length);
        for (const e of l.entries) {
          if (e.digest.length !== DIGEST_BYTES) throw new DWCPError("ERR_INVALID_ARG", "digest of 32 bytes");
          writeKey(w, e.key);
          w.bytes(e.digest);
        }
      }
      break;
    }
    case "pull":
      if (m.keys.length > MAX_KEYS_PER_MESSAGE) throw new DWCPError("ERR_INVALID_ARG", "pull too large");
      w.u16(m.keys.length);
      for (const k of m.keys) writeKey(w, k);
      break;
    case "refuse":
      w.u8(m.reason);
      break;
  }
  if (w.length > MAX_AE_MESSAGE_BYTES)
    throw new DWCPError("ERR_MESSAGE_TOO_LARGE", `${w.length} bytes exceed ${MAX_AE_MESSAGE_BYTES}`);
  return w.finish();
}

/**
 * Decodes a message from a peer. Anything malformed (truncated, trailing bytes,
 * unknown version or kind, a count over its cap, a key that is not UTF-8 or too
 * long) is `ERR_PROTOCOL`; nothing is allocated before its length is checked.
 */
export function decodeAntiEntropyMessage(bytes: Uint8Array): AntiEntropyMessage {
  if (!(bytes instanceof Uint8Array)) throw new DWCPError("ERR_PROTOCOL", "a message is bytes");
  if (bytes.length > MAX_AE_MESSAGE_BYTES)
    throw new DWCPError("ERR_PROTOCOL", `${bytes.length} bytes exceed ${MAX_AE_MESSAGE_BYTES}`);
  try {
    return decode(new Reader(bytes));
  } catch (e) {
    if (e instanceof DWCPError && e.code === "ERR_PROTOCOL") throw e;
    throw new DWCPError("ERR_PROTOCOL", `malformed anti-entropy message: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

function decode(r: Reader): AntiEntropyMessage {
  const version = r.u8("version");
  if (version !== VERSION) throw new DWCPError("ERR_PROTOCOL", `unknown anti-entropy version ${version}`);
  const kind = KIND_NAME[r.u8("kind")];
  if (kind === undefined) throw new DWCPError("ERR_PROTOCOL", "unknown anti-entropy message kind");
  const h = { xid: r.u32("exchange"), seq: r.u32("seq") };
  let m: AntiEntropyMessage;
  switch (kind) {
    case "open":
      m = {
        ...h,
        kind,
        leafBits: r.u8("leafBits"),
        fanoutBits: r.u8("fanoutBits"),
        root: r.bytes(DIGEST_BYTES, "root"),
      };
      break;
    case "in-sync":
      m = { ...h, kind };
      break;
    case "query": {
      const level = r.u8("level");
      const n = r.u16("query count");
      if (n > MAX_NODES_PER_MESSAGE) throw new DWCPError("ERR_PROTOCOL", `query of ${n} nodes`);
      if (n * 4 > r.left) throw new DWCPError("ERR_PROTOCOL", "truncated query");
      const indices: number[] = [];
      for (let i = 0; i < n; i++) indices.push(r.u32("index"));
      m = { ...h, kind, level, indices };
      break;
    }
    case "children": {
      const fanout = r.u16("fanout");
      const count = r.u16("children count");
      if (fanout < 2 || fanout > 256 || (fanout & (fanout - 1)) !== 0)
        throw new DWCPError("ERR_PROTOCOL", `fanout ${fanout} is not a power of two in [2, 256]`);
      if (count * fanout > MAX_NODES_PER_MESSAGE)
        throw new DWCPError("ERR_PROTOCOL", `${count * fanout} hashes exceed ${MAX_NODES_PER_MESSAGE}`);
      m = { ...h, kind, fanout, count, hashes: r.bytes(count * fanout * DIGEST_BYTES, "hashes") };
      break;
    }
    case "fetch": {
      const n = r.u16("fetch count");
      if (n > MAX_LEAVES_PER_FETCH) throw new DWCPError("ERR_PROTOCOL", `fetch of ${n} leaves`);
      const leaves: FetchLeaf[] = [];
      for (let i = 0; i < n; i++) {
        const leaf = r.u32("leaf");
        const has = r.u8("after flag");
        if (has > 1) throw new DWCPError("ERR_PROTOCOL", "bad after flag");
        leaves.push(has ? { leaf, after: readKey(r, "after key") } : { leaf });
      }
      m = { ...h, kind, leaves };
      break;
    }
    case "entries": {
      const n = r.u16("entries count");
      if (n > MAX_LEAVES_PER_FETCH) throw new DWCPError("ERR_PROTOCOL", `entries of ${n} leaves`);
      const leaves: EntriesChunk[] = [];
      let total = 0;
      for (let i = 0; i < n; i++) {
        const more = r.u8("more flag");
        if (more > 1) throw new DWCPError("ERR_PROTOCOL", "bad more flag");
        const k = r.u16("entry count");
        total += k;
        if (total > MAX_KEYS_PER_MESSAGE)
          throw new DWCPError("ERR_PROTOCOL", `more than ${MAX_KEYS_PER_MESSAGE} entries`);
        // Each entry takes at least 2 + 32 bytes: a count the bytes cannot hold is refused before the loop.
        if (k * (2 + DIGEST_BYTES) > r.left) throw new DWCPError("ERR_PROTOCOL", "truncated entries");
        const entries: LeafEntry[] = [];
        for (let j = 0; j < k; j++)
          entries.push({ key: readKey(r, "key"), digest: r.bytes(DIGEST_BYTES, "digest") });
        leaves.push({ more: more === 1, entries });
      }
      m = { ...h, kind, leaves };
      break;
    }
    case "pull": {
      const n = r.u16("pull count");
      if (n > MAX_KEYS_PER_MESSAGE) throw new DWCPError("ERR_PROTOCOL", `pull of ${n} keys`);
      if (n * 2 > r.left) throw new DWCPError("ERR_PROTOCOL", "truncated pull");
      const keys: string[] = [];
      for (let i = 0; i < n; i++) keys.push(readKey(r, "key"));
      m = { ...h, kind, keys };
      break;
    }
    case "refuse":
      m = { ...h, kind, reason: r.u8("reason") };
      break;
  }
  r.end(`anti-entropy ${kind}`);
  return m;
}

/** What one exchange found, handed to {@link AntiEntropyOptions.onResult}. */
export interface ExchangeResult {
  /** The peer. */
  readonly peer: string;
  /** The roots were equal: nothing to do. */
  readonly inSync: boolean;
  /** Keys the peer lacks or holds another version of: send it these entries. */
  readonly push: readonly string[];
  /** Keys the peer holds that this replica lacks or holds another version of (asked for by a `pull` message). */
  readonly pull: readonly string[];
  /** False when the exchange stopped at {@link AntiEntropyOptions.maxDiffKeys}: the next round finds the rest. */
  readonly complete: boolean;
  /** Messages sent and received. */
  readonly messages: number;
  /** Bytes sent and received (messages as encoded, without transport framing). */
  readonly bytes: number;
  /** Request/answer round trips. */
  readonly roundTrips: number;
  /** Milliseconds on the Env's clock from start to end. */
  readonly durationMs: number;
  /** Why the exchange failed (`ERR_TIMEOUT`, `ERR_PROTOCOL`, `ERR_CLOSED`); the lists are then empty. */
  readonly error?: DWCPError;
}

/** Options of an {@link AntiEntropy}. */
export interface AntiEntropyOptions {
  /** Time and randomness. */
  readonly env: Env;
  /** This replica's tree (kept current by the caller's `touch`). */
  readonly tree: MerkleTree;
  /** Hands an encoded message to the transport for `to`. */
  readonly send: (to: string, bytes: Uint8Array) => void;
  /** An exchange this replica started has ended (found, failed or timed out). */
  readonly onResult?: (result: ExchangeResult) => void;
  /** A peer asked for the entries of `keys` (each present here when asked): send them to it. */
  readonly onPullRequest?: (peer: string, keys: readonly string[]) => void;
  /** How long to wait for each answer, ms. @default 2000 */
  readonly requestTimeoutMs?: number;
  /** How long one exchange may take in all, ms. @default 30_000 */
  readonly exchangeTimeoutMs?: number;
  /** Hashes per `children` answer this side asks for at most (≤ {@link MAX_NODES_PER_MESSAGE}). @default 4096 */
  readonly maxNodesPerMessage?: number;
  /** Keys per `entries` or `pull` message this side sends at most (≤ {@link MAX_KEYS_PER_MESSAGE}). @default 2048 */
  readonly maxKeysPerMessage?: number;
  /** Leaves per `fetch` at most (≤ {@link MAX_LEAVES_PER_FETCH}). @default 256 */
  readonly maxLeavesPerFetch?: number;
  /** Differing keys one exchange collects at most before it stops (the peer can grow `pull`). @default 65_536 */
  readonly maxDiffKeys?: number;
  /** Exchanges this side runs at once at most. @default 8 */
  readonly maxExchanges?: number;
}

/**
 * Counters of an {@link AntiEntropy}. `rejected` counts messages refused, by
 * reason: a `DWCPError` code, `stale` (an answer to no outstanding request: a
 * duplicate or a late one), `unsolicited` (an answer from a peer with no exchange).
 */
export interface AntiEntropyStats {
  started: number;
  completed: number;
  failed: number;
  /** Requests this side answered as a responder. */
  served: number;
  rejected: Record<string, number>;
}

type Pending =
  | { readonly kind: "open" }
  | { readonly kind: "query"; readonly level: number; readonly indices: readonly number[] }
  | { readonly kind: "fetch"; readonly leaves: readonly FetchLeaf[] };

interface Exchange {
  readonly peer: string;
  readonly xid: number;
  readonly startedAt: number;
  seq: number;
  pending: Pending | undefined;
  timer: Timer | undefined;
  readonly deadline: Timer;
  /** Nodes whose children to ask for, lowest level first. */
  readonly nodes: { level: number; index: number }[];
  readonly leaves: FetchLeaf[];
  readonly push: Set<string>;
  readonly pull: Set<string>;
  complete: boolean;
  inSync: boolean;
  messages: number;
  bytes: number;
  roundTrips: number;
}

/**
 * Both roles of anti-entropy for one replica: it starts exchanges with
 * {@link start} and answers the peers' requests from {@link receive}. See the
 * module's description.
 */
export class AntiEntropy {
  readonly #env: Env;
  readonly #tree: MerkleTree;
  readonly #send: (to: string, bytes: Uint8Array) => void;
  readonly #onResult: ((r: ExchangeResult) => void) | undefined;
  readonly #onPull: ((peer: string, keys: readonly string[]) => void) | undefined;
  readonly #requestTimeoutMs: number;
  readonly #exchangeTimeoutMs: number;
  readonly #parentsPerQuery: number;
  readonly #keysPerMessage: number;
  readonly #leavesPerFetch: number;
  readonly #maxDiffKeys: number;
  readonly #maxExchanges: number;
  readonly #exchanges = new Map<string, Exchange>();
  readonly #stats: AntiEntropyStats = { started: 0, completed: 0, failed: 0, served: 0, rejected: {} };
  #closed = false;

  constructor(o: AntiEntropyOptions) {
    this.#env = o.env;
    this.#tree = o.tree;
    this.#send = o.send;
    this.#onResult = o.onResult;
    this.#onPull = o.onPullRequest;
    this.#requestTimeoutMs = positive(o.requestTimeoutMs ?? 2000, "requestTimeoutMs");
    this.#exchangeTimeoutMs = positive(o.exchangeTimeoutMs ?? 30_000, "exchangeTimeoutMs");
    const nodes = capped(
      o.maxNodesPerMessage ?? MAX_NODES_PER_MESSAGE,
      MAX_NODES_PER_MESSAGE,
      "maxNodesPerMessage",
    );
    this.#parentsPerQuery = Math.max(1, Math.floor(nodes / this.#tree.fanout));
    this.#keysPerMessage = capped(o.maxKeysPerMessage ?? 2048, MAX_KEYS_PER_MESSAGE, "maxKeysPerMessage");
    this.#leavesPerFetch = capped(o.maxLeavesPerFetch ?? 256, MAX_LEAVES_PER_FETCH, "maxLeavesPerFetch");
    this.#maxDiffKeys = capped(o.maxDiffKeys ?? 65_536, Number.MAX_SAFE_INTEGER, "maxDiffKeys");
    this.#maxExchanges = capped(o.maxExchanges ?? 8, 1 << 16, "maxExchanges");
  }

  /** Exchanges in progress (started here, not yet ended). */
  get active(): number {
    return this.#exchanges.size;
  }

  /** A copy of the counters. */
  stats(): AntiEntropyStats {
    return { ...this.#stats, rejected: { ...this.#stats.rejected } };
  }

  /**
   * Starts an exchange with `peer`. False (and nothing sent) when one with it is
   * in progress, {@link AntiEntropyOptions.maxExchanges} are, or this side is closed.
   */
  start(peer: string): boolean {
    if (this.#closed || this.#exchanges.has(peer) || this.#exchanges.size >= this.#maxExchanges) return false;
    const xid = this.#env.random.int(0x1_0000_0000) >>> 0;
    const ex: Exchange = {
      peer,
      xid,
      startedAt: this.#env.clock.now(),
      seq: 0,
      pending: undefined,
      timer: undefined,
      deadline: this.#env.clock.setTimeout(
        () =>
          this.#fail(
            ex,
            new DWCPError("ERR_TIMEOUT", `anti-entropy with ${peer} took over ${this.#exchangeTimeoutMs} ms`),
          ),
        this.#exchangeTimeoutMs,
      ),
      nodes: [],
      leaves: [],
      push: new Set(),
      pull: new Set(),
      complete: true,
      inSync: false,
      messages: 0,
      bytes: 0,
      roundTrips: 0,
    };
    ex.deadline.unref();
    this.#exchanges.set(peer, ex);
    this.#stats.started++;
    const t = this.#tree;
    this.#request(
      ex,
      { kind: "open" },
      { kind: "open", xid, seq: 0, leafBits: t.leafBits, fanoutBits: t.fanoutBits, root: t.root() },
    );
    return true;
  }

  /** Ends every exchange in progress (`ERR_CLOSED`) and ignores whatever comes after. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const ex of [...this.#exchanges.values()])
      this.#fail(ex, new DWCPError("ERR_CLOSED", "anti-entropy closed"));
  }

  /** A message from `from` (as the transport names it). Never throws: what is refused is counted. */
  receive(from: string, bytes: Uint8Array): void {
    if (this.#closed) return;
    let m: AntiEntropyMessage;
    try {
      m = decodeAntiEntropyMessage(bytes);
    } catch (e) {
      const err = asError(e);
      this.#reject(err.code);
      // Garbage from a peer this side is in an exchange with ends that exchange: its answers cannot be trusted.
      const ex = this.#exchanges.get(from);
      if (ex) this.#fail(ex, err);
      return;
    }
    try {
      switch (m.kind) {
        case "open":
        case "query":
        case "fetch":
        case "pull":
          this.#serve(from, m);
          return;
        default:
          this.#answer(from, m, bytes.length);
      }
    } catch (e) {
      this.#reject(asError(e).code);
    }
  }

  // ---- responder: stateless, one answer per request ----

  #serve(from: string, m: AntiEntropyMessage): void {
    const t = this.#tree;
    const h = { xid: m.xid, seq: m.seq };
    switch (m.kind) {
      case "open":
        this.#stats.served++;
        if (m.leafBits !== t.leafBits || m.fanoutBits !== t.fanoutBits) {
          this.#send(from, encodeAntiEntropyMessage({ ...h, kind: "refuse", reason: REFUSE_SHAPE }));
          return;
        }
        if (bytesEqual(m.root, t.root()))
          this.#send(from, encodeAntiEntropyMessage({ ...h, kind: "in-sync" }));
        else
          this.#send(
            from,
            encodeAntiEntropyMessage({
              ...h,
              kind: "children",
              fanout: t.fanout,
              count: 1,
              hashes: t.childrenBytes(0, 0),
            }),
          );
        return;
      case "query": {
        if (m.level >= t.depth)
          throw new DWCPError("ERR_PROTOCOL", `query at level ${m.level} of a tree of ${t.depth}`);
        const width = 1 << (m.level * t.fanoutBits);
        if (m.indices.length * t.fanout > MAX_NODES_PER_MESSAGE)
          throw new DWCPError("ERR_PROTOCOL", "query asks for too many hashes");
        const hashes = new Uint8Array(m.indices.length * t.fanout * DIGEST_BYTES);
        m.indices.forEach((index, i) => {
          if (index >= width) throw new DWCPError("ERR_PROTOCOL", `node ${index} outside level ${m.level}`);
          hashes.set(t.childrenBytes(m.level, index), i * t.fanout * DIGEST_BYTES);
        });
        this.#stats.served++;
        this.#send(
          from,
          encodeAntiEntropyMessage({
            ...h,
            kind: "children",
            fanout: t.fanout,
            count: m.indices.length,
            hashes,
          }),
        );
        return;
      }
      case "fetch": {
        // A budget of keys and bytes for the whole answer; a leaf left without any says `more`.
        let keys = this.#keysPerMessage;
        let room = MAX_AE_MESSAGE_BYTES - HEADER - 2 - m.leaves.length * 3;
        const leaves: EntriesChunk[] = [];
        for (const l of m.leaves) {
          if (l.leaf >= t.leafCount) throw new DWCPError("ERR_PROTOCOL", `leaf ${l.leaf} outside the tree`);
          const { entries, more } = t.entriesAfter(l.leaf, l.after, keys);
          let n = 0;
          for (const e of entries) {
            const size = 2 + Buffer.byteLength(e.key, "utf8") + DIGEST_BYTES;
            if (size > room) break;
            room -= size;
            n++;
          }
          keys -= n;
          leaves.push({
            more: more || n < entries.length,
            entries: n < entries.length ? entries.slice(0, n) : entries,
          });
        }
        this.#stats.served++;
        this.#send(from, encodeAntiEntropyMessage({ ...h, kind: "entries", leaves }));
        return;
      }
      case "pull": {
        const present = m.keys.filter((k) => t.entry(k) !== undefined);
        this.#stats.served++;
        if (present.length > 0) this.#onPull?.(from, present);
        return;
      }
      default:
        return;
    }
  }

  // ---- initiator ----

  #answer(from: string, m: AntiEntropyMessage, size: number): void {
    const ex = this.#exchanges.get(from);
    if (!ex) {
      this.#reject("unsolicited");
      return;
    }
    if (m.xid !== ex.xid || m.seq !== ex.seq || ex.pending === undefined) {
      this.#reject("stale");
      return;
    }
    const pending = ex.pending;
    ex.pending = undefined;
    this.#env.clock.clearTimeout(ex.timer);
    ex.timer = undefined;
    ex.messages++;
    ex.bytes += size;
    ex.roundTrips++;
    try {
      this.#take(ex, pending, m);
    } catch (e) {
      const err = asError(e);
      this.#reject(err.code);
      this.#fail(ex, err);
      return;
    }
    this.#next(ex);
  }

  #take(ex: Exchange, pending: Pending, m: AntiEntropyMessage): void {
    const t = this.#tree;
    if (m.kind === "refuse")
      throw new DWCPError(
        "ERR_PROTOCOL",
        `${ex.peer} refused anti-entropy (reason ${m.reason}: another tree shape)`,
      );
    if (pending.kind === "open" && m.kind === "in-sync") {
      ex.inSync = true;
      return;
    }
    if (m.kind === "children" && pending.kind !== "fetch") {
      const level = pending.kind === "open" ? 0 : pending.level;
      const indices = pending.kind === "open" ? [0] : pending.indices;
      if (m.fanout !== t.fanout || m.count !== indices.length)
        throw new DWCPError("ERR_PROTOCOL", "children do not answer the request");
      const span = t.fanout * DIGEST_BYTES;
      indices.forEach((parent, i) => {
        const mine = t.childrenBytes(level, parent);
        for (let c = 0; c < t.fanout; c++) {
          const off = c * DIGEST_BYTES;
          const theirs = m.hashes.subarray(i * span + off, i * span + off + DIGEST_BYTES);
          if (bytesEqual(theirs, mine.subarray(off, off + DIGEST_BYTES))) continue;
          const index = parent * t.fanout + c;
          if (level + 1 === t.depth) ex.leaves.push({ leaf: index });
          else ex.nodes.push({ level: level + 1, index });
        }
      });
      return;
    }
    if (m.kind === "entries" && pending.kind === "fetch") {
      if (m.leaves.length !== pending.leaves.length)
        throw new DWCPError("ERR_PROTOCOL", "entries do not answer the request");
      let progress = false;
      m.leaves.forEach((chunk, i) => {
        const asked = pending.leaves[i]!;
        if (this.#compareChunk(ex, asked, chunk)) progress = true;
      });
      if (!progress) throw new DWCPError("ERR_PROTOCOL", "entries made no progress");
      return;
    }
    throw new DWCPError("ERR_PROTOCOL", `a ${m.kind} does not answer a ${pending.kind}`);
  }

  /** Compares one chunk of the peer's leaf with this side's entries of the same key range; true if it advanced. */
  #compareChunk(ex: Exchange, asked: FetchLeaf, chunk: EntriesChunk): boolean {
    const t = this.#tree;
    let prev = asked.after;
    for (const e of chunk.entries) {
      if (prev !== undefined && compareKeys(e.key, prev) <= 0)
        throw new DWCPError("ERR_PROTOCOL", "entries out of key order");
      checkKeyFromPeer(e.key);
      if (bucketOf(e.key, t.leafBits) !== asked.leaf)
        throw new DWCPError("ERR_PROTOCOL", `a key of another leaf in leaf ${asked.leaf}`);
      prev = e.key;
    }
    if (chunk.more && chunk.entries.length === 0) {
      // The answer ran out of room before this leaf: ask again from the same place.
      if (ex.complete) ex.leaves.push(asked);
      return false;
    }
    // The key range this chunk covers: after `asked.after`, up to its last key (to the end when it is the last).
    const upper = chunk.more ? prev : undefined;
    const local = t.entriesAfter(asked.leaf, asked.after, Number.POSITIVE_INFINITY).entries;
    let i = 0;
    let j = 0;
    const theirs = chunk.entries;
    for (;;) {
      const a =
        i < local.length && (upper === undefined || compareKeys(local[i]!.key, upper) <= 0)
          ? local[i]
          : undefined;
      const b = theirs[j];
      if (!a && !b) break;
      const c = !a ? 1 : !b ? -1 : compareKeys(a.key, b.key);
      if (c < 0) {
        this.#diff(ex, ex.push, a!.key);
        i++;
      } else if (c > 0) {
        this.#diff(ex, ex.pull, b!.key);
        j++;
      } else {
        if (!bytesEqual(a!.digest, b!.digest)) {
          this.#diff(ex, ex.push, a!.key);
          this.#diff(ex, ex.pull, b!.key);
        }
        i++;
        j++;
      }
    }
    // Once the diff cap is reached the exchange stops asking: what is left waits for the next round.
    if (chunk.more && ex.complete) ex.leaves.push({ leaf: asked.leaf, after: prev });
    return true;
  }

  #diff(ex: Exchange, set: Set<string>, key: string): void {
    if (!ex.complete) return;
    set.add(key);
    if (ex.push.size + ex.pull.size >= this.#maxDiffKeys) {
      // Enough for one round: stop descending, settle what was found.
      ex.complete = false;
      ex.nodes.length = 0;
      ex.leaves.length = 0;
    }
  }

  /** Sends the next request, or ends the exchange. */
  #next(ex: Exchange): void {
    if (this.#exchanges.get(ex.peer) !== ex) return;
    if (ex.nodes.length > 0) {
      const level = ex.nodes[0]!.level;
      let n = 0;
      while (n < ex.nodes.length && n < this.#parentsPerQuery && ex.nodes[n]!.level === level) n++;
      const indices = ex.nodes.splice(0, n).map((x) => x.index);
      this.#request(
        ex,
        { kind: "query", level, indices },
        { kind: "query", xid: ex.xid, seq: ex.seq + 1, level, indices },
      );
      return;
    }
    if (ex.leaves.length > 0) {
      const leaves = ex.leaves.splice(0, this.#leavesPerFetch);
      this.#request(ex, { kind: "fetch", leaves }, { kind: "fetch", xid: ex.xid, seq: ex.seq + 1, leaves });
      return;
    }
    // Found: ask the peer for the pull keys (no answer expected; a lost one is found again next round).
    const pull = [...ex.pull];
    let seq = ex.seq;
    for (let i = 0; i < pull.length; ) {
      const keys: string[] = [];
      let room = MAX_AE_MESSAGE_BYTES - HEADER - 2;
      while (i < pull.length && keys.length < this.#keysPerMessage) {
        const size = 2 + Buffer.byteLength(pull[i]!, "utf8");
        if (size > room) break;
        room -= size;
        keys.push(pull[i++]!);
      }
      const bytes = encodeAntiEntropyMessage({ kind: "pull", xid: ex.xid, seq: ++seq, keys });
      ex.messages++;
      ex.bytes += bytes.length;
      this.#send(ex.peer, bytes);
    }
    this.#end(ex);
    this.#stats.completed++;
    this.#onResult?.(this.#result(ex, undefined));
  }

  #request(ex: Exchange, pending: Pending, m: AntiEntropyMessage): void {
    const bytes = encodeAntiEntropyMessage(m);
    ex.seq = m.seq;
    ex.pending = pending;
    ex.messages++;
    ex.bytes += bytes.length;
    ex.timer = this.#env.clock.setTimeout(
      () =>
        this.#fail(
          ex,
          new DWCPError("ERR_TIMEOUT", `${ex.peer} did not answer within ${this.#requestTimeoutMs} ms`),
        ),
      this.#requestTimeoutMs,
    );
    ex.timer.unref();
    this.#send(ex.peer, bytes);
  }

  #fail(ex: Exchange, error: DWCPError): void {
    if (this.#exchanges.get(ex.peer) !== ex) return;
    this.#end(ex);
    this.#stats.failed++;
    this.#onResult?.(this.#result(ex, error));
  }

  #end(ex: Exchange): void {
    this.#env.clock.clearTimeout(ex.timer);
    this.#env.clock.clearTimeout(ex.deadline);
    ex.timer = undefined;
    ex.pending = undefined;
    this.#exchanges.delete(ex.peer);
  }

  #result(ex: Exchange, error: DWCPError | undefined): ExchangeResult {
    const base = {
      peer: ex.peer,
      inSync: error === undefined && ex.inSync,
      push: error ? [] : [...ex.push],
      pull: error ? [] : [...ex.pull],
      complete: error === undefined && ex.complete,
      messages: ex.messages,
      bytes: ex.bytes,
      roundTrips: ex.roundTrips,
      durationMs: this.#env.clock.now() - ex.startedAt,
    };
    return error ? { ...base, error } : base;
  }

  #reject(reason: string): void {
    this.#stats.rejected[reason] = (this.#stats.rejected[reason] ?? 0) + 1;
  }
}

/** Options of an {@link AntiEntropyScheduler}. */
export interface AntiEntropySchedulerOptions {
  readonly env: Env;
  /** The peers to choose from (read at every tick: membership changes are seen). */
  readonly peers: () => readonly string[];
  /** Called with the peer chosen at each tick (typically `antiEntropy.start(peer)`). */
  readonly onTick: (peer: string) => void;
  /** Mean interval between ticks, ms. @default 1000 */
  readonly intervalMs?: number;
  /**
   * Each interval is drawn uniformly from `intervalMs × [1 - jitter, 1 + jitter]`,
   * so replicas started together do not stay in step. @default 0.5
   */
  readonly jitter?: number;
}

/** Every T ms (jittered), one random peer for anti-entropy. */
export class AntiEntropyScheduler {
  readonly #env: Env;
  readonly #peers: () => readonly string[];
  readonly #onTick: (peer: string) => void;
  readonly #intervalMs: number;
  readonly #jitter: number;
  #timer: Timer | undefined;

  constructor(o: AntiEntropySchedulerOptions) {
    this.#env = o.env;
    this.#peers = o.peers;
    this.#onTick = o.onTick;
    this.#intervalMs = positive(o.intervalMs ?? 1000, "intervalMs");
    const jitter = o.jitter ?? 0.5;
    if (!(jitter >= 0 && jitter < 1))
      throw new DWCPError("ERR_INVALID_ARG", `jitter must be in [0, 1), not ${jitter}`);
    this.#jitter = jitter;
  }

  /** Whether ticks are scheduled. */
  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Starts ticking (no effect when running). */
  start(): void {
    if (this.#timer === undefined) this.#schedule();
  }

  /** Stops ticking. */
  stop(): void {
    this.#env.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The peer a tick would choose now, or `undefined` when there is none. */
  pick(): string | undefined {
    const peers = this.#peers();
    return peers.length === 0 ? undefined : peers[this.#env.random.int(peers.length)];
  }

  #schedule(): void {
    const delay = this.#intervalMs * (1 - this.#jitter + 2 * this.#jitter * this.#env.random.next());
    this.#timer = this.#env.clock.setTimeout(() => {
      this.#schedule();
      const peer = this.pick();
      if (peer !== undefined) this.#onTick(peer);
    }, delay);
    this.#timer.unref();
  }
}

function checkKeyFromPeer(key: string): void {
  try {
    checkKey(key);
  } catch {
    throw new DWCPError("ERR_PROTOCOL", "a key from the peer is not a valid key");
  }
}

function asError(e: unknown): DWCPError {
  return e instanceof DWCPError ? e : new DWCPError("ERR_PROTOCOL", String(e), { cause: e });
}

function positive(v: number, name: string): number {
  if (!(typeof v === "number" && v > 0 && Number.isFinite(v)))
    throw new DWCPError("ERR_INVALID_ARG", `${name} must be a positive number, not ${v}`);
  return v;
}

function capped(v: number, max: number, name: string): number {
  if (!Number.isInteger(v) || v < 1 || v > max)
    throw new DWCPError("ERR_INVALID_ARG", `${name} must be an integer in [1, ${max}], not ${v}`);
  return v;
}
