/**
 * What each path mode asks of the layers below: segment size, stream-count
 * bounds and page compression. The transports and the codec take these as plain
 * numbers and options and never learn the mode.
 */
import type { ZstdDictionary } from "../codec/index.js";
import type { PagePolicy } from "../codec/pages/encode.js";
import { PageCodec } from "../codec/pages/format.js";
import { type StreamPath, streamCount } from "../transport/amst/tune.js";
import type { TuneParams } from "../transport/contract.js";
import type { Mode } from "./classifier.js";

/** AMST segment size for a mode, bytes: large in the datacenter, smaller where loss costs a resend. */
export function chunkBytesFor(mode: Mode): number {
  return mode === "internet" ? 128 * 1024 : 256 * 1024;
}

/** Stream-count bounds per mode. */
export type StreamBounds = Record<Mode, { min: number; max: number }>;

/** Bounds from the migration plan: datacenter wide, internet 4–16. */
export const DEFAULT_STREAM_BOUNDS: StreamBounds = {
  datacenter: { min: 1, max: 64 },
  hybrid: { min: 2, max: 32 },
  internet: { min: 4, max: 16 },
};

/** What the autotuner knows about a path of a known mode. */
export interface TuneInput extends StreamPath {
  mode: Mode;
}

/** The tuning a path of `p.mode` gets: the estimate, within that mode's bounds. */
export function tuneParams(p: TuneInput, bounds: StreamBounds = DEFAULT_STREAM_BOUNDS): TuneParams {
  const { mode, ...path } = p;
  return { ...path, streams: bounds[mode] };
}

/** The stream count for `p`, within `bounds[p.mode]`. */
export function streamTarget(p: TuneInput, bounds: StreamBounds = DEFAULT_STREAM_BOUNDS): number {
  return streamCount(tuneParams(p, bounds));
}

/**
 * Page compression for a mode: datacenter paths favour speed (LZ4, fast level);
 * internet and hybrid paths favour size (zstd, deeper level, the trained
 * dictionary when there is one). With the v3 compression flag off, v1
 * behaviour: LZ4 everywhere. An unmeasured path gets LZ4 too.
 */
export function policyFor(
  mode: Mode | undefined,
  o: { v3?: boolean; dictionary?: ZstdDictionary } = {},
): PagePolicy {
  if (!o.v3 || mode === undefined || mode === "datacenter") return { codec: PageCodec.LZ4, level: 1 };
  return {
    codec: PageCodec.ZSTD,
    level: mode === "internet" ? 9 : 3,
    ...(o.dictionary ? { dictionary: o.dictionary } : {}),
  };
}
