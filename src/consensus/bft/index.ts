/**
 * ACP, the internet generation: byzantine-tolerant agreement among n = 3f + 1
 * replicas that do not trust each other (HotStuff family, Ed25519 signatures),
 * sans-IO on an {@link Env} so that it runs unchanged in the simulator.
 *
 * @packageDocumentation
 */
export { generateKeys, type Member, type Membership, membership } from "./membership.js";
export {
  type Block,
  type CertSignature,
  type Command,
  MAX_BLOCK_COMMANDS,
  MAX_CLIENT_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_OP_BYTES,
  type QuorumCertificate,
  type TimeoutCertificate,
  type TimeoutSignature,
  verifyTC,
} from "./messages.js";
export {
  type Committed,
  type Evidence,
  messageView,
  Replica,
  type ReplicaOptions,
  type ReplicaStats,
  verifyQC,
} from "./replica.js";
