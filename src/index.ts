/**
 * DWCP: the networking library that VM-cluster node agents embed to talk to each
 * other across a datacenter (v1) and across the internet (v3).
 *
 * This entry point exports the public API only.
 *
 * @packageDocumentation
 */
export { DWCPError, type DWCPErrorCode, type DWCPErrorOptions, ERROR_CODES, isDWCPError } from "./errors.js";
export { type BytesLike, crc32c, hashPages, xxh3_64 } from "./hash/index.js";
export { type FeatureStatus, type NativeStatus, nativeStatus } from "./native/status.js";
export {
  type BbrInfo,
  congestionControl,
  setCongestionControl,
  type TcpInfo,
  tcpInfo,
  tcpInfoSupported,
} from "./transport/tcp/tcpinfo.js";
