/**
 * Batch placement as ITP runs it — rebalancing, defragmentation, evacuation:
 * the MILP with HiGHS within its time limit, and the batch heuristic when the
 * solver gives no plan (infeasible with every VM placed, no incumbent in time,
 * a model too large, the WASM not loadable).
 */
import { placeBatch } from "./batch.js";
import { type SolvePlacementOptions, type SolvePlacementResult, solvePlacement } from "./milp.js";
import type { ClusterState, VmRequest } from "./model.js";

/**
 * {@link solvePlacement} with {@link placeBatch} as its fallback (on cost for
 * a cost objective, else on hosts).
 */
export function solveBatch(
  state: ClusterState,
  vms: readonly VmRequest[],
  options: Omit<SolvePlacementOptions, "fallback"> = {},
): Promise<SolvePlacementResult> {
  const objective = options.objective === "cost" ? "cost" : "hosts";
  return solvePlacement(state, vms, {
    ...options,
    fallback: (s, v) => placeBatch(s, v, { objective }).placements,
  });
}
