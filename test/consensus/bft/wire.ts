// What the oracle reads off the BFT wire, through the core's own decoder
// (which checks framing, membership and every signature): the slot a signed
// message occupies and what it says there. Two validly signed messages of one
// member in one slot saying different things are an equivocation:
//  - proposal@v: the block digest (a leader proposes one block per view);
//  - vote@v: the digest voted for (one vote per view);
//  - timeout@v: the high-QC view the sender signed (one timeout per view).
// Fetch and block messages (block sync) cannot conflict: a replica may serve
// any block it holds.
import { createHash } from "node:crypto";
import type { Membership } from "../../../src/consensus/bft/membership.js";
import { decodeMessage, type QuorumCertificate } from "../../../src/consensus/bft/messages.js";
import type { SignedFacts } from "./invariants.js";

/** The first view of a run (genesis is view 0). */
export const FIRST_VIEW = 1;

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** Reads the facts of one message; undefined when it does not decode or verify. */
export function readWire(m: Membership, bytes: Uint8Array): SignedFacts | undefined {
  let msg: ReturnType<typeof decodeMessage>;
  try {
    msg = decodeMessage(m, bytes);
  } catch {
    return undefined;
  }
  const base = { kind: msg.kind, sender: msg.sender, view: msg.view, valid: true };
  switch (msg.kind) {
    case "proposal":
      return { ...base, slot: `proposal@${msg.view}`, content: hex(msg.block.digest).slice(0, 16) };
    case "vote":
      return { ...base, slot: `vote@${msg.view}`, content: hex(msg.digest).slice(0, 16) };
    case "timeout":
      return { ...base, slot: `timeout@${msg.view}`, content: `highQC v${msg.highQC.view}` };
    default:
      return { ...base, slot: undefined, content: "" };
  }
}

/**
 * {@link readWire} with a cache by content: one message is sent to and delivered
 * at several instances, and its signatures need checking once.
 */
export function cachedReader(): (m: Membership, bytes: Uint8Array) => SignedFacts | undefined {
  const seen = new Map<string, SignedFacts | null>();
  return (m, bytes) => {
    const k = createHash("sha256").update(bytes).digest("base64");
    let f = seen.get(k);
    if (f === undefined) {
      f = readWire(m, bytes) ?? null;
      seen.set(k, f);
    }
    return f ?? undefined;
  };
}

/** What a QC certifies. */
export function qcOf(qc: QuorumCertificate): { digest: Uint8Array; view: number } {
  return { digest: qc.digest, view: qc.view };
}
