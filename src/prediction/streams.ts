/**
 * From an allocated rate to AMST's tuning: the stream count follows the rate
 * times the RTT (the flow's bandwidth-delay product) over what one stream's
 * window carries, within the mode's bounds. The arithmetic is the mode policy's
 * ({@link streamTarget}); this only puts the allocated rate in place of the
 * path's measured bandwidth.
 */
import {
  DEFAULT_STREAM_BOUNDS,
  type StreamBounds,
  streamTarget,
  type TuneInput,
  tuneParams,
} from "../mode/policy.js";
import type { TuneParams } from "../transport/contract.js";

/** A path as AMST tuning sees it, without a rate: mode, RTT and optionally loss, window and MSS. */
export type RatePath = Omit<TuneInput, "bandwidthBps">;

/** The parameters for `conn.tune()` of a flow allocated `rateBps` on `path`. */
export function tuneForRate(
  rateBps: number,
  path: RatePath,
  bounds: StreamBounds = DEFAULT_STREAM_BOUNDS,
): TuneParams {
  return tuneParams({ ...path, bandwidthBps: rateBps }, bounds);
}

/**
 * The stream count for a flow allocated `rateBps` on `path`:
 * ⌈rate × RTT / per-stream window⌉ (or the loss-limited rate of one stream, when
 * lower), clamped to `bounds[path.mode]`.
 */
export function streamsForRate(
  rateBps: number,
  path: RatePath,
  bounds: StreamBounds = DEFAULT_STREAM_BOUNDS,
): number {
  return streamTarget({ ...path, bandwidthBps: rateBps }, bounds);
}
