/**
 * ASS, state sync: one map of cluster metadata (keys holding records of named
 * fields) behind {@link ClusterMap} — strong in ACP on datacenter paths
 * ({@link StrongMap}), eventual on internet paths ({@link EventualMap}: per-field
 * LWW on hybrid logical clocks, delta pushes tracked per peer, Merkle
 * anti-entropy, SWIM with Lifeguard, every delta and membership update signed
 * by its origin). A manager opens the right one with `manager.sync()`; the
 * sans-IO cores are here for agents that carry them themselves.
 *
 * @packageDocumentation
 */
export { type Carrier, type CarrierNode, type CarrierStats, carry } from "./carrier.js";
export {
  type ClusterMap,
  EventualMap,
  type EventualMapOptions,
  type EventualMapSample,
  openEventualMap,
  type SyncConfig,
  type SyncSigningKeys,
} from "./cluster-map.js";
export { compareHlc, Hlc, type HlcTimestamp } from "./hlc.js";
export { type HostedSync, type HostedSyncOptions, hostSync, SYNC_MESSAGE_KIND } from "./host.js";
export { LwwMap } from "./lww-map.js";
export { OrSet } from "./or-set.js";
export { PnCounter } from "./pn-counter.js";
export {
  SyncReplica,
  type SyncReplicaConfig,
  type SyncReplicaOptions,
  type SyncReplicaStats,
} from "./replica.js";
export { KeyRegistry } from "./signed.js";
export { StrongMap, type StrongMapOptions, type SyncRecord } from "./strong-map.js";
export {
  type HostedSwim,
  hostSwim,
  SWIM_MESSAGE_KIND,
  Swim,
  type SwimEvent,
  type SwimOptions,
} from "./swim/index.js";
