/**
 * Signed envelopes of internet mode: every CRDT delta and every membership
 * update travels signed by its origin node (Ed25519, from node:crypto), and a
 * receiver verifies it against the origin's registered key before merging it,
 * so a node can speak only for itself.
 *
 * Canonical encoding (big-endian; one byte string per envelope, so the
 * signature is over exactly what travels):
 *
 * ```
 * version u8 = 1 | origin str8 (UTF-8) | epoch u32 | seq u64 | payload (u32 length ‖ bytes) | signature 64
 * ```
 *
 * The signature covers `"DWCP-ASS signed 1\0" ‖ context str8 ‖` every byte
 * before it. The context (say {@link CONTEXT_DELTA} or
 * {@link CONTEXT_MEMBERSHIP}) is not sent: the verifier supplies the one it
 * expects, so an envelope signed for one purpose fails as another (as the BFT
 * messages do with their own domain string). `epoch` lets a node that lost its
 * sequence counter start again above its old envelopes; `(epoch, seq)` orders a
 * node's envelopes for the {@link ReplayGuard}.
 *
 * Errors: a malformed envelope (truncated, trailing bytes, oversized, bad
 * version, origin not UTF-8) is `ERR_PROTOCOL`; an unknown origin or a
 * signature that does not verify is `ERR_AUTH_FAILED`; a replay is
 * `ERR_PROTOCOL`.
 */
import { createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { Reader, Writer } from "../consensus/bft/codec.js";
import { rawPublicKey } from "../consensus/bft/membership.js";
import { DWCPError } from "../errors.js";

/** Context of a signed CRDT delta. */
export const CONTEXT_DELTA = "DWCP-ASS delta";
/** Context of a signed membership (SWIM) update. */
export const CONTEXT_MEMBERSHIP = "DWCP-ASS membership";
/** Largest payload accepted by default, bytes. */
export const MAX_ENVELOPE_PAYLOAD = 1 << 20;
/** Longest origin id, bytes of UTF-8. */
export const MAX_ORIGIN_BYTES = 255;

const VERSION = 1;
const SIGNATURE_BYTES = 64;
const SIGN_DOMAIN = Buffer.from("DWCP-ASS signed 1\0", "latin1");

/** A decoded envelope (verified when it comes from {@link verifyEnvelope}). */
export interface SignedEnvelope {
  /** The node that signed it. */
  readonly origin: string;
  /** The origin's epoch (unsigned 32-bit). */
  readonly epoch: number;
  /** The origin's sequence number within the epoch (a safe integer ≥ 0). */
  readonly seq: number;
  readonly payload: Uint8Array;
  readonly signature: Uint8Array;
  /** The bytes the signature covers after the domain and context: everything before the signature. */
  readonly signed: Uint8Array;
}

/** What to put in an envelope. */
export interface EnvelopeFields {
  readonly origin: string;
  readonly epoch: number;
  readonly seq: number;
  readonly payload: Uint8Array;
}

function checkContext(context: string): Buffer {
  const b = typeof context === "string" ? Buffer.from(context, "utf8") : Buffer.alloc(0);
  if (b.length === 0 || b.length > 255)
    throw new DWCPError("ERR_INVALID_ARG", "a context is a string of 1 to 255 bytes");
  return b;
}

function signable(context: string, signed: Uint8Array): Buffer {
  const c = checkContext(context);
  return Buffer.concat([SIGN_DOMAIN, Buffer.of(c.length), c, signed]);
}

function checkPrivateKey(key: KeyObject): void {
  if (key?.type !== "private" || key.asymmetricKeyType !== "ed25519")
    throw new DWCPError("ERR_INVALID_ARG", "the signing key must be an Ed25519 private key");
}

/**
 * Encodes `fields` and signs them under `context` with `privateKey`, which must
 * be the key of `fields.origin` (verification against the registry fails
 * otherwise). Prefer {@link EnvelopeSigner}, which binds a node to its own id.
 */
export function signEnvelope(
  context: string,
  fields: EnvelopeFields,
  privateKey: KeyObject,
  maxPayloadBytes = MAX_ENVELOPE_PAYLOAD,
): Uint8Array {
  checkPrivateKey(privateKey);
  const { origin, epoch, seq, payload } = fields;
  if (
    typeof origin !== "string" ||
    origin.length === 0 ||
    Buffer.byteLength(origin, "utf8") > MAX_ORIGIN_BYTES
  )
    throw new DWCPError("ERR_INVALID_ARG", `an origin is a string of 1 to ${MAX_ORIGIN_BYTES} bytes`);
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 0xffff_ffff)
    throw new DWCPError("ERR_INVALID_ARG", `epoch must be an unsigned 32-bit integer, not ${epoch}`);
  if (!Number.isSafeInteger(seq) || seq < 0)
    throw new DWCPError("ERR_INVALID_ARG", `seq must be a safe integer ≥ 0, not ${seq}`);
  if (!(payload instanceof Uint8Array) || payload.length > maxPayloadBytes)
    throw new DWCPError("ERR_INVALID_ARG", `a payload is at most ${maxPayloadBytes} bytes`);
  const w = new Writer().u8(VERSION).str8(origin).u32(epoch).u64(seq).blob32(payload);
  const signed = w.finish();
  w.bytes(new Uint8Array(sign(null, signable(context, signed), privateKey)));
  return w.finish();
}

/**
 * Reads an envelope without verifying its signature (for routing or logging
 * only: never merge what it returns). Malformed input is `ERR_PROTOCOL`.
 */
export function decodeEnvelope(bytes: Uint8Array, maxPayloadBytes = MAX_ENVELOPE_PAYLOAD): SignedEnvelope {
  if (!(bytes instanceof Uint8Array)) throw new DWCPError("ERR_PROTOCOL", "an envelope is bytes");
  const max = 1 + 1 + MAX_ORIGIN_BYTES + 4 + 8 + 4 + maxPayloadBytes + SIGNATURE_BYTES;
  if (bytes.length > max)
    throw new DWCPError("ERR_PROTOCOL", `an envelope of ${bytes.length} bytes exceeds ${max}`);
  try {
    const r = new Reader(bytes);
    const version = r.u8("version");
    if (version !== VERSION) throw new DWCPError("ERR_PROTOCOL", `unknown envelope version ${version}`);
    const origin = r.str8("origin");
    if (origin.length === 0) throw new DWCPError("ERR_PROTOCOL", "empty origin");
    const epoch = r.u32("epoch");
    const seq = r.u64("seq");
    const payload = r.blob32(maxPayloadBytes, "payload");
    const end = r.pos;
    const signature = r.bytes(SIGNATURE_BYTES, "signature");
    r.end("envelope");
    return { origin, epoch, seq, payload, signature, signed: bytes.slice(0, end) };
  } catch (e) {
    if (e instanceof DWCPError && e.code === "ERR_PROTOCOL") throw e;
    throw new DWCPError("ERR_PROTOCOL", `malformed envelope: ${(e as Error).message}`, { cause: e });
  }
}

/** Origin id → Ed25519 public key: whom a receiver believes. */
export class KeyRegistry {
  readonly #keys = new Map<string, KeyObject>();

  /** Registers (or replaces) the key of `origin`: a `KeyObject` or the raw 32 bytes. */
  set(origin: string, key: KeyObject | Uint8Array): this {
    if (
      typeof origin !== "string" ||
      origin.length === 0 ||
      Buffer.byteLength(origin, "utf8") > MAX_ORIGIN_BYTES
    )
      throw new DWCPError("ERR_INVALID_ARG", `an origin is a string of 1 to ${MAX_ORIGIN_BYTES} bytes`);
    this.#keys.set(origin, toPublicKey(key));
    return this;
  }

  /** The key of `origin`, if registered. */
  get(origin: string): KeyObject | undefined {
    return this.#keys.get(origin);
  }

  /** Forgets `origin` (its envelopes are refused from now on). */
  delete(origin: string): boolean {
    return this.#keys.delete(origin);
  }

  /** Registered origins. */
  get size(): number {
    return this.#keys.size;
  }
}

/** An Ed25519 public key from a `KeyObject` (checked) or its raw 32 bytes. */
export function toPublicKey(key: KeyObject | Uint8Array): KeyObject {
  if (key instanceof Uint8Array) {
    if (key.length !== 32) throw new DWCPError("ERR_INVALID_ARG", "a raw Ed25519 public key is 32 bytes");
    try {
      return createPublicKey({
        key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(key).toString("base64url") },
        format: "jwk",
      });
    } catch (e) {
      throw new DWCPError("ERR_INVALID_ARG", "not an Ed25519 public key", { cause: e });
    }
  }
  rawPublicKey(key); // throws ERR_INVALID_ARG unless an Ed25519 public key
  return key;
}

/** Options of {@link verifyEnvelope}. */
export interface VerifyOptions {
  /** Largest payload accepted, bytes. @default {@link MAX_ENVELOPE_PAYLOAD} */
  readonly maxPayloadBytes?: number;
  /** Refuse envelopes this guard has seen (or that fell behind its window); record the accepted one. */
  readonly replay?: ReplayGuard;
}

/**
 * Decodes `bytes` and verifies them as an envelope of `context` signed by the
 * registered key of its origin: malformed is `ERR_PROTOCOL`, an unknown origin
 * or a bad signature `ERR_AUTH_FAILED`, a replay (with `options.replay`)
 * `ERR_PROTOCOL`. Only a verified envelope reaches the replay guard, so forged
 * ones cannot use up a node's sequence numbers.
 */
export function verifyEnvelope(
  bytes: Uint8Array,
  registry: KeyRegistry,
  context: string,
  options: VerifyOptions = {},
): SignedEnvelope {
  const env = decodeEnvelope(bytes, options.maxPayloadBytes ?? MAX_ENVELOPE_PAYLOAD);
  const key = registry.get(env.origin);
  if (!key)
    throw new DWCPError("ERR_AUTH_FAILED", `envelope from unknown origin ${JSON.stringify(env.origin)}`);
  let ok = false;
  try {
    ok = verify(null, signable(context, env.signed), key, env.signature);
  } catch {
    ok = false;
  }
  if (!ok)
    throw new DWCPError("ERR_AUTH_FAILED", `bad signature on an envelope from ${JSON.stringify(env.origin)}`);
  if (options.replay && !options.replay.admit(env.origin, env.epoch, env.seq))
    throw new DWCPError(
      "ERR_PROTOCOL",
      `replayed envelope from ${JSON.stringify(env.origin)} (epoch ${env.epoch}, seq ${env.seq})`,
    );
  return env;
}

/**
 * A node's signer: it signs only as its own id, with increasing sequence
 * numbers within its epoch.
 */
export class EnvelopeSigner {
  readonly origin: string;
  readonly epoch: number;
  readonly #key: KeyObject;
  #seq: number;

  /** `firstSeq` is where numbering starts (0 in a fresh epoch). */
  constructor(origin: string, privateKey: KeyObject, epoch = 0, firstSeq = 0) {
    checkPrivateKey(privateKey);
    if (!Number.isSafeInteger(firstSeq) || firstSeq < 0)
      throw new DWCPError("ERR_INVALID_ARG", `firstSeq must be a safe integer ≥ 0, not ${firstSeq}`);
    this.origin = origin;
    this.epoch = epoch;
    this.#key = privateKey;
    this.#seq = firstSeq;
  }

  /** The sequence number the next envelope takes. */
  get nextSeq(): number {
    return this.#seq;
  }

  /** Signs `payload` under `context` as the next envelope of this node. */
  sign(context: string, payload: Uint8Array): Uint8Array {
    const out = signEnvelope(
      context,
      { origin: this.origin, epoch: this.epoch, seq: this.#seq, payload },
      this.#key,
    );
    this.#seq++;
    return out;
  }
}

/** Options of a {@link ReplayGuard}. */
export interface ReplayGuardOptions {
  /** Sequence numbers below the highest seen that may still arrive once (out of order). @default 1024 */
  readonly window?: number;
  /** Origins tracked at most (each costs `window` bits). @default 4096 */
  readonly maxOrigins?: number;
}

interface OriginState {
  epoch: number;
  /** Highest seq admitted in `epoch`. */
  high: number;
  /** Bit i set: seq `high - i` was admitted. */
  readonly seen: Uint32Array;
}

/**
 * Per origin, the highest `(epoch, seq)` admitted and a sliding window below it
 * (IPsec style): a seq above the highest is admitted, one inside the window
 * once, one below it never; a higher epoch starts afresh, a lower one is refused.
 */
export class ReplayGuard {
  readonly window: number;
  readonly maxOrigins: number;
  readonly #origins = new Map<string, OriginState>();

  constructor(options: ReplayGuardOptions = {}) {
    const window = options.window ?? 1024;
    const maxOrigins = options.maxOrigins ?? 4096;
    if (!Number.isInteger(window) || window < 1 || window > 1 << 16)
      throw new DWCPError("ERR_INVALID_ARG", `window must be an integer in [1, 65536], not ${window}`);
    if (!Number.isInteger(maxOrigins) || maxOrigins < 1)
      throw new DWCPError("ERR_INVALID_ARG", `maxOrigins must be a positive integer, not ${maxOrigins}`);
    this.window = window;
    this.maxOrigins = maxOrigins;
  }

  /** Origins tracked. */
  get size(): number {
    return this.#origins.size;
  }

  /** Whether `(epoch, seq)` of `origin` would be admitted now (records nothing). */
  check(origin: string, epoch: number, seq: number): boolean {
    const s = this.#origins.get(origin);
    if (!s) return this.#origins.size < this.maxOrigins;
    if (epoch !== s.epoch) return epoch > s.epoch;
    if (seq > s.high) return true;
    const back = s.high - seq;
    return back < this.window && !bit(s.seen, back);
  }

  /**
   * Admits `(epoch, seq)` of `origin` if {@link check} allows it and records it;
   * false (nothing recorded) for a replay, an old epoch, or a new origin beyond
   * {@link maxOrigins}. Call it only for verified envelopes.
   */
  admit(origin: string, epoch: number, seq: number): boolean {
    if (!this.check(origin, epoch, seq)) return false;
    let s = this.#origins.get(origin);
    if (!s || epoch > s.epoch) {
      s = { epoch, high: seq, seen: new Uint32Array(Math.ceil(this.window / 32)) };
      setBit(s.seen, 0);
      this.#origins.set(origin, s);
      return true;
    }
    if (seq > s.high) {
      shift(s.seen, Math.min(seq - s.high, this.window), this.window);
      s.high = seq;
      setBit(s.seen, 0);
    } else setBit(s.seen, s.high - seq);
    return true;
  }

  /** Forgets `origin` (when it leaves the registry). */
  forget(origin: string): void {
    this.#origins.delete(origin);
  }
}

function bit(bits: Uint32Array, i: number): boolean {
  return ((bits[i >>> 5]! >>> (i & 31)) & 1) === 1;
}

function setBit(bits: Uint32Array, i: number): void {
  bits[i >>> 5] = bits[i >>> 5]! | (1 << (i & 31));
}

/** Moves every bit up by `n` (bit i becomes bit i + n), dropping those at `window` or beyond. */
function shift(bits: Uint32Array, n: number, window: number): void {
  if (n >= window) {
    bits.fill(0);
    return;
  }
  for (let i = window - 1; i >= 0; i--) {
    const from = i - n;
    if (from >= 0 && bit(bits, from)) setBit(bits, i);
    else bits[i >>> 5] = bits[i >>> 5]! & ~(1 << (i & 31));
  }
}
