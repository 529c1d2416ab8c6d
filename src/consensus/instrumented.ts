/**
 * A backend that counts: every write's commit latency, the transactions whose
 * compares failed, and the leader changes its backend reports. Apart so the
 * backends stay about consensus and the figures are taken the same way for
 * each.
 */
import type { Env } from "../env/index.js";
import { type ConsensusSample, LatencyHistogram } from "../metrics/index.js";
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
} from "./backend.js";

/** What an {@link InstrumentedBackend} has counted. */
export type ConsensusCounts = Pick<
  ConsensusSample,
  "commits" | "failedCompares" | "errors" | "commitLatency"
>;

/** Wraps `inner`, timing its writes on `env`'s clock. */
export class InstrumentedBackend implements ConsensusBackend {
  readonly counts: ConsensusCounts = {
    commits: 0,
    failedCompares: 0,
    errors: 0,
    commitLatency: new LatencyHistogram(),
  };
  readonly #inner: ConsensusBackend;
  readonly #env: Env;

  constructor(inner: ConsensusBackend, env: Env) {
    this.#inner = inner;
    this.#env = env;
  }

  get kind(): string {
    return this.#inner.kind;
  }

  async #write<T>(call: () => Promise<T>, wrote: (r: T) => boolean = () => true): Promise<T> {
    const t0 = this.#env.clock.now();
    try {
      const r = await call();
      if (wrote(r)) {
        this.counts.commits++;
        this.counts.commitLatency.observe((this.#env.clock.now() - t0) / 1000);
      }
      return r;
    } catch (err) {
      this.counts.errors++;
      throw err;
    }
  }

  txn(
    compares: readonly Compare[],
    success: readonly TxnOp[],
    failure: readonly TxnOp[] = [],
  ): Promise<TxnResult> {
    return this.#write(
      () => this.#inner.txn(compares, success, failure),
      (r) => {
        if (!r.succeeded) this.counts.failedCompares++;
        return (r.succeeded ? success : failure).some((op) => op.type !== "range");
      },
    );
  }

  async range(selector: KeySelector, options?: RangeOptions): Promise<RangeResult> {
    try {
      return await this.#inner.range(selector, options);
    } catch (err) {
      this.counts.errors++;
      throw err;
    }
  }

  put(key: string, value: Uint8Array, options?: { lease?: number }): Promise<number> {
    return this.#write(() => this.#inner.put(key, value, options));
  }

  delete(selector: KeySelector): Promise<number> {
    return this.#write(() => this.#inner.delete(selector));
  }

  watch(selector: KeySelector, options?: WatchOptions): Watch {
    return this.#inner.watch(selector, options);
  }

  compact(revision: number): Promise<void> {
    return this.#inner.compact(revision);
  }

  grant(ttlSeconds: number): Promise<Lease> {
    return this.#write(() => this.#inner.grant(ttlSeconds));
  }

  keepAlive(lease: number): Promise<number> {
    return this.#inner.keepAlive(lease);
  }

  revoke(lease: number): Promise<void> {
    return this.#write(() => this.#inner.revoke(lease));
  }

  timeToLive(lease: number): Promise<number> {
    return this.#inner.timeToLive(lease);
  }

  status(): Promise<BackendStatus> {
    return this.#inner.status();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
