/**
 * The safety rules of the two-chain protocol (the DiemBFT v4 / Jolteon rules)
 * and the state they guard, which must reach the disk before any vote, timeout
 * or proposal that depends on it leaves the replica: a replica that forgot it
 * voted could vote again in the same view after a restart (amnesia).
 *
 * - Vote for a block of view v only once (v above the last view voted or timed
 *   out in) and only if v is above the block's QC and either directly follows
 *   it, or follows a TC whose signers reported no QC above the block's.
 * - Time out of view v only if v is at or above the last view voted in; a
 *   timeout in v means no vote in v later (it is recorded as the voted view).
 * - Propose at most once per view.
 */
import { DWCPError } from "../../errors.js";
import { Reader, Writer } from "./codec.js";
import {
  type Block,
  decodeQC,
  encodeQC,
  MAX_MESSAGE_BYTES,
  type QuorumCertificate,
  type TimeoutCertificate,
  tcHighQcView,
} from "./messages.js";

/** What a replica must not forget. */
export interface SafetyState {
  /** The view the replica was in. */
  view: number;
  /** The highest view it voted or timed out in: it votes only above it. */
  votedView: number;
  /** The highest view it proposed in. */
  proposedView: number;
  /** The highest QC it knows: its lock, and what its timeouts carry. */
  highQC: QuorumCertificate;
  /** Its signed timeout of `votedView`, if it timed out there: re-sent as is, never re-signed differently. */
  lastTimeout?: Uint8Array | undefined;
}

/** Whether the rules allow voting for `block`, proposed with `tc` when its QC is not of the previous view. */
export function safeToVote(s: SafetyState, block: Block, tc: TimeoutCertificate | undefined): boolean {
  const qcView = block.justify.view;
  if (block.view <= Math.max(s.votedView, qcView)) return false;
  if (block.view === qcView + 1) return true;
  return tc !== undefined && block.view === tc.view + 1 && qcView >= tcHighQcView(tc);
}

/** Whether the rules allow timing out of `view`. */
export function safeToTimeout(s: SafetyState, view: number): boolean {
  return view >= s.votedView && view > s.highQC.view;
}

const RECORD_VERSION = 1;

/** The storage record of a state. */
export function encodeSafety(s: SafetyState): Uint8Array {
  const w = new Writer().u8(RECORD_VERSION).u64(s.view).u64(s.votedView).u64(s.proposedView);
  w.blob32(encodeQC(s.highQC));
  if (s.lastTimeout) w.u8(1).blob32(s.lastTimeout);
  else w.u8(0);
  return w.finish();
}

/** Reads a record of {@link encodeSafety}; a damaged one is `ERR_PROTOCOL` (refusing to start beats forgetting a vote). */
export function decodeSafety(bytes: Uint8Array): SafetyState {
  try {
    const r = new Reader(bytes);
    if (r.u8() !== RECORD_VERSION) throw new DWCPError("ERR_BAD_FRAME", "unknown record version");
    const view = r.u64();
    const votedView = r.u64();
    const proposedView = r.u64();
    const highQC = decodeQC(r.blob32(64 * 1024, "high QC"));
    const lastTimeout = r.u8() === 1 ? r.blob32(MAX_MESSAGE_BYTES, "timeout") : undefined;
    r.end("safety record");
    return { view, votedView, proposedView, highQC, lastTimeout };
  } catch (e) {
    throw new DWCPError("ERR_PROTOCOL", "the stored BFT safety state is damaged", { cause: e });
  }
}
