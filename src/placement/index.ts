/**
 * ITP, placement: where a VM goes. A pure pipeline ({@link place}: hard
 * filters, weighted normalised scores, seeded candidate limiting, an
 * explanation per candidate, per-mode weights), its batch mode for
 * rebalancing and defragmentation ({@link placeBatch}: sorted, every host
 * scored, then a bounded local search), the MILP with HiGHS
 * ({@link solvePlacement}), and the optimistic commit that
 * makes concurrent placers safe ({@link PlacementStore}, {@link placeAndCommit}:
 * a plan is one ACP transaction comparing each touched host's allocation
 * revision, on any consensus backend).
 *
 * @packageDocumentation
 */
export {
  type BatchObjective,
  type BatchOptions,
  type BatchResult,
  type BatchScore,
  type BatchStats,
  placeBatch,
} from "./batch.js";
export type { CandidateLimit } from "./candidates.js";
export { ClusterPlacer, type ClusterPlacerOptions } from "./cluster-placer.js";
export type { CandidateExplanation, PlacementMetrics, VmExplanation } from "./explain.js";
export {
  type SolvePlacementOptions,
  type SolvePlacementResult,
  solvePlacement,
  verifyPlan,
} from "./milp.js";
export type {
  Allocation,
  ClusterState,
  Host,
  Placement,
  Resource,
  Resources,
  ScoreWeights,
  SpreadConstraint,
  Taint,
  VmRequest,
} from "./model.js";
export {
  type PlaceOptions,
  type PlaceResult,
  Placer,
  place,
  type Unplaced,
  type VmOutcome,
} from "./pipeline.js";
export { solveBatch } from "./rebalance.js";
export {
  type CommitOutcome,
  PlacementStore,
  type PlacementStoreOptions,
  type PlaceOutcome,
  type Plan,
  type Planner,
  placeAndCommit,
} from "./store.js";
export { defaultSpreadFor, weightsFor } from "./weights.js";
