// The BFT wire format: canonical encoding, signatures, certificates, and a
// decoder that refuses every malformed or misattributed message with a stable code.
import { describe, expect, it } from "vitest";
import { generateKeys, membership } from "../../../src/consensus/bft/membership.js";
import {
  type Block,
  decodeMessage,
  encodeMessage,
  genesisQC,
  MAX_MESSAGE_BYTES,
  makeBlock,
  messageSignature,
  messageView,
  type QuorumCertificate,
  type TimeoutCertificate,
  type VoteMessage,
  verifyQC,
  verifyTC,
} from "../../../src/consensus/bft/messages.js";

const keys = generateKeys(4);
const m = membership(7, keys.publicKeys);
const other = membership(8, keys.publicKeys);
const priv = (i: number) => keys.privateKeys[i]!;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

function block1(): Block {
  const g = genesisQC(m);
  return makeBlock(m, {
    view: 1,
    height: 1,
    proposer: 1,
    parent: g.digest,
    parentView: 0,
    commands: [{ client: "c", seq: 1, op: new Uint8Array([1, 2, 3]) }],
    justify: g,
  });
}

function qcFor(view: number, digest: Uint8Array, signers: number[]): QuorumCertificate {
  return {
    view,
    digest,
    signatures: signers.map((i) => {
      const v = decodeMessage(m, encodeMessage(m, i, priv(i), { kind: "vote", view, digest })) as VoteMessage;
      return { member: i, signature: messageSignature(v) };
    }),
  };
}

describe("BFT messages", () => {
  it("a membership of 4 tolerates 1 fault with a quorum of 3; its hash changes with the epoch", () => {
    expect(m.f).toBe(1);
    expect(m.quorum).toBe(3);
    expect(membership(1, generateKeys(7).publicKeys)).toMatchObject({ f: 2, quorum: 5 });
    expect(Buffer.from(m.configHash).equals(Buffer.from(other.configHash))).toBe(false);
    expect(codeOf(() => membership(1, [keys.publicKeys[0]!, keys.publicKeys[0]!]))).toBe("ERR_INVALID_ARG");
  });

  it("a proposal round-trips with its block, commands and QC; the view is readable without verifying", () => {
    const b = block1();
    const bytes = encodeMessage(m, 1, priv(1), { kind: "proposal", view: 1, block: b });
    const msg = decodeMessage(m, bytes);
    expect(msg.kind).toBe("proposal");
    if (msg.kind !== "proposal") return;
    expect(msg.sender).toBe(1);
    expect(Buffer.from(msg.block.digest).equals(Buffer.from(b.digest))).toBe(true);
    expect(msg.block.commands[0]).toMatchObject({ client: "c", seq: 1 });
    expect([...msg.block.commands[0]!.op]).toEqual([1, 2, 3]);
    expect(messageView(bytes)).toBe(1);
    expect(messageView(new Uint8Array(3))).toBeUndefined();
  });

  it("rejects truncated, padded and oversized messages as frame errors", () => {
    const bytes = encodeMessage(m, 1, priv(1), { kind: "proposal", view: 1, block: block1() });
    for (const cut of [0, 1, 10, 47, 80, bytes.length - 1])
      expect(codeOf(() => decodeMessage(m, bytes.subarray(0, cut)))).toBe("ERR_BAD_FRAME");
    const padded = new Uint8Array(bytes.length + 1);
    padded.set(bytes);
    expect(codeOf(() => decodeMessage(m, padded))).toBe("ERR_BAD_FRAME");
    expect(codeOf(() => decodeMessage(m, new Uint8Array(MAX_MESSAGE_BYTES + 1)))).toBe(
      "ERR_MESSAGE_TOO_LARGE",
    );
  });

  it("rejects a bad signature, a forged sender, another epoch and a sender out of range", () => {
    const vote = encodeMessage(m, 2, priv(2), { kind: "vote", view: 3, digest: new Uint8Array(32) });
    expect(decodeMessage(m, vote).sender).toBe(2);
    const flipped = vote.slice();
    flipped[flipped.length - 1]! ^= 1;
    expect(codeOf(() => decodeMessage(m, flipped))).toBe("ERR_AUTH_FAILED");
    // Signed by member 1's key, claiming to come from member 2.
    const forged = encodeMessage(m, 2, priv(1), { kind: "vote", view: 3, digest: new Uint8Array(32) });
    expect(codeOf(() => decodeMessage(m, forged))).toBe("ERR_AUTH_FAILED");
    const wrongEpoch = encodeMessage(other, 2, priv(2), {
      kind: "vote",
      view: 3,
      digest: new Uint8Array(32),
    });
    expect(codeOf(() => decodeMessage(m, wrongEpoch))).toBe("ERR_PROTOCOL");
    const outOfRange = encodeMessage(m, 9, priv(2), { kind: "vote", view: 3, digest: new Uint8Array(32) });
    expect(codeOf(() => decodeMessage(m, outOfRange))).toBe("ERR_PROTOCOL");
  });

  it("a QC verifies with a quorum of distinct members' votes, and not with fewer, repeated or foreign ones", () => {
    const d = block1().digest;
    expect(verifyQC(m, genesisQC(m))).toBe(true);
    expect(verifyQC(m, qcFor(1, d, [0, 1, 3]))).toBe(true);
    expect(verifyQC(m, qcFor(1, d, [0, 1]))).toBe(false);
    const q = qcFor(1, d, [0, 1, 3]);
    expect(verifyQC(m, { ...q, signatures: [q.signatures[0]!, q.signatures[0]!, q.signatures[1]!] })).toBe(
      false,
    );
    expect(verifyQC(m, { ...q, view: 2 })).toBe(false);
    expect(verifyQC(other, q)).toBe(false);
    // A proposal carrying a QC that does not verify is refused.
    const bad = makeBlock(m, {
      ...block1(),
      view: 2,
      height: 2,
      proposer: 2,
      parent: d,
      parentView: 1,
      justify: qcFor(1, d, [0, 1]),
    });
    const bytes = encodeMessage(m, 2, priv(2), { kind: "proposal", view: 2, block: bad });
    expect(codeOf(() => decodeMessage(m, bytes))).toBe("ERR_AUTH_FAILED");
  });

  it("a timeout carries its QC and TC; a TC verifies only with a quorum of valid timeouts", () => {
    const g = genesisQC(m);
    const tcOf = (signers: number[]): TimeoutCertificate => ({
      view: 1,
      timeouts: signers.map((i) => {
        const t = decodeMessage(m, encodeMessage(m, i, priv(i), { kind: "timeout", view: 1, highQC: g }));
        if (t.kind !== "timeout") throw new Error("not a timeout");
        return { member: i, highQcView: 0, signature: messageSignature(t) };
      }),
    });
    const tc = tcOf([0, 2, 3]);
    expect(verifyTC(m, tc)).toBe(true);
    expect(verifyTC(m, tcOf([0, 2]))).toBe(false);
    const forgedSig = tc.timeouts.map((t, i) =>
      i === 1 ? { ...t, signature: tc.timeouts[0]!.signature } : t,
    );
    expect(verifyTC(m, { ...tc, timeouts: forgedSig })).toBe(false);
    const t2 = decodeMessage(m, encodeMessage(m, 1, priv(1), { kind: "timeout", view: 2, highQC: g, tc }));
    expect(t2.kind === "timeout" && t2.tc?.view).toBe(1);
    // A sync carries the same certificates and is held to the same checks.
    const s = decodeMessage(m, encodeMessage(m, 2, priv(2), { kind: "sync", view: 2, highQC: g, tc }));
    expect(s.kind === "sync" && s.highQC.view === 0 && s.tc?.view).toBe(1);
    const badTc = { ...tc, timeouts: tc.timeouts.slice(0, 2) };
    const bytes = encodeMessage(m, 2, priv(2), { kind: "sync", view: 2, highQC: g, tc: badTc });
    expect(codeOf(() => decodeMessage(m, bytes))).toBe("ERR_AUTH_FAILED");
  });
});
