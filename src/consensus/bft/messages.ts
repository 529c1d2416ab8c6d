/**
 * The BFT wire messages: blocks, quorum and timeout certificates, and the five
 * message kinds, in one canonical binary encoding (one byte string per value,
 * so signatures and digests are over exactly what travels).
 *
 * Layout of every message:
 *
 * ```
 * version u8 | kind u8 | epoch u32 | configHash 32 | sender u8 | view u64 | statement | signature 64 | attachment
 * ```
 *
 * The signature covers everything before it (behind a domain string). The
 * signed statement is the least a certificate must re-check: a vote signs the
 * block digest, a timeout the view of its sender's highest QC, so a QC or a TC
 * is a list of (member, signature) that anyone can verify against the
 * membership alone. The attachment after the signature is made only of values
 * that verify themselves: a block (its hash is the signed digest), a QC or a TC
 * (their own signatures).
 *
 * Decoding is bounded: the size is checked first, every length before it is
 * allocated, and certificates are checked for distinct, in-range signers before
 * any signature is verified.
 */
import { createHash, type KeyObject, sign, verify } from "node:crypto";
import { DWCPError } from "../../errors.js";
import { bytesEqual, Reader, Writer } from "./codec.js";
import type { Membership } from "./membership.js";

/** Largest encoded message accepted, bytes. */
export const MAX_MESSAGE_BYTES = 1 << 20;
/** Most commands one block may carry. */
export const MAX_BLOCK_COMMANDS = 4096;
/** Largest operation of one command, bytes. */
export const MAX_OP_BYTES = 64 * 1024;
/** Longest client id, bytes of UTF-8. */
export const MAX_CLIENT_BYTES = 128;

const VERSION = 1;
const DIGEST = 32;
const SIGNATURE = 64;
const HEADER = 1 + 1 + 4 + DIGEST + 1 + 8;
const SIGN_DOMAIN = new TextEncoder().encode("DWCP-BFT signed 1\0");

/** The message kinds, as on the wire. */
export const KIND = Object.freeze({ proposal: 1, vote: 2, timeout: 3, fetch: 4, block: 5, sync: 6 } as const);
/** A message kind. */
export type MessageKind = keyof typeof KIND;
const KIND_NAME: readonly (MessageKind | undefined)[] = [
  undefined,
  "proposal",
  "vote",
  "timeout",
  "fetch",
  "block",
  "sync",
];

/** A client command: `op` is applied once per (client, seq), in the committed order. */
export interface Command {
  /** The client's id (at most {@link MAX_CLIENT_BYTES} bytes of UTF-8). */
  readonly client: string;
  /** The client's sequence number: a positive integer, increasing per client. */
  readonly seq: number;
  /** The operation for the state machine (at most {@link MAX_OP_BYTES}). */
  readonly op: Uint8Array;
}

/** One signature of a certificate. */
export interface CertSignature {
  readonly member: number;
  readonly signature: Uint8Array;
}

/**
 * A quorum certificate: `quorum` distinct members signed a vote for block
 * `digest` in `view`. The genesis QC (view 0, the genesis digest) has no signatures.
 */
export interface QuorumCertificate {
  readonly view: number;
  readonly digest: Uint8Array;
  /** In ascending member order. */
  readonly signatures: readonly CertSignature[];
}

/** One signed timeout inside a {@link TimeoutCertificate}. */
export interface TimeoutSignature extends CertSignature {
  /** The view of the highest QC its signer held when it timed out. */
  readonly highQcView: number;
}

/** A timeout certificate: `quorum` distinct members gave up on `view`. */
export interface TimeoutCertificate {
  readonly view: number;
  /** In ascending member order. */
  readonly timeouts: readonly TimeoutSignature[];
}

/** A block: a batch of commands extending its parent, with the QC that certifies the parent. */
export interface Block {
  readonly view: number;
  /** Parent's height + 1 (genesis is height 0). */
  readonly height: number;
  /** The member that proposed it (the leader of `view`). */
  readonly proposer: number;
  readonly parent: Uint8Array;
  readonly parentView: number;
  readonly commands: readonly Command[];
  /** Certifies the parent: `justify.digest === parent`, `justify.view === parentView`. */
  readonly justify: QuorumCertificate;
  /** SHA-256 of the block's canonical encoding (epoch, config hash and every field but `justify`). */
  readonly digest: Uint8Array;
}

/** Fields every message carries. */
export interface MessageHeader {
  readonly epoch: number;
  readonly sender: number;
  readonly view: number;
  /** The whole encoded message (kept as evidence: anyone can re-verify it). */
  readonly bytes: Uint8Array;
}

/** A leader's block for its view; `tc` when the block's QC is not of the previous view. */
export interface ProposalMessage extends MessageHeader {
  readonly kind: "proposal";
  readonly block: Block;
  readonly tc?: TimeoutCertificate;
}
/** A vote for block `digest` of `view`, sent to the next view's leader. */
export interface VoteMessage extends MessageHeader {
  readonly kind: "vote";
  readonly digest: Uint8Array;
}
/** The sender gives up on `view`; carries its highest QC, and the TC that brought it to `view`, if one did. */
export interface TimeoutMessage extends MessageHeader {
  readonly kind: "timeout";
  readonly highQC: QuorumCertificate;
  readonly tc?: TimeoutCertificate;
}
/** Asks for the block of `digest` (block sync). */
export interface FetchMessage extends MessageHeader {
  readonly kind: "fetch";
  readonly digest: Uint8Array;
}
/** Answers a fetch with the block. */
export interface BlockMessage extends MessageHeader {
  readonly kind: "block";
  readonly block: Block;
}
/**
 * The sender's highest QC, and the TC that brought it into its view if one did:
 * sent to a peer seen lagging behind, so that it catches up without anyone
 * giving up a view for it. Unlike a timeout it commits its sender to nothing.
 */
export interface SyncMessage extends MessageHeader {
  readonly kind: "sync";
  readonly highQC: QuorumCertificate;
  readonly tc?: TimeoutCertificate;
}
/** A decoded, signature-checked message. */
export type Message =
  | ProposalMessage
  | VoteMessage
  | TimeoutMessage
  | FetchMessage
  | BlockMessage
  | SyncMessage;

/** The header of a message, read without verifying anything but its framing. */
export interface PeekedHeader {
  readonly kind: MessageKind;
  readonly epoch: number;
  readonly configHash: Uint8Array;
  readonly sender: number;
  readonly view: number;
}

/** The digest of the genesis block of `m` (height 0, view 0). */
export function genesisDigest(m: Membership): Uint8Array {
  const w = new Writer().str8("DWCP-BFT genesis 1").u32(m.epoch).bytes(m.configHash);
  return new Uint8Array(createHash("sha256").update(w.finish()).digest());
}

/** The QC every chain starts from: view 0, the genesis digest, no signatures. */
export function genesisQC(m: Membership): QuorumCertificate {
  return { view: 0, digest: genesisDigest(m), signatures: [] };
}

function statementPrefix(w: Writer, kind: MessageKind, m: Membership, sender: number, view: number): Writer {
  return w.u8(VERSION).u8(KIND[kind]).u32(m.epoch).bytes(m.configHash).u8(sender).u64(view);
}

function signable(signed: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIGN_DOMAIN.length + signed.length);
  out.set(SIGN_DOMAIN);
  out.set(signed, SIGN_DOMAIN.length);
  return out;
}

function verifySig(m: Membership, member: number, signed: Uint8Array, signature: Uint8Array): boolean {
  const key = m.members[member]?.publicKey;
  if (!key || signature.length !== SIGNATURE) return false;
  try {
    return verify(null, signable(signed), key, signature);
  } catch {
    return false;
  }
}

/** The bytes a vote of `member` for (`view`, `digest`) signs. */
function voteStatement(m: Membership, member: number, view: number, digest: Uint8Array): Uint8Array {
  return statementPrefix(new Writer(), "vote", m, member, view).bytes(digest).finish();
}

/** The bytes a timeout of `member` for `view` with its highest QC at `highQcView` signs. */
function timeoutStatement(m: Membership, member: number, view: number, highQcView: number): Uint8Array {
  return statementPrefix(new Writer(), "timeout", m, member, view).u64(highQcView).finish();
}

/** Whether `qc` certifies its block under `m`: the genesis QC, or `quorum` distinct members' valid vote signatures. */
export function verifyQC(m: Membership, qc: QuorumCertificate): boolean {
  if (qc.view === 0) return qc.signatures.length === 0 && bytesEqual(qc.digest, genesisDigest(m));
  if (!distinctSigners(m, qc.signatures)) return false;
  return qc.signatures.every((s) =>
    verifySig(m, s.member, voteStatement(m, s.member, qc.view, qc.digest), s.signature),
  );
}

/** Whether `tc` is `quorum` distinct members' valid timeouts for its view, each with a QC of an earlier view. */
export function verifyTC(m: Membership, tc: TimeoutCertificate): boolean {
  if (tc.view < 1 || !distinctSigners(m, tc.timeouts)) return false;
  return tc.timeouts.every(
    (t) =>
      t.highQcView < tc.view &&
      verifySig(m, t.member, timeoutStatement(m, t.member, tc.view, t.highQcView), t.signature),
  );
}

/** Ascending, hence distinct, in-range signers, at least a quorum: checked before any signature is. */
function distinctSigners(m: Membership, sigs: readonly CertSignature[]): boolean {
  if (sigs.length < m.quorum || sigs.length > m.members.length) return false;
  let last = -1;
  for (const s of sigs) {
    if (s.member <= last || s.member >= m.members.length) return false;
    last = s.member;
  }
  return true;
}

/** The highest QC view a TC's signers reported: a block justified by the TC must extend a QC at least this high. */
export function tcHighQcView(tc: TimeoutCertificate): number {
  let max = 0;
  for (const t of tc.timeouts) max = Math.max(max, t.highQcView);
  return max;
}

// ---- encoding of the parts ----

function writeCommands(w: Writer, commands: readonly Command[]): void {
  w.u16(commands.length);
  for (const c of commands) w.str8(c.client).u64(c.seq).blob32(c.op);
}

function readCommands(r: Reader): Command[] {
  const n = r.u16("command count");
  if (n > MAX_BLOCK_COMMANDS)
    throw new DWCPError("ERR_BAD_FRAME", `${n} commands exceed ${MAX_BLOCK_COMMANDS}`);
  const out: Command[] = [];
  for (let i = 0; i < n; i++) {
    const client = r.str8("client id");
    if (Buffer.byteLength(client) > MAX_CLIENT_BYTES)
      throw new DWCPError("ERR_BAD_FRAME", "client id too long");
    const seq = r.u64("command seq");
    if (seq < 1) throw new DWCPError("ERR_BAD_FRAME", "command seq must be positive");
    out.push({ client, seq, op: r.blob32(MAX_OP_BYTES, "command op") });
  }
  return out;
}

/** Throws `ERR_INVALID_ARG` unless `c` can be encoded and would be accepted by a peer. */
export function checkCommand(c: Command): void {
  if (typeof c.client !== "string" || Buffer.byteLength(c.client) > MAX_CLIENT_BYTES)
    throw new DWCPError("ERR_INVALID_ARG", `a client id is a string of at most ${MAX_CLIENT_BYTES} bytes`);
  if (!Number.isSafeInteger(c.seq) || c.seq < 1)
    throw new DWCPError("ERR_INVALID_ARG", "a command's seq is a positive safe integer");
  if (!(c.op instanceof Uint8Array) || c.op.length > MAX_OP_BYTES)
    throw new DWCPError("ERR_INVALID_ARG", `a command's op is at most ${MAX_OP_BYTES} bytes`);
}

/** Bytes a command takes in a block (for batching under {@link MAX_MESSAGE_BYTES}). */
export function commandBytes(c: Command): number {
  return 1 + Buffer.byteLength(c.client) + 8 + 4 + c.op.length;
}

function writeQC(w: Writer, qc: QuorumCertificate): void {
  w.u64(qc.view).bytes(qc.digest).u8(qc.signatures.length);
  for (const s of qc.signatures) w.u8(s.member).bytes(s.signature);
}

function readQC(r: Reader): QuorumCertificate {
  const view = r.u64("QC view");
  const digest = r.bytes(DIGEST, "QC digest");
  const n = r.u8("QC size");
  const signatures: CertSignature[] = [];
  for (let i = 0; i < n; i++)
    signatures.push({ member: r.u8("QC signer"), signature: r.bytes(SIGNATURE, "QC signature") });
  return { view, digest, signatures };
}

function writeTC(w: Writer, tc: TimeoutCertificate | undefined): void {
  if (!tc) {
    w.u8(0);
    return;
  }
  w.u8(1).u64(tc.view).u8(tc.timeouts.length);
  for (const t of tc.timeouts) w.u8(t.member).u64(t.highQcView).bytes(t.signature);
}

function readTC(r: Reader): TimeoutCertificate | undefined {
  const present = r.u8("TC flag");
  if (present === 0) return undefined;
  if (present !== 1) throw new DWCPError("ERR_BAD_FRAME", "bad TC flag");
  const view = r.u64("TC view");
  const n = r.u8("TC size");
  const timeouts: TimeoutSignature[] = [];
  for (let i = 0; i < n; i++)
    timeouts.push({
      member: r.u8("TC signer"),
      highQcView: r.u64("TC high QC view"),
      signature: r.bytes(SIGNATURE, "TC signature"),
    });
  return { view, timeouts };
}

/** The fields of a block that its digest covers. */
export type BlockFields = Omit<Block, "digest">;

function blockBody(m: Membership, b: Omit<BlockFields, "justify">): Uint8Array {
  const w = new Writer().str8("DWCP-BFT block 1").u32(m.epoch).bytes(m.configHash);
  w.u64(b.view).u64(b.height).u8(b.proposer).bytes(b.parent).u64(b.parentView);
  writeCommands(w, b.commands);
  return w.finish();
}

/** The block of `fields` with its digest. */
export function makeBlock(m: Membership, fields: BlockFields): Block {
  const digest = new Uint8Array(createHash("sha256").update(blockBody(m, fields)).digest());
  return { ...fields, digest };
}

function writeBlock(w: Writer, b: Block): void {
  w.u64(b.view).u64(b.height).u8(b.proposer).bytes(b.parent).u64(b.parentView);
  writeCommands(w, b.commands);
  writeQC(w, b.justify);
}

/** Reads a block and checks what needs no state: shape, digest, and that `justify` names the parent. */
function readBlock(m: Membership, r: Reader): Block {
  const view = r.u64("block view");
  const height = r.u64("block height");
  const proposer = r.u8("block proposer");
  const parent = r.bytes(DIGEST, "block parent");
  const parentView = r.u64("block parent view");
  const commands = readCommands(r);
  const justify = readQC(r);
  if (view < 1 || height < 1 || parentView >= view || proposer >= m.members.length)
    throw new DWCPError("ERR_PROTOCOL", "block fields out of range");
  if (justify.view !== parentView || !bytesEqual(justify.digest, parent))
    throw new DWCPError("ERR_PROTOCOL", "block's QC does not certify its parent");
  return makeBlock(m, { view, height, proposer, parent, parentView, commands, justify });
}

/** Canonical bytes of a block with its QC (the storage form). */
export function encodeBlock(b: Block): Uint8Array {
  const w = new Writer();
  writeBlock(w, b);
  return w.finish();
}

/** Reads {@link encodeBlock}'s bytes (our own storage; still bounded). */
export function decodeBlock(m: Membership, bytes: Uint8Array): Block {
  const r = new Reader(bytes);
  const b = readBlock(m, r);
  r.end("block");
  return b;
}

/** Canonical bytes of a QC. */
export function encodeQC(qc: QuorumCertificate): Uint8Array {
  const w = new Writer();
  writeQC(w, qc);
  return w.finish();
}

/** Reads {@link encodeQC}'s bytes. */
export function decodeQC(bytes: Uint8Array): QuorumCertificate {
  const r = new Reader(bytes);
  const qc = readQC(r);
  r.end("QC");
  return qc;
}

// ---- messages ----

/** What is signed and attached for each kind. */
export type Outgoing =
  | { kind: "proposal"; view: number; block: Block; tc?: TimeoutCertificate | undefined }
  | { kind: "vote"; view: number; digest: Uint8Array }
  | { kind: "timeout"; view: number; highQC: QuorumCertificate; tc?: TimeoutCertificate | undefined }
  | { kind: "fetch"; view: number; digest: Uint8Array }
  | { kind: "block"; view: number; block: Block }
  | { kind: "sync"; view: number; highQC: QuorumCertificate; tc?: TimeoutCertificate | undefined };

/** Encodes and signs `msg` as member `sender` of `m`. */
export function encodeMessage(
  m: Membership,
  sender: number,
  privateKey: KeyObject,
  msg: Outgoing,
): Uint8Array {
  const w = statementPrefix(new Writer(), msg.kind, m, sender, msg.view);
  switch (msg.kind) {
    case "proposal":
    case "block":
      w.bytes(msg.block.digest);
      break;
    case "vote":
    case "fetch":
      w.bytes(msg.digest);
      break;
    case "timeout":
    case "sync":
      w.u64(msg.highQC.view);
      break;
  }
  const signed = w.finish();
  w.bytes(new Uint8Array(sign(null, signable(signed), privateKey)));
  switch (msg.kind) {
    case "proposal":
      writeBlock(w, msg.block);
      writeTC(w, msg.tc);
      break;
    case "block":
      writeBlock(w, msg.block);
      break;
    case "timeout":
    case "sync":
      writeQC(w, msg.highQC);
      writeTC(w, msg.tc);
      break;
    default:
      break;
  }
  if (w.length > MAX_MESSAGE_BYTES)
    throw new DWCPError(
      "ERR_MESSAGE_TOO_LARGE",
      `a ${msg.kind} of ${w.length} bytes exceeds ${MAX_MESSAGE_BYTES}`,
    );
  return w.finish();
}

/** Reads the header of a message, checking only its framing (`ERR_BAD_FRAME`, `ERR_MESSAGE_TOO_LARGE`). */
export function peekHeader(bytes: Uint8Array): PeekedHeader {
  if (bytes.length > MAX_MESSAGE_BYTES)
    throw new DWCPError("ERR_MESSAGE_TOO_LARGE", `${bytes.length} bytes exceed ${MAX_MESSAGE_BYTES}`);
  const r = new Reader(bytes);
  const version = r.u8("version");
  if (version !== VERSION) throw new DWCPError("ERR_BAD_FRAME", `unknown message version ${version}`);
  const kind = KIND_NAME[r.u8("kind")];
  if (!kind) throw new DWCPError("ERR_BAD_FRAME", "unknown message kind");
  const epoch = r.u32("epoch");
  const configHash = r.bytes(DIGEST, "config hash");
  const sender = r.u8("sender");
  const view = r.u64("view");
  return { kind, epoch, configHash, sender, view };
}

/** The digest a proposal, vote, fetch or block message signs, read without verifying anything. */
export function peekDigest(bytes: Uint8Array): Uint8Array | undefined {
  return bytes.length >= HEADER + DIGEST ? bytes.subarray(HEADER, HEADER + DIGEST) : undefined;
}

/** The view a message claims, without verifying it; `undefined` if it cannot be framed. */
export function messageView(bytes: Uint8Array): number | undefined {
  try {
    return peekHeader(bytes).view;
  } catch {
    return undefined;
  }
}

/**
 * Checks a header against `m`: the epoch and configuration (`ERR_PROTOCOL`) and
 * a sender that is a member (`ERR_PROTOCOL`).
 */
export function checkHeader(m: Membership, h: PeekedHeader): void {
  if (h.epoch !== m.epoch) throw new DWCPError("ERR_PROTOCOL", `message of epoch ${h.epoch}, not ${m.epoch}`);
  if (!bytesEqual(h.configHash, m.configHash))
    throw new DWCPError("ERR_PROTOCOL", "message of another configuration");
  if (h.sender >= m.members.length) throw new DWCPError("ERR_PROTOCOL", `sender ${h.sender} is not a member`);
}

/**
 * Decodes and verifies a message of `m`: framing (`ERR_BAD_FRAME`, `ERR_MESSAGE_TOO_LARGE`),
 * epoch, configuration, sender and field ranges (`ERR_PROTOCOL`), the sender's
 * signature and every certificate it carries (`ERR_AUTH_FAILED`).
 *
 * `knownQC`, when given, may vouch for a QC the caller verified before (by its
 * exact encoding), which skips re-verifying its signatures.
 */
export function decodeMessage(
  m: Membership,
  bytes: Uint8Array,
  knownQC?: (qc: QuorumCertificate) => boolean,
): Message {
  const h = peekHeader(bytes);
  checkHeader(m, h);
  const r = new Reader(bytes);
  r.bytes(HEADER, "header");
  let digest: Uint8Array | undefined;
  let highQcView = 0;
  const certs = h.kind === "timeout" || h.kind === "sync";
  if (certs) highQcView = r.u64("high QC view");
  else digest = r.bytes(DIGEST, "digest");
  const signedEnd = r.pos;
  const signature = r.bytes(SIGNATURE, "signature");
  // Parse the whole message before the (costly) signature check, so a truncated
  // or padded one fails as a frame error whatever its signature.
  let block: Block | undefined;
  let tc: TimeoutCertificate | undefined;
  let highQC: QuorumCertificate | undefined;
  if (h.kind === "proposal" || h.kind === "block") {
    block = readBlock(m, r);
    if (h.kind === "proposal") tc = readTC(r);
  } else if (certs) {
    highQC = readQC(r);
    tc = readTC(r);
  }
  r.end(h.kind);
  if (!verifySig(m, h.sender, bytes.subarray(0, signedEnd), signature))
    throw new DWCPError("ERR_AUTH_FAILED", `bad signature on a ${h.kind} from ${h.sender}`);
  const qcOk = (qc: QuorumCertificate) => knownQC?.(qc) === true || verifyQC(m, qc);
  const base = { epoch: h.epoch, sender: h.sender, view: h.view, bytes };
  switch (h.kind) {
    case "proposal": {
      const b = block!;
      if (!bytesEqual(b.digest, digest!))
        throw new DWCPError("ERR_AUTH_FAILED", "the signed digest is not the block's");
      if (b.view !== h.view || b.proposer !== h.sender)
        throw new DWCPError("ERR_PROTOCOL", "a proposal's block is of another view or proposer");
      if (tc && tc.view !== h.view - 1)
        throw new DWCPError("ERR_PROTOCOL", "a proposal's TC is not of the previous view");
      if (!qcOk(b.justify)) throw new DWCPError("ERR_AUTH_FAILED", "a proposal's QC does not verify");
      if (tc && !verifyTC(m, tc)) throw new DWCPError("ERR_AUTH_FAILED", "a proposal's TC does not verify");
      return tc ? { kind: "proposal", ...base, block: b, tc } : { kind: "proposal", ...base, block: b };
    }
    case "block": {
      const b = block!;
      if (!bytesEqual(b.digest, digest!))
        throw new DWCPError("ERR_AUTH_FAILED", "the signed digest is not the block's");
      if (!qcOk(b.justify)) throw new DWCPError("ERR_AUTH_FAILED", "a block's QC does not verify");
      return { kind: "block", ...base, block: b };
    }
    case "timeout":
    case "sync": {
      const kind = h.kind;
      const qc = highQC!;
      if (h.view < 1 || qc.view !== highQcView || qc.view >= h.view)
        throw new DWCPError(
          "ERR_PROTOCOL",
          `a ${kind}'s QC view is not the signed one, or not below its view`,
        );
      if (tc && tc.view !== h.view - 1)
        throw new DWCPError("ERR_PROTOCOL", `a ${kind}'s TC is not of the previous view`);
      if (!qcOk(qc)) throw new DWCPError("ERR_AUTH_FAILED", `a ${kind}'s QC does not verify`);
      if (tc && !verifyTC(m, tc)) throw new DWCPError("ERR_AUTH_FAILED", `a ${kind}'s TC does not verify`);
      return tc ? { kind, ...base, highQC: qc, tc } : { kind, ...base, highQC: qc };
    }
    case "vote":
      if (h.view < 1) throw new DWCPError("ERR_PROTOCOL", "a vote for view 0");
      return { kind: "vote", ...base, digest: digest! };
    case "fetch":
      return { kind: "fetch", ...base, digest: digest! };
  }
}

/** The signature of a decoded vote or timeout (for assembling certificates). */
export function messageSignature(msg: VoteMessage | TimeoutMessage): Uint8Array {
  const at = HEADER + (msg.kind === "timeout" ? 8 : DIGEST);
  return msg.bytes.slice(at, at + SIGNATURE);
}
