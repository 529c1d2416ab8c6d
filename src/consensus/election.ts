/**
 * Leader election on any {@link ConsensusBackend}, etcd's recipe: each
 * candidate creates `<prefix><name>/<lease>` bound to its lease; the candidate
 * whose key has the lowest create revision leads; the others each wait for the
 * deletion of the one just ahead of them (no herd when the leader goes).
 *
 * Leading is not enough to write safely: a leader whose lease expired while it
 * was paused still believes it leads. So every write a leader makes on the
 * strength of leading goes through {@link Leadership.txn}, which compares the
 * leader key's create revision — the **fencing revision** — inside the same
 * transaction; a deposed leader's write is refused by the store itself
 * (`ERR_NOT_LEADER`), whatever its clock believes.
 */
import { DWCPError, invalidArg, isDWCPError } from "../errors.js";
import type { Compare, ConsensusBackend, KeyValue, TxnOp, TxnResult } from "./backend.js";
import type { LeaseKeeper } from "./lease-keeper.js";

/** Where elections keep their candidates' keys. */
export const ELECTION_PREFIX = "/dwcp/election/";

/** The current leader of an election, as the store says. */
export interface LeaderInfo {
  /** The leader's candidate key. */
  readonly key: string;
  /** Its value (what the leader proclaimed). */
  readonly value: Uint8Array;
  /** Its fencing revision: the key's create revision. */
  readonly revision: number;
  /** The lease the candidacy is bound to. */
  readonly lease: number;
}

/** Options of {@link campaign}. */
export interface CampaignOptions {
  /** Gives up waiting (the candidacy is withdrawn) when it aborts. */
  readonly signal?: AbortSignal;
  /** Key prefix of elections. @default {@link ELECTION_PREFIX} */
  readonly prefix?: string;
}

function checkName(name: string): void {
  if (typeof name !== "string" || name === "" || name.includes("/"))
    throw invalidArg("name", "a non-empty election name without '/'", name);
}

function candidatesOf(prefix: string, name: string): string {
  return `${prefix}${name}/`;
}

/** The leader of election `name` now, or undefined when nobody campaigns. */
export async function leader(
  backend: ConsensusBackend,
  name: string,
  options: Pick<CampaignOptions, "prefix"> = {},
): Promise<LeaderInfo | undefined> {
  checkName(name);
  const { kvs } = await backend.range({
    key: candidatesOf(options.prefix ?? ELECTION_PREFIX, name),
    prefix: true,
  });
  const first = lowest(kvs);
  return first && info(first);
}

function lowest(kvs: readonly KeyValue[]): KeyValue | undefined {
  let best: KeyValue | undefined;
  for (const kv of kvs) if (!best || kv.createRevision < best.createRevision) best = kv;
  return best;
}

function info(kv: KeyValue): LeaderInfo {
  return { key: kv.key, value: kv.value, revision: kv.createRevision, lease: kv.lease };
}

/**
 * Campaigns in election `name` with `value`, on the lease `keeper` keeps;
 * resolves once this candidate leads. Rejects with `ERR_ABORTED` when
 * `signal` aborts, with the keeper's reason when its lease is lost (the
 * candidacy is gone with it), or with the backend's error.
 */
export async function campaign(
  backend: ConsensusBackend,
  name: string,
  value: Uint8Array,
  keeper: LeaseKeeper,
  options: CampaignOptions = {},
): Promise<Leadership> {
  checkName(name);
  const prefix = candidatesOf(options.prefix ?? ELECTION_PREFIX, name);
  const key = `${prefix}${keeper.id.toString(16)}`;
  // Create the candidacy, or find it from an earlier attempt with this lease.
  const r = await backend.txn(
    [{ key, target: "createRevision", op: "=", value: 0 }],
    [{ type: "put", key, value, lease: keeper.id }],
    [{ type: "range", key }],
  );
  let revision: number;
  if (r.succeeded) revision = r.revision;
  else {
    const held = r.results[0];
    const kv = held?.type === "range" ? held.kvs[0] : undefined;
    if (!kv) throw new DWCPError("ERR_PROTOCOL", `candidate key ${key} vanished during its creation`);
    revision = kv.createRevision;
    if (Buffer.compare(kv.value, value) !== 0) await backend.put(key, value, { lease: keeper.id });
  }
  const withdraw = async () => {
    await backend.delete({ key }).catch(() => {});
  };
  const lost = new AbortController();
  const onLost = (reason: DWCPError) => lost.abort(reason);
  keeper.once("lost", onLost);
  const stop = AbortSignal.any([lost.signal, ...(options.signal ? [options.signal] : [])]);
  try {
    for (;;) {
      stop.throwIfAborted();
      const { kvs, revision: seen } = await backend.range({ key: prefix, prefix: true });
      const mine = kvs.find((kv) => kv.key === key);
      if (!mine || mine.createRevision !== revision)
        throw new DWCPError("ERR_NOT_LEADER", `candidacy ${key} was deleted while waiting`);
      // The one just ahead: the highest create revision below ours.
      let ahead: KeyValue | undefined;
      for (const kv of kvs)
        if (kv.createRevision < revision && (!ahead || kv.createRevision > ahead.createRevision)) ahead = kv;
      if (!ahead) break;
      await waitDeleted(backend, ahead.key, seen + 1, stop);
    }
  } catch (err) {
    keeper.off("lost", onLost);
    await withdraw();
    if (stop.aborted) {
      const reason = stop.reason;
      throw isDWCPError(reason)
        ? reason
        : new DWCPError("ERR_ABORTED", "the campaign was aborted", { cause: reason });
    }
    throw err;
  }
  keeper.off("lost", onLost);
  return new Leadership(backend, name, key, revision, keeper);
}

/** Resolves when `key` is deleted at or after revision `from`. */
async function waitDeleted(
  backend: ConsensusBackend,
  key: string,
  from: number,
  signal: AbortSignal,
): Promise<void> {
  const w = backend.watch({ key }, { fromRevision: from });
  const onAbort = () => w.close();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const batch of w) if (batch.some((e) => e.type === "delete")) return;
  } catch (err) {
    // Compacted past `from`: look again from the current state.
    if (isDWCPError(err, "ERR_COMPACTED")) return;
    throw err;
  } finally {
    signal.removeEventListener("abort", onAbort);
    w.close();
  }
  signal.throwIfAborted();
}

/** This candidate leads election {@link Leadership.name}; see the module's description. */
export class Leadership {
  /** Aborts when the lease behind the leadership is lost or the leadership is resigned. */
  readonly signal: AbortSignal;
  readonly #backend: ConsensusBackend;
  readonly #keeper: LeaseKeeper;
  readonly #ended = new AbortController();

  constructor(
    backend: ConsensusBackend,
    /** The election's name. */
    readonly name: string,
    /** The leader's candidate key. */
    readonly key: string,
    /** The fencing revision: the key's create revision. */
    readonly revision: number,
    keeper: LeaseKeeper,
  ) {
    this.#backend = backend;
    this.#keeper = keeper;
    this.signal = this.#ended.signal;
    if (!keeper.alive) this.#ended.abort(keeper.lostReason);
    else keeper.once("lost", (reason) => this.#ended.abort(reason));
  }

  /** The compare that holds only while this leadership stands: put it in every guarded transaction. */
  guard(): Compare {
    return { key: this.key, target: "createRevision", op: "=", value: this.revision };
  }

  /**
   * A transaction guarded by the fencing revision: applies `success` when the
   * leadership stands and every compare holds, else `failure`. Rejects with
   * `ERR_NOT_LEADER` when the leadership is gone (whatever the other compares).
   */
  async txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure: readonly TxnOp[] = [],
  ): Promise<TxnResult> {
    // The failure branch reads the leader key first, in the same revision: the
    // verdict on the leadership is the store's, not a later look's.
    const r = await this.#backend.txn([this.guard(), ...compares], success, [
      { type: "range", key: this.key },
      ...failure,
    ]);
    if (r.succeeded) return r;
    const probe = r.results[0];
    const still = probe?.type === "range" && probe.kvs[0]?.createRevision === this.revision;
    if (!still) {
      const err = new DWCPError(
        "ERR_NOT_LEADER",
        `leadership of ${this.name} (revision ${this.revision}) is gone`,
      );
      this.#ended.abort(err);
      throw err;
    }
    return { ...r, results: r.results.slice(1) };
  }

  /** Publishes a new value for followers to read, guarded like {@link Leadership.txn}. */
  async proclaim(value: Uint8Array): Promise<void> {
    await this.txn([], [{ type: "put", key: this.key, value, lease: this.#keeper.id }]);
  }

  /** Steps down: deletes the candidate key (the next candidate leads). The lease stays with its keeper. */
  async resign(): Promise<void> {
    if (!this.#ended.signal.aborted) this.#ended.abort(new DWCPError("ERR_NOT_LEADER", "resigned"));
    await this.#backend.txn([this.guard()], [{ type: "delete", key: this.key }]);
  }
}
