/**
 * Pre-shared-key challenge/response (docs/PROTOCOL.md §6).
 *
 * Each side's greeting carries a fresh 32-byte nonce. In its Hello each side
 * proves knowledge of the key with
 *   HMAC-SHA256(psk, "DWCP-PSK-1" ‖ role ‖ own nonce ‖ peer nonce ‖ own node id)
 * where role is "C" for the dialer and "S" for the listener. Binding the role and
 * both nonces makes a proof useless for replay or reflection.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export type Role = "C" | "S";

const LABEL = new TextEncoder().encode("DWCP-PSK-1");

export function pskProof(
  psk: Uint8Array,
  role: Role,
  ownNonce: Uint8Array,
  peerNonce: Uint8Array,
  nodeId: string,
) {
  return new Uint8Array(
    createHmac("sha256", psk)
      .update(LABEL)
      .update(role)
      .update(ownNonce)
      .update(peerNonce)
      .update(nodeId, "utf8")
      .digest(),
  );
}

/** Verifies the peer's proof in constant time. */
export function verifyPskProof(
  psk: Uint8Array,
  peerRole: Role,
  peerNonce: Uint8Array,
  ownNonce: Uint8Array,
  peerNodeId: string,
  proof: Uint8Array | undefined,
): boolean {
  const expected = pskProof(psk, peerRole, peerNonce, ownNonce, peerNodeId);
  return proof !== undefined && proof.length === expected.length && timingSafeEqual(proof, expected);
}
