/**
 * ITP as a node uses it: the online pipeline with its generation's weights,
 * committed in ACP. v1 (datacenter) bin-packs within one datacenter; v3
 * (internet) spreads across regions and weighs the measured RTTs. Every call
 * plans on a fresh read and commits against the allocation revisions it read,
 * so any number of placers, on any nodes, never overcommit a host.
 */
import type { Env } from "../env/index.js";
import type { Mode } from "../mode/classifier.js";
import type { CandidateLimit } from "./candidates.js";
import type { VmRequest } from "./model.js";
import { place } from "./pipeline.js";
import { type PlacementStore, type PlaceOutcome, placeAndCommit } from "./store.js";
import { defaultSpreadFor, weightsFor } from "./weights.js";

/** Options of a {@link ClusterPlacer} (the manager's `placement` option). */
export interface ClusterPlacerOptions {
  /** Where ITP's keys live in ACP. @default "/dwcp/placement/" */
  readonly prefix?: string;
  /** Feasible hosts scored per VM. @default "log2" */
  readonly limit?: CandidateLimit;
  /** Reads (plans) one call may take before `ERR_UNAVAILABLE`. @default 16 */
  readonly maxAttempts?: number;
}

/** Places VMs with one generation's policy and commits them; see the module's description. */
export class ClusterPlacer {
  /** The weights' mode: "datacenter" on v1, "internet" on v3. */
  readonly mode: Mode;
  /** The hosts and allocations in ACP (add hosts with `putHost`). */
  readonly store: PlacementStore;
  readonly #env: Env;
  readonly #options: ClusterPlacerOptions;
  #seed: number;

  constructor(store: PlacementStore, mode: Mode, env: Env, options: ClusterPlacerOptions = {}) {
    this.store = store;
    this.mode = mode;
    this.#env = env;
    this.#options = options;
    // Placers on different nodes shuffle hosts differently, so they race less.
    this.#seed = env.random.int(2 ** 31);
  }

  /** Plans `vms` (in order, each booked before the next) and commits them; re-plans what lost a race. */
  place(vms: readonly VmRequest[]): Promise<PlaceOutcome> {
    const weights = weightsFor(this.mode);
    const spread = defaultSpreadFor(this.mode);
    return placeAndCommit(
      this.store,
      vms,
      (state, batch) =>
        place(state, batch, {
          seed: this.#seed++,
          weights,
          ...(spread ? { defaultSpread: spread } : {}),
          ...(this.#options.limit === undefined ? {} : { limit: this.#options.limit }),
        }),
      {
        env: this.#env,
        ...(this.#options.maxAttempts === undefined ? {} : { maxAttempts: this.#options.maxAttempts }),
      },
    );
  }
}
