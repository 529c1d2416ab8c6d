// The oracle of the BFT simulations catches what it claims to: each property
// is broken on purpose with real signed messages and certificates, and must
// be reported; the same inputs done right must not be.
import { describe, expect, it } from "vitest";
import type { Membership } from "../../../src/consensus/bft/membership.js";
import { membership } from "../../../src/consensus/bft/membership.js";
import {
  type Block,
  encodeMessage,
  genesisQC,
  makeBlock,
  type QuorumCertificate,
} from "../../../src/consensus/bft/messages.js";
import type { Committed, Evidence } from "../../../src/consensus/bft/replica.js";
import { seededKeys } from "./harness.js";
import { Invariants } from "./invariants.js";
import { instancesOf, N4 } from "./twins.js";
import { cachedReader, qcOf } from "./wire.js";

const keys = seededKeys(9, 4);
const m: Membership = membership(1, keys.publicKeys);
const [r0, r1, r2, r3, r0twin] = instancesOf(N4);

function block(view: number, height: number, parent: QuorumCertificate, tag = ""): Block {
  return makeBlock(m, {
    view,
    height,
    proposer: view % 4,
    parent: parent.digest,
    parentView: parent.view,
    commands: tag ? [{ client: tag, seq: 1, op: new Uint8Array([1]) }] : [],
    justify: parent,
  });
}

function vote(member: number, view: number, digest: Uint8Array): Uint8Array {
  return encodeMessage(m, member, keys.privateKeys[member]!, { kind: "vote", view, digest });
}

/** A real QC: members 0..2 sign votes for the block, signatures cut from their encoded votes. */
function qcFor(b: Block): QuorumCertificate {
  const at = 1 + 1 + 4 + 32 + 1 + 8 + 32;
  return {
    view: b.view,
    digest: b.digest,
    signatures: [0, 1, 2].map((member) => ({
      member,
      signature: vote(member, b.view, b.digest).slice(at, at + 64),
    })),
  };
}

function commit(b: Block, height: number, qc = qcFor(b)): Committed {
  return {
    height,
    view: b.view,
    digest: b.digest,
    parent: b.parent,
    commands: b.commands,
    results: b.commands.map(() => undefined),
    qc,
    stateHash: b.digest,
  };
}

function oracle(views: Record<string, number> = {}) {
  return new Invariants({
    membership: m,
    instances: instancesOf(N4),
    read: cachedReader(),
    qcOf,
    viewOf: (n) => views[n],
    livenessViews: 4,
  });
}

describe("the BFT oracle", () => {
  const b1 = block(1, 1, genesisQC(m));
  const b2 = block(2, 2, qcFor(b1));
  const b2x = block(2, 2, qcFor(b1), "other");

  it("accepts a valid chain committed alike by two honest replicas", () => {
    const inv = oracle();
    for (const at of [r1!, r2!]) {
      inv.committed(at, commit(b1, 1));
      inv.committed(at, commit(b2, 2));
    }
    expect(inv.violations).toEqual([]);
    expect(inv.commits).toBe(4);
  });

  it("reports two honest replicas committing different blocks at one height (but not a twin doing so)", () => {
    const inv = oracle();
    inv.committed(r1!, commit(b1, 1));
    inv.committed(r1!, commit(b2, 2));
    inv.committed(r0twin!, commit(b1, 1));
    inv.committed(r0twin!, commit(b2x, 2));
    expect(inv.violations).toEqual([]);
    inv.committed(r2!, commit(b1, 1));
    inv.committed(r2!, commit(b2x, 2));
    expect(inv.violations).toHaveLength(1);
    expect(inv.violations[0]).toMatch(/^SAFETY: r2 committed .* at h2, r1 committed/);
  });

  it("reports a gap, a wrong parent (or not the genesis at height 1), a QC that does not verify and a QC of another block", () => {
    const inv = oracle();
    inv.committed(r1!, commit(b2, 2));
    const forged = { ...qcFor(b1), signatures: qcFor(b1).signatures.slice(0, 2) };
    inv.committed(r2!, commit(b1, 1, forged));
    inv.committed(r2!, commit(b2x, 2, qcFor(b2)));
    const b3 = block(3, 3, qcFor(b1));
    inv.committed(r2!, commit(b3, 3));
    inv.committed(r3!, commit(b2, 1));
    expect(inv.violations.map((v) => v.replace(/ [0-9a-f]{12}/g, " #"))).toEqual([
      "r1 committed height 2 after 0",
      "r1 committed h2 # whose parent # is not h0 #",
      "r2 committed h1 with a QC that does not verify",
      "r2 committed h2 # with a QC for #",
      "SAFETY: r2 committed # at h2, r1 committed #",
      "r2 committed h3 # whose parent # is not h2 #",
      "r3 committed h1 # whose parent # is not h0 #",
      "SAFETY: r3 committed # at h1, r2 committed #",
    ]);
  });

  it("reports a command committed twice, and two state hashes for one block", () => {
    const inv = oracle();
    const c1 = block(1, 1, genesisQC(m), "c");
    const c2 = block(2, 2, qcFor(c1), "c");
    inv.committed(r1!, commit(c1, 1));
    inv.committed(r1!, commit(c2, 2));
    inv.committed(r2!, { ...commit(c1, 1), stateHash: new Uint8Array(32) });
    expect(inv.violations).toEqual([
      "r1 committed c#1 twice (again at h2)",
      expect.stringMatching(/^r2 and r1 committed h1 \w+ with different state hashes$/),
    ]);
  });

  it("reports an honest member signing two votes in one view, across instances of it; not a twin", () => {
    const inv = oracle();
    inv.sent(r1!, 2, vote(1, 2, b2.digest));
    inv.sent(r1!, 2, vote(1, 2, b2.digest));
    inv.sent(r0!, 2, vote(0, 2, b2.digest));
    inv.sent(r0twin!, 2, vote(0, 2, b2x.digest));
    expect(inv.violations).toEqual([]);
    inv.sent(r1!, 2, vote(1, 2, b2x.digest));
    expect(inv.violations).toHaveLength(1);
    expect(inv.violations[0]).toMatch(/^honest member 1 \(r1\) signed conflicting vote@2/);
    inv.sent(r2!, 3, vote(1, 2, b2.digest));
    expect(inv.violations[1]).toBe("honest r2 sent a vote not validly signed as member 2");
  });

  it("expects evidence from a replica that received an equivocation; a false or unproven accusation is reported", () => {
    const inv = oracle();
    inv.delivered(r1!, 0, vote(0, 2, b2.digest), 2);
    inv.delivered(r1!, 0, vote(0, 2, b2x.digest), 2);
    inv.delivered(r2!, 0, vote(0, 2, b2.digest), 2);
    inv.finish();
    expect(inv.violations).toEqual(["UNREPORTED: r1 received an equivocation of member 0"]);

    const ok = oracle();
    const proof: Evidence = {
      member: 0,
      kind: "vote",
      view: 2,
      first: vote(0, 2, b2.digest),
      second: vote(0, 2, b2x.digest),
    };
    ok.delivered(r1!, 0, proof.first, 2);
    ok.delivered(r1!, 0, proof.second, 2);
    ok.accused(r1!, proof);
    ok.finish();
    expect(ok.violations).toEqual([]);

    // Replicas check only a window of views around their own: older is not expected.
    const old = oracle();
    old.delivered(r1!, 0, vote(0, 2, b2.digest), 70);
    old.delivered(r1!, 0, vote(0, 2, b2x.digest), 70);
    old.finish();
    expect(old.expected.size).toBe(0);
    const near = oracle();
    near.delivered(r1!, 0, vote(0, 2, b2.digest), 66);
    near.delivered(r1!, 0, vote(0, 2, b2x.digest), 66);
    expect(near.expected.size).toBe(1);

    // A crash wipes what the replica heard: halves on either side of it are not an equivocation it can see.
    const amnesic = oracle();
    amnesic.delivered(r1!, 0, vote(0, 2, b2.digest), 2);
    amnesic.crashed(r1!);
    amnesic.delivered(r1!, 0, vote(0, 2, b2x.digest), 2);
    amnesic.delivered(r2!, 0, vote(0, 2, b2.digest), 2);
    amnesic.delivered(r2!, 0, vote(0, 2, b2x.digest), 2);
    amnesic.crashed(r2!);
    amnesic.finish();
    expect(amnesic.violations).toEqual([]);
    expect(amnesic.lostInCrash).toBe(1);

    const bad = oracle();
    bad.accused(r1!, { ...proof, member: 2, first: vote(2, 2, b2.digest), second: vote(2, 2, b2.digest) });
    bad.accused(r2!, { ...proof, second: vote(0, 3, b2x.digest) });
    expect(bad.violations).toEqual([
      "FALSE ACCUSATION: r1 accused honest member 2 (vote, view 2)",
      "r1's evidence against 2 (vote) is not two conflicting signed messages",
      "r2's evidence against 0 (vote) is not two conflicting signed messages",
    ]);
  });

  it("liveness: a replica past heal + k views without a commit since the heal, or without the commands owed, is reported", () => {
    const views: Record<string, number> = { r1: 5, r2: 5, r3: 5 };
    const inv = oracle(views);
    const empty = block(6, 1, genesisQC(m));
    const owed = block(7, 2, qcFor(empty), "c");
    inv.submitted(owed.commands[0]!);
    inv.healedAt(5);
    inv.submitted({ client: "late", seq: 1, op: new Uint8Array() });
    inv.committed(r1!, commit(empty, 1));
    inv.committed(r1!, commit(owed, 2));
    inv.committed(r3!, commit(empty, 1));
    expect(inv.live).toBe(false);
    views.r1 = 12;
    views.r2 = 9;
    inv.step();
    expect(inv.violations).toEqual([]);
    views.r2 = 10;
    views.r3 = 10;
    inv.step();
    expect(inv.violations).toEqual([
      "LIVENESS: r2 reached view 10 without a commit since the heal, with 1 of the 1 commands submitted before the heal uncommitted (healed at view 5)",
      "LIVENESS: r3 reached view 10 with 1 of the 1 commands submitted before the heal uncommitted (healed at view 5)",
    ]);
    const quiet = oracle({ r1: 5, r2: 5, r3: 5 });
    quiet.healedAt(5);
    quiet.committed(r1!, commit(block(6, 1, genesisQC(m)), 1));
    quiet.finish();
    expect(quiet.violations).toEqual([
      "LIVENESS: the run ended with r2 without a commit since the heal (healed at view 5)",
      "LIVENESS: the run ended with r3 without a commit since the heal (healed at view 5)",
    ]);
  });
});
