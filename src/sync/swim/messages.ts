/**
 * The SWIM wire format: probes (ping, ping-req, ack, nack), gossip, and the
 * full-state exchange of joins and anti-entropy, each carrying piggybacked
 * membership updates.
 *
 * Every membership update names its origin (the node that asserts it) and has
 * a canonical encoding ({@link updateBytes}) so that a signature by the origin
 * can travel with it unchanged through every relay (internet mode).
 *
 * Decoding is bounded: a message above {@link MAX_MESSAGE_BYTES}, or counting
 * more updates than {@link MAX_PIGGYBACK} / {@link MAX_STATE_ENTRIES}, is
 * refused with `ERR_RESOURCE_LIMIT` before anything is allocated for it;
 * malformed fields are `ERR_BAD_FRAME` or `ERR_PROTOCOL`.
 */
import { Reader, Writer } from "../../consensus/bft/codec.js";
import { DWCPError } from "../../errors.js";

/** A message's first byte: a stray datagram of another protocol fails fast. */
const MAGIC = 0xd5;
/** Format version of {@link encodeMessage}. */
const VERSION = 1;
/** Bytes of one message at most (a full-state exchange is the largest). */
export const MAX_MESSAGE_BYTES = 256 * 1024;
/** Piggybacked updates one message may carry at most. */
export const MAX_PIGGYBACK = 32;
/** Members one full-state exchange may list at most. */
export const MAX_STATE_ENTRIES = 1024;
/** Bytes of a signature at most (Ed25519's is 64). */
export const MAX_SIGNATURE_BYTES = 128;
/** Domain tag of {@link updateBytes}: a signature over an update is good for nothing else. */
const UPDATE_TAG = new TextEncoder().encode("DWCP swim update v1");

/** What an update asserts about its node. */
export type UpdateKind = "alive" | "suspect" | "dead";

/**
 * One membership assertion: `origin` says `node` is `kind` at `incarnation`.
 * `alive` is asserted only by the node itself (origin = node); `dead` with
 * origin = node is a graceful leave.
 */
export interface MembershipUpdate {
  readonly kind: UpdateKind;
  readonly node: string;
  readonly incarnation: number;
  readonly origin: string;
}

/** An update as it travels: with the origin's signature when signing is on (empty otherwise). */
export interface SignedUpdate extends MembershipUpdate {
  readonly signature: Uint8Array;
}

/** A ping: `target` names whom the sender means, so a ping that reaches another node is not acked. */
export interface PingMessage {
  readonly type: "ping";
  readonly seq: number;
  readonly target: string;
  readonly updates: readonly SignedUpdate[];
}

/** A request to ping `target` and relay its ack (Lifeguard: and a nack if it stays silent and `nack` is set). */
export interface PingReqMessage {
  readonly type: "ping-req";
  readonly seq: number;
  readonly target: string;
  readonly nack: boolean;
  readonly updates: readonly SignedUpdate[];
}

/** An answer to the ping (or relayed ping-req) of sequence `seq`. */
export interface AckMessage {
  readonly type: "ack" | "nack";
  readonly seq: number;
  readonly updates: readonly SignedUpdate[];
}

/** Updates only. */
export interface GossipMessage {
  readonly type: "gossip";
  readonly updates: readonly SignedUpdate[];
}

/** The sender's whole membership view (its own alive first); `reply` set on the answer to one. */
export interface SyncMessage {
  readonly type: "sync";
  readonly reply: boolean;
  readonly state: readonly SignedUpdate[];
  readonly updates: readonly SignedUpdate[];
}

/** Any SWIM message. */
export type SwimMessage = PingMessage | PingReqMessage | AckMessage | GossipMessage | SyncMessage;

const TYPE_CODES = { ping: 1, "ping-req": 2, ack: 3, nack: 4, gossip: 5, sync: 6 } as const;
const KIND_CODES = { alive: 1, suspect: 2, dead: 3 } as const;
const KINDS: readonly (UpdateKind | undefined)[] = [undefined, "alive", "suspect", "dead"];

/**
 * The canonical bytes of an update (what its origin signs): a domain tag, then
 * kind, node, incarnation and origin. The signature is not part of them.
 */
export function updateBytes(u: MembershipUpdate): Uint8Array {
  const w = new Writer().bytes(UPDATE_TAG);
  writeUpdateBody(w, u);
  return w.finish();
}

function writeUpdateBody(w: Writer, u: MembershipUpdate): void {
  w.u8(KIND_CODES[u.kind]).str8(u.node).u32(u.incarnation).str8(u.origin);
}

function writeUpdate(w: Writer, u: SignedUpdate): void {
  writeUpdateBody(w, u);
  w.u8(u.signature.length).bytes(u.signature);
}

/** Bytes of `u` on the wire (for the piggyback budget). */
export function updateSize(u: SignedUpdate): number {
  return 1 + 1 + byteLength(u.node) + 4 + 1 + byteLength(u.origin) + 1 + u.signature.length;
}

const encoder = new TextEncoder();
function byteLength(s: string): number {
  return encoder.encode(s).length;
}

function readId(r: Reader, what: string): string {
  const s = r.str8(what);
  if (s.length === 0) throw new DWCPError("ERR_PROTOCOL", `empty ${what}`);
  return s;
}

function readUpdate(r: Reader): SignedUpdate {
  const kind = KINDS[r.u8("update kind")];
  if (kind === undefined) throw new DWCPError("ERR_PROTOCOL", "unknown update kind");
  const node = readId(r, "update node");
  const incarnation = r.u32("incarnation");
  const origin = readId(r, "update origin");
  const n = r.u8("signature length");
  if (n > MAX_SIGNATURE_BYTES)
    throw new DWCPError("ERR_RESOURCE_LIMIT", `signature of ${n} bytes exceeds ${MAX_SIGNATURE_BYTES}`);
  const signature = r.bytes(n, "signature");
  // Only a node may say it is alive: a relay cannot resurrect another.
  if (kind === "alive" && origin !== node)
    throw new DWCPError("ERR_PROTOCOL", "alive asserted by another node");
  return { kind, node, incarnation, origin, signature };
}

/**
 * Encodes a message.
 * @throws DWCPError `ERR_INVALID_ARG` for an id longer than 255 bytes or too many updates
 */
export function encodeMessage(m: SwimMessage): Uint8Array {
  const w = new Writer().u8(MAGIC).u8(VERSION).u8(TYPE_CODES[m.type]);
  switch (m.type) {
    case "ping":
      w.u32(m.seq).str8(m.target);
      break;
    case "ping-req":
      w.u32(m.seq)
        .str8(m.target)
        .u8(m.nack ? 1 : 0);
      break;
    case "ack":
    case "nack":
      w.u32(m.seq);
      break;
    case "gossip":
      break;
    case "sync":
      if (m.state.length > MAX_STATE_ENTRIES)
        throw new DWCPError("ERR_INVALID_ARG", `more than ${MAX_STATE_ENTRIES} state entries`);
      w.u8(m.reply ? 1 : 0).u16(m.state.length);
      for (const u of m.state) writeUpdate(w, u);
      break;
  }
  if (m.updates.length > MAX_PIGGYBACK)
    throw new DWCPError("ERR_INVALID_ARG", `more than ${MAX_PIGGYBACK} piggybacked updates`);
  w.u8(m.updates.length);
  for (const u of m.updates) writeUpdate(w, u);
  return w.finish();
}

/**
 * Decodes a message from a peer: every length and count is checked before use.
 * @throws DWCPError `ERR_RESOURCE_LIMIT` (too large, too many updates),
 *   `ERR_BAD_FRAME` (truncated, trailing bytes, bad UTF-8), `ERR_PROTOCOL`
 *   (bad magic, version, type, flags or update)
 */
export function decodeMessage(bytes: Uint8Array): SwimMessage {
  if (bytes.length > MAX_MESSAGE_BYTES)
    throw new DWCPError(
      "ERR_RESOURCE_LIMIT",
      `message of ${bytes.length} bytes exceeds ${MAX_MESSAGE_BYTES}`,
    );
  const r = new Reader(bytes);
  if (r.u8("magic") !== MAGIC) throw new DWCPError("ERR_PROTOCOL", "not a SWIM message");
  const version = r.u8("version");
  if (version !== VERSION) throw new DWCPError("ERR_PROTOCOL", `SWIM version ${version} is not supported`);
  const type = r.u8("type");
  let m: SwimMessage;
  switch (type) {
    case TYPE_CODES.ping: {
      const seq = r.u32("seq");
      m = { type: "ping", seq, target: readId(r, "target"), updates: [] };
      break;
    }
    case TYPE_CODES["ping-req"]: {
      const seq = r.u32("seq");
      const target = readId(r, "target");
      m = { type: "ping-req", seq, target, nack: flag(r.u8("flags")), updates: [] };
      break;
    }
    case TYPE_CODES.ack:
    case TYPE_CODES.nack:
      m = { type: type === TYPE_CODES.ack ? "ack" : "nack", seq: r.u32("seq"), updates: [] };
      break;
    case TYPE_CODES.gossip:
      m = { type: "gossip", updates: [] };
      break;
    case TYPE_CODES.sync: {
      const reply = flag(r.u8("flags"));
      const n = r.u16("state count");
      if (n > MAX_STATE_ENTRIES)
        throw new DWCPError("ERR_RESOURCE_LIMIT", `${n} state entries exceed ${MAX_STATE_ENTRIES}`);
      const state: SignedUpdate[] = [];
      for (let i = 0; i < n; i++) state.push(readUpdate(r));
      m = { type: "sync", reply, state, updates: [] };
      break;
    }
    default:
      throw new DWCPError("ERR_PROTOCOL", `unknown SWIM message type ${type}`);
  }
  const n = r.u8("update count");
  if (n > MAX_PIGGYBACK)
    throw new DWCPError("ERR_RESOURCE_LIMIT", `${n} piggybacked updates exceed ${MAX_PIGGYBACK}`);
  const updates: SignedUpdate[] = [];
  for (let i = 0; i < n; i++) updates.push(readUpdate(r));
  r.end("SWIM message");
  return { ...m, updates };
}

function flag(b: number): boolean {
  if (b > 1) throw new DWCPError("ERR_PROTOCOL", `unknown flags ${b}`);
  return b === 1;
}
