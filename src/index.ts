/**
 * DWCP: the networking library that VM-cluster node agents embed to talk to each
 * other across a datacenter (v1) and across the internet (v3).
 *
 * This entry holds what an agent uses: the manager and its links, the session
 * node, the transports' factories, feature flags, mode classification and
 * policies, the native addon's status and injection, checksums, errors, and the
 * names of the diagnostics channels (metrics: `manager.metrics()`). The
 * transport contract and each transport's own API are in `dwcp/transport`;
 * HDE's codecs and page frames in `dwcp/codec`; the simulator in `dwcp/testing`.
 *
 * @packageDocumentation
 */

export { Consensus, type ConsensusConfig, type ConsensusOptions, openBackend } from "./consensus/acp.js";
export type {
  BackendStatus,
  Compare,
  CompareOp,
  CompareTarget,
  ConsensusBackend,
  KeySelector,
  KeyValue,
  Lease,
  RangeOptions,
  RangeResult,
  TxnOp,
  TxnOpResult,
  TxnResult,
  Watch,
  WatchEvent,
  WatchOptions,
} from "./consensus/backend.js";
/** ACP, internet generation: the byzantine-tolerant replica (two-chain HotStuff, Ed25519). */
export * as bft from "./consensus/bft/index.js";
export {
  type CampaignOptions,
  campaign,
  ELECTION_PREFIX,
  type LeaderInfo,
  Leadership,
  leader,
} from "./consensus/election.js";
export type { EtcdBackendOptions, EtcdTls } from "./consensus/etcd/index.js";
export { FLAGS_KEY, FlagsSync, type FlagsSyncEvents, type FlagsSyncOptions } from "./consensus/flags-sync.js";
export { type ConsensusCounts, InstrumentedBackend } from "./consensus/instrumented.js";
export { LeaseKeeper, type LeaseKeeperEvents, type LeaseKeeperOptions } from "./consensus/lease-keeper.js";
export {
  type CheckOptions,
  type CheckResult,
  checkLinearizable,
  formatJepsen,
  type History,
  HistoryRecorder,
  parseJepsen,
  renderExplanation,
} from "./consensus/lincheck/index.js";
export {
  type FileStorage,
  fileStorage,
  LocalBackend,
  type LocalBackendOptions,
  memoryStorage,
} from "./consensus/local/index.js";
export {
  NODES_PREFIX,
  type RegisteredNode,
  Registration,
  type RegistrationEvents,
  type RegistrationOptions,
  registeredNodes,
} from "./consensus/registration.js";
export {
  type BreakerMessage,
  channels as diagnosticsChannels,
  type FlagsReloadMessage,
  type GenerationSwitchMessage,
  type HandshakeErrorMessage,
  type ModeChangeMessage,
  type SessionCloseMessage,
  type SessionInfo,
  type SessionOpenMessage,
  type TypedChannel,
} from "./diagnostics/index.js";
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
  type BreakerPolicy,
  type BreakerSnapshot,
  type BreakerState,
  COMPONENTS,
  type Component,
  type ComponentChoice,
  type ConnectOptions,
  DEFAULT_FLOW,
  DEFAULT_LINK_OPTIONS,
  DEFAULT_ROLLBACK,
  DWCPManager,
  type FlowSettings,
  type Generation,
  type GenerationChange,
  LINK_HEADER_BYTES,
  LINK_MESSAGE_OVERHEAD,
  type LinkFlowInfo,
  type LinkMessage,
  type LinkRequestContext,
  type LinkRequestHandler,
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
  type AcceptMigrationOptions,
  acceptMigration,
  type ChannelMessage,
  countDirty,
  FileImage,
  type FileImageOptions,
  type FileImageStats,
  type FillSummary,
  fillImage,
  type HdeFigures,
  IMAGE_KINDS,
  type ImageKind,
  IncomingMigration,
  type IncomingMigrationEvents,
  type IncomingProgress,
  isDirty,
  isMigrationMessage,
  type KindFigures,
  MemoryImage,
  type MemoryImageOptions,
  type MigratedImage,
  type MigrateOptions,
  Migration,
  type MigrationChannel,
  type MigrationEvents,
  type MigrationStats,
  type MigrationStatus,
  migrate,
  type PageSource,
  SimulatedGuest,
  type SimulatedGuestOptions,
  type SimulatedGuestStats,
  toQueryMigrate,
} from "./migration/index.js";
export {
  classify,
  DEFAULT_THRESHOLDS,
  type Mode,
  type ModeDecision,
  type ModeThresholds,
  ModeTracker,
  type PathEstimate,
} from "./mode/classifier.js";
export {
  type BandwidthSample,
  type DetectorEvents,
  type DetectorOptions,
  ModeDetector,
  type ModeEvent,
} from "./mode/detector.js";
export {
  chunkBytesFor,
  DEFAULT_STREAM_BOUNDS,
  policyFor,
  type StreamBounds,
  streamTarget,
  type TuneInput,
  tuneParams,
} from "./mode/policy.js";
export {
  type BackendName,
  type FeatureName,
  type NativeBindingSource,
  useBackend,
  useNativeBinding,
} from "./native/load.js";
export { type FeatureStatus, type NativeStatus, nativeStatus } from "./native/status.js";
export {
  PathProber,
  type PingOptions,
  type ProbeOptions,
  type ProbeResult,
} from "./path/prober.js";
/** ITP: the placement pipeline and its optimistic commit. */
export * as placement from "./placement/index.js";
export {
  type AllocateOptions,
  allocate,
  DEFAULT_CLASS_WEIGHTS,
  type EstimatorForecast,
  type EstimatorName,
  FLOW_CLASSES,
  type Flow,
  type FlowClass,
  type Forecast,
  type Horizon,
  type HorizonForecast,
  Predictor,
  type PredictorOptions,
  readTrace,
  type Sample,
  type SampleKind,
  type Score,
  scoreTrace,
  streamsForRate,
  type Trace,
  type TraceScore,
  tuneForRate,
  writeTrace,
} from "./prediction/index.js";
export {
  acceptPages,
  applySettings,
  migratePages,
  migrateThroughTunnel,
  type PagesAccepted,
  type PagesDestinationOptions,
  type PagesIncoming,
  type PagesResult,
  type PagesSourceOptions,
  prepareIncoming,
  type QemuMigrationSettings,
  type QemuSourceOptions,
  Qmp,
  type QmpEvent,
  type QmpEvents,
  type QmpOptions,
  type QueryMigrate,
  runMigration,
} from "./qemu/index.js";
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
  type RequestContext,
  type RequestHandler,
  type RequestOptions,
  type RttSample,
  type SendOptions,
  Session,
  type SessionLimits,
  type SessionStats,
} from "./session/session.js";
/** ASS: the cluster map, strong or eventual, and its cores (CRDTs, anti-entropy, SWIM). */
export * as sync from "./sync/index.js";
export { type AmstOptions, amst } from "./transport/amst/index.js";
export type { Transport } from "./transport/contract.js";
export { type RdmaOptions, rdma } from "./transport/rdma/index.js";
export { type TcpOptions, tcp } from "./transport/tcp/index.js";
export { type TlsOptions, tls } from "./transport/tls/index.js";
export {
  connectLocal,
  describeEndpoint,
  forwardLocal,
  type LocalEndpoint,
  Tunnel,
  type TunnelChannelInfo,
  type TunnelEvents,
  type TunnelLink,
  type TunnelOptions,
  type TunnelStats,
} from "./tunnel/index.js";
export { PROTOCOL_VERSIONS } from "./wire/negotiate.js";
export type { CodecInfo } from "./wire/proto.js";
