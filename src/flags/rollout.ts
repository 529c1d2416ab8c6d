/**
 * The v3 rollout rule. It must put exactly the same nodes on v3 as the existing
 * Go fleet, so it is specified bit for bit: 32-bit FNV-1a over the UTF-8 bytes
 * of the node id (offset basis 2166136261, prime 16777619, arithmetic mod 2^32),
 * then `hash % 100 < percentage`.
 */

const OFFSET_BASIS = 2166136261;
const PRIME = 16777619;
const utf8 = new TextEncoder();

/** 32-bit FNV-1a of the node id's UTF-8 bytes, as an unsigned integer. */
export function rolloutHash(nodeId: string): number {
  let h = OFFSET_BASIS;
  for (const b of utf8.encode(nodeId)) {
    h ^= b;
    // Math.imul keeps the multiplication exact mod 2^32 (a plain * loses bits above 2^53).
    h = Math.imul(h, PRIME) >>> 0;
  }
  return h >>> 0;
}

/** The flags the rollout rule reads. */
export interface RolloutFlags {
  forceV1: boolean;
  v3RolloutPercentage: number;
}

/**
 * Whether `nodeId` may use v3: never with `forceV1`, never at 0 %, always at
 * 100 %, otherwise when `rolloutHash(nodeId) % 100 < percentage`.
 */
export function shouldUseV3(nodeId: string, flags: RolloutFlags): boolean {
  if (flags.forceV1) return false;
  if (flags.v3RolloutPercentage <= 0) return false;
  if (flags.v3RolloutPercentage >= 100) return true;
  return rolloutHash(nodeId) % 100 < flags.v3RolloutPercentage;
}
