/**
 * AMST autotune arithmetic (pure): how many streams a path needs.
 *
 * One TCP stream moves at most its window per round trip, and under random loss
 * a loss-based congestion control (CUBIC, Reno) settles near the Mathis rate
 * `MSS / RTT × 1.22 / √p`. BBR paces at its model of the path instead and keeps
 * the bottleneck's rate under random loss up to about 15 % (Cardwell et al.,
 * 2016): there, loss asks for no more streams, and more BBR flows than the path
 * needs only overfill the bottleneck's queue (measured on the WAN rig at 1 % loss:
 * docs/PERFORMANCE.md, "Speed by default"). The stream count is the bandwidth-delay product
 * divided by what one stream can carry, clamped to the bounds the caller allows.
 */
import type { TuneParams } from "../contract.js";

/** What one stream's throughput depends on: a {@link TuneParams} without its bounds. */
export type StreamPath = Omit<TuneParams, "streams">;

/** Random loss a model-based congestion control carries on at its path's rate. */
const MODEL_BASED_LOSS_TOLERANCE = 0.15;

/** Whether `congestion` sets its rate from a path model rather than from loss. */
function modelBased(congestion: string | undefined): boolean {
  return congestion !== undefined && /^bbr/i.test(congestion);
}

/** Bits per second one stream can carry on this path. */
export function perStreamBps(p: StreamPath): number {
  const rtt = Math.max(p.rttMs, 0.01) / 1000;
  const windowBps = ((p.streamWindowBytes ?? 4 * 1024 * 1024) * 8) / rtt;
  if (!p.lossRate || p.lossRate <= 0) return windowBps;
  if (modelBased(p.congestion) && p.lossRate < MODEL_BASED_LOSS_TOLERANCE) return windowBps;
  const mathis = (((p.mssBytes ?? 1448) * 8) / rtt) * (1.22 / Math.sqrt(p.lossRate));
  return Math.min(windowBps, mathis);
}

/** The stream count for `p`, within `p.streams` (the lower bound when the estimate is unusable). */
export function streamCount(p: TuneParams): number {
  const { min, max } = p.streams;
  if (!(p.bandwidthBps > 0) || !(p.rttMs >= 0)) return min;
  const need = Math.ceil(p.bandwidthBps / perStreamBps(p));
  return Math.max(min, Math.min(max, need));
}
