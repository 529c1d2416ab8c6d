// The Twins scenario space: the partitions and counts are exact, the covers
// cover what they claim, and a scenario's name replays it.
import { describe, expect, it } from "vitest";
import {
  counts,
  hasQuorumGroup,
  instancesOf,
  latinCover,
  liveChoices,
  N4,
  N4_3,
  N7,
  pairwiseRow,
  pairwiseRows,
  parseScenario,
  type RoundChoice,
  roundChoices,
  sampled,
  setPartitions,
  symmetries,
  type TwinsSetup,
} from "./twins.js";

const key = (p: readonly (readonly number[])[]) =>
  p
    .map((g) => [...g].sort((a, b) => a - b).join(","))
    .sort()
    .join("/");

describe("Twins scenario space", () => {
  it("enumerates each partition once, into at most the groups asked (Stirling numbers of the second kind)", () => {
    // S(5,1)+S(5,2) = 1+15, +S(5,3) = 41; S(9,1)+S(9,2) = 1+255, +S(9,3) = 3281.
    for (const [k, g, want] of [
      [5, 2, 16],
      [5, 3, 41],
      [9, 2, 256],
      [9, 3, 3281],
      [4, 4, 15],
    ] as const) {
      const parts = setPartitions(k, g);
      expect(parts).toHaveLength(want);
      expect(new Set(parts.map(key)).size).toBe(want);
      for (const p of parts) {
        expect(p.length).toBeLessThanOrEqual(g);
        expect(
          p
            .flat()
            .sort((a, b) => a - b)
            .join(),
        ).toBe(Array.from({ length: k }, (_, i) => i).join());
      }
    }
  });

  it("n = 4 with a twin: 5 instances, 16 partitions × 4 leaders = 64 choices a round (164 with three groups)", () => {
    expect(instancesOf(N4).map((s) => `${s.name}/${s.id}/${s.byzantine}`)).toEqual([
      "r0/0/true",
      "r1/1/false",
      "r2/2/false",
      "r3/3/false",
      "r0'/0/true",
    ]);
    const c = counts(N4);
    expect(c).toMatchObject({ partitions: 16, perRound: 64, sequences: 64n ** 4n, symmetries: 12 });
    expect(c.distinctUpToSymmetry).toBe(1_502_936n);
    const c3 = counts(N4_3);
    expect(c3).toMatchObject({ partitions: 41, perRound: 164, sequences: 164n ** 4n });
    expect(c3.distinctUpToSymmetry).toBe(61_591_763n);
    const c7 = counts(N7);
    expect(c7).toMatchObject({ partitions: 3281, perRound: 22_967, symmetries: 960 });
    expect(c7.sequences).toBe(22_967n ** 5n);
  });

  it("the symmetry count (Burnside) equals the orbits counted by brute force over two-round sequences", () => {
    const setup: TwinsSetup = { ...N4, rounds: 2 };
    const all = roundChoices(setup);
    const index = new Map(all.map((c, i) => [`${c.leader}|${key(c.partition)}`, i]));
    const move = (g: { id: number[]; inst: number[] }, c: RoundChoice) =>
      index.get(`${g.id[c.leader]}|${key(c.partition.map((b) => b.map((i) => g.inst[i]!)))}`)!;
    const group = symmetries(setup);
    const orbits = new Set<string>();
    for (let a = 0; a < all.length; a++)
      for (let b = 0; b < all.length; b++) {
        let least = "";
        for (const g of group) {
          const s = `${String(move(g, all[a]!)).padStart(3, "0")}.${String(move(g, all[b]!)).padStart(3, "0")}`;
          if (least === "" || s < least) least = s;
        }
        orbits.add(least);
      }
    expect(BigInt(orbits.size)).toBe(counts(setup).distinctUpToSymmetry);
  });

  it("the Latin cover runs every choice exactly once at every round", () => {
    for (const setup of [N4, N4_3]) {
      const cover = latinCover(setup);
      const c = roundChoices(setup).length;
      expect(cover).toHaveLength(c);
      for (let r = 0; r < setup.rounds; r++) expect(new Set(cover.map((s) => s.choices[r])).size).toBe(c);
      // Consecutive rounds never repeat a choice (the stride is not 0 mod C).
      for (const s of cover)
        for (let r = 1; r < setup.rounds; r++) expect(s.choices[r]).not.toBe(s.choices[r - 1]);
    }
  });

  it("the pairwise cover (4489 rows for n = 4) runs every pair of choices at every pair of rounds", () => {
    const rows = pairwiseRows(N4);
    expect(rows).toBe(67 * 67);
    const c = roundChoices(N4).length;
    const seen = new Map<string, Set<number>>();
    for (let row = 0; row < rows; row++) {
      const s = pairwiseRow(N4, row);
      for (let i = 0; i < N4.rounds; i++)
        for (let j = i + 1; j < N4.rounds; j++) {
          const k = `${i},${j}`;
          const set = seen.get(k) ?? new Set<number>();
          seen.set(k, set);
          set.add(s.choices[i]! * c + s.choices[j]!);
        }
    }
    expect(seen.size).toBe(6);
    for (const set of seen.values()) expect(set.size).toBe(c * c);
  });

  it("counts the choices that leave some group a quorum of distinct ids (twins count once), and can sample only those", () => {
    expect(liveChoices(N4)).toHaveLength(52);
    expect(liveChoices(N4_3)).toHaveLength(80);
    expect(liveChoices(N7)).toHaveLength(6062);
    const all = roundChoices(N4);
    // r0 and r0' with r1 are two distinct ids: no quorum (3) in either group.
    const split = all.findIndex((c) => key(c.partition) === "0,1,4/2,3");
    expect(hasQuorumGroup(N4, all[split]!)).toBe(false);
    expect(hasQuorumGroup(N4, all[all.findIndex((c) => key(c.partition) === "0,1,2/3,4")]!)).toBe(true);
    for (let seed = 1; seed <= 20; seed++)
      for (const r of sampled(N7, seed, 1).rounds) expect(hasQuorumGroup(N7, r)).toBe(true);
  });

  it("a scenario's name replays it; sampling is a function of the seed", () => {
    const s = sampled(N7, 42);
    expect(sampled(N7, 42).name).toBe(s.name);
    expect(sampled(N7, 43).name).not.toBe(s.name);
    const back = parseScenario(s.name);
    expect(back.setup).toEqual(N7);
    expect(back.rounds).toEqual(s.rounds);
    expect(() => parseScenario("n4f1g2r4:1.2.3")).toThrow(RangeError);
    expect(() => parseScenario("n4f1g2r4:1.2.3.64")).toThrow(RangeError);
  });
});
