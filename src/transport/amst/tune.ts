/**
 * AMST autotune policy (pure): how many streams a path needs.
 *
 * One TCP stream moves at most its window per round trip, and under random loss
 * a loss-based congestion control settles near the Mathis rate
 * `MSS / RTT × 1.22 / √p`. The stream count is the bandwidth-delay product
 * divided by what one stream can carry, clamped to the bounds of the path's mode.
 */
import type { Mode } from "../../mode/classifier.js";

/** Stream-count bounds per mode. */
export type StreamBounds = Record<Mode, { min: number; max: number }>;

/** Bounds from the migration plan: datacenter wide, internet 4–16. */
export const DEFAULT_STREAM_BOUNDS: StreamBounds = {
  datacenter: { min: 1, max: 64 },
  hybrid: { min: 2, max: 32 },
  internet: { min: 4, max: 16 },
};

/** What the autotuner knows about a path. */
export interface TuneInput {
  mode: Mode;
  /** Smoothed or minimum round-trip time, ms. */
  rttMs: number;
  /** Bottleneck bandwidth, bits per second. */
  bandwidthBps: number;
  /** Segment loss rate (0–1), e.g. retransmitted / sent segments from TCP_INFO. */
  lossRate?: number;
  /** Largest window one stream can use (its socket send buffer), bytes. @default 4 MiB */
  streamWindowBytes?: number;
  /** Maximum segment size, bytes. @default 1448 */
  mssBytes?: number;
}

/** Bits per second one stream can carry on this path. */
export function perStreamBps(p: TuneInput): number {
  const rtt = Math.max(p.rttMs, 0.01) / 1000;
  const windowBps = ((p.streamWindowBytes ?? 4 * 1024 * 1024) * 8) / rtt;
  if (!p.lossRate || p.lossRate <= 0) return windowBps;
  const mathis = (((p.mssBytes ?? 1448) * 8) / rtt) * (1.22 / Math.sqrt(p.lossRate));
  return Math.min(windowBps, mathis);
}

/** The stream count for `p`, within `bounds[p.mode]`. */
export function streamTarget(p: TuneInput, bounds: StreamBounds = DEFAULT_STREAM_BOUNDS): number {
  const { min, max } = bounds[p.mode];
  if (!(p.bandwidthBps > 0) || !(p.rttMs >= 0)) return min;
  const need = Math.ceil(p.bandwidthBps / perStreamBps(p));
  return Math.max(min, Math.min(max, need));
}
