/**
 * A lease kept alive: renewed at a third of its TTL, and given up — by the
 * holder's own clock, before the store may have expired it — when renewals
 * stop getting through. The holder of a lease (a node's registration, an
 * election candidacy) must stop acting on it once it is `lost`; the store's
 * view and the holder's can differ by a request's flight time, which is why a
 * leader's writes also carry a fencing revision (election.ts).
 */
import { EventEmitter } from "node:events";
import { type Env, nodeEnv, type Timer } from "../env/index.js";
import { DWCPError, invalidArg, isDWCPError } from "../errors.js";
import type { ConsensusBackend } from "./backend.js";

/** Options of {@link LeaseKeeper.grant}. */
export interface LeaseKeeperOptions {
  /** Clock for renewals and the local deadline. @default nodeEnv */
  readonly env?: Env;
  /** Renew after this fraction of the TTL. @default 1/3 */
  readonly renewFraction?: number;
}

/** Events of a {@link LeaseKeeper}. */
export interface LeaseKeeperEvents {
  /** A renewal went through: the store's TTL left, seconds. */
  renewed: [ttl: number];
  /**
   * The lease is gone or must be presumed gone: revoked or expired in the
   * store (`ERR_LEASE_NOT_FOUND`), or no renewal got through before the TTL
   * counted from the last one sent (`ERR_TIMEOUT`). Emitted once.
   */
  lost: [reason: DWCPError];
}

/** A granted lease and the loop that keeps it. */
export class LeaseKeeper extends EventEmitter<LeaseKeeperEvents> {
  /** The lease's id, for puts bound to it. */
  readonly id: number;
  /** Its TTL, seconds. */
  readonly ttl: number;
  readonly #backend: ConsensusBackend;
  readonly #env: Env;
  readonly #renewMs: number;
  /** Local time by which the store may have expired the lease: the last renewal *sent* + TTL. */
  #deadline: number;
  #renewal: Timer | undefined;
  #expiry: Timer | undefined;
  #lost: DWCPError | undefined;
  #stopped = false;

  private constructor(
    backend: ConsensusBackend,
    id: number,
    ttl: number,
    sentAt: number,
    env: Env,
    renew: number,
  ) {
    super();
    this.#backend = backend;
    this.id = id;
    this.ttl = ttl;
    this.#env = env;
    this.#renewMs = ttl * 1000 * renew;
    this.#deadline = sentAt + ttl * 1000;
    this.#armExpiry();
    this.#schedule(this.#renewMs);
  }

  /** Grants a lease of `ttlSeconds` on `backend` and starts keeping it. */
  static async grant(
    backend: ConsensusBackend,
    ttlSeconds: number,
    options: LeaseKeeperOptions = {},
  ): Promise<LeaseKeeper> {
    const env = options.env ?? nodeEnv;
    const renew = options.renewFraction ?? 1 / 3;
    if (!(renew > 0 && renew < 1)) throw invalidArg("renewFraction", "a number between 0 and 1", renew);
    const sentAt = env.clock.now();
    const lease = await backend.grant(ttlSeconds);
    return new LeaseKeeper(backend, lease.id, lease.ttl, sentAt, env, renew);
  }

  /** True until the lease is lost or revoked. */
  get alive(): boolean {
    return this.#lost === undefined && !this.#stopped;
  }

  /** Why the lease was lost, once it was. */
  get lostReason(): DWCPError | undefined {
    return this.#lost;
  }

  /** Revokes the lease (its keys go at once) and stops keeping it. Best effort when the store is unreachable. */
  async revoke(): Promise<void> {
    if (this.#stopped) return;
    this.#stop();
    if (this.#lost) return;
    try {
      await this.#backend.revoke(this.id);
    } catch (err) {
      // Already gone is what revoking wants; anything else expires with the TTL.
      if (!isDWCPError(err, "ERR_LEASE_NOT_FOUND")) throw err;
    }
  }

  /** Stops renewing without revoking: the lease expires with its TTL. */
  abandon(): void {
    this.#stop();
  }

  #schedule(ms: number): void {
    if (!this.alive) return;
    this.#renewal = this.#env.clock.setTimeout(() => void this.#renew(), Math.max(0, ms));
    this.#renewal.unref();
  }

  async #renew(): Promise<void> {
    this.#renewal = undefined;
    if (!this.alive) return;
    const sentAt = this.#env.clock.now();
    try {
      const left = await this.#backend.keepAlive(this.id);
      if (!this.alive) return;
      this.#deadline = Math.max(this.#deadline, sentAt + left * 1000);
      this.#armExpiry();
      this.emit("renewed", left);
      this.#schedule(this.#renewMs);
    } catch (err) {
      if (!this.alive) return;
      if (isDWCPError(err, "ERR_LEASE_NOT_FOUND") || isDWCPError(err, "ERR_CLOSED")) {
        this.#lose(err as DWCPError);
        return;
      }
      // Unreachable for now: try again soon, within what is left of the TTL.
      this.#schedule(Math.min(this.#renewMs / 4, Math.max(0, this.#deadline - this.#env.clock.now()) / 2));
    }
  }

  #armExpiry(): void {
    this.#env.clock.clearTimeout(this.#expiry);
    this.#expiry = this.#env.clock.setTimeout(
      () => {
        this.#expiry = undefined;
        if (!this.alive) return;
        // A timer may fire a fraction of a millisecond early by the monotonic clock: look again then.
        if (this.#env.clock.now() < this.#deadline) this.#armExpiry();
        else
          this.#lose(
            new DWCPError(
              "ERR_TIMEOUT",
              `lease ${this.id}: no renewal got through within its ${this.ttl} s TTL`,
            ),
          );
      },
      Math.max(0, this.#deadline - this.#env.clock.now()),
    );
    this.#expiry.unref();
  }

  #lose(reason: DWCPError): void {
    if (this.#lost) return;
    this.#lost = reason;
    this.#stop();
    this.emit("lost", reason);
  }

  #stop(): void {
    this.#stopped = true;
    this.#env.clock.clearTimeout(this.#renewal);
    this.#env.clock.clearTimeout(this.#expiry);
    this.#renewal = undefined;
    this.#expiry = undefined;
  }
}
