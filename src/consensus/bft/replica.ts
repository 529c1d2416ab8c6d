/**
 * A BFT replica: two-chain HotStuff (the HotStuff-2 / DiemBFT v4 / Jolteon
 * commit rule) among n = 3f + 1 members, tolerating f byzantine ones.
 *
 * - **Normal case.** The leader of view v proposes a block extending the
 *   highest QC it knows; each replica votes (once per view, under the rules of
 *   safety.ts) and sends the vote to the leader of v + 1, which assembles 2f + 1
 *   votes into a QC and proposes on it. A QC for a block whose parent is of the
 *   directly preceding view commits the parent and its ancestors: two chained
 *   certified views, hence "two-chain".
 * - **View change.** A replica whose view timer expires broadcasts a signed
 *   timeout carrying its highest QC; 2f + 1 timeouts form a TC that moves
 *   everyone to the next view, whose leader proposes on the highest QC the TC's
 *   signers reported. f + 1 timeouts of the current view make a replica time
 *   out at once (at least one of them is honest), so views end together. The
 *   timer doubles while views keep failing, and runs only while there is work
 *   (commands queued or uncommitted, or a peer timing out): an idle cluster
 *   is silent. A leader proposes an empty block only while a block with
 *   commands still waits for the two certified views that commit it.
 * - **Catching up.** A replica that hears a peer from an older view sends it a
 *   signed sync (its highest QC and TC); a replica that meets a QC or a parent
 *   it does not hold fetches the block by digest from its peers in turn, and
 *   walks back until it reaches a block it holds.
 * - **Clients.** Commands are queued, deduplicated by (client, seq), batched
 *   into blocks, and applied to the key-value state machine in commit order;
 *   each height's state hash is reported with its commit.
 * - **Evidence.** Two validly signed, different proposals, votes or timeouts
 *   of one member for one view are reported once, and stored.
 * - **Persistence.** Everything a vote, timeout or proposal depends on is
 *   appended and synced before the message leaves; committed blocks are synced
 *   before they are reported. {@link Replica.open} rebuilds both.
 * - **Hostile input.** Every message is checked for framing, epoch,
 *   configuration, sender and signature before use, its sender must be who the
 *   transport says, and what is buffered for later views is bounded per member
 *   ({@link MAX_VIEWS_AHEAD}). Rejections are counted by reason, never thrown.
 *
 * The core is sans-IO: time from `env.clock`, bytes out through `send`, state
 * through `storage`; the same code runs in the simulator and over sessions.
 */
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import type { Env } from "../../env/index.js";
import type { Storage } from "../../env/storage.js";
import { DWCPError } from "../../errors.js";
import { BlockStore, commandKey } from "./blocks.js";
import { bytesEqual, hex, Reader, Writer } from "./codec.js";
import { EquivocationDetector, type EquivocationKind, type Evidence } from "./evidence.js";
import { Journal } from "./journal.js";
import { type Membership, rawPublicKey } from "./membership.js";
import {
  type Block,
  type Command,
  checkCommand,
  checkHeader,
  commandBytes,
  decodeBlock,
  decodeMessage,
  decodeQC,
  encodeBlock,
  encodeMessage,
  encodeQC,
  genesisDigest,
  genesisQC,
  MAX_MESSAGE_BYTES,
  type Message,
  makeBlock,
  messageSignature,
  type Outgoing,
  type ProposalMessage,
  peekDigest,
  peekHeader,
  type QuorumCertificate,
  type TimeoutCertificate,
  type TimeoutMessage,
  type TimeoutSignature,
  tcHighQcView,
  type VoteMessage,
} from "./messages.js";
import { ViewTimer } from "./pacemaker.js";
import { decodeSafety, encodeSafety, type SafetyState, safeToTimeout, safeToVote } from "./safety.js";
import { type KvResult, KvStateMachine } from "./state-machine.js";
import { BlockFetcher } from "./sync.js";

export type { Evidence } from "./evidence.js";
export type { Command, QuorumCertificate } from "./messages.js";
export { messageView, verifyQC } from "./messages.js";

/** Options of {@link Replica.open}. */
export interface ReplicaOptions {
  /** Time and randomness (the simulator's, or `nodeEnv`). */
  readonly env: Env;
  /** Safety state and committed blocks; synced before a vote, timeout or proposal leaves. */
  readonly storage: Storage;
  readonly membership: Membership;
  /** This replica's member id. */
  readonly id: number;
  /** Its Ed25519 private key (must match the membership's public key of `id`). */
  readonly privateKey: KeyObject;
  /** Hands an encoded message to the transport for member `to` (never called with this replica's own id). */
  readonly send: (to: number, bytes: Uint8Array) => void;
  /** The leader of a view. @default view mod n */
  readonly leaderOf?: (view: number) => number;
  /** The first view timeout, ms; doubles per expiry without progress. @default 1000 */
  readonly baseTimeoutMs?: number;
  /** Cap of the view timeout, ms. @default 60_000 */
  readonly maxTimeoutMs?: number;
  /** Commands per block at most. @default 256 */
  readonly maxBatch?: number;
}

/** A block as committed by one replica, in height order. */
export interface Committed {
  /** 1, 2, 3, … with no gaps per replica. */
  readonly height: number;
  readonly view: number;
  /** SHA-256 of the block's canonical encoding. */
  readonly digest: Uint8Array;
  readonly parent: Uint8Array;
  /** The block's commands that took effect (a (client, seq) already applied is skipped). */
  readonly commands: readonly Command[];
  /** What each of {@link commands} returned (a read's value, `null` when absent). */
  readonly results: readonly KvResult[];
  /** The QC that certifies this block (verifiable with {@link verifyQC}). */
  readonly qc: QuorumCertificate;
  /** The state machine's hash after this height. */
  readonly stateHash: Uint8Array;
}

/**
 * Counters of a {@link Replica}. `rejected` counts refused messages by reason:
 * the `DWCPError` code of a message that does not decode or verify
 * (`ERR_BAD_FRAME`, `ERR_MESSAGE_TOO_LARGE`, `ERR_PROTOCOL`, `ERR_AUTH_FAILED`), or
 * `spoofed` (signed by another member than the transport's sender), `self`
 * (claims this replica's id), `stale` / `ahead` (view outside the window kept),
 * `not-leader` (a proposal from another than the view's leader), `misrouted`
 * (a vote for a view this replica does not lead next), `unsolicited` (a block
 * not asked for), `rate-limited` (fetches or syncs beyond the budget per
 * peer), `duplicate` (a message already taken in), `unjustified` (a proposal
 * whose certificates do not reach its view), `conflicting-commit` (a commit
 * that would fork the committed chain: impossible with at most f byzantine
 * members, refused rather than followed).
 */
export interface ReplicaStats {
  /** Views entered. */
  views: number;
  /** Timeouts this replica sent (its timer's, and joins of f + 1 others'). */
  timeouts: number;
  /** Blocks committed (reported or about to be, once durable). */
  commits: number;
  /** Pieces of equivocation evidence found. */
  evidence: number;
  rejected: Record<string, number>;
}

/** How far ahead of its own view a replica keeps votes and timeouts (per member, per view). */
export const MAX_VIEWS_AHEAD = 64;
/** How far behind its own view it still checks messages for equivocation. */
export const EVIDENCE_VIEWS_BEHIND = 64;
/** Client commands queued at most. */
export const MAX_QUEUED_COMMANDS = 10_000;
/** Blocks served to one peer per second at most. */
export const FETCHES_PER_SECOND = 64;

const SAFETY_LOG = "bft-safety";
const BLOCKS_LOG = "bft-blocks";
const CHAIN_LOG = "bft-chain";
const EVIDENCE_LOG = "bft-evidence";
const QC_CACHE = 256;
const SEEN_KEPT = 4096;
// Writes between two snapshots of a compacting log, and evidence records kept for the snapshot.
const JOURNAL_LIMIT = 1024;
const EVIDENCE_KEPT = 256;
const MAX_QCS_AWAITING = 64;
// Room left in a proposal for its header, QC and TC besides the commands.
const BLOCK_OVERHEAD = 16 * 1024;

/** A BFT replica; see the module's description. */
export class Replica {
  readonly #o: ReplicaOptions;
  readonly #m: Membership;
  readonly #id: number;
  readonly #n: number;
  readonly #leaderOf: (view: number) => number;
  readonly #maxBatch: number;
  readonly #s: SafetyState;
  readonly #store: BlockStore;
  readonly #sm: KvStateMachine;
  readonly #timer: ViewTimer;
  readonly #fetcher: BlockFetcher;
  readonly #detector = new EquivocationDetector();
  readonly #safetyLog: Journal;
  readonly #blocksLog: Journal;
  readonly #evidenceLog: Journal;
  /** The latest evidence records, what a snapshot of the evidence log keeps. */
  readonly #evidenceRecords: Uint8Array[];
  /** The TC that brought this replica into its current view, if one did (a proposal or timeout carries it). */
  #lastTC: TimeoutCertificate | undefined;
  readonly #votes = new Map<number, Map<number, { digest: string; signature: Uint8Array }>>();
  readonly #timeouts = new Map<number, Map<number, TimeoutSignature>>();
  readonly #qcFormed = new Set<number>();
  readonly #timedOut = new Set<number>();
  /** At most one proposal per leader waiting for its parent. */
  readonly #waiting = new Map<number, ProposalMessage>();
  /** The digest of the proposal considered in each recent view. */
  readonly #proposals = new Map<number, string>();
  readonly #qcsAwaiting = new Map<string, QuorumCertificate>();
  #commitTarget: { block: Block; qc: QuorumCertificate } | undefined;
  readonly #queue = new Map<string, Command>();
  readonly #qcCache = new Map<string, true>();
  readonly #served = new Map<number, { tokens: number; at: number }>();
  readonly #helped = new Map<number, number>();
  readonly #seen = new Set<string>();
  readonly #baseTimeoutMs: number;
  readonly #ready: Committed[] = [];
  #durable = 0;
  #emitted: number;
  readonly #commitFns: ((c: Committed) => void)[] = [];
  readonly #byzantineFns: ((e: Evidence) => void)[] = [];
  #closed = false;
  readonly #stats: ReplicaStats = { views: 0, timeouts: 0, commits: 0, evidence: 0, rejected: {} };

  private constructor(o: ReplicaOptions, s: SafetyState, store: BlockStore, sm: KvStateMachine) {
    this.#o = o;
    this.#m = o.membership;
    this.#id = o.id;
    this.#n = o.membership.members.length;
    this.#leaderOf = o.leaderOf ?? ((v) => v % this.#n);
    this.#maxBatch = o.maxBatch ?? 256;
    this.#baseTimeoutMs = o.baseTimeoutMs ?? 1000;
    this.#s = s;
    this.#store = store;
    this.#sm = sm;
    this.#emitted = store.committedHeight;
    this.#durable = store.committedHeight;
    this.#safetyLog = new Journal(o.storage, SAFETY_LOG, JOURNAL_LIMIT);
    this.#blocksLog = new Journal(o.storage, BLOCKS_LOG, JOURNAL_LIMIT);
    this.#evidenceLog = new Journal(o.storage, EVIDENCE_LOG, JOURNAL_LIMIT);
    this.#evidenceRecords = o.storage.read(EVIDENCE_LOG).slice(-EVIDENCE_KEPT);
    this.#timer = new ViewTimer(o.env.clock, o.baseTimeoutMs ?? 1000, o.maxTimeoutMs ?? 60_000);
    this.#fetcher = new BlockFetcher(o.env.clock, o.id, this.#n, (to, digest) =>
      this.#sendTo(to, this.#sign({ kind: "fetch", view: this.#s.view, digest })),
    );
  }

  /**
   * Opens a replica on `o.storage`, recovering what it voted, proposed and
   * committed there (no amnesia), and starts its view timer.
   */
  static async open(o: ReplicaOptions): Promise<Replica> {
    const m = o.membership;
    if (!Number.isInteger(o.id) || o.id < 0 || o.id >= m.members.length)
      throw new DWCPError("ERR_INVALID_ARG", `id ${o.id} is not a member`);
    if (!bytesEqual(rawPublicKey(createPublicKey(o.privateKey)), rawPublicKey(m.members[o.id]!.publicKey)))
      throw new DWCPError("ERR_INVALID_ARG", `the private key is not member ${o.id}'s`);
    for (const [name, v] of [
      ["baseTimeoutMs", o.baseTimeoutMs ?? 1000],
      ["maxTimeoutMs", o.maxTimeoutMs ?? 60_000],
      ["maxBatch", o.maxBatch ?? 256],
    ] as const)
      if (!(Number.isFinite(v) && v >= 1))
        throw new DWCPError("ERR_INVALID_ARG", `${name} must be at least 1`);

    const records = o.storage.read(SAFETY_LOG);
    const last = records[records.length - 1];
    const s: SafetyState = last
      ? decodeSafety(last)
      : { view: 1, votedView: 0, proposedView: 0, highQC: genesisQC(m) };
    const store = new BlockStore(genesisDigest(m));
    const sm = new KvStateMachine();
    for (const rec of o.storage.read(CHAIN_LOG)) {
      const { block } = decodeChainRecord(m, rec);
      if (store.add(block) === false)
        throw new DWCPError("ERR_PROTOCOL", `the stored chain is broken at height ${block.height}`);
      store.commit(block);
      sm.apply(block.commands);
    }
    // Blocks voted for but not known committed: kept so that a QC on them can still be followed.
    for (const rec of o.storage.read(BLOCKS_LOG)) {
      try {
        store.add(decodeBlock(m, rec));
      } catch {
        // A block of our own log that no longer decodes is refetched if it matters.
      }
    }
    const r = new Replica(o, s, store, sm);
    r.#startView();
    return r;
  }

  /** The view this replica is in. */
  get view(): number {
    return this.#s.view;
  }

  /** Height of the last block reported through {@link onCommit}. */
  get committedHeight(): number {
    return this.#emitted;
  }

  /**
   * Calls `fn` with every committed block, in height order, once it is
   * durable. A reopened replica goes on from the height it recovered
   * ({@link committedHeight}); what it recovered is not reported again.
   */
  onCommit(fn: (c: Committed) => void): void {
    this.#commitFns.push(fn);
  }

  /** Calls `fn` with each piece of equivocation evidence (once per member, view and kind). */
  onByzantine(fn: (e: Evidence) => void): void {
    this.#byzantineFns.push(fn);
  }

  stats(): ReplicaStats {
    return { ...this.#stats, rejected: { ...this.#stats.rejected } };
  }

  /** Stops the timers; later messages are ignored and nothing more is sent. */
  close(): void {
    this.#closed = true;
    this.#timer.stop();
    this.#fetcher.close();
    for (const j of [this.#safetyLog, this.#blocksLog, this.#evidenceLog]) j.close();
  }

  /**
   * Queues a client command for a coming block. A (client, seq) at or below
   * the client's last applied seq, or already queued, is dropped. Clients
   * send each command to every replica: the leader of the moment proposes it.
   * Throws `ERR_INVALID_ARG` for a malformed command, `ERR_RESOURCE_LIMIT` when
   * {@link MAX_QUEUED_COMMANDS} are queued.
   */
  submit(cmd: Command): void {
    checkCommand(cmd);
    if (this.#closed || !this.#sm.isNew(cmd)) return;
    const k = commandKey(cmd.client, cmd.seq);
    if (this.#queue.has(k)) return;
    if (this.#queue.size >= MAX_QUEUED_COMMANDS)
      throw new DWCPError("ERR_RESOURCE_LIMIT", `${MAX_QUEUED_COMMANDS} commands are already queued`);
    this.#queue.set(k, { client: cmd.client, seq: cmd.seq, op: cmd.op.slice() });
    this.#syncTimer();
    this.#tryPropose();
  }

  /** A message from the transport; `from` is the member the transport says sent it. Never throws. */
  receive(from: number, bytes: Uint8Array): void {
    if (this.#closed) return;
    try {
      this.#receive(from, bytes);
    } catch (e) {
      this.#reject(e instanceof DWCPError ? e.code : "ERR_PROTOCOL");
    }
    this.#syncTimer();
  }

  #reject(reason: string): void {
    this.#stats.rejected[reason] = (this.#stats.rejected[reason] ?? 0) + 1;
  }

  #receive(from: number, bytes: Uint8Array): void {
    // Cheap checks first: what fails them costs no signature verification.
    const h = peekHeader(bytes);
    checkHeader(this.#m, h);
    if (h.sender !== from) {
      this.#reject("spoofed");
      return;
    }
    if (h.sender === this.#id) {
      this.#reject("self");
      return;
    }
    const v = this.#s.view;
    if (h.kind === "vote" || h.kind === "timeout" || h.kind === "proposal") {
      // Proposals and timeouts carry certificates that may move this replica far
      // ahead, so only bare votes are bounded above here; all are bounded below.
      if (h.view + EVIDENCE_VIEWS_BEHIND < v) {
        this.#reject("stale");
        this.#helpLagging(from);
        return;
      }
      if (h.kind === "vote" && h.view > v + MAX_VIEWS_AHEAD) {
        this.#reject("ahead");
        return;
      }
      if (h.kind === "vote" && this.#leaderOf(h.view + 1) !== this.#id) {
        this.#reject("misrouted");
        return;
      }
    }
    if (h.kind === "proposal" && this.#leaderOf(h.view) !== h.sender) {
      this.#reject("not-leader");
      return;
    }
    if (h.kind === "block") {
      const d = peekDigest(bytes);
      if (!d || !this.#fetcher.wanted(d)) {
        this.#reject("unsolicited");
        return;
      }
    }
    if ((h.kind === "fetch" || h.kind === "sync") && !this.#takeServeToken(h.sender)) {
      this.#reject("rate-limited");
      return;
    }
    // A proposal, vote or timeout already taken in is not verified again: replaying
    // one costs the replayer, not us. Fetches, blocks and syncs are exempt: they
    // are rate-limited or asked for, and the same one may rightly come again (a
    // block asked for anew, say, after its first copy was dropped as an orphan).
    const replayable = h.kind === "proposal" || h.kind === "vote" || h.kind === "timeout";
    const key = replayable ? createHash("sha256").update(bytes).digest("base64") : undefined;
    if (key !== undefined && this.#seen.has(key)) {
      this.#reject("duplicate");
      // A peer repeating itself from an older view (its timer re-sending a timeout) is stuck there.
      if (h.view < v) this.#helpLagging(from);
      return;
    }
    // Remembered, valid or not (decoding is deterministic), but only within the
    // window kept: one refused now as too far ahead may count later.
    if (key !== undefined && h.view <= v + MAX_VIEWS_AHEAD) {
      if (this.#seen.size >= SEEN_KEPT) this.#seen.delete(this.#seen.keys().next().value!);
      this.#seen.add(key);
    }
    const msg = decodeMessage(this.#m, bytes, (qc) => this.#qcCache.has(qcKey(qc)));
    this.#cacheQCs(msg);
    switch (msg.kind) {
      case "proposal":
        this.#observe("proposal", msg, hex(msg.block.digest));
        this.#onProposal(msg);
        return;
      case "vote":
        this.#observe("vote", msg, hex(msg.digest));
        this.#onVote(msg);
        return;
      case "timeout":
        this.#observe("timeout", msg, `${msg.highQC.view}`);
        this.#onTimeout(msg);
        return;
      case "fetch": {
        const b = this.#store.get(msg.digest);
        if (b) this.#sendTo(msg.sender, this.#sign({ kind: "block", view: this.#s.view, block: b }));
        return;
      }
      case "block":
        this.#onBlock(msg.sender, msg.block);
        return;
      case "sync":
        this.#processQC(msg.highQC, msg.sender);
        if (msg.tc) this.#processTC(msg.tc);
        return;
    }
  }

  // ---- proposals and votes ----

  #onProposal(msg: ProposalMessage): void {
    this.#processQC(msg.block.justify, msg.sender);
    if (msg.tc) this.#processTC(msg.tc);
    this.#consider(msg, true);
  }

  /** Votes for a proposal if the rules allow; `fresh` is false when it waited for its parent. */
  #consider(msg: ProposalMessage, fresh: boolean): void {
    const b = msg.block;
    if (b.view < this.#s.view) {
      if (fresh) {
        this.#reject("stale");
        this.#helpLagging(msg.sender);
      }
      return;
    }
    // Its certificates did not bring this replica to its view: no vote is possible for it.
    if (b.view > this.#s.view) {
      this.#reject("unjustified");
      return;
    }
    if (this.#leaderOf(b.view) !== msg.sender) {
      this.#reject("not-leader");
      return;
    }
    // One proposal per view is considered: an equivocating leader's others are
    // evidence, not blocks to hold (a certified one is fetched if it matters).
    const first = this.#proposals.get(b.view);
    if (first !== undefined && first !== hex(b.digest)) return;
    this.#proposals.set(b.view, hex(b.digest));
    if (!this.#store.has(b.parent)) {
      this.#waiting.set(msg.sender, msg);
      this.#fetcher.want(b.parent, msg.sender);
      return;
    }
    if (!this.#store.has(b.digest) && this.#addBlock(b) === false) {
      this.#reject("ERR_PROTOCOL");
      return;
    }
    if (!safeToVote(this.#s, b, msg.tc)) return;
    this.#s.votedView = b.view;
    const vote = this.#sign({ kind: "vote", view: b.view, digest: b.digest });
    const to = this.#leaderOf(b.view + 1);
    void this.#persist(b).then(() => {
      if (this.#closed) return;
      if (to === this.#id) this.#onVote({ kind: "vote", ...this.#own(b.view, vote), digest: b.digest });
      else this.#sendTo(to, vote);
      this.#syncTimer();
    });
  }

  #onVote(msg: VoteMessage): void {
    if (this.#leaderOf(msg.view + 1) !== this.#id) {
      this.#reject("misrouted");
      return;
    }
    if (msg.view + 1 < this.#s.view || this.#qcFormed.has(msg.view)) return;
    let votes = this.#votes.get(msg.view);
    if (!votes) {
      votes = new Map();
      this.#votes.set(msg.view, votes);
    }
    if (votes.has(msg.sender)) return;
    const digest = hex(msg.digest);
    votes.set(msg.sender, { digest, signature: messageSignature(msg) });
    const signers = [...votes].filter(([, x]) => x.digest === digest).sort(([a], [b]) => a - b);
    if (signers.length < this.#m.quorum) return;
    this.#qcFormed.add(msg.view);
    const qc: QuorumCertificate = {
      view: msg.view,
      digest: msg.digest,
      signatures: signers.map(([member, x]) => ({ member, signature: x.signature })),
    };
    this.#qcCache.set(qcKey(qc), true);
    this.#processQC(qc, msg.sender);
  }

  /** Takes in a verified QC: a higher lock, maybe a commit, maybe the next view. */
  #processQC(qc: QuorumCertificate, from: number): void {
    const higher = qc.view > this.#s.highQC.view;
    if (higher) this.#s.highQC = qc;
    const b = this.#store.get(qc.digest);
    if (b) this.#checkCommit(qc, b);
    else if (qc.view > this.#committedView() && !this.#store.has(qc.digest)) {
      const k = hex(qc.digest);
      if (!this.#qcsAwaiting.has(k)) {
        if (this.#qcsAwaiting.size >= MAX_QCS_AWAITING)
          this.#qcsAwaiting.delete(this.#qcsAwaiting.keys().next().value!);
        this.#qcsAwaiting.set(k, qc);
      }
      this.#fetcher.want(qc.digest, from);
    }
    if (qc.view >= this.#s.view) this.#enterView(qc.view + 1, undefined);
    // A leader that entered its view by a TC may have waited for a QC as high as the TC reports.
    else if (higher) this.#tryPropose();
  }

  /** The view of the last committed block: QCs at or below it certify nothing worth fetching. */
  #committedView(): number {
    return this.#store.get(this.#store.committedDigest)?.view ?? 0;
  }

  #processTC(tc: TimeoutCertificate): void {
    if (tc.view >= this.#s.view) this.#enterView(tc.view + 1, tc);
  }

  /** The two-chain rule: a QC for `b` whose parent is of the view right before commits the parent. */
  #checkCommit(qc: QuorumCertificate, b: Block): void {
    if (qc.view !== b.view || b.parentView + 1 !== b.view || this.#store.isCommitted(b.parent)) return;
    const parent = this.#store.get(b.parent);
    if (!parent) return;
    if (!this.#commitTarget || parent.height > this.#commitTarget.block.height)
      this.#commitTarget = { block: parent, qc: b.justify };
    this.#tryCommit();
  }

  #tryCommit(): void {
    const t = this.#commitTarget;
    if (!t) return;
    const chain = this.#store.chainTo(t.block);
    if (chain === undefined) {
      // The target does not extend the committed chain: impossible with f or fewer
      // byzantine members. Committing would fork this replica, so it stops here.
      this.#commitTarget = undefined;
      this.#reject("conflicting-commit");
      return;
    }
    if ("missing" in chain) {
      this.#fetcher.want(chain.missing, this.#leaderOf(t.block.view));
      return;
    }
    this.#commitTarget = undefined;
    chain.forEach((b, i) => {
      this.#commit(b, i + 1 < chain.length ? chain[i + 1]!.justify : t.qc);
    });
    this.#syncTimer();
  }

  #commit(b: Block, qc: QuorumCertificate): void {
    const { applied, results, stateHash } = this.#sm.apply(b.commands);
    this.#store.commit(b);
    for (const [k, c] of this.#queue) if (!this.#sm.isNew(c)) this.#queue.delete(k);
    this.#stats.commits++;
    const c: Committed = {
      height: b.height,
      view: b.view,
      digest: b.digest,
      parent: b.parent,
      commands: applied,
      results,
      qc,
      stateHash,
    };
    this.#ready.push(c);
    this.#o.storage.append(CHAIN_LOG, encodeChainRecord(b, qc));
    void this.#o.storage.sync(CHAIN_LOG).then(() => {
      this.#durable = Math.max(this.#durable, c.height);
      this.#emit();
    });
  }

  /** Reports the durable commits in height order (syncs may resolve in any order). */
  #emit(): void {
    while (!this.#closed && this.#ready.length > 0 && this.#ready[0]!.height <= this.#durable) {
      const c = this.#ready.shift()!;
      this.#emitted = c.height;
      for (const fn of this.#commitFns) fn(c);
    }
  }

  // ---- proposing ----

  /** Proposes in the current view if this replica leads it, has not proposed in it, and has work. */
  #tryPropose(): void {
    const v = this.#s.view;
    if (this.#closed || this.#leaderOf(v) !== this.#id || this.#s.proposedView >= v) return;
    const qc = this.#s.highQC;
    let tc: TimeoutCertificate | undefined;
    if (qc.view + 1 !== v) {
      const t = this.#lastTC;
      if (!t || t.view + 1 !== v || qc.view < tcHighQcView(t)) return;
      tc = t;
    }
    const parentHeight = this.#store.heightOf(qc.digest);
    if (parentHeight === undefined) {
      this.#fetcher.want(qc.digest, this.#leaderOf(qc.view));
      return;
    }
    const exclude = this.#store.uncommittedCommandKeys(qc.digest);
    const commands: Command[] = [];
    let bytes = 0;
    for (const [k, c] of this.#queue) {
      if (commands.length >= this.#maxBatch) break;
      if (exclude.has(k) || !this.#sm.isNew(c)) continue;
      const size = commandBytes(c);
      if (bytes + size > MAX_MESSAGE_BYTES - BLOCK_OVERHEAD) break;
      bytes += size;
      commands.push(c);
    }
    // An empty block is worth proposing only while a block with commands still
    // waits for the two certified views that commit it (and tell the others).
    const parent = this.#store.get(qc.digest);
    const grandparent = parent && this.#store.get(parent.parent);
    const work =
      commands.length > 0 ||
      (parent?.commands.length ?? 0) > 0 ||
      (grandparent?.commands.length ?? 0) > 0 ||
      this.#store.uncommittedWork(qc.digest);
    if (!work) return;
    const block = makeBlock(this.#m, {
      view: v,
      height: parentHeight + 1,
      proposer: this.#id,
      parent: qc.digest,
      parentView: qc.view,
      commands,
      justify: qc,
    });
    this.#s.proposedView = v;
    const bytesOut = this.#sign(
      tc ? { kind: "proposal", view: v, block, tc } : { kind: "proposal", view: v, block },
    );
    void this.#persist().then(() => {
      if (this.#closed) return;
      this.#broadcast(bytesOut);
      const own: ProposalMessage = tc
        ? { kind: "proposal", ...this.#own(v, bytesOut), block, tc }
        : { kind: "proposal", ...this.#own(v, bytesOut), block };
      this.#consider(own, true);
      this.#syncTimer();
    });
  }

  // ---- the pacemaker ----

  /**
   * Starts the view's timer if there is work (commands queued or blocks with
   * commands not yet committed): an idle cluster stays silent instead of
   * cycling through views, and its backoff keeps meaning "views are failing".
   * A replica without work starts its timer once a peer shows activity in the
   * view (a proposal or a timeout), so a view change still gathers a quorum.
   */
  #startView(): void {
    this.#timer.stop();
    this.#syncTimer();
    this.#tryPropose();
  }

  /** Whether this replica needs the current view to end in a commit or a view change. */
  #hasWork(): boolean {
    if (this.#queue.size > 0 || this.#store.pendingCommands) return true;
    for (const member of this.#timeouts.get(this.#s.view)?.keys() ?? []) if (member !== this.#id) return true;
    return false;
  }

  /** Runs the view timer exactly while there is work. */
  #syncTimer(): void {
    if (this.#closed) return;
    if (!this.#hasWork()) this.#timer.stop();
    else if (!this.#timer.armed) this.#timer.arm(() => this.#expire());
  }

  #enterView(view: number, tc: TimeoutCertificate | undefined): void {
    if (view <= this.#s.view) return;
    this.#s.view = view;
    this.#stats.views++;
    this.#lastTC = tc && tc.view + 1 === view ? tc : undefined;
    if (!tc) this.#timer.progress();
    for (const m of [this.#votes, this.#timeouts, this.#proposals])
      for (const k of m.keys()) if (k + 1 < view) m.delete(k);
    for (const s of [this.#qcFormed, this.#timedOut]) for (const k of s) if (k + 1 < view) s.delete(k);
    for (const [k, p] of this.#waiting) if (p.view < view) this.#waiting.delete(k);
    this.#detector.forgetBelow(view - EVIDENCE_VIEWS_BEHIND);
    this.#startView();
    for (const p of [...this.#waiting.values()])
      if (p.view === view && this.#store.has(p.block.parent)) {
        this.#waiting.delete(p.sender);
        this.#consider(p, false);
      }
  }

  #expire(): void {
    if (this.#closed) return;
    this.#timeOut(this.#s.view);
    this.#timer.arm(() => this.#expire());
  }

  /** Broadcasts this replica's timeout of `view` (the stored one if it already timed out there). */
  #timeOut(view: number): void {
    this.#stats.timeouts++;
    const stored = this.#s.lastTimeout;
    let own: TimeoutMessage;
    if (stored && peekHeader(stored).view === view) {
      // Re-sent exactly as signed before (perhaps before a restart): a new
      // signature with a newer QC would be a second, conflicting timeout.
      const m = decodeMessage(this.#m, stored);
      if (m.kind !== "timeout") return;
      own = m;
    } else {
      if (!safeToTimeout(this.#s, view)) return;
      this.#s.votedView = Math.max(this.#s.votedView, view);
      const highQC = this.#s.highQC;
      const tc = this.#lastTC;
      const bytes = this.#sign(
        tc ? { kind: "timeout", view, highQC, tc } : { kind: "timeout", view, highQC },
      );
      this.#s.lastTimeout = bytes;
      own = tc
        ? { kind: "timeout", ...this.#own(view, bytes), highQC, tc }
        : { kind: "timeout", ...this.#own(view, bytes), highQC };
    }
    this.#timedOut.add(view);
    void this.#persist().then(() => {
      if (this.#closed) return;
      this.#broadcast(own.bytes);
      this.#onTimeout(own);
      this.#syncTimer();
    });
  }

  #onTimeout(msg: TimeoutMessage): void {
    this.#processQC(msg.highQC, msg.sender);
    if (msg.tc) this.#processTC(msg.tc);
    if (msg.view < this.#s.view) {
      if (msg.sender !== this.#id) this.#helpLagging(msg.sender);
      return;
    }
    if (msg.view > this.#s.view + MAX_VIEWS_AHEAD) {
      this.#reject("ahead");
      return;
    }
    let timeouts = this.#timeouts.get(msg.view);
    if (!timeouts) {
      timeouts = new Map();
      this.#timeouts.set(msg.view, timeouts);
    }
    if (timeouts.has(msg.sender)) return;
    timeouts.set(msg.sender, {
      member: msg.sender,
      highQcView: msg.highQC.view,
      signature: messageSignature(msg),
    });
    // f + 1 timeouts include an honest one: this view is failing, join at once.
    if (msg.view === this.#s.view && timeouts.size > this.#m.f && !this.#timedOut.has(msg.view))
      this.#timeOut(msg.view);
    if (timeouts.size < this.#m.quorum) return;
    const tc: TimeoutCertificate = {
      view: msg.view,
      timeouts: [...timeouts.values()].sort((a, b) => a.member - b.member),
    };
    this.#timeouts.delete(msg.view);
    this.#processTC(tc);
  }

  // ---- block sync ----

  #onBlock(sender: number, b: Block): void {
    if (!this.#fetcher.wanted(b.digest)) {
      this.#reject("unsolicited");
      return;
    }
    this.#fetcher.done(b.digest);
    if (this.#store.has(b.digest)) return;
    if (!this.#store.has(b.parent)) {
      this.#store.addOrphan(b);
      this.#fetcher.want(b.parent, sender);
      return;
    }
    if (this.#addBlock(b) === false) this.#reject("ERR_PROTOCOL");
    this.#processQC(b.justify, sender);
  }

  /** Adds a block (and the orphans it completes), then resumes what waited for them. */
  #addBlock(b: Block): boolean {
    const added = this.#store.add(b);
    if (added === false) return false;
    for (const a of added) {
      this.#fetcher.done(a.digest);
      const qc = this.#qcsAwaiting.get(hex(a.digest));
      if (qc) {
        this.#qcsAwaiting.delete(hex(a.digest));
        this.#checkCommit(qc, a);
      }
    }
    this.#tryCommit();
    for (const p of [...this.#waiting.values()])
      if (this.#store.has(p.block.parent)) {
        this.#waiting.delete(p.sender);
        this.#consider(p, false);
      }
    this.#tryPropose();
    return true;
  }

  /**
   * Sends a peer that spoke from an older view this replica's highest QC (and
   * TC): enough for it to move up and fetch what it misses, without anyone
   * giving up a view for it. At most once per base timeout per peer.
   */
  #helpLagging(peer: number): void {
    const now = this.#o.env.clock.now();
    const last = this.#helped.get(peer);
    if (last !== undefined && now - last < this.#baseTimeoutMs) return;
    this.#helped.set(peer, now);
    const highQC = this.#s.highQC;
    const tc = this.#lastTC;
    const view = this.#s.view;
    this.#sendTo(peer, this.#sign(tc ? { kind: "sync", view, highQC, tc } : { kind: "sync", view, highQC }));
  }

  #takeServeToken(peer: number): boolean {
    const now = this.#o.env.clock.now();
    const b = this.#served.get(peer) ?? { tokens: FETCHES_PER_SECOND, at: now };
    b.tokens = Math.min(FETCHES_PER_SECOND, b.tokens + ((now - b.at) / 1000) * FETCHES_PER_SECOND);
    b.at = now;
    this.#served.set(peer, b);
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }

  // ---- evidence ----

  #observe(kind: EquivocationKind, msg: Message, content: string): void {
    const v = this.#s.view;
    if (msg.view + EVIDENCE_VIEWS_BEHIND < v || msg.view > v + MAX_VIEWS_AHEAD) return;
    const e = this.#detector.observe(kind, msg.sender, msg.view, content, msg.bytes);
    if (!e) return;
    this.#stats.evidence++;
    const record = encodeEvidence(e);
    this.#evidenceRecords.push(record);
    if (this.#evidenceRecords.length > EVIDENCE_KEPT) this.#evidenceRecords.shift();
    void this.#evidenceLog
      .write(record, () => [...this.#evidenceRecords])
      .then(() => {
        if (this.#closed) return;
        for (const fn of this.#byzantineFns) fn(e);
      });
  }

  // ---- output ----

  #sign(msg: Outgoing): Uint8Array {
    return encodeMessage(this.#m, this.#id, this.#o.privateKey, msg);
  }

  #own(view: number, bytes: Uint8Array): { epoch: number; sender: number; view: number; bytes: Uint8Array } {
    return { epoch: this.#m.epoch, sender: this.#id, view, bytes };
  }

  #sendTo(to: number, bytes: Uint8Array): void {
    if (this.#closed || to === this.#id) return;
    try {
      this.#o.send(to, bytes);
    } catch {
      // A transport that fails loses the message, as a network may: timeouts,
      // retries and sync recover from lost messages.
    }
  }

  #broadcast(bytes: Uint8Array): void {
    for (let to = 0; to < this.#n; to++) this.#sendTo(to, bytes);
  }

  /** Makes the safety state (and `voted`, a block voted for) durable: what must be before a message leaves. */
  #persist(voted?: Block): Promise<unknown> {
    const state = () => [encodeSafety(this.#s)];
    const safety = this.#safetyLog.write(encodeSafety(this.#s), state);
    if (!voted) return safety;
    const blocks = () => this.#store.pendingBlocks().map(encodeBlock);
    return Promise.all([safety, this.#blocksLog.write(encodeBlock(voted), blocks)]);
  }

  #cacheQCs(msg: Message): void {
    const qcs: QuorumCertificate[] = [];
    if (msg.kind === "proposal" || msg.kind === "block") qcs.push(msg.block.justify);
    if (msg.kind === "timeout") qcs.push(msg.highQC);
    for (const qc of qcs) {
      const k = qcKey(qc);
      if (this.#qcCache.has(k)) continue;
      if (this.#qcCache.size >= QC_CACHE) this.#qcCache.delete(this.#qcCache.keys().next().value!);
      this.#qcCache.set(k, true);
    }
  }
}

function qcKey(qc: QuorumCertificate): string {
  return Buffer.from(encodeQC(qc)).toString("base64");
}

function encodeChainRecord(b: Block, qc: QuorumCertificate): Uint8Array {
  return new Writer().u8(1).blob32(encodeBlock(b)).blob32(encodeQC(qc)).finish();
}

function decodeChainRecord(m: Membership, bytes: Uint8Array): { block: Block; qc: QuorumCertificate } {
  try {
    const r = new Reader(bytes);
    if (r.u8() !== 1) throw new DWCPError("ERR_BAD_FRAME", "unknown record version");
    const block = decodeBlock(m, r.blob32(MAX_MESSAGE_BYTES, "block"));
    const qc = decodeQC(r.blob32(64 * 1024, "QC"));
    r.end("chain record");
    return { block, qc };
  } catch (e) {
    throw new DWCPError("ERR_PROTOCOL", "a stored committed block is damaged", { cause: e });
  }
}

function encodeEvidence(e: Evidence): Uint8Array {
  const kinds = { proposal: 1, vote: 2, timeout: 3 } as const;
  return new Writer()
    .u8(1)
    .u8(e.member)
    .u8(kinds[e.kind])
    .u64(e.view)
    .blob32(e.first)
    .blob32(e.second)
    .finish();
}
