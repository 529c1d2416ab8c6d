/**
 * Fleet-wide feature flags through ACP: one key holds the fleet's flags; every
 * node watches it and applies each change to its own {@link FlagStore}, so a
 * kill switch flipped once reaches every node, in the same order everywhere,
 * and a node that was away catches up from the store (list, then watch).
 * The key's mod revision is the fleet's flag epoch.
 *
 * What the key holds is checked like a flags file: a document that is not
 * valid flags is reported and changes nothing.
 */
import { EventEmitter } from "node:events";
import { type Env, nodeEnv } from "../env/index.js";
import { DWCPError, isDWCPError } from "../errors.js";
import { DEFAULT_FLAGS, type FeatureFlags, type FlagStore, mergeFlags } from "../flags/flags.js";
import type { ConsensusBackend, KeyValue, Watch } from "./backend.js";

/** Where the fleet's flags live by default. */
export const FLAGS_KEY = "/dwcp/flags";
/** Largest flags document taken from the store, bytes. */
const MAX_FLAGS_BYTES = 64 * 1024;

/** Options of {@link FlagsSync.start}. */
export interface FlagsSyncOptions {
  /** The key. @default {@link FLAGS_KEY} */
  readonly key?: string;
  /** Clock for retries. @default nodeEnv */
  readonly env?: Env;
}

/** Events of a {@link FlagsSync}. */
export interface FlagsSyncEvents {
  /** The fleet's flags at `revision` are in force on this node. */
  applied: [revision: number];
  /** A document that is not valid flags (`ERR_INVALID_FLAGS`), or the store failing (retried). */
  error: [err: DWCPError];
}

/** Follows the fleet's flags; see the module's description. */
export class FlagsSync extends EventEmitter<FlagsSyncEvents> {
  readonly key: string;
  readonly #backend: ConsensusBackend;
  readonly #flags: FlagStore;
  readonly #env: Env;
  #revision = 0;
  #watch: Watch | undefined;
  #closed = false;
  #wake: (() => void) | undefined;
  readonly #done: Promise<void>;

  private constructor(backend: ConsensusBackend, flags: FlagStore, o: FlagsSyncOptions) {
    super();
    this.key = o.key ?? FLAGS_KEY;
    this.#backend = backend;
    this.#flags = flags;
    this.#env = o.env ?? nodeEnv;
    this.#done = this.#follow();
  }

  /** Starts following the fleet's flags into `flags`. */
  static start(backend: ConsensusBackend, flags: FlagStore, options: FlagsSyncOptions = {}): FlagsSync {
    return new FlagsSync(backend, flags, options);
  }

  /** The fleet revision of the flags last applied (0 before any). */
  get revision(): number {
    return this.#revision;
  }

  /**
   * Changes the fleet's flags: `update` merged into what the store holds (or
   * into this node's flags when it holds nothing, or nothing valid: a bad
   * document is replaced rather than left to block every update), written only if nobody
   * changed them meanwhile (retried from the new value otherwise). Every node,
   * this one included, applies the result through its watch.
   * @returns the fleet revision of the new flags
   * @throws DWCPError `ERR_INVALID_FLAGS` for an update that is not valid flags
   */
  async publish(update: Partial<FeatureFlags>): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const { kvs } = await this.#backend.range({ key: this.key });
      const held = kvs[0];
      // Validated as a whole before it reaches the fleet.
      const next = mergeFlags(heldFlags(held) ?? this.#flags.flags, update);
      const r = await this.#backend.txn(
        [{ key: this.key, target: "modRevision", op: "=", value: held?.modRevision ?? 0 }],
        [{ type: "put", key: this.key, value: new TextEncoder().encode(JSON.stringify({ flags: next })) }],
      );
      if (r.succeeded) return r.revision;
      if (attempt >= 8)
        throw new DWCPError("ERR_UNAVAILABLE", "the fleet's flags kept changing under the update");
    }
  }

  async #follow(): Promise<void> {
    let backoff = 200;
    while (!this.#closed) {
      try {
        const r = await this.#backend.range({ key: this.key });
        if (r.kvs[0]) this.#apply(r.kvs[0]);
        if (this.#closed) return;
        this.#watch = this.#backend.watch({ key: this.key }, { fromRevision: r.revision + 1 });
        for await (const batch of this.#watch) {
          for (const e of batch) if (e.type === "put") this.#apply(e.kv);
          backoff = 200;
        }
      } catch (err) {
        if (this.#closed) return;
        // The backend closed under it: nothing more to follow.
        if (isDWCPError(err, "ERR_CLOSED")) return;
        // Compacted: list again at once. Anything else: say so, then retry.
        if (!isDWCPError(err, "ERR_COMPACTED")) {
          this.#report(err);
          await new Promise<void>((resolve) => {
            this.#wake = resolve;
            this.#env.clock.setTimeout(resolve, backoff).unref();
          });
          backoff = Math.min(10_000, backoff * 2);
        }
      }
    }
  }

  #apply(kv: KeyValue): void {
    if (kv.modRevision <= this.#revision) return;
    try {
      this.#flags.update(parseFlags(kv.value));
    } catch (err) {
      this.#report(err);
      return;
    }
    this.#revision = kv.modRevision;
    this.emit("applied", kv.modRevision);
  }

  #report(err: unknown): void {
    const e = isDWCPError(err)
      ? err
      : new DWCPError("ERR_UNAVAILABLE", "the fleet's flags could not be read", { cause: err });
    if (this.listenerCount("error") > 0) this.emit("error", e);
  }

  /** Stops following. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#watch?.close();
    this.#wake?.();
    await this.#done;
  }
}

/** The flags `held` holds, or undefined when there is no document or no valid one. */
function heldFlags(held: KeyValue | undefined): FeatureFlags | undefined {
  if (!held) return undefined;
  try {
    return mergeFlags(DEFAULT_FLAGS, parseFlags(held.value));
  } catch {
    return undefined;
  }
}

/** The flags a stored document holds. @throws DWCPError `ERR_INVALID_FLAGS` */
function parseFlags(bytes: Uint8Array): Partial<FeatureFlags> {
  if (bytes.length > MAX_FLAGS_BYTES)
    throw new DWCPError(
      "ERR_INVALID_FLAGS",
      `the fleet's flags document is ${bytes.length} bytes (at most ${MAX_FLAGS_BYTES})`,
    );
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new DWCPError("ERR_INVALID_FLAGS", "the fleet's flags document is not JSON", { cause: err });
  }
  const flags = (doc as { flags?: unknown } | null)?.flags;
  if (typeof flags !== "object" || flags === null || Array.isArray(flags))
    throw new DWCPError("ERR_INVALID_FLAGS", 'the fleet\'s flags document has no "flags" object');
  return flags as Partial<FeatureFlags>;
}
