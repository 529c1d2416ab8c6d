/**
 * DWCP: the networking library that VM-cluster node agents embed to talk to each
 * other across a datacenter (v1) and across the internet (v3).
 *
 * This entry point exports the public API only.
 *
 * @packageDocumentation
 */

export {
  type CompressOptions,
  codecBackend,
  DEFAULT_MAX_DECODED,
  type DecompressOptions,
  lz4Compress,
  lz4CompressAsync,
  lz4Decompress,
  trainDictionary,
  type ZstdCompressOptions,
  type ZstdDecompressOptions,
  ZstdDictionary,
  zstdCompress,
  zstdCompressAsync,
  zstdDecompress,
} from "./codec/index.js";
export {
  BaselineStore,
  type BatchStats,
  type DecodeOptions,
  decodePages,
  decodePagesAsync,
  type EncodeOptions,
  encodePages,
  encodePagesAsync,
  ImageReceiver,
  ImageSender,
  type ImageSenderOptions,
  PageCodec,
  type PageFrameInfo,
  PageKind,
  type PagePolicy,
  readPageFrame,
} from "./codec/pages.js";
export { DWCPError, type DWCPErrorCode, type DWCPErrorOptions, ERROR_CODES, isDWCPError } from "./errors.js";
export {
  DEFAULT_FLAGS,
  type FeatureFlags,
  FLAG_FILE_DEFAULTS,
  type FlagFileOptions,
  FlagStore,
  type FlagStoreEvents,
  mergeFlags,
} from "./flags/flags.js";
export { type RolloutFlags, rolloutHash, shouldUseV3 } from "./flags/rollout.js";
export { type BytesLike, crc32c, hashPages, xxh3_64 } from "./hash/index.js";
export {
  COMPONENTS,
  type Component,
  type ComponentChoice,
  type ConnectOptions,
  DEFAULT_LINK_OPTIONS,
  DEFAULT_ROLLBACK,
  DWCPManager,
  type Generation,
  type GenerationChange,
  LINK_HEADER_BYTES,
  LINK_MESSAGE_OVERHEAD,
  type LinkMessage,
  type LinkSendOptions,
  type ManagerEvents,
  type ManagerMetrics,
  type ManagerOptions,
  type PeerAddress,
  PeerLink,
  type PeerLinkEvents,
  type PeerLinkOptions,
  type PeerLinkStats,
  type RollbackPolicy,
  type SessionRefusal,
} from "./manager.js";
export {
  classify,
  DEFAULT_THRESHOLDS,
  type Mode,
  type ModeDecision,
  type ModeThresholds,
  ModeTracker,
  type PathEstimate,
} from "./mode/classifier.js";
export { type DetectorEvents, type DetectorOptions, ModeDetector, type ModeEvent } from "./mode/detector.js";
export {
  chunkBytesFor,
  DEFAULT_STREAM_BOUNDS,
  policyFor,
  type StreamBounds,
  streamTarget,
  type TuneInput,
  tuneParams,
} from "./mode/policy.js";
export { type FeatureStatus, type NativeStatus, nativeStatus } from "./native/status.js";
export { certificateNodeIds, HELLO_MAX, type IdentityMode, NODE_URI_PREFIX } from "./session/handshake.js";
export {
  DWCPNode,
  type DWCPNodeEvents,
  type Key,
  type NodeMetrics,
  type NodeOptions,
  type RefusalReason,
} from "./session/node.js";
export {
  MESSAGE_OVERHEAD,
  type Message,
  type RttSample,
  type SendOptions,
  Session,
  type SessionLimits,
  type SessionStats,
} from "./session/session.js";
export {
  AmstConn,
  type AmstOptions,
  type AmstStats,
  amst,
  perStreamBps,
  type StreamInfo,
  type StreamPath,
  streamCount,
} from "./transport/amst/index.js";
export type {
  AbortOptions,
  Conn,
  ConnStatus,
  DialOptions,
  Listener,
  ListenOptions,
  Transport,
  TuneParams,
} from "./transport/contract.js";
export { MemoryNetwork, type MemoryOptions, memory } from "./transport/memory/index.js";
export {
  type RdmaAvailability,
  RdmaConn,
  type RdmaOptions,
  type RdmaState,
  type RdmaStats,
  rdma,
  rdmaAvailability,
} from "./transport/rdma/index.js";
export { type TcpOptions, tcp } from "./transport/tcp/index.js";
export {
  type BbrInfo,
  congestionControl,
  setCongestionControl,
  type TcpInfo,
  tcpInfo,
  tcpInfoSupported,
} from "./transport/tcp/tcpinfo.js";
export { type TlsListener, type TlsOptions, tls } from "./transport/tls/index.js";
export { PROTOCOL_VERSIONS } from "./wire/negotiate.js";
export type { CodecInfo } from "./wire/proto.js";
