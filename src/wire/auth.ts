/**
 * Pre-shared-key authentication bound to the whole handshake transcript
 * (docs/PROTOCOL.md §6).
 *
 * Each greeting carries a fresh 32-byte nonce; the Hellos go out unauthenticated.
 * Once both Hellos are in, each side hashes the transcript (both greetings and
 * both Hellos, exactly as they crossed the wire, dialler's first) and derives the
 * session's keys with HKDF-SHA256 from the key it holds for that peer. Its Ready
 * then carries `HMAC-SHA256(proof key of its role, transcript hash)`. A proxy
 * that rewrote a Hello (offered versions, codecs, limits, integrity) or a
 * greeting changes the transcript, so the proofs no longer verify: the handshake
 * cannot be downgraded by anyone without the key. Roles get separate keys, so a
 * proof cannot be reflected back.
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from "node:crypto";

/** "C" for the side that dialled, "S" for the side that accepted. */
export type Role = "C" | "S";

/** What a handshake transcript is made of, as the bytes that crossed the wire. */
export interface Transcript {
  /** The dialler's and the listener's 40-byte greetings. */
  greetingC: Uint8Array;
  greetingS: Uint8Array;
  /** The encoded `Control` payloads of the dialler's and the listener's Hello frames. */
  helloC: Uint8Array;
  helloS: Uint8Array;
}

/** Keys of one PSK session, derived once per handshake. */
export interface SessionKeys {
  /** The key each role proves the transcript with. */
  proof: Record<Role, Uint8Array>;
  /** The key of the frames each role sends, when frames carry a MAC. */
  mac: Record<Role, Uint8Array>;
}

const LABEL = "DWCP-PSK-2";

/** SHA-256 over the transcript, each part length-prefixed so parts cannot shift into each other. */
export function transcriptHash(t: Transcript): Uint8Array {
  const h = createHash("sha256").update(LABEL);
  for (const part of [t.greetingC, t.greetingS, t.helloC, t.helloS]) {
    const len = Buffer.alloc(4);
    len.writeUInt32LE(part.length);
    h.update(len).update(part);
  }
  return new Uint8Array(h.digest());
}

/** HKDF-SHA256 over the pre-shared key: salt the two nonces, info the transcript hash. */
export function deriveKeys(
  psk: Uint8Array,
  nonceC: Uint8Array,
  nonceS: Uint8Array,
  transcript: Uint8Array,
): SessionKeys {
  const salt = Buffer.concat([nonceC, nonceS]);
  const okm = new Uint8Array(
    hkdfSync("sha256", psk, salt, Buffer.concat([Buffer.from(`${LABEL} keys`), transcript]), 128),
  );
  return {
    proof: { C: okm.slice(0, 32), S: okm.slice(32, 64) },
    mac: { C: okm.slice(64, 96), S: okm.slice(96, 128) },
  };
}

/** The proof a side of `role` puts in its Ready. */
export function readyProof(keys: SessionKeys, role: Role, transcript: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", keys.proof[role]).update(role).update(transcript).digest());
}

/** Verifies the peer's Ready proof in constant time. */
export function verifyReadyProof(
  keys: SessionKeys,
  peerRole: Role,
  transcript: Uint8Array,
  proof: Uint8Array | undefined,
): boolean {
  const expected = readyProof(keys, peerRole, transcript);
  return proof !== undefined && proof.length === expected.length && timingSafeEqual(proof, expected);
}

/**
 * A short public name of a key, for telling credentials apart in logs and
 * `Session.peerCredential` without revealing the key.
 */
export function keyId(key: Uint8Array): string {
  return createHash("sha256").update("DWCP key id").update(key).digest("hex").slice(0, 16);
}
