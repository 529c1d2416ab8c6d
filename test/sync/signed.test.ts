// Internet mode: envelopes signed by their origin (Ed25519). A receiver
// accepts only what the registered key of the claimed origin signed, for the
// context it expects, once.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { generateKeys, rawPublicKey } from "../../src/consensus/bft/membership.js";
import { DWCPError } from "../../src/errors.js";
import {
  CONTEXT_DELTA,
  CONTEXT_MEMBERSHIP,
  decodeEnvelope,
  EnvelopeSigner,
  KeyRegistry,
  MAX_ENVELOPE_PAYLOAD,
  ReplayGuard,
  signEnvelope,
  verifyEnvelope,
} from "../../src/sync/signed.js";

const { publicKeys, privateKeys } = generateKeys(3);
const registry = new KeyRegistry()
  .set("node-a", publicKeys[0]!)
  // raw 32-byte keys are accepted too
  .set("node-b", rawPublicKey(publicKeys[1]!));

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof DWCPError ? e.code : `not a DWCPError: ${String(e)}`;
  }
  return undefined;
}

const payload = new TextEncoder().encode('{"key":"vm/7","value":"running"}');

describe("signed envelopes", () => {
  it("round trip: what the origin signed verifies, with every field intact", () => {
    const bytes = signEnvelope(
      CONTEXT_DELTA,
      { origin: "node-a", epoch: 3, seq: 41, payload },
      privateKeys[0]!,
    );
    const env = verifyEnvelope(bytes, registry, CONTEXT_DELTA);
    expect(env).toMatchObject({ origin: "node-a", epoch: 3, seq: 41 });
    expect(Buffer.from(env.payload).equals(Buffer.from(payload))).toBe(true);
    // Raw-key registration verifies the same way; the encoding is canonical (deterministic signature).
    const b = signEnvelope(CONTEXT_DELTA, { origin: "node-b", epoch: 0, seq: 0, payload }, privateKeys[1]!);
    expect(verifyEnvelope(b, registry, CONTEXT_DELTA).origin).toBe("node-b");
    expect(
      signEnvelope(CONTEXT_DELTA, { origin: "node-b", epoch: 0, seq: 0, payload }, privateKeys[1]!),
    ).toEqual(b);
    // 1 + 1 + 6 + 4 + 8 + 4 + payload + 64 bytes
    expect(b.length).toBe(88 + payload.length);
  });

  it("random payloads, origins and sequence numbers round-trip", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 512 }),
        fc.nat({ max: 0xffff_ffff }),
        fc.maxSafeNat(),
        fc.string({ minLength: 1, maxLength: 40 }),
        (p, epoch, seq, origin) => {
          const reg = new KeyRegistry().set(origin, publicKeys[2]!);
          const bytes = signEnvelope(CONTEXT_MEMBERSHIP, { origin, epoch, seq, payload: p }, privateKeys[2]!);
          const env = verifyEnvelope(bytes, reg, CONTEXT_MEMBERSHIP);
          expect([env.origin, env.epoch, env.seq]).toEqual([origin, epoch, seq]);
          expect(Buffer.from(env.payload).equals(Buffer.from(p))).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a flipped bit anywhere (origin, epoch, seq, length, payload, signature) is rejected", () => {
    const bytes = signEnvelope(
      CONTEXT_DELTA,
      { origin: "node-a", epoch: 9, seq: 1000, payload },
      privateKeys[0]!,
    );
    const codes = new Map<string, number>();
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const bad = Uint8Array.from(bytes);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const code = codeOf(() => verifyEnvelope(bad, registry, CONTEXT_DELTA));
      expect(["ERR_AUTH_FAILED", "ERR_PROTOCOL"], `bit ${bit}`).toContain(code);
      codes.set(code!, (codes.get(code!) ?? 0) + 1);
    }
    // Both kinds occur: framing damage is malformed, content damage a bad signature.
    expect(codes.get("ERR_AUTH_FAILED")).toBeGreaterThan(bytes.length * 4);
    expect(codes.get("ERR_PROTOCOL")).toBeGreaterThan(0);
  });

  it("the wrong context is refused: a delta is not a membership update", () => {
    const bytes = signEnvelope(
      CONTEXT_DELTA,
      { origin: "node-a", epoch: 0, seq: 1, payload },
      privateKeys[0]!,
    );
    expect(codeOf(() => verifyEnvelope(bytes, registry, CONTEXT_MEMBERSHIP))).toBe("ERR_AUTH_FAILED");
    expect(codeOf(() => verifyEnvelope(bytes, registry, CONTEXT_DELTA))).toBeUndefined();
  });

  it("an unknown origin is refused, and so is one removed from the registry", () => {
    const bytes = signEnvelope(
      CONTEXT_DELTA,
      { origin: "node-c", epoch: 0, seq: 1, payload },
      privateKeys[2]!,
    );
    expect(codeOf(() => verifyEnvelope(bytes, registry, CONTEXT_DELTA))).toBe("ERR_AUTH_FAILED");
    const reg = new KeyRegistry().set("node-c", publicKeys[2]!);
    expect(codeOf(() => verifyEnvelope(bytes, reg, CONTEXT_DELTA))).toBeUndefined();
    reg.delete("node-c");
    expect(codeOf(() => verifyEnvelope(bytes, reg, CONTEXT_DELTA))).toBe("ERR_AUTH_FAILED");
  });

  it("a node cannot sign on behalf of another id", () => {
    // node-b's key claiming to be node-a: the registry holds node-a's key, so it fails.
    const forged = signEnvelope(
      CONTEXT_DELTA,
      { origin: "node-a", epoch: 0, seq: 5, payload },
      privateKeys[1]!,
    );
    expect(codeOf(() => verifyEnvelope(forged, registry, CONTEXT_DELTA))).toBe("ERR_AUTH_FAILED");
    // Re-labelling a genuine envelope of node-b as node-a (same length) fails too.
    const genuine = signEnvelope(
      CONTEXT_DELTA,
      { origin: "node-b", epoch: 0, seq: 5, payload },
      privateKeys[1]!,
    );
    const relabelled = Uint8Array.from(genuine);
    relabelled[2 + 5] = "a".charCodeAt(0);
    expect(decodeEnvelope(relabelled).origin).toBe("node-a");
    expect(codeOf(() => verifyEnvelope(relabelled, registry, CONTEXT_DELTA))).toBe("ERR_AUTH_FAILED");
    // The signer object only ever signs as its own id.
    const signer = new EnvelopeSigner("node-b", privateKeys[1]!, 2);
    const e1 = verifyEnvelope(signer.sign(CONTEXT_DELTA, payload), registry, CONTEXT_DELTA);
    const e2 = verifyEnvelope(signer.sign(CONTEXT_DELTA, payload), registry, CONTEXT_DELTA);
    expect([e1.origin, e1.epoch, e1.seq, e2.seq]).toEqual(["node-b", 2, 0, 1]);
    expect(codeOf(() => new EnvelopeSigner("node-b", publicKeys[1]!))).toBe("ERR_INVALID_ARG");
  });

  it("truncated, extended, oversized and random input is ERR_PROTOCOL or ERR_AUTH_FAILED, never a crash", () => {
    const bytes = signEnvelope(
      CONTEXT_DELTA,
      { origin: "node-a", epoch: 0, seq: 1, payload },
      privateKeys[0]!,
    );
    for (let n = 0; n < bytes.length; n++)
      expect(
        codeOf(() => verifyEnvelope(bytes.subarray(0, n), registry, CONTEXT_DELTA)),
        `cut at ${n}`,
      ).toBe("ERR_PROTOCOL");
    expect(codeOf(() => verifyEnvelope(Buffer.concat([bytes, Buffer.of(0)]), registry, CONTEXT_DELTA))).toBe(
      "ERR_PROTOCOL",
    );
    // A payload over the cap is refused from its length field, before anything is read.
    const big = signEnvelope(
      CONTEXT_DELTA,
      { origin: "node-a", epoch: 0, seq: 1, payload: new Uint8Array(2000) },
      privateKeys[0]!,
    );
    expect(codeOf(() => verifyEnvelope(big, registry, CONTEXT_DELTA, { maxPayloadBytes: 1000 }))).toBe(
      "ERR_PROTOCOL",
    );
    expect(
      codeOf(() => verifyEnvelope(new Uint8Array(MAX_ENVELOPE_PAYLOAD + 400), registry, CONTEXT_DELTA)),
    ).toBe("ERR_PROTOCOL");
    // A length field claiming 4 GB in a short buffer.
    const liar = Uint8Array.from(bytes);
    liar.set([0xff, 0xff, 0xff, 0xff], 1 + 1 + 6 + 4 + 8);
    expect(codeOf(() => verifyEnvelope(liar, registry, CONTEXT_DELTA))).toBe("ERR_PROTOCOL");
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (junk) => {
        expect(["ERR_AUTH_FAILED", "ERR_PROTOCOL"]).toContain(
          codeOf(() => verifyEnvelope(junk, registry, CONTEXT_DELTA)),
        );
      }),
      { numRuns: 2000 },
    );
    expect(
      codeOf(() => signEnvelope(CONTEXT_DELTA, { origin: "", epoch: 0, seq: 0, payload }, privateKeys[0]!)),
    ).toBe("ERR_INVALID_ARG");
    expect(codeOf(() => new KeyRegistry().set("x", new Uint8Array(31)))).toBe("ERR_INVALID_ARG");
  });
});

describe("replay guard", () => {
  it("a replay of an old sequence is rejected; a fresh one, or a late one inside the window, once", () => {
    const guard = new ReplayGuard({ window: 64 });
    const signer = new EnvelopeSigner("node-a", privateKeys[0]!);
    const sent = Array.from({ length: 200 }, () => signer.sign(CONTEXT_DELTA, payload));
    const ok = (b: Uint8Array) => codeOf(() => verifyEnvelope(b, registry, CONTEXT_DELTA, { replay: guard }));
    expect(ok(sent[0]!)).toBeUndefined();
    expect(ok(sent[0]!)).toBe("ERR_PROTOCOL");
    expect(ok(sent[100]!)).toBeUndefined();
    // Late but inside the window: once.
    expect(ok(sent[60]!)).toBeUndefined();
    expect(ok(sent[60]!)).toBe("ERR_PROTOCOL");
    // Behind the window: never.
    expect(ok(sent[20]!)).toBe("ERR_PROTOCOL");
    // Out of order within the window, across a move of the highest.
    expect(ok(sent[103]!)).toBeUndefined();
    expect(ok(sent[101]!)).toBeUndefined();
    expect(ok(sent[105]!)).toBeUndefined();
    expect(ok(sent[101]!)).toBe("ERR_PROTOCOL");
    expect(ok(sent[103]!)).toBe("ERR_PROTOCOL");
    expect(ok(sent[102]!)).toBeUndefined();
    expect(ok(sent[199]!)).toBeUndefined();
    expect(ok(sent[100]!)).toBe("ERR_PROTOCOL");
    // A forged envelope does not reach the guard, so it cannot burn node-a's numbers.
    const forged = signEnvelope(
      CONTEXT_DELTA,
      { origin: "node-a", epoch: 0, seq: 150, payload },
      privateKeys[1]!,
    );
    expect(ok(forged)).toBe("ERR_AUTH_FAILED");
    expect(ok(sent[150]!)).toBeUndefined();
    // A new epoch starts afresh; the old epoch is then refused.
    const next = new EnvelopeSigner("node-a", privateKeys[0]!, 1);
    expect(ok(next.sign(CONTEXT_DELTA, payload))).toBeUndefined();
    expect(ok(sent[198]!)).toBe("ERR_PROTOCOL");
  });

  it("matches a model of (epoch, seq) sets under random arrival orders", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 300 })), {
          maxLength: 300,
        }),
        (arrivals) => {
          const W = 37;
          const guard = new ReplayGuard({ window: W });
          const seen = new Set<string>();
          let top: [number, number] | undefined;
          for (const [epoch, seq] of arrivals) {
            let want: boolean;
            if (!top || epoch > top[0]) want = true;
            else if (epoch < top[0]) want = false;
            else want = seq > top[1] || (top[1] - seq < W && !seen.has(`${epoch}:${seq}`));
            expect(guard.admit("o", epoch, seq)).toBe(want);
            if (want) {
              seen.add(`${epoch}:${seq}`);
              if (!top || epoch > top[0] || seq > top[1]) top = [epoch, seq];
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("bounds the origins it tracks", () => {
    const guard = new ReplayGuard({ window: 8, maxOrigins: 2 });
    expect(guard.admit("a", 0, 0)).toBe(true);
    expect(guard.admit("b", 0, 0)).toBe(true);
    expect(guard.admit("c", 0, 0)).toBe(false);
    expect(guard.size).toBe(2);
    guard.forget("a");
    expect(guard.admit("c", 0, 0)).toBe(true);
  });
});
