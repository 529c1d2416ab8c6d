/**
 * The framing of the sync replica's messages (see `replica.ts`): one kind byte,
 * then a body. Decoding is bounded (every length is checked against a cap
 * before anything is allocated) and strict (trailing bytes, unknown kinds and
 * bad flags are `ERR_PROTOCOL`), so one frame has one encoding.
 *
 * ```
 * kind u8 | body (big-endian)
 * 1 delta   seq u64 | ack u64 | payload (u32 length ‖ bytes)   an interval of the sender's stream
 * 2 ack     seq u64 | ack u64                                  a header only
 * 3 ae      anti-entropy message (the rest of the frame)
 * 4 repair  seq u64 | ack u64 | payload (u32 length ‖ bytes)   entries of some keys (never acked)
 * ```
 *
 * `seq`/`ack` are the delta tracker's {@link SyncHeader}. A payload is an
 * encoded LWW delta (`encodeLwwDelta`) in the plain mode, and in internet mode
 * a list of signed envelopes ({@link encodeEnvelopeList}): count u32, then
 * each envelope behind a u32 length.
 *
 * @packageDocumentation
 */
import { Reader, Writer } from "../consensus/bft/codec.js";
import { DWCPError } from "../errors.js";
import type { SyncHeader } from "./delta-tracker.js";

/** Kind byte of each frame. */
export const FRAME_KIND = Object.freeze({ delta: 1, ack: 2, ae: 3, repair: 4 } as const);

/** Default cap of one frame, bytes (a full state travels in one delta frame). */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** A decoded frame of the sync replica. */
export type SyncFrame =
  | { readonly kind: "delta"; readonly header: SyncHeader; readonly payload: Uint8Array }
  | { readonly kind: "ack"; readonly header: SyncHeader }
  | { readonly kind: "ae"; readonly body: Uint8Array }
  | { readonly kind: "repair"; readonly header: SyncHeader; readonly payload: Uint8Array };

/** Encodes a frame. */
export function encodeSyncFrame(f: SyncFrame): Uint8Array {
  const w = new Writer().u8(FRAME_KIND[f.kind]);
  switch (f.kind) {
    case "delta":
    case "repair":
      w.u64(f.header.seq).u64(f.header.ack).blob32(f.payload);
      break;
    case "ack":
      w.u64(f.header.seq).u64(f.header.ack);
      break;
    case "ae":
      w.bytes(f.body);
      break;
  }
  return w.finish();
}

/**
 * Decodes a frame from a peer: longer than `maxBytes` is `ERR_RESOURCE_LIMIT`;
 * anything malformed is `ERR_PROTOCOL` (never another exception).
 */
export function decodeSyncFrame(bytes: Uint8Array, maxBytes = DEFAULT_MAX_FRAME_BYTES): SyncFrame {
  if (!(bytes instanceof Uint8Array)) throw new DWCPError("ERR_PROTOCOL", "a sync frame is bytes");
  if (bytes.length > maxBytes)
    throw new DWCPError("ERR_RESOURCE_LIMIT", `sync frame of ${bytes.length} bytes exceeds ${maxBytes}`);
  return strict("sync frame", () => {
    const r = new Reader(bytes);
    const kind = r.u8("kind");
    let f: SyncFrame;
    switch (kind) {
      case FRAME_KIND.delta:
      case FRAME_KIND.repair: {
        const header = { seq: r.u64("seq"), ack: r.u64("ack") };
        const payload = r.blob32(maxBytes, "payload");
        f =
          kind === FRAME_KIND.delta
            ? { kind: "delta", header, payload }
            : { kind: "repair", header, payload };
        break;
      }
      case FRAME_KIND.ack:
        f = { kind: "ack", header: { seq: r.u64("seq"), ack: r.u64("ack") } };
        break;
      case FRAME_KIND.ae:
        f = { kind: "ae", body: r.bytes(r.left, "anti-entropy body") };
        break;
      default:
        throw new DWCPError("ERR_PROTOCOL", `unknown sync frame kind ${kind}`);
    }
    r.end("sync frame");
    return f;
  });
}

/** Encodes a list of signed envelopes (the internet-mode payload). */
export function encodeEnvelopeList(envelopes: readonly Uint8Array[]): Uint8Array {
  const w = new Writer().u32(envelopes.length);
  for (const e of envelopes) w.blob32(e);
  return w.finish();
}

/**
 * Decodes {@link encodeEnvelopeList}'s bytes: more than `maxCount` envelopes, or
 * one longer than `maxEnvelopeBytes`, is `ERR_RESOURCE_LIMIT`; malformed is `ERR_PROTOCOL`.
 */
export function decodeEnvelopeList(
  bytes: Uint8Array,
  maxCount: number,
  maxEnvelopeBytes: number,
): Uint8Array[] {
  return strict("envelope list", () => {
    const r = new Reader(bytes);
    const n = r.u32("envelope count");
    if (n > maxCount) throw new DWCPError("ERR_RESOURCE_LIMIT", `${n} envelopes exceed ${maxCount}`);
    // Each envelope takes at least its 4-byte length: a count the bytes cannot hold costs nothing.
    if (n * 4 > r.left) throw new DWCPError("ERR_PROTOCOL", "truncated envelope list");
    const out: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const len = r.u32("envelope length");
      if (len > maxEnvelopeBytes)
        throw new DWCPError("ERR_RESOURCE_LIMIT", `envelope of ${len} bytes exceeds ${maxEnvelopeBytes}`);
      out.push(r.bytes(len, "envelope"));
    }
    r.end("envelope list");
    return out;
  });
}

/** Runs a decoder, reporting the codec's `ERR_BAD_FRAME` (and anything else) as `ERR_PROTOCOL`. */
function strict<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof DWCPError && (e.code === "ERR_PROTOCOL" || e.code === "ERR_RESOURCE_LIMIT")) throw e;
    const message = e instanceof Error ? e.message : String(e);
    throw new DWCPError("ERR_PROTOCOL", `malformed ${what}: ${message}`, { cause: e });
  }
}
