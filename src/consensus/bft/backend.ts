/**
 * The BFT replicas behind the {@link ConsensusBackend} contract: every call is
 * a command submitted to every member and answered once f + 1 of them agree
 * on its commit (client.ts), so the answer is the committed state machine's
 * (store-ops.ts) even when f members lie. That makes ACP's users (elections,
 * flags, placement's optimistic commits) run unchanged on the internet
 * generation.
 *
 * Where it does not fit the contract, it says so:
 * - **No leases.** Replicas that do not trust each other share no clock to
 *   expire a lease by; `grant`, `keepAlive`, `revoke`, `timeToLive` and a put
 *   with a lease fail with `ERR_UNSUPPORTED` (so does ACP's node
 *   registration, which lives under a lease).
 * - **Every read is agreed.** A read is a command like a write (one commit
 *   round); `serializable` changes nothing.
 * - **Watches poll.** A watch reads change pages (one agreed read each) every
 *   `watchPollMs` while it has caught up, and at once while it has not.
 *
 * A client's commands take effect once per (client id, seq), and a client has
 * one command in flight at a time, so each backend runs `lanes` clients of its
 * own (ids made unique with random bytes: a restarted backend never collides
 * with its predecessor's dedup state).
 */
import { deadline, type Env, nodeEnv } from "../../env/index.js";
import { DWCPError, invalidArg } from "../../errors.js";
import type { BftReplicaSample } from "../../metrics/index.js";
import type {
  BackendStatus,
  Compare,
  ConsensusBackend,
  KeySelector,
  Lease,
  RangeOptions,
  RangeResult,
  TxnOp,
  TxnResult,
  Watch,
  WatchEvent,
  WatchOptions,
} from "../backend.js";
import { checkLimit, checkSelector, checkTxn } from "../local/txn.js";
import { type BftClientNode, type LocalMember, submitCommand } from "./client.js";
import { hex } from "./codec.js";
import type { EquivocationKind } from "./evidence.js";
import type { HostedReplica } from "./host.js";
import { MAX_CLIENT_BYTES, MAX_OP_BYTES } from "./messages.js";
import { BFT_TXN_LIMITS } from "./state-machine.js";
import {
  type ChangesReply,
  changesOp,
  compactOp,
  MAX_CHANGE_REVISIONS,
  rangeOp,
  readChanges,
  readRange,
  readReply,
  readStatus,
  readTxn,
  statusOp,
  txnOp,
} from "./store-ops.js";

/** Options of {@link BftBackend}. */
export interface BftBackendOptions {
  /** The node whose links reach the members (a `DWCPManager`). */
  readonly node: BftClientNode;
  /** Node id of each member, in member order. */
  readonly nodeIds: readonly string[];
  /** Faulty members tolerated (n ≥ 3f + 1). */
  readonly f: number;
  /**
   * The member this node hosts, if it hosts one: the client reaches it
   * without a link, and its figures are the backend's {@link BftBackend.replicaSample}.
   */
  readonly hosted?: { readonly nodeId: string; readonly replica: HostedReplica };
  /** Called once by {@link BftBackend.close} (what was opened with the backend: its member, its storage). */
  readonly onClose?: () => void | Promise<void>;
  /** This client's name; random bytes are appended to make its ids unique. @default "acp" */
  readonly clientId?: string;
  /** Time and randomness. @default nodeEnv */
  readonly env?: Env;
  /** How long a command may take to commit before `ERR_UNAVAILABLE` (its effect then unknown), ms. @default 30000 */
  readonly requestTimeoutMs?: number;
  /** Commands in flight at once (one client id each). @default 4 */
  readonly lanes?: number;
  /** A caught-up watch's poll interval, ms. @default 500 */
  readonly watchPollMs?: number;
}

/** Calls waiting for a lane, at most; more fail with `ERR_RESOURCE_LIMIT`. */
export const MAX_PENDING_COMMANDS = 10_000;
/** A watch's first retry after an unavailable poll, ms (doubling to {@link MAX_RETRY_MS}). */
const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 5000;

interface Lane {
  readonly client: string;
  seq: number;
  /** Calls queued on it, the running one included. */
  queued: number;
  tail: Promise<unknown>;
}

/** ACP on BFT replicas; see the module's description. */
export class BftBackend implements ConsensusBackend {
  readonly kind = "bft";
  readonly #node: BftClientNode;
  readonly #nodeIds: readonly string[];
  readonly #f: number;
  readonly #env: Env;
  readonly #timeout: number;
  readonly #local: LocalMember | undefined;
  readonly #hosted: HostedReplica | undefined;
  readonly #onClose: (() => void | Promise<void>) | undefined;
  readonly #evidence: Record<EquivocationKind, number> = { proposal: 0, vote: 0, timeout: 0 };
  readonly #accused = new Set<number>();
  readonly #pollMs: number;
  readonly #lanes: Lane[];
  readonly #watches = new Set<PollingWatch>();
  #pending = 0;
  #closed = false;

  /** @throws DWCPError `ERR_INVALID_ARG` for options that are not usable */
  constructor(o: BftBackendOptions) {
    const n = o.nodeIds?.length ?? 0;
    if (!Array.isArray(o.nodeIds) || new Set(o.nodeIds).size !== n || n < 4)
      throw invalidArg("nodeIds", "at least 4 distinct node ids", o.nodeIds);
    if (!Number.isSafeInteger(o.f) || o.f < 1 || n < 3 * o.f + 1)
      throw invalidArg("f", `an integer from 1 to ${Math.floor((n - 1) / 3)}`, o.f);
    this.#node = o.node;
    this.#nodeIds = [...o.nodeIds];
    this.#f = o.f;
    this.#env = o.env ?? nodeEnv;
    this.#timeout = positive(o.requestTimeoutMs ?? 30_000, "requestTimeoutMs");
    this.#onClose = o.onClose;
    const hosted = o.hosted;
    this.#hosted = hosted?.replica;
    this.#local = hosted && { nodeId: hosted.nodeId, submit: (p) => hosted.replica.submit(p) };
    hosted?.replica.replica.onByzantine((e) => {
      this.#evidence[e.kind]++;
      this.#accused.add(e.member);
    });
    this.#pollMs = positive(o.watchPollMs ?? 500, "watchPollMs");
    const lanes = positive(o.lanes ?? 4, "lanes");
    const base = o.clientId ?? "acp";
    this.#lanes = Array.from({ length: lanes }, (_, i) => {
      const client = `${base}/${hex(this.#env.random.bytes(8))}/${i}`;
      if (Buffer.byteLength(client) > MAX_CLIENT_BYTES)
        throw invalidArg("clientId", `at most ${MAX_CLIENT_BYTES - 24} bytes`, base);
      return { client, seq: 0, queued: 0, tail: Promise.resolve() };
    });
  }

  async txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure: readonly TxnOp[] = [],
  ): Promise<TxnResult> {
    this.#usable();
    checkTxn(compares, success, failure, BFT_TXN_LIMITS);
    for (const op of [...success, ...failure]) if (op.type === "put" && op.lease) noLeases();
    return readReply(await this.#submit(txnOp(compares, success, failure)), readTxn);
  }

  async range(selector: KeySelector, options: RangeOptions = {}): Promise<RangeResult> {
    this.#usable();
    checkSelector(selector, "selector", BFT_TXN_LIMITS);
    if (options === null || typeof options !== "object") throw invalidArg("options", "an object", options);
    checkLimit(options.limit);
    const revision = options.revision ?? 0;
    if (!Number.isSafeInteger(revision) || revision < 0) throw invalidArg("revision", "a revision", revision);
    return readReply(
      await this.#submit(
        rangeOp(selector, {
          revision,
          ...(options.limit === undefined ? {} : { limit: options.limit }),
          ...(options.countOnly ? { countOnly: true } : {}),
        }),
      ),
      readRange,
    );
  }

  async put(key: string, value: Uint8Array, options: { lease?: number } = {}): Promise<number> {
    if (options.lease) noLeases();
    return (await this.txn([], [{ type: "put", key, value }])).revision;
  }

  async delete(selector: KeySelector): Promise<number> {
    checkSelector(selector, "selector", BFT_TXN_LIMITS);
    const r = await this.txn([], [{ type: "delete", key: selector.key, prefix: selector.prefix ?? false }]);
    return (r.results[0] as { deleted: number }).deleted;
  }

  watch(selector: KeySelector, options: WatchOptions = {}): Watch {
    let error: unknown;
    try {
      this.#usable();
      checkSelector(selector, "selector", BFT_TXN_LIMITS);
      const from = options.fromRevision;
      if (from !== undefined && (!Number.isSafeInteger(from) || from < 1))
        throw invalidArg("fromRevision", "a revision", from);
    } catch (err) {
      error = err;
    }
    const sel = { key: selector?.key ?? "", prefix: selector?.prefix ?? false };
    const w = new PollingWatch(this, sel, options.fromRevision, error, () => this.#watches.delete(w));
    if (!error) this.#watches.add(w);
    return w;
  }

  async compact(revision: number): Promise<void> {
    this.#usable();
    if (!Number.isSafeInteger(revision) || revision < 1) throw invalidArg("revision", "a revision", revision);
    readReply(await this.#submit(compactOp(revision)), () => undefined);
  }

  async grant(_ttlSeconds: number): Promise<Lease> {
    this.#usable();
    return noLeases();
  }

  async keepAlive(_lease: number): Promise<number> {
    this.#usable();
    return noLeases();
  }

  async revoke(_lease: number): Promise<void> {
    this.#usable();
    noLeases();
  }

  async timeToLive(_lease: number): Promise<number> {
    this.#usable();
    return noLeases();
  }

  async status(): Promise<BackendStatus> {
    this.#usable();
    const s = readReply(await this.#submit(statusOp()), readStatus);
    // Leaders rotate every view by design (a round-robin pacemaker): there is no one leader to report.
    return { revision: s.revision, compactRevision: s.compactRevision, leaderChanges: 0 };
  }

  /**
   * Ends every watch and closes what was opened with the backend (its member);
   * commands already submitted run to their answer or timeout, later calls
   * fail with `ERR_CLOSED`.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of [...this.#watches]) w.close();
    await this.#onClose?.();
  }

  /** The hosted member's figures; undefined when this node hosts none. */
  replicaSample(): BftReplicaSample | undefined {
    const h = this.#hosted;
    if (!h) return undefined;
    const s = h.replica.stats();
    return {
      views: s.views,
      timeouts: s.timeouts,
      blocks: s.commits,
      evidence: { ...this.#evidence },
      accused: this.#accused.size,
      rejected: Object.values(s.rejected).reduce((a, b) => a + b, 0),
      lost: h.stats.lost,
    };
  }

  /** The time and poll interval watches run on. */
  get watchTiming(): { env: Env; pollMs: number } {
    return { env: this.#env, pollMs: this.#pollMs };
  }

  /** One change page for a watch. */
  async changes(selector: KeySelector, fromRevision: number): Promise<ChangesReply> {
    this.#usable();
    return readReply(
      await this.#submit(changesOp(selector, fromRevision, MAX_CHANGE_REVISIONS)),
      readChanges,
    );
  }

  /** Submits an op on the least busy lane, after that lane's previous command. */
  #submit(op: Uint8Array): Promise<Uint8Array> {
    if (op.length > MAX_OP_BYTES)
      return Promise.reject(
        new DWCPError("ERR_INVALID_ARG", `an operation of ${op.length} bytes exceeds ${MAX_OP_BYTES}`),
      );
    if (this.#pending >= MAX_PENDING_COMMANDS)
      return Promise.reject(
        new DWCPError("ERR_RESOURCE_LIMIT", `${MAX_PENDING_COMMANDS} commands are waiting`),
      );
    let lane = this.#lanes[0]!;
    for (const l of this.#lanes) if (l.queued < lane.queued) lane = l;
    lane.queued++;
    this.#pending++;
    const run = async (): Promise<Uint8Array> => {
      if (this.#closed) throw new DWCPError("ERR_CLOSED", "the BFT consensus backend is closed");
      lane.seq++;
      const answer = await submitCommand(
        this.#node,
        this.#nodeIds,
        this.#f,
        { client: lane.client, seq: lane.seq, op },
        { timeout: this.#timeout, ...(this.#local ? { local: this.#local } : {}) },
      );
      if (!(answer.result instanceof Uint8Array))
        throw new DWCPError("ERR_BAD_FRAME", "the members answered a store operation without a reply");
      return answer.result;
    };
    const result = lane.tail.then(run, run);
    lane.tail = result.then(
      () => {},
      () => {},
    );
    return result.finally(() => {
      lane.queued--;
      this.#pending--;
    });
  }

  #usable(): void {
    if (this.#closed) throw new DWCPError("ERR_CLOSED", "the BFT consensus backend is closed");
  }
}

function noLeases(): never {
  throw new DWCPError(
    "ERR_UNSUPPORTED",
    "BFT consensus has no leases: replicas that do not trust each other share no clock to expire them by",
  );
}

function positive(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 1) throw invalidArg(name, "a positive integer", n);
  return n;
}

/** Failures a watch waits out and retries: the members may come back. */
const TRANSIENT = new Set(["ERR_UNAVAILABLE", "ERR_TIMEOUT", "ERR_NOT_CONNECTED"]);

/** A watch that reads agreed change pages; see the module's description. */
class PollingWatch implements Watch {
  #revision: number;
  #next: number | undefined;
  #closed = false;
  readonly #stopped: Promise<void>;
  #stop!: () => void;

  constructor(
    readonly backend: BftBackend,
    readonly selector: KeySelector,
    fromRevision: number | undefined,
    readonly error: unknown,
    readonly onClose: () => void,
  ) {
    this.#next = fromRevision;
    this.#revision = fromRevision === undefined ? 0 : fromRevision - 1;
    this.#stopped = new Promise((resolve) => {
      this.#stop = resolve;
    });
  }

  get revision(): number {
    return this.#revision;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop();
    this.onClose();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<readonly WatchEvent[]> {
    if (this.error) throw this.error;
    let retryMs = FIRST_RETRY_MS;
    while (!this.#closed) {
      let page: ChangesReply | undefined;
      try {
        if (this.#next === undefined) {
          // "Only what happens next": after the revision the watch starts at.
          const s = await this.#race(this.backend.status());
          if (!s) return;
          this.#next = s.revision + 1;
          this.#revision = s.revision;
        }
        page = await this.#race(this.backend.changes(this.selector, this.#next));
      } catch (err) {
        if (!(err instanceof DWCPError) || !TRANSIENT.has(err.code)) {
          if (err instanceof DWCPError && err.code === "ERR_CLOSED") return;
          throw err;
        }
        await this.#sleep(retryMs);
        retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
        continue;
      }
      if (!page) return;
      retryMs = FIRST_RETRY_MS;
      for (const batch of page.events) {
        if (this.#closed) return;
        this.#revision = batch[0]!.kv.modRevision;
        yield batch;
      }
      this.#revision = page.upTo;
      this.#next = page.upTo + 1;
      if (page.upTo >= page.revision) await this.#sleep(this.backend.watchTiming.pollMs);
    }
  }

  /** `p`, or undefined once the watch is closed (a poll in flight is left to finish on its own). */
  #race<T>(p: Promise<T>): Promise<T | undefined> {
    p.catch(() => {});
    return Promise.race([p, this.#stopped.then(() => undefined)]);
  }

  async #sleep(ms: number): Promise<void> {
    const { env } = this.backend.watchTiming;
    const d = deadline(env, ms, "ERR_TIMEOUT", "a watch's poll wait");
    await this.#race(
      new Promise<void>((resolve) => {
        d.signal.addEventListener("abort", () => resolve(), { once: true });
      }),
    );
    d.clear();
  }
}
