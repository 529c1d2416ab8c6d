/**
 * ACP as a node agent uses it: one backend chosen by configuration (the
 * embedded {@link LocalBackend} for one machine, an etcd cluster where agents
 * outgrow one), the node's registration under a lease, the fleet's flags
 * followed through the store, and the figures for the metrics.
 */
import { type Env, nodeEnv, type Timer } from "../env/index.js";
import { invalidArg } from "../errors.js";
import type { FlagStore } from "../flags/flags.js";
import type { BftReplicaSample, ConsensusSample } from "../metrics/index.js";
import type { ConsensusBackend } from "./backend.js";
import type { BftConsensusConfig } from "./bft/open.js";
import type { EtcdBackendOptions } from "./etcd/index.js";
import { FlagsSync, type FlagsSyncOptions } from "./flags-sync.js";
import { InstrumentedBackend } from "./instrumented.js";
import { LocalBackend, type LocalBackendOptions } from "./local/index.js";
import { Registration, type RegistrationOptions } from "./registration.js";

/**
 * Which backend ACP runs on: `{ backend: "local", dir }` (the default, in
 * memory without `dir`), `{ backend: "etcd", endpoints }`, `{ backend: "bft",
 * membership, nodeIds, … }` (the internet generation: byzantine-tolerant
 * replicas over the node's links), or a backend of one's own.
 */
export type ConsensusConfig =
  | ({ readonly backend: "local" } & Omit<LocalBackendOptions, "env">)
  | ({ readonly backend: "etcd" } & EtcdBackendOptions)
  | ({ readonly backend: "bft" } & BftConsensusConfig)
  | { readonly backend: ConsensusBackend };

/** Options of {@link Consensus}. */
export interface ConsensusOptions {
  /** This node's id: its registration key. */
  readonly nodeId: string;
  /**
   * Register the node under a lease (`/dwcp/nodes/<node id>`), with this value.
   * @default not registered
   */
  readonly register?: { readonly value?: Uint8Array } & Omit<RegistrationOptions, "env">;
  /** Follow the fleet's flags into this store. @default not followed */
  readonly flags?: { readonly store: FlagStore } & Omit<FlagsSyncOptions, "env">;
  /** Clock for leases, retries and latencies. @default nodeEnv */
  readonly env?: Env;
}

const STATUS_POLL_MS = 5000;

/**
 * Opens the backend `config` names. The etcd client (gRPC) and the BFT replica
 * are loaded only when asked for: a node on the embedded backend never pays
 * for them.
 */
export async function openBackend(config: ConsensusConfig, env: Env = nodeEnv): Promise<ConsensusBackend> {
  const b = config.backend;
  if (b === "local") {
    const { backend: _, ...o } = config as { backend: "local" } & LocalBackendOptions;
    return new LocalBackend({ ...o, env });
  }
  if (b === "etcd") {
    const { backend: _, ...o } = config as { backend: "etcd" } & EtcdBackendOptions;
    const { EtcdBackend } = await import("./etcd/index.js");
    return new EtcdBackend(o);
  }
  if (b === "bft") {
    const { backend: _, ...o } = config as { backend: "bft" } & BftConsensusConfig;
    const { openBft } = await import("./bft/open.js");
    return openBft(o, env);
  }
  if (typeof b === "object" && b !== null && typeof (b as ConsensusBackend).txn === "function") return b;
  throw invalidArg("consensus.backend", '"local", "etcd", "bft" or a ConsensusBackend', b);
}

/** The consensus component of a node; see the module's description. */
export class Consensus {
  /** The backend, counting its commits for the metrics. */
  readonly backend: InstrumentedBackend;
  readonly #env: Env;
  readonly #nodeId: string;
  readonly #options: ConsensusOptions;
  #registration: Registration | undefined;
  #flags: FlagsSync | undefined;
  #leaderChanges = 0;
  #statusTimer: Timer | undefined;
  #closed = false;

  readonly #raw: ConsensusBackend;
  /** Whether the backend was opened here (else it is the caller's to close). */
  readonly #owned: boolean;

  private constructor(backend: ConsensusBackend, options: ConsensusOptions, env: Env, owned: boolean) {
    this.#env = env;
    this.#owned = owned;
    this.#nodeId = options.nodeId;
    this.#options = options;
    this.#raw = backend;
    this.backend = new InstrumentedBackend(backend, env);
  }

  /**
   * Opens the backend, registers the node and starts following the fleet's
   * flags, as configured. A failed registration closes what was opened.
   */
  static async open(config: ConsensusConfig, options: ConsensusOptions): Promise<Consensus> {
    const env = options.env ?? nodeEnv;
    const owned = typeof config.backend === "string";
    const c = new Consensus(await openBackend(config, env), options, env, owned);
    try {
      await c.#start();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  async #start(): Promise<void> {
    const o = this.#options;
    // Leader changes are the backend's to tell, and only by asking.
    const poll = () => {
      this.#statusTimer = this.#env.clock.setTimeout(() => {
        this.refresh()
          .catch(() => {})
          .finally(() => {
            if (!this.#closed) poll();
          });
      }, STATUS_POLL_MS);
      this.#statusTimer.unref();
    };
    poll();
    if (o.flags && !this.#flags) {
      const { store, ...rest } = o.flags;
      this.#flags = FlagsSync.start(this.backend, store, { ...rest, env: this.#env });
    }
    if (o.register && !this.#registration) {
      const { value, ...rest } = o.register;
      this.#registration = await Registration.start(
        this.backend,
        this.#nodeId,
        value ?? new TextEncoder().encode(JSON.stringify({ nodeId: this.#nodeId })),
        { ...rest, env: this.#env },
      );
    }
  }

  /** The node's registration, once started with `register`. */
  get registration(): Registration | undefined {
    return this.#registration;
  }

  /** The fleet's flags follower, once started with `flags`. */
  get fleetFlags(): FlagsSync | undefined {
    return this.#flags;
  }

  /** Asks the backend what only it can say (leader changes); done every 5 s by itself. */
  async refresh(): Promise<void> {
    const s = await this.backend.status();
    this.#leaderChanges = s.leaderChanges;
  }

  /** The figures now. */
  sample(): ConsensusSample {
    const c = this.backend.counts;
    // A BFT backend reports the member this node hosts (duck-typed: the BFT code loads only when used).
    const raw = this.#raw as Partial<{ replicaSample(): BftReplicaSample | undefined }>;
    const replica = typeof raw.replicaSample === "function" ? raw.replicaSample() : undefined;
    return {
      ...c,
      backend: this.backend.kind,
      leaderChanges: this.#leaderChanges,
      leaseExpiries: this.#registration?.losses ?? 0,
      registered: this.#registration?.registered ? 1 : 0,
      ...(replica ? { replica } : {}),
    };
  }

  /** Deregisters, stops following, closes the backend if it opened it (one passed in stays open). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#env.clock.clearTimeout(this.#statusTimer);
    await this.#flags?.close();
    await this.#registration?.stop();
    if (this.#owned) await this.backend.close();
  }
}
