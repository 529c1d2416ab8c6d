/**
 * ASS as a node uses it: one map of cluster metadata (keys holding records of
 * named fields), in one of two modes behind one API.
 *
 * - **Strong** (v1, datacenter): {@link StrongMap} over ACP. A write resolves
 *   once committed; reads are linearizable.
 * - **Eventual** (v3, internet): a sync replica (per-field LWW map, delta
 *   push, Merkle anti-entropy) whose peers are SWIM's live members, both
 *   carried over the node's links. A write resolves once applied locally and
 *   reaches the others as the network allows; every delta and every
 *   membership update is signed by its origin and verified before it is
 *   merged.
 */
import { type KeyObject, sign, verify } from "node:crypto";
import type { Env } from "../env/index.js";
import { invalidArg } from "../errors.js";
import type { CarrierNode, CarrierStats } from "./carrier.js";
import { type HostedSync, hostSync } from "./host.js";
import type { SyncReplicaOptions, SyncReplicaStats } from "./replica.js";
import { KeyRegistry } from "./signed.js";
import type { StrongMapOptions, SyncRecord } from "./strong-map.js";
import { type HostedSwim, hostSwim } from "./swim/host.js";
import { updateBytes } from "./swim/messages.js";
import type { SwimOptions } from "./swim/options.js";
import type { SwimStats } from "./swim/swim.js";

/** The cluster map, whichever mode backs it. */
export interface ClusterMap {
  /** "strong": kept in ACP; "eventual": gossiped between the nodes. */
  readonly mode: "strong" | "eventual";
  /** Sets one field of `key`'s record. */
  set(key: string, field: string, value: Uint8Array): Promise<unknown>;
  /** Sets several fields of `key`'s record at once. */
  setFields(key: string, fields: SyncRecord): Promise<unknown>;
  /** Deletes `key`'s record. */
  delete(key: string): Promise<unknown>;
  /** `key`'s record, or undefined. */
  get(key: string): Promise<SyncRecord | undefined>;
  /** Every key. */
  keys(): Promise<string[]>;
  /** Calls `fn` with each key that changes from now on; returns a function that removes it. */
  onChange(fn: (key: string) => void): () => void;
  /** Stops (the eventual map leaves its membership first). */
  close(): void | Promise<void>;
}

/** Ed25519 keys of internet mode: this node's, and every member's by node id. */
export interface SyncSigningKeys {
  readonly privateKey: KeyObject;
  readonly publicKeys: Readonly<Record<string, KeyObject | Uint8Array>>;
}

/** How a node's cluster map is opened, in either mode (the manager's `sync` option). */
export interface SyncConfig {
  /** Internet mode's keys: the eventual map needs them (nothing unsigned crosses the internet). */
  readonly signing?: SyncSigningKeys;
  /** Node ids to join SWIM through. @default the peers linked when the map opens */
  readonly seeds?: readonly string[];
  readonly swim?: Omit<SwimOptions, "sign" | "verify">;
  readonly replica?: Omit<SyncReplicaOptions, "signing">;
  /** Strong mode's options (where in ACP the records live, how long a write may retry). */
  readonly strong?: Omit<StrongMapOptions, "env">;
}

/** Options of {@link openEventualMap}. */
export interface EventualMapOptions {
  /** This node's id. */
  readonly id: string;
  readonly env: Env;
  /** Node ids to join SWIM through (the linked peers, say). */
  readonly seeds: readonly string[];
  /** Internet mode's keys: required (nothing unsigned crosses the internet). */
  readonly signing: SyncSigningKeys;
  readonly swim?: Omit<SwimOptions, "sign" | "verify">;
  readonly replica?: Omit<SyncReplicaOptions, "signing">;
}

/** The figures of an eventual map. */
export interface EventualMapSample {
  readonly replica: SyncReplicaStats;
  readonly swim: SwimStats;
  readonly transport: { readonly sync: CarrierStats; readonly swim: CarrierStats };
  /**
   * Convergence lag: how long the oldest local update not yet acknowledged by
   * every live member has waited, seconds (0 when all are).
   */
  readonly lagSeconds: number;
}

/** Local updates remembered for the lag, at most (older ones count from the oldest kept). */
const LAG_WINDOW = 4096;

/** The eventual map; see the module's description. */
export class EventualMap implements ClusterMap {
  readonly mode = "eventual";
  readonly #sync: HostedSync;
  readonly #swim: HostedSwim;
  readonly #env: Env;
  /** (the replica's seq after a local update, when) of updates not yet acked by every member, oldest first. */
  readonly #pending: [seq: number, at: number][] = [];

  /** @internal use {@link openEventualMap} */
  constructor(sync: HostedSync, swim: HostedSwim, env: Env) {
    this.#sync = sync;
    this.#swim = swim;
    this.#env = env;
  }

  async set(key: string, field: string, value: Uint8Array): Promise<void> {
    this.#sync.replica.set(key, field, value);
    this.#wrote();
  }

  async setFields(key: string, fields: SyncRecord): Promise<void> {
    this.#sync.replica.setFields(key, fields);
    this.#wrote();
  }

  async delete(key: string): Promise<void> {
    this.#sync.replica.delete(key);
    this.#wrote();
  }

  #wrote(): void {
    this.#pending.push([this.#sync.replica.seq, this.#env.clock.now()]);
    if (this.#pending.length > LAG_WINDOW) this.#pending.splice(1, 1);
  }

  async get(key: string): Promise<SyncRecord | undefined> {
    return this.#sync.replica.get(key);
  }

  async keys(): Promise<string[]> {
    return this.#sync.replica.keys();
  }

  onChange(fn: (key: string) => void): () => void {
    return this.#sync.replica.onChange((c) => fn(c.key));
  }

  /** The members SWIM holds alive (or suspect), this node excluded. */
  members(): string[] {
    return this.#swim.swim.liveMembers();
  }

  /** The figures now. */
  sample(): EventualMapSample {
    const replica = this.#sync.replica.stats();
    while (this.#pending.length > 0 && this.#pending[0]![0] <= replica.stableSeq) this.#pending.shift();
    const oldest = this.#pending[0];
    return {
      lagSeconds: oldest ? (this.#env.clock.now() - oldest[1]) / 1000 : 0,
      replica,
      swim: this.#swim.swim.stats(),
      transport: { sync: { ...this.#sync.stats }, swim: { ...this.#swim.stats } },
    };
  }

  /** Leaves the membership (announced, gossiped for a moment: at most 3 s), then stops both. */
  async close(): Promise<void> {
    const swim = this.#swim.swim;
    // Read afresh each time: leave() moves it on.
    const state = (): string => swim.state;
    if (state() === "alive") {
      swim.leave();
      for (let waited = 0; state() !== "left" && waited < 3000; waited += 50)
        await new Promise<void>((r) => this.#env.clock.setTimeout(r, 50));
    }
    this.#sync.close();
    this.#swim.close();
  }
}

/**
 * Hosts SWIM and a sync replica on `node`'s links, both signing with this
 * node's key and verifying every update against its origin's, and joins
 * through `seeds`.
 * @throws DWCPError `ERR_INVALID_ARG` without keys for every member, or as the hosts do
 */
export function openEventualMap(node: CarrierNode, o: EventualMapOptions): EventualMap {
  const { id, signing } = o;
  if (!signing?.privateKey || !signing.publicKeys?.[id])
    throw invalidArg(
      "sync.signing",
      "this node's private key and every member's public key, its own included",
      signing,
    );
  const registry = new KeyRegistry();
  for (const [origin, key] of Object.entries(signing.publicKeys)) registry.set(origin, key);
  const publicKey = (origin: string) => registry.get(origin);
  const swim = hostSwim(node, {
    id,
    env: o.env,
    options: {
      ...o.swim,
      sign: (u) => new Uint8Array(sign(null, updateBytes(u), signing.privateKey)),
      verify: (u) => {
        const k = publicKey(u.origin);
        return k !== undefined && verify(null, updateBytes(u), k, u.signature);
      },
    },
  });
  let sync: HostedSync;
  try {
    sync = hostSync(node, {
      id,
      env: o.env,
      peers: () => swim.swim.liveMembers(),
      options: { ...o.replica, signing: { privateKey: signing.privateKey, registry } },
    });
  } catch (err) {
    swim.close();
    throw err;
  }
  swim.swim.join(o.seeds.filter((s) => s !== id));
  return new EventualMap(sync, swim, o.env);
}
