/**
 * ACP, the internet generation: byzantine-tolerant agreement among n = 3f + 1
 * replicas that do not trust each other (two-chain HotStuff, Ed25519
 * signatures), sans-IO on an {@link Env} so that it runs unchanged in the
 * simulator, and a replicated key-value state machine (etcd's MVCC store,
 * without leases) with a state hash per height; {@link BftBackend} puts the
 * replicas behind ACP's `ConsensusBackend` contract.
 *
 * @packageDocumentation
 */
export type { Env } from "../../env/index.js";
export { BftBackend, type BftBackendOptions, MAX_PENDING_COMMANDS } from "./backend.js";
export { type BftClientNode, type LocalMember, submitCommand } from "./client.js";
export type { EquivocationKind } from "./evidence.js";
export {
  BFT_MESSAGE_KIND,
  type BftNode,
  type HostedReplica,
  type HostedReplicaOptions,
  type HostStats,
  hostReplica,
  MAX_WAITING_SUBMISSIONS,
} from "./host.js";
export { generateKeys, MAX_MEMBERS, type Member, type Membership, membership } from "./membership.js";
export {
  type Block,
  type CertSignature,
  type Command,
  MAX_BLOCK_COMMANDS,
  MAX_CLIENT_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_OP_BYTES,
  type MessageKind,
  type QuorumCertificate,
  type TimeoutCertificate,
  type TimeoutSignature,
  verifyTC,
} from "./messages.js";
export { type BftConsensusConfig, openBft } from "./open.js";
export {
  type Committed,
  EVIDENCE_VIEWS_BEHIND,
  type Evidence,
  FETCHES_PER_SECOND,
  MAX_QUEUED_COMMANDS,
  MAX_VIEWS_AHEAD,
  messageView,
  Replica,
  type ReplicaOptions,
  type ReplicaStats,
  verifyQC,
} from "./replica.js";
export {
  BFT_HISTORY_REVISIONS,
  BFT_TXN_LIMITS,
  decodeOp,
  deleteOp,
  type KvOp,
  type KvResult,
  KvStateMachine,
  putOp,
  readOp,
} from "./state-machine.js";
export {
  changesOp,
  compactOp,
  MAX_REPLY_BYTES,
  rangeOp,
  readReply,
  type StoreOp,
  statusOp,
  txnOp,
} from "./store-ops.js";
