// The rollout rule must match the Go fleet bit for bit. Expected hashes come from
// FNV-1a's published vectors ("", "a", "foobar") and, for the rest, from an
// independent implementation run outside this code base.
import { describe, expect, it } from "vitest";
import { rolloutHash, shouldUseV3 } from "../src/index.js";

const VECTORS: [string, number][] = [
  ["", 0x811c9dc5],
  ["a", 0xe40c292c],
  ["foobar", 0xbf9cf968],
  ["node-1", 0x54c43383],
  ["node-42", 0x37e43e0a],
  ["dc1-rack7-host03", 0x65ae8aba],
  ["nœud-é", 0xcfcaf293],
  ["节点-北京-01", 0x57f88e58],
  ["🚀-node", 0x59f7dd5d],
  ["Ñandú", 0x6f19936b],
];

describe("rolloutHash (32-bit FNV-1a over UTF-8)", () => {
  it.each(VECTORS)("hash of %j is %i", (id, expected) => {
    expect(rolloutHash(id)).toBe(expected);
  });

  it("hashes UTF-8 bytes, not UTF-16 code units", () => {
    // "é" is one UTF-16 unit but two UTF-8 bytes (C3 A9): hashing code units would differ.
    let h = 2166136261;
    for (const b of [0xc3, 0xa9]) h = Math.imul(h ^ b, 16777619) >>> 0;
    expect(rolloutHash("é")).toBe(h);
  });
});

describe("shouldUseV3", () => {
  const on = (p: number) => ({ forceV1: false, v3RolloutPercentage: p });

  it("forceV1 wins over everything", () => {
    expect(shouldUseV3("node-1", { forceV1: true, v3RolloutPercentage: 100 })).toBe(false);
  });

  it("0 % is nobody and 100 % is everybody, including the empty id", () => {
    for (const [id] of VECTORS) {
      expect(shouldUseV3(id, on(0))).toBe(false);
      expect(shouldUseV3(id, on(100))).toBe(true);
    }
  });

  it("otherwise hash % 100 < percentage", () => {
    // "" hashes to 0x811c9dc5 = 2166136261, % 100 = 61.
    expect(shouldUseV3("", on(61))).toBe(false);
    expect(shouldUseV3("", on(62))).toBe(true);
    // "Ñandú" % 100 = 15; "节点-北京-01" % 100 = 60.
    expect(shouldUseV3("Ñandú", on(15))).toBe(false);
    expect(shouldUseV3("Ñandú", on(16))).toBe(true);
    expect(shouldUseV3("节点-北京-01", on(60))).toBe(false);
    expect(shouldUseV3("节点-北京-01", on(61))).toBe(true);
  });

  it("puts about the right share of a large fleet on v3, monotonically in the percentage", () => {
    const ids = Array.from({ length: 10_000 }, (_, i) => `node-${i}`);
    let prev = 0;
    for (const p of [1, 10, 25, 50, 90]) {
      const n = ids.filter((id) => shouldUseV3(id, on(p))).length;
      expect(Math.abs(n / ids.length - p / 100)).toBeLessThan(0.03);
      expect(n).toBeGreaterThanOrEqual(prev);
      prev = n;
    }
  });
});
