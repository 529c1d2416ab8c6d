/**
 * `nativeStatus()`: whether the addon is loaded, why not, and for each feature
 * whether the native implementation is the one in use.
 */
// Imported for their effect: each picks its backend at load, which is what we report.
import "../hash/index.js";
import "../codec/index.js";
import "../transport/tcp/tcpinfo.js";
import "../transport/tcp/sockio.js";
import { rdmaAvailability } from "../transport/rdma/verbs.js";
import type { NativeFeatures } from "./binding.js";
import { backendChoice, loadNative, type NativeMode } from "./load.js";

/** One feature's state. */
export interface FeatureStatus {
  /** True when the native implementation is in use. */
  readonly native: boolean;
  /** Which native implementation (e.g. `"avx2"`), or why the TS path is used. */
  readonly detail: string;
}

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

function feature(name: string, nativeDetail: string): FeatureStatus {
  const c = backendChoice(name);
  if (!c) return { native: false, detail: "not implemented in this version" };
  return { native: c.native, detail: c.native ? nativeDetail : c.reason };
}

/** Reports which native features this process uses. Never throws. */
export function nativeStatus(): NativeStatus {
  const { binding, mode, path, reason } = loadNative();
  const f: NativeFeatures | undefined = binding?.features;
  return {
    loaded: binding !== null,
    mode,
    path,
    reason,
    features: {
      hash: feature("hash", f ? `crc32c ${f.crc32c}, xxh3 ${f.xxh3}` : ""),
      codec: feature("codec", f?.codec ? `${f.codec} (system libraries)` : ""),
      tcpinfo: feature("tcpinfo", "getsockopt(TCP_INFO, TCP_CC_INFO, TCP_CONGESTION)"),
      sockio: feature("sockio", "writev(2) on plain TCP sockets"),
      rdma: rdmaStatus(),
    },
  };
}

function rdmaStatus(): FeatureStatus {
  const r = rdmaAvailability();
  return r.available
    ? { native: true, detail: `verbs devices ${r.devices.join(", ")} (${r.library})` }
    : { native: false, detail: r.reason };
}
