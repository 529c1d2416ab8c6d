/**
 * Feature flags: which v3 components may be used, the rollout percentage and the
 * kill switch. Updates are validated as a whole (a bad update changes nothing),
 * reload live from the API or a watched JSON file, and each accepted change bumps
 * an epoch that peers learn through the control channel.
 */
import { EventEmitter } from "node:events";
import { type FSWatcher, readFileSync, watch } from "node:fs";
import { basename, dirname } from "node:path";
import { DWCPError } from "../errors.js";

/** The flags. Every component flag defaults to false (v1) and the rollout to 0 %. */
export interface FeatureFlags {
  /** AMST v3: adaptive streams, TLS, pacing. @default false */
  enableV3Transport: boolean;
  /** HDE v3: zstd with dictionaries, deeper levels. @default false */
  enableV3Compression: boolean;
  /** PBA v3: online bandwidth predictor. @default false */
  enableV3Prediction: boolean;
  /** ASS v3: CRDTs, delta sync, anti-entropy. @default false */
  enableV3StateSync: boolean;
  /** ACP v3: byzantine-tolerant agreement. @default false */
  enableV3Consensus: boolean;
  /** ITP v3: geo-aware placement. @default false */
  enableV3Placement: boolean;
  /** Share of nodes (by rolloutHash of the node id) allowed on v3, 0–100. @default 0 */
  v3RolloutPercentage: number;
  /** Kill switch: everything on v1, whatever else says. @default false */
  forceV1: boolean;
}

export const DEFAULT_FLAGS: Readonly<FeatureFlags> = Object.freeze({
  enableV3Transport: false,
  enableV3Compression: false,
  enableV3Prediction: false,
  enableV3StateSync: false,
  enableV3Consensus: false,
  enableV3Placement: false,
  v3RolloutPercentage: 0,
  forceV1: false,
});

const BOOLEAN_KEYS = [
  "enableV3Transport",
  "enableV3Compression",
  "enableV3Prediction",
  "enableV3StateSync",
  "enableV3Consensus",
  "enableV3Placement",
  "forceV1",
] as const;

/**
 * Applies `update` to `base` and validates the result.
 * @throws DWCPError `ERR_INVALID_FLAGS` naming every problem (unknown keys, wrong types, range)
 */
export function mergeFlags(base: Readonly<FeatureFlags>, update: unknown): FeatureFlags {
  if (update === null || typeof update !== "object" || Array.isArray(update)) {
    throw new DWCPError("ERR_INVALID_FLAGS", "flags must be a JSON object");
  }
  const problems: string[] = [];
  const out: FeatureFlags = { ...base };
  for (const [k, v] of Object.entries(update)) {
    if ((BOOLEAN_KEYS as readonly string[]).includes(k)) {
      if (typeof v !== "boolean") problems.push(`${k} must be a boolean, got ${JSON.stringify(v)}`);
      else out[k as (typeof BOOLEAN_KEYS)[number]] = v;
    } else if (k === "v3RolloutPercentage") {
      if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 100) {
        problems.push(`v3RolloutPercentage must be a number from 0 to 100, got ${JSON.stringify(v)}`);
      } else out.v3RolloutPercentage = v;
    } else {
      problems.push(`unknown flag ${JSON.stringify(k)}`);
    }
  }
  if (problems.length > 0) throw new DWCPError("ERR_INVALID_FLAGS", problems.join("; "));
  return out;
}

/** Events of a {@link FlagStore}. */
export interface FlagStoreEvents {
  /** An update was accepted. */
  change: [flags: Readonly<FeatureFlags>, epoch: number, previous: Readonly<FeatureFlags>];
  /** An update (API or file) was rejected; the flags did not change. */
  error: [DWCPError];
}

/** Holds the live flags of a node. */
export class FlagStore extends EventEmitter<FlagStoreEvents> {
  #flags: Readonly<FeatureFlags>;
  #epoch = 0;
  #watcher: FSWatcher | undefined;
  #debounce: NodeJS.Timeout | undefined;

  constructor(initial: Partial<FeatureFlags> = {}) {
    super();
    this.#flags = Object.freeze(mergeFlags(DEFAULT_FLAGS, initial));
  }

  get flags(): Readonly<FeatureFlags> {
    return this.#flags;
  }

  /** Incremented on every accepted change; 0 for the initial flags. */
  get epoch(): number {
    return this.#epoch;
  }

  /**
   * Applies a partial update.
   * @returns the new epoch (unchanged when the update changed nothing)
   * @throws DWCPError `ERR_INVALID_FLAGS`; the previous flags stay in force
   */
  update(update: Partial<FeatureFlags>): number {
    const next = mergeFlags(this.#flags, update);
    if (
      BOOLEAN_KEYS.every((k) => next[k] === this.#flags[k]) &&
      next.v3RolloutPercentage === this.#flags.v3RolloutPercentage
    ) {
      return this.#epoch;
    }
    const previous = this.#flags;
    this.#flags = Object.freeze(next);
    this.#epoch++;
    this.emit("change", this.#flags, this.#epoch, previous);
    return this.#epoch;
  }

  /**
   * Loads `path` (a JSON object of flags) now and again whenever it changes.
   * The file replaces the whole flag set (missing keys fall back to defaults),
   * so deleting a line really turns that flag off. Bad content emits `error`
   * and keeps the previous flags.
   */
  watchFile(path: string): void {
    this.unwatch();
    this.#load(path);
    // Watch the directory: editors and config tools replace files by rename,
    // which a watch on the file itself would miss.
    this.#watcher = watch(dirname(path), (_event, name) => {
      if (name !== null && name !== basename(path)) return;
      // The first event of a burst reads the file at once: a kill switch must not
      // wait for a timer on a busy event loop. Editors emit several events per
      // save and the first may see the file half-written, so its errors stay
      // quiet and a read after the burst settles (5 ms without events) has the
      // last word; an unchanged file is no change (no new epoch).
      if (this.#debounce === undefined) this.#load(path, true);
      clearTimeout(this.#debounce);
      this.#debounce = setTimeout(() => {
        this.#debounce = undefined;
        this.#load(path);
      }, 5);
    });
  }

  #load(path: string, quiet = false): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(path, "utf8"));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // A file caught half-written or briefly absent during a rename is retried by the next event.
      if (e.code === "ENOENT" || quiet) return;
      this.emit("error", new DWCPError("ERR_INVALID_FLAGS", `${path}: ${e.message}`, { cause: err }));
      return;
    }
    try {
      const full = mergeFlags(DEFAULT_FLAGS, parsed);
      this.update(full);
    } catch (err) {
      if (!quiet) this.emit("error", err as DWCPError);
    }
  }

  /** Stops watching the file. */
  unwatch(): void {
    clearTimeout(this.#debounce);
    this.#debounce = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
