/**
 * {@link ConsensusBackend} on an etcd v3 cluster, through the `etcd3` client's
 * gRPC stubs: the contract is etcd's API, so each call is one etcd RPC and the
 * work here is checking requests, bounding every call in time and saying which
 * failures may have been applied.
 *
 * @packageDocumentation
 */
import { Etcd3, type IOptions, type IRequestOp } from "etcd3";
import { type Env, nodeEnv } from "../../env/index.js";
import { DWCPError, invalidArg } from "../../errors.js";
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
  WatchOptions,
} from "../backend.js";
import {
  compare,
  int,
  leaseId,
  opResult,
  ops,
  putRequest,
  rangeRequest,
  rangeResult,
  selector,
} from "./codec.js";
import { mapError } from "./errors.js";
import { EtcdWatch, type WatchHost } from "./watch.js";

/** TLS material for `https://` endpoints (PEM). */
export interface EtcdTls {
  /** The CA that signed the members' certificates. */
  readonly ca: Uint8Array;
  /** Client certificate chain, when the members require client certificates. */
  readonly cert?: Uint8Array;
  /** The client certificate's private key. */
  readonly key?: Uint8Array;
}

/** Options of {@link EtcdBackend}. */
export interface EtcdBackendOptions {
  /**
   * Client URLs of the members, at least one: `http://host:port`,
   * `https://host:port`, or `unix:///absolute/path` for a member listening on a
   * unix socket.
   */
  readonly endpoints: readonly string[];
  /**
   * Milliseconds one call may take, retries included; past it the call rejects
   * with `ERR_UNAVAILABLE`. Default 5000: five etcd election timeouts, so a
   * call outlives the election that follows a leader's loss.
   */
  readonly requestTimeoutMs?: number;
  /** TLS material; required for `https://` endpoints signed by a private CA. Default: none (plain or system CAs). */
  readonly tls?: EtcdTls;
  /**
   * Events a watch holds for a slow consumer before it pauses its stream (etcd
   * then keeps the rest). Default 4096.
   */
  readonly watchBufferEvents?: number;
  /** Time and randomness. Default: the real ones. */
  readonly env?: Env;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_WATCH_BUFFER = 4096;
const FIRST_BACKOFF_MS = 20;
const MAX_BACKOFF_MS = 250;
/**
 * gRPC keepalive: a member that stops answering (stopped, or its host gone)
 * breaks its streams within about 13 s, and watches move to another member.
 * etcd refuses pings more often than every 5 s by default.
 */
const GRPC_OPTIONS = {
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 3_000,
  "grpc.keepalive_permit_without_calls": 0,
};
/** The part of a gRPC call an interceptor sees: its start, with the request's metadata. */
interface StartableCall {
  start(metadata: { set(key: string, value: string): void }, listener?: unknown): void;
}

/**
 * Watch streams carry etcd's "hasleader" metadata: a member without a leader
 * (cut off from the quorum) refuses such a stream and ends it once it has had
 * no leader for a while, so the watch moves to a member that has one instead
 * of waiting out the partition.
 */
const REQUIRE_LEADER = {
  interceptors: [
    (options: unknown, nextCall: (options: unknown) => StartableCall): StartableCall => {
      const call = nextCall(options);
      const start = call.start.bind(call);
      call.start = (metadata, listener) => {
        metadata.set("hasleader", "true");
        start(metadata, listener);
      };
      return call;
    },
  ],
} as unknown as Parameters<Etcd3["watchClient"]["watch"]>[0];

/** Lease ids this client picks: at most 2^53 - 1, so the contract's `number` holds them exactly. */
const LEASE_ID_SPAN = Number.MAX_SAFE_INTEGER;

type GlobalPolicy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/**
 * The signal handed to calls that came without one. etcd3 1.1 never reads it;
 * one shared signal spares a controller per call (~7 µs of a ~220 µs txn).
 */
const NEVER = new AbortController().signal;

/**
 * The client's own retry would send a write again after a timeout, and apply
 * it twice; the backend retries by itself, only what is safe to repeat.
 */
const ONCE = {
  execute: <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal) =>
    Promise.resolve().then(() => fn({ signal: signal ?? NEVER })),
  onSuccess: () => ({ dispose: () => undefined }),
  onFailure: () => ({ dispose: () => undefined }),
} as unknown as GlobalPolicy;

/** How a call may be tried again after `ERR_UNAVAILABLE`. */
type Retry =
  /** Only when the request never reached a member (a write that could apply twice). */
  | "unsent"
  /** Always: a read, or a write that a repeat cannot apply twice. */
  | "always";

interface Attempt {
  /** gRPC call options: the attempt's deadline. */
  readonly options: { deadline: number };
  /** 0 for the first try. */
  readonly n: number;
}

/**
 * An etcd cluster as a {@link ConsensusBackend}.
 *
 * Every call is bounded by {@link EtcdBackendOptions.requestTimeoutMs}. Reads,
 * lease keep-alives, time-to-live queries and status are retried on other
 * members within that bound; a grant, revoke and compact are too (a repeat
 * that finds its own earlier attempt applied counts as done); `txn`, `put` and
 * `delete` are retried only when the request never left this process. A write
 * that may have been applied rejects with `ERR_UNAVAILABLE`.
 *
 * Reads are linearizable unless asked otherwise, compare-only transactions
 * included (etcd would serve those locally, possibly stale).
 *
 * Watches: each has its own gRPC stream on some member. When the stream breaks
 * (the member dies, the connection drops, gRPC keepalive finds the member
 * unresponsive, the member has had no leader for a few election timeouts and
 * ends it) the watch opens another, on any member, from the last revision
 * it received + 1, with a backoff of up to 1 s, until closed: nothing is lost
 * or repeated. A watch without `fromRevision` starts after the revision a
 * linearizable read finds; this backend's later calls wait for that read, so
 * a write made after `watch()` returned is delivered. A consumer that falls
 * {@link EtcdBackendOptions.watchBufferEvents} events behind pauses the stream
 * (etcd keeps the rest until the consumer catches up, or fails the watch with
 * `ERR_COMPACTED` if the history is compacted meanwhile).
 *
 * Lease ids: grants pick ids below 2^53 so they fit the contract's numbers;
 * a key bound to a larger id (a lease granted by another etcd client) is read
 * as an `ERR_PROTOCOL` failure rather than as a wrong id.
 */
export class EtcdBackend implements ConsensusBackend {
  readonly kind = "etcd";
  readonly #etcd: Etcd3;
  readonly #env: Env;
  readonly #timeoutMs: number;
  readonly #watchBuffer: number;
  readonly #watches = new Set<EtcdWatch>();
  /** Watches still reading the revision they start after. */
  readonly #starting = new Set<Promise<void>>();
  #closed = false;
  #leader: string | undefined;
  #term = 0;
  #leaderChanges = 0;

  constructor(options: EtcdBackendOptions) {
    if (typeof options !== "object" || options === null) throw invalidArg("options", "an object", options);
    const { endpoints } = options;
    if (!Array.isArray(endpoints) || endpoints.length === 0)
      throw invalidArg("options.endpoints", "a non-empty array of URLs", endpoints);
    for (const [i, e] of endpoints.entries())
      if (typeof e !== "string" || !/^(https?:\/\/[^/\s]+:\d{1,5}\/?|unix:\/\/\/\S+)$/.test(e))
        throw invalidArg(
          `options.endpoints[${i}]`,
          "an http://, https:// URL with a port or a unix:/// path",
          e,
        );
    this.#timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(this.#timeoutMs) || this.#timeoutMs <= 0)
      throw invalidArg("options.requestTimeoutMs", "a positive number", options.requestTimeoutMs);
    this.#watchBuffer = options.watchBufferEvents ?? DEFAULT_WATCH_BUFFER;
    if (!Number.isSafeInteger(this.#watchBuffer) || this.#watchBuffer < 1)
      throw invalidArg("options.watchBufferEvents", "a positive integer", options.watchBufferEvents);
    this.#env = options.env ?? nodeEnv;
    const tls = options.tls;
    this.#etcd = new Etcd3({
      hosts: endpoints.map((e) => e.replace(/\/$/, "")),
      dialTimeout: this.#timeoutMs,
      grpcOptions: GRPC_OPTIONS,
      faultHandling: { global: ONCE },
      ...(tls
        ? {
            credentials: {
              rootCertificate: Buffer.from(tls.ca),
              ...(tls.key ? { privateKey: Buffer.from(tls.key) } : {}),
              ...(tls.cert ? { certChain: Buffer.from(tls.cert) } : {}),
            },
          }
        : {}),
    });
  }

  async txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure?: readonly TxnOp[],
  ): Promise<TxnResult> {
    this.#open();
    if (!Array.isArray(compares)) throw invalidArg("compares", "an array of compares", compares);
    const req = {
      compare: compares.map(compare),
      success: ops(success, "success"),
      failure: ops(failure, "failure"),
    };
    // etcd serves a txn whose branches hold only serializable ranges as a
    // serializable read, and counts two empty branches as such: a member
    // behind the leader would answer the compares from its stale state. One
    // linearizable count in each branch (its result dropped) makes it a
    // linearizable read, as the contract's reads are.
    const padded = req.success.length === 0 && req.failure.length === 0;
    if (padded) {
      const probe: IRequestOp = { request_range: { key: Buffer.from([0]), count_only: true } };
      req.success.push(probe);
      req.failure.push(probe);
    }
    const res = await this.#call("txn", "unsent", (a) => this.#etcd.kv.txn(req, a.options));
    const asked: IRequestOp[] = res.succeeded ? req.success : req.failure;
    const responses = res.responses ?? [];
    if (responses.length !== asked.length)
      throw new DWCPError("ERR_PROTOCOL", `etcd answered ${responses.length} of ${asked.length} txn ops`);
    return {
      succeeded: Boolean(res.succeeded),
      revision: int(res.header?.revision),
      results: padded ? [] : responses.map((r, i) => opResult(r, asked[i]!)),
    };
  }

  async range(sel: KeySelector, options?: RangeOptions): Promise<RangeResult> {
    this.#open();
    const req = rangeRequest(sel, options);
    const res = await this.#call("range", "always", (a) => this.#etcd.kv.range(req, a.options));
    return { ...rangeResult(res), revision: int(res.header?.revision) };
  }

  async put(key: string, value: Uint8Array, options?: { lease?: number }): Promise<number> {
    this.#open();
    const req = putRequest(key, value, options?.lease, undefined, "put");
    const res = await this.#call("put", "unsent", (a) => this.#etcd.kv.put(req, a.options));
    return int(res.header?.revision);
  }

  async delete(sel: KeySelector): Promise<number> {
    this.#open();
    const req = selector(sel);
    const res = await this.#call("delete", "unsent", (a) => this.#etcd.kv.deleteRange(req, a.options));
    return int(res.deleted);
  }

  watch(sel: KeySelector, options: WatchOptions = {}): Watch {
    this.#open();
    const { key, range_end } = selector(sel);
    const from = options.fromRevision;
    if (from !== undefined && (!Number.isSafeInteger(from) || from < 1))
      throw invalidArg("options.fromRevision", "an integer ≥ 1", from);
    const host: WatchHost = {
      env: this.#env,
      open: () => this.#etcd.watchClient.watch(REQUIRE_LEADER),
      currentRevision: () => this.#startRevision(key),
      maxBufferedEvents: this.#watchBuffer,
      maxBackoffMs: 1000,
      forget: (w) => this.#watches.delete(w),
    };
    const w = new EtcdWatch(host, key, range_end, from);
    this.#watches.add(w);
    return w;
  }

  /**
   * The revision a watch without `fromRevision` starts after. Until it is
   * known, later calls of this backend wait (see {@link #call}), so a write
   * made after `watch()` returned is one the watch delivers.
   */
  #startRevision(key: Buffer): Promise<number> {
    const read = this.#call(
      "watch",
      "always",
      (a) => this.#etcd.kv.range({ key, count_only: true }, a.options),
      false,
    ).then((res) => int(res.header?.revision));
    const settled = read.then(
      () => undefined,
      () => undefined,
    );
    this.#starting.add(settled);
    void settled.then(() => this.#starting.delete(settled));
    return read;
  }

  async compact(revision: number): Promise<void> {
    this.#open();
    if (!Number.isSafeInteger(revision) || revision < 1)
      throw invalidArg("revision", "an integer ≥ 1", revision);
    await this.#call("compact", "always", async (a) => {
      try {
        // physical: the call returns once the history is gone, so every later
        // read and watch of it fails.
        await this.#etcd.kv.compact({ revision, physical: true }, a.options);
      } catch (err) {
        // A repeat that finds the revision compacted found its own earlier attempt.
        if (a.n > 0 && mapError(err, "compact").error.code === "ERR_COMPACTED") return;
        throw err;
      }
    });
  }

  async grant(ttlSeconds: number): Promise<Lease> {
    this.#open();
    if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds < 1)
      throw invalidArg("ttlSeconds", "an integer ≥ 1", ttlSeconds);
    let id = 0;
    return this.#call("grant", "always", async (a) => {
      if (id === 0) id = 1 + this.#env.random.int(LEASE_ID_SPAN - 1);
      try {
        const res = await this.#etcd.leaseClient.leaseGrant({ ID: id, TTL: ttlSeconds }, a.options);
        if (res.error) throw new DWCPError("ERR_UNAVAILABLE", `grant: ${res.error}`);
        return { id, ttl: int(res.TTL) };
      } catch (err) {
        if (!/lease already exists/.test(err instanceof Error ? err.message : "")) throw err;
        if (a.n === 0) {
          // Another client's lease has this id: pick another next time.
          id = 0;
          throw new DWCPError("ERR_UNAVAILABLE", "grant: lease id taken; retrying", { cause: err });
        }
        // The id is ours: an earlier attempt of this grant was applied.
        const ttl = await this.#etcd.leaseClient.leaseTimeToLive({ ID: id }, a.options);
        return { id, ttl: int(ttl.grantedTTL) };
      }
    });
  }

  async keepAlive(lease: number): Promise<number> {
    this.#open();
    const id = leaseId(lease, "lease");
    const ttl = await this.#call("keepAlive", "always", async (a) => {
      const stream = await this.#etcd.leaseClient.leaseKeepAlive(a.options);
      return new Promise<number>((resolve, reject) => {
        const done = (): void => {
          stream.end();
          stream.cancel();
        };
        stream.on("data", (res) => {
          resolve(int(res.TTL));
          done();
        });
        stream.on("error", reject);
        stream.on("end", () => reject(new Error("14 UNAVAILABLE: keep-alive stream ended")));
        stream.write({ ID: id });
      });
    });
    if (ttl <= 0) throw new DWCPError("ERR_LEASE_NOT_FOUND", `lease ${id} is expired or revoked`);
    return ttl;
  }

  async revoke(lease: number): Promise<void> {
    this.#open();
    const id = leaseId(lease, "lease");
    await this.#call("revoke", "always", async (a) => {
      try {
        await this.#etcd.leaseClient.leaseRevoke({ ID: id }, a.options);
      } catch (err) {
        // A repeat that finds the lease gone found its own earlier attempt.
        if (a.n > 0 && mapError(err, "revoke").error.code === "ERR_LEASE_NOT_FOUND") return;
        throw err;
      }
    });
  }

  async timeToLive(lease: number): Promise<number> {
    this.#open();
    const id = leaseId(lease, "lease");
    const res = await this.#call("timeToLive", "always", (a) =>
      this.#etcd.leaseClient.leaseTimeToLive({ ID: id }, a.options),
    );
    const ttl = int(res.TTL);
    return ttl < 0 ? -1 : ttl;
  }

  /**
   * The state of one member (whichever answers): its revision, the compacted
   * revision, the leader it follows (its member id in hex, as etcdctl shows it).
   * `leaderChanges` counts the changes seen between calls of this method: a
   * new leader, or the same one elected again in a later term.
   */
  async status(): Promise<BackendStatus> {
    this.#open();
    const st = await this.#call("status", "always", (a) => this.#etcd.maintenance.status(a.options));
    const leader = st.leader && st.leader !== "0" ? BigInt(st.leader).toString(16) : undefined;
    const term = int(st.raftTerm);
    if (leader !== undefined && term >= this.#term) {
      if (this.#leader !== undefined && (leader !== this.#leader || term > this.#term)) this.#leaderChanges++;
      this.#leader = leader;
      this.#term = term;
    }
    return {
      revision: int(st.header?.revision),
      compactRevision: await this.#compactRevision(int(st.header?.revision)),
      ...(leader === undefined ? {} : { leader }),
      leaderChanges: this.#leaderChanges,
    };
  }

  /**
   * The compacted revision: the oldest revision still readable, found by
   * bisection with serializable reads (etcd reports it only to a watch, or in
   * a hash of the whole store); 0 while revision 1 is readable.
   */
  async #compactRevision(current: number): Promise<number> {
    const readable = async (revision: number): Promise<boolean> => {
      try {
        await this.#call("status", "always", (a) =>
          this.#etcd.kv.range(
            { key: Buffer.from([0]), revision, serializable: true, count_only: true },
            a.options,
          ),
        );
        return true;
      } catch (err) {
        if (err instanceof DWCPError && err.code === "ERR_COMPACTED") return false;
        throw err;
      }
    };
    if (current <= 1 || (await readable(1))) return 0;
    let lo = 1; // not readable
    let hi = current; // readable: the current revision always is
    while (hi - lo > 1) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (await readable(mid)) hi = mid;
      else lo = mid;
    }
    return hi;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of [...this.#watches]) w.close();
    this.#etcd.close();
  }

  #open(): void {
    if (this.#closed) throw new DWCPError("ERR_CLOSED", "the etcd backend is closed");
  }

  /**
   * Runs one RPC within the request timeout, trying again on
   * `ERR_UNAVAILABLE` as `retry` allows, with a growing pause between tries.
   */
  async #call<T>(
    what: string,
    retry: Retry,
    rpc: (a: Attempt) => Promise<T>,
    afterWatchStarts = true,
  ): Promise<T> {
    if (afterWatchStarts && this.#starting.size > 0) await Promise.all(this.#starting);
    const clock = this.#env.clock;
    const end = clock.now() + this.#timeoutMs;
    // A repeatable call gives each try a part of the time, so a member that
    // hangs (stopped) leaves time to ask another.
    const slice = retry === "always" ? Math.max(250, this.#timeoutMs / 3) : this.#timeoutMs;
    let backoff = FIRST_BACKOFF_MS;
    for (let n = 0; ; n++) {
      const left = end - clock.now();
      try {
        return await rpc({ n, options: { deadline: clock.wall() + Math.min(left, slice) } });
      } catch (err) {
        if (this.#closed)
          throw new DWCPError("ERR_CLOSED", `${what}: the etcd backend is closed`, { cause: err });
        const { error, unsent } = mapError(err, what);
        if (error.code !== "ERR_UNAVAILABLE" || !(unsent || retry === "always")) throw error;
        if (end - clock.now() <= backoff) throw error;
        await new Promise<void>((resolve) => clock.setTimeout(resolve, backoff));
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      }
    }
  }
}
