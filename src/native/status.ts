/**
 * `nativeStatus()`: whether the addon is loaded, why not, and for each feature
 * whether the native implementation is the one in use. Each feature registers
 * what is reported for it (see `./load.ts`); this module imports none of them.
 */
import {
  FEATURES,
  type FeatureName,
  type FeatureStatus,
  featureStatus,
  loadNative,
  type NativeMode,
} from "./load.js";

export type { FeatureStatus } from "./load.js";

/** Snapshot returned by {@link nativeStatus}. */
export interface NativeStatus {
  /** True when the addon loaded. */
  readonly loaded: boolean;
  /** The `DWCP_NATIVE` setting: `auto` (unset), `forced-off` (0) or `required` (1). */
  readonly mode: NativeMode;
  /** Path of the loaded addon, or null. */
  readonly path: string | null;
  /** Why the addon is not loaded (empty when it is). */
  readonly reason: string;
  /**
   * Per feature: the backend in use, or, before the feature's first use, the one
   * it would get. A feature whose module this process has not loaded reports
   * `native: false`, saying so.
   */
  readonly features: {
    /** CRC-32C and XXH3-64. */
    readonly hash: FeatureStatus;
    /** LZ4/zstd codecs and page deltas. */
    readonly codec: FeatureStatus;
    /** TCP_INFO, TCP_CC_INFO and TCP_CONGESTION. */
    readonly tcpinfo: FeatureStatus;
    /** Direct writev on plain TCP sockets while Node has nothing queued. */
    readonly sockio: FeatureStatus;
    /** RDMA verbs: native when a verbs device can be opened; otherwise why not (TCP is used). */
    readonly rdma: FeatureStatus;
  };
}

const NOT_LOADED: FeatureStatus = { native: false, detail: "its module is not loaded in this process" };

/** Reports which native features this process uses. Never throws. */
export function nativeStatus(): NativeStatus {
  const { binding, mode, path, reason } = loadNative();
  const features = Object.fromEntries(FEATURES.map((f) => [f, featureStatus(f) ?? NOT_LOADED])) as Record<
    FeatureName,
    FeatureStatus
  >;
  return { loaded: binding !== null, mode, path, reason, features };
}
