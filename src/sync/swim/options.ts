/**
 * The tunables of SWIM membership and their defaults. The defaults follow the
 * LAN profile of HashiCorp memberlist (the engine of Serf and Consul), so a
 * DWCP cluster detects failures about as fast as a Serf cluster on the same
 * network and can be measured against one.
 */
import { invalidArg } from "../../errors.js";
import type { MembershipUpdate, SignedUpdate } from "./messages.js";

/** Tunables of a {@link Swim} core; every field is optional. */
export interface SwimOptions {
  /** Time between two probes of this node, before Lifeguard stretches it, ms. @default 1000 */
  readonly probeIntervalMs?: number;
  /** How long a direct ping waits for its ack before indirect probes start, ms (stretched as well). @default 500 */
  readonly probeTimeoutMs?: number;
  /** Members asked to probe a silent member indirectly (SWIM's k). @default 3 */
  readonly indirectChecks?: number;
  /**
   * The suspicion timeout's base: the shortest suspicion lasts
   * `suspicionMult × max(1, log10 n) × probeIntervalMs`. The number of
   * independent confirmations Lifeguard waits for is `suspicionMult − 2`.
   * @default 4
   */
  readonly suspicionMult?: number;
  /** The longest suspicion (no confirmation) is this many times the shortest. @default 6 */
  readonly suspicionMaxTimeoutMult?: number;
  /** Each update is piggybacked `retransmitMult × ⌈log10(n + 1)⌉` times before it leaves the queue. @default 4 */
  readonly retransmitMult?: number;
  /** Time between two gossip rounds, ms. @default 200 */
  readonly gossipIntervalMs?: number;
  /** Members each gossip round sends to. @default 3 */
  readonly gossipNodes?: number;
  /** Lifeguard's Local Health Multiplier ceiling: timeouts stretch up to `(max + 1)` times. @default 8 */
  readonly awarenessMax?: number;
  /** Time between two full-state exchanges with a random member (anti-entropy), ms; 0 turns them off. @default 30000 */
  readonly pushPullIntervalMs?: number;
  /** How long a dead or departed member is kept (and still gossiped to, so it may learn and refute), ms. @default 30000 */
  readonly deadRetentionMs?: number;
  /** Time between two join attempts while no seed has answered, ms. @default 1000 */
  readonly joinRetryMs?: number;
  /** How long a leaving node keeps gossiping its departure before it stops, ms. @default 1000 */
  readonly leavePropagateMs?: number;
  /** Members kept at most, tombstones included; updates naming more are `ERR_RESOURCE_LIMIT`. @default 1024 */
  readonly maxMembers?: number;
  /** Updates piggybacked on one message at most. @default 8 */
  readonly maxPiggyback?: number;
  /** Bytes of piggybacked updates per message at most (they share a datagram with the probe). @default 1200 */
  readonly piggybackBytes?: number;
  /** Indirect probes this node runs for others at once; more are refused. @default 128 */
  readonly maxRelays?: number;
  /**
   * Signs a membership update this node originates (internet mode: Ed25519 by
   * the origin). Called with the update; returns the signature over
   * {@link updateBytes}. @default none: updates travel unsigned
   */
  readonly sign?: (update: MembershipUpdate) => Uint8Array;
  /**
   * Checks an update before it is merged: it must be signed by its `origin`
   * (`from` is the peer that relayed it). An update that fails is dropped and
   * counted. @default none: every well-formed update is accepted
   */
  readonly verify?: (update: SignedUpdate, from: string) => boolean;
}

/** {@link SwimOptions} with every default filled in. */
export type ResolvedSwimOptions = Required<Omit<SwimOptions, "sign" | "verify">> &
  Pick<SwimOptions, "sign" | "verify">;

/** The defaults of {@link SwimOptions}. */
export const SWIM_DEFAULTS: Readonly<Required<Omit<SwimOptions, "sign" | "verify">>> = Object.freeze({
  probeIntervalMs: 1000,
  probeTimeoutMs: 500,
  indirectChecks: 3,
  suspicionMult: 4,
  suspicionMaxTimeoutMult: 6,
  retransmitMult: 4,
  gossipIntervalMs: 200,
  gossipNodes: 3,
  awarenessMax: 8,
  pushPullIntervalMs: 30_000,
  deadRetentionMs: 30_000,
  joinRetryMs: 1000,
  leavePropagateMs: 1000,
  maxMembers: 1024,
  maxPiggyback: 8,
  piggybackBytes: 1200,
  maxRelays: 128,
});

/**
 * Fills in the defaults and checks ranges.
 * @throws DWCPError `ERR_INVALID_ARG` for a value out of range
 */
export function resolveOptions(o: SwimOptions = {}): ResolvedSwimOptions {
  const r: ResolvedSwimOptions = { ...SWIM_DEFAULTS, ...o };
  const positive = ["probeIntervalMs", "probeTimeoutMs", "gossipIntervalMs", "joinRetryMs"] as const;
  for (const k of positive)
    if (!(Number.isFinite(r[k]) && r[k] > 0)) throw invalidArg(k, "a positive number", r[k]);
  const nonNegative = ["pushPullIntervalMs", "deadRetentionMs", "leavePropagateMs"] as const;
  for (const k of nonNegative)
    if (!(Number.isFinite(r[k]) && r[k] >= 0)) throw invalidArg(k, "a non-negative number", r[k]);
  const ints: [keyof typeof SWIM_DEFAULTS, number, number][] = [
    ["indirectChecks", 0, 64],
    ["suspicionMult", 1, 1000],
    ["suspicionMaxTimeoutMult", 1, 1000],
    ["retransmitMult", 1, 1000],
    ["gossipNodes", 0, 64],
    ["awarenessMax", 0, 64],
    ["maxMembers", 1, 65_536],
    ["maxPiggyback", 0, 32],
    ["piggybackBytes", 0, 60_000],
    ["maxRelays", 0, 65_536],
  ];
  for (const [k, lo, hi] of ints) {
    const v = r[k];
    if (!Number.isInteger(v) || v < lo || v > hi) throw invalidArg(k, `an integer in [${lo}, ${hi}]`, v);
  }
  if (r.probeTimeoutMs >= r.probeIntervalMs)
    throw invalidArg("probeTimeoutMs", `less than probeIntervalMs (${r.probeIntervalMs})`, r.probeTimeoutMs);
  return r;
}
