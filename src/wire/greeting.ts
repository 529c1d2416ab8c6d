/**
 * The fixed 40-byte greeting each side sends first (docs/PROTOCOL.md §2).
 */
import { nodeEnv, type Random } from "../env/index.js";
import { DWCPError } from "../errors.js";

export const GREETING_SIZE = 40;
/** "DWCP" */
export const MAGIC = Uint8Array.of(0x44, 0x57, 0x43, 0x50);
export const GREETING_FORMAT = 1;
export const NONCE_SIZE = 32;

/** Greeting flag bits. */
export const GreetingFlags = { PSK: 1 << 0, TLS: 1 << 1 } as const;

export interface Greeting {
  /** Format of the greeting itself (1). */
  format: number;
  /** Highest protocol version the sender speaks. */
  maxVersion: number;
  flags: number;
  nonce: Uint8Array;
}

/** A greeting nonce from `random` (the OS's CSPRNG on the real environment). */
export function newNonce(random: Random = nodeEnv.random): Uint8Array {
  return random.bytes(NONCE_SIZE);
}

export function encodeGreeting(g: Omit<Greeting, "format">): Uint8Array {
  const out = new Uint8Array(GREETING_SIZE);
  out.set(MAGIC, 0);
  out[4] = GREETING_FORMAT;
  out[5] = g.maxVersion;
  new DataView(out.buffer).setUint16(6, g.flags, true);
  out.set(g.nonce, 8);
  return out;
}

/**
 * @throws DWCPError `ERR_BAD_MAGIC` for anything that is not a DWCP greeting,
 *   `ERR_VERSION_MISMATCH` for a greeting format this code does not know
 */
export function decodeGreeting(b: Uint8Array): Greeting {
  if (b.length !== GREETING_SIZE)
    throw new DWCPError("ERR_BAD_MAGIC", `greeting must be ${GREETING_SIZE} bytes`);
  for (let i = 0; i < MAGIC.length; i++) {
    if (b[i] !== MAGIC[i]) throw new DWCPError("ERR_BAD_MAGIC");
  }
  const format = b[4]!;
  if (format !== GREETING_FORMAT) {
    throw new DWCPError("ERR_VERSION_MISMATCH", `unknown greeting format ${format}`);
  }
  return {
    format,
    maxVersion: b[5]!,
    flags: new DataView(b.buffer, b.byteOffset, b.byteLength).getUint16(6, true),
    nonce: b.slice(8, 8 + NONCE_SIZE),
  };
}
