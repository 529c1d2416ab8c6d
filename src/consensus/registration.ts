/**
 * A node's registration: the key `/dwcp/nodes/<node id>` bound to a lease the
 * node keeps alive, so the fleet sees a node while it lives and loses it within
 * a TTL once it stops. A lost lease (a partition longer than the TTL, a paused
 * process) is not the end: the registration comes back under a new lease once
 * the store answers again, and says so.
 */
import { EventEmitter } from "node:events";
import { type Env, nodeEnv, type Timer } from "../env/index.js";
import { type DWCPError, invalidArg } from "../errors.js";
import type { ConsensusBackend, KeyValue } from "./backend.js";
import { LeaseKeeper } from "./lease-keeper.js";

/** Where registrations live. */
export const NODES_PREFIX = "/dwcp/nodes/";

/** Options of {@link Registration.start}. */
export interface RegistrationOptions {
  /** The lease's TTL: how long the fleet goes on seeing a node that stopped, seconds. @default 10 */
  readonly ttlSeconds?: number;
  /** Clock for the lease and retries. @default nodeEnv */
  readonly env?: Env;
  /** First wait before registering again after a loss or a failed attempt, ms (doubles to 30 s). @default 500 */
  readonly retryMs?: number;
}

/** Events of a {@link Registration}. */
export interface RegistrationEvents {
  /** The key is in the store under a live lease (again). */
  registered: [lease: number];
  /** The lease was lost: the fleet may no longer see this node; it registers again by itself. */
  lost: [reason: DWCPError];
  /** An attempt to register failed; it is retried. */
  error: [err: unknown];
}

/** A registered node, as the store holds it. */
export interface RegisteredNode {
  readonly nodeId: string;
  readonly value: Uint8Array;
  /** The registration's create revision: a new one after every loss. */
  readonly revision: number;
  readonly lease: number;
}

/** One node's registration; see the module's description. */
export class Registration extends EventEmitter<RegistrationEvents> {
  readonly key: string;
  readonly #backend: ConsensusBackend;
  readonly #value: Uint8Array;
  readonly #ttl: number;
  readonly #env: Env;
  readonly #retryMs: number;
  #keeper: LeaseKeeper | undefined;
  #retry: Timer | undefined;
  #backoff: number;
  #stopped = false;
  /** Times the lease was lost. */
  losses = 0;

  private constructor(backend: ConsensusBackend, nodeId: string, value: Uint8Array, o: RegistrationOptions) {
    super();
    if (typeof nodeId !== "string" || nodeId === "" || nodeId.includes("/"))
      throw invalidArg("nodeId", "a non-empty node id without '/'", nodeId);
    this.key = `${NODES_PREFIX}${nodeId}`;
    this.#backend = backend;
    this.#value = value;
    this.#ttl = o.ttlSeconds ?? 10;
    this.#env = o.env ?? nodeEnv;
    this.#retryMs = o.retryMs ?? 500;
    this.#backoff = this.#retryMs;
  }

  /**
   * Registers `nodeId` with `value` and keeps it registered. Resolves after the
   * first registration; rejects (and stops) when that one fails.
   */
  static async start(
    backend: ConsensusBackend,
    nodeId: string,
    value: Uint8Array,
    options: RegistrationOptions = {},
  ): Promise<Registration> {
    const r = new Registration(backend, nodeId, value, options);
    await r.#register();
    return r;
  }

  /** True while the key is held under a live lease, as far as this node can tell. */
  get registered(): boolean {
    return this.#keeper?.alive === true;
  }

  async #register(): Promise<void> {
    const keeper = await LeaseKeeper.grant(this.#backend, this.#ttl, { env: this.#env });
    try {
      await this.#backend.put(this.key, this.#value, { lease: keeper.id });
    } catch (err) {
      await keeper.revoke().catch(() => {});
      throw err;
    }
    if (this.#stopped) {
      await keeper.revoke().catch(() => {});
      return;
    }
    this.#keeper = keeper;
    this.#backoff = this.#retryMs;
    keeper.once("lost", (reason) => {
      if (this.#stopped) return;
      this.losses++;
      this.emit("lost", reason);
      this.#again();
    });
    this.emit("registered", keeper.id);
  }

  #again(): void {
    if (this.#stopped || this.#retry) return;
    const wait = this.#backoff;
    this.#backoff = Math.min(30_000, this.#backoff * 2);
    this.#retry = this.#env.clock.setTimeout(() => {
      this.#retry = undefined;
      this.#register().catch((err: unknown) => {
        if (this.#stopped) return;
        if (this.listenerCount("error") > 0) this.emit("error", err);
        this.#again();
      });
    }, wait);
    this.#retry.unref();
  }

  /** Deregisters: the key goes at once (best effort; otherwise within the TTL). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#env.clock.clearTimeout(this.#retry);
    this.#retry = undefined;
    await this.#keeper?.revoke().catch(() => {});
  }
}

/** The nodes registered now. */
export async function registeredNodes(backend: ConsensusBackend): Promise<RegisteredNode[]> {
  const { kvs } = await backend.range({ key: NODES_PREFIX, prefix: true });
  return kvs.map((kv: KeyValue) => ({
    nodeId: kv.key.slice(NODES_PREFIX.length),
    value: kv.value,
    revision: kv.createRevision,
    lease: kv.lease,
  }));
}
