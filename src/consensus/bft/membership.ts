/**
 * The static membership of one BFT epoch: who the replicas are (their Ed25519
 * keys, in id order) and the thresholds that follow from their number. Its hash
 * is in every signed message, so a message of one configuration can never count
 * toward a certificate of another.
 */
import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import { DWCPError } from "../../errors.js";
import { Writer } from "./codec.js";

/** One replica of a {@link Membership}. */
export interface Member {
  /** Its id: its index in {@link Membership.members}. */
  readonly id: number;
  /** Its Ed25519 public key. */
  readonly publicKey: KeyObject;
}

/** The replicas of one epoch and the fault thresholds of their number. */
export interface Membership {
  /** The configuration's epoch (an unsigned 32-bit number); in every message. */
  readonly epoch: number;
  /** The replicas; `members[i].id === i`. */
  readonly members: readonly Member[];
  /** Faulty replicas tolerated: floor((n - 1) / 3). */
  readonly f: number;
  /** Signatures a certificate needs: n - f (2f + 1 when n = 3f + 1). */
  readonly quorum: number;
  /** SHA-256 of the canonical encoding (epoch and raw keys in id order); in every signed message. */
  readonly configHash: Uint8Array;
}

/** Most replicas a membership may have: ids travel in one byte. */
export const MAX_MEMBERS = 255;

/** The raw 32 bytes of an Ed25519 public key. */
export function rawPublicKey(key: KeyObject): Uint8Array {
  if (key.type !== "public" || key.asymmetricKeyType !== "ed25519")
    throw new DWCPError("ERR_INVALID_ARG", "a member's key must be an Ed25519 public key");
  const x = key.export({ format: "jwk" }).x;
  if (typeof x !== "string") throw new DWCPError("ERR_INVALID_ARG", "the key has no public part");
  return new Uint8Array(Buffer.from(x, "base64url"));
}

/**
 * The membership of `epoch` with `publicKeys` as members 0, 1, …. Keys must be
 * distinct Ed25519 public keys: a key listed twice would let one signer count twice.
 */
export function membership(epoch: number, publicKeys: readonly KeyObject[]): Membership {
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 0xffff_ffff)
    throw new DWCPError("ERR_INVALID_ARG", `epoch must be an unsigned 32-bit integer, not ${epoch}`);
  const n = publicKeys.length;
  if (n < 1 || n > MAX_MEMBERS)
    throw new DWCPError("ERR_INVALID_ARG", `a membership has 1 to ${MAX_MEMBERS} members, not ${n}`);
  const raws = publicKeys.map(rawPublicKey);
  const seen = new Set(raws.map((r) => Buffer.from(r).toString("hex")));
  if (seen.size !== n) throw new DWCPError("ERR_INVALID_ARG", "a public key is listed twice");
  const w = new Writer().str8("DWCP-BFT membership 1").u32(epoch).u8(n);
  for (const r of raws) w.bytes(r);
  const f = Math.floor((n - 1) / 3);
  return Object.freeze({
    epoch,
    members: Object.freeze(publicKeys.map((publicKey, id) => Object.freeze({ id, publicKey }))),
    f,
    quorum: n - f,
    configHash: new Uint8Array(createHash("sha256").update(w.finish()).digest()),
  });
}

/** `n` fresh Ed25519 key pairs (from the OS's randomness: for tests and benchmarks, not reproducible). */
export function generateKeys(n: number): { publicKeys: KeyObject[]; privateKeys: KeyObject[] } {
  const publicKeys: KeyObject[] = [];
  const privateKeys: KeyObject[] = [];
  for (let i = 0; i < n; i++) {
    const { publicKey, privateKey } = generateKeyPairSync("ed25519");
    publicKeys.push(publicKey);
    privateKeys.push(privateKey);
  }
  return { publicKeys, privateKeys };
}
