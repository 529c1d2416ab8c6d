/**
 * ACP, the datacenter generation: one contract shaped like etcd's API
 * ({@link ConsensusBackend}), the embedded backend and the etcd one behind it,
 * leases kept alive, leader election with fencing, node registration, the
 * fleet's flags through the store, and a linearizability checker for the
 * histories its clients record. The internet generation's byzantine-tolerant
 * core is {@link bft}.
 *
 * @packageDocumentation
 */
export { Consensus, type ConsensusConfig, type ConsensusOptions, openBackend } from "./acp.js";
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
} from "./backend.js";
export * as bft from "./bft/index.js";
export {
  type CampaignOptions,
  campaign,
  ELECTION_PREFIX,
  type LeaderInfo,
  Leadership,
  leader,
} from "./election.js";
// The etcd client (gRPC) is loaded only when an etcd backend is opened (openBackend).
export type { EtcdBackendOptions, EtcdTls } from "./etcd/index.js";
export { FLAGS_KEY, FlagsSync, type FlagsSyncEvents, type FlagsSyncOptions } from "./flags-sync.js";
export { type ConsensusCounts, InstrumentedBackend } from "./instrumented.js";
export { LeaseKeeper, type LeaseKeeperEvents, type LeaseKeeperOptions } from "./lease-keeper.js";
export {
  type CheckOptions,
  type CheckResult,
  checkLinearizable,
  formatJepsen,
  type History,
  HistoryRecorder,
  parseJepsen,
  renderExplanation,
} from "./lincheck/index.js";
export {
  type FileStorage,
  fileStorage,
  LocalBackend,
  type LocalBackendOptions,
  memoryStorage,
} from "./local/index.js";
export {
  NODES_PREFIX,
  type RegisteredNode,
  Registration,
  type RegistrationEvents,
  type RegistrationOptions,
  registeredNodes,
} from "./registration.js";
