// Weighted max-min allocation by water-filling: worked examples, properties
// over random flows (fast-check) against a separate progressive-filling
// reference, and the stream count that follows an allocated rate.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_STREAM_BOUNDS, streamTarget } from "../src/mode/policy.js";
import {
  allocate,
  DEFAULT_CLASS_WEIGHTS,
  FLOW_CLASSES,
  type Flow,
  type FlowClass,
  streamsForRate,
  tuneForRate,
} from "../src/prediction/index.js";
import { code, M } from "./helpers/prediction.js";

/**
 * The textbook progressive filling, in real numbers: raise a common level; any
 * flow whose demand is under its weight times the level is frozen at its demand;
 * recompute until none freezes. Written apart from the implementation to check it.
 */
function reference(capacity: number, flows: { w: number; d: number }[]): number[] {
  const out = flows.map(() => 0);
  const frozen = flows.map(() => false);
  let left = capacity;
  for (;;) {
    const weights = flows.reduce((s, f, i) => s + (frozen[i] ? 0 : f.w), 0);
    if (weights === 0) return out;
    const level = left / weights;
    let froze = false;
    flows.forEach((f, i) => {
      if (!frozen[i] && f.d <= level * f.w) {
        frozen[i] = froze = true;
        out[i] = f.d;
        left -= f.d;
      }
    });
    if (!froze) {
      flows.forEach((f, i) => {
        if (!frozen[i]) out[i] = level * f.w;
      });
      return out;
    }
  }
}

const weightOf = (f: Flow) => DEFAULT_CLASS_WEIGHTS[f.class ?? "bulk"] * (f.weight ?? 1);
const demandOf = (f: Flow) => Math.floor(f.demandBps ?? Number.POSITIVE_INFINITY);

describe("allocate: worked examples", () => {
  it("three flows weighted 4:2:1 share 100 Mbit/s as 4/7, 2/7 and 1/7, all of it", () => {
    const a = allocate(100 * M, [
      { id: "a", weight: 4 },
      { id: "b", weight: 2 },
      { id: "c", weight: 1 },
    ]);
    // 57142857.14, 28571428.57, 14285714.29: the bit lost to rounding goes to the largest remainder.
    expect([...a]).toEqual([
      ["a", 57_142_857],
      ["b", 28_571_429],
      ["c", 14_285_714],
    ]);
  });

  it("when the heaviest ends the others take its share (2:1); a flow asking less leaves the rest to the others", () => {
    expect([
      ...allocate(90 * M, [
        { id: "b", weight: 2 },
        { id: "c", weight: 1 },
      ]).values(),
    ]).toEqual([60 * M, 30 * M]);
    const a = allocate(100 * M, [
      { id: "a", weight: 4 },
      { id: "b", weight: 2 },
      { id: "c", weight: 1, demandBps: 5 * M },
    ]);
    expect([...a.values()]).toEqual([(95 * M * 2) / 3, (95 * M) / 3, 5 * M].map(Math.round));
  });

  it("classes: migration > consensus = sync > bulk > background by default; weights multiply within a class", () => {
    expect(FLOW_CLASSES.map((c) => DEFAULT_CLASS_WEIGHTS[c])).toEqual([8, 4, 4, 2, 1]);
    const flows: Flow[] = [
      { id: "m", class: "migration" },
      { id: "s", class: "sync" },
      { id: "b", class: "bulk" },
      { id: "g", class: "background" },
      { id: "b4", class: "bulk", weight: 4 },
    ];
    // Weights 8, 4, 2, 1, 8 of 23.
    expect([...allocate(23 * M, flows).values()]).toEqual([8, 4, 2, 1, 8].map((w) => w * M));
    const custom = allocate(30 * M, flows.slice(0, 2), { classWeights: { migration: 2 } });
    expect([...custom.values()]).toEqual([10 * M, 20 * M]);
  });

  it("edge cases: no flows, no capacity, zero and fractional demands, capacity to spare", () => {
    expect(allocate(100, []).size).toBe(0);
    expect([...allocate(0, [{ id: "a" }, { id: "b" }]).values()]).toEqual([0, 0]);
    expect([...allocate(100, [{ id: "a", demandBps: 0 }, { id: "b" }]).values()]).toEqual([0, 100]);
    expect([
      ...allocate(100, [
        { id: "a", demandBps: 10.9 },
        { id: "b", demandBps: 20 },
      ]).values(),
    ]).toEqual([10, 20]);
    expect([...allocate(10.7, [{ id: "a" }, { id: "b" }, { id: "c" }]).values()]).toEqual([4, 3, 3]);
  });

  it("bad capacities, flows, weights, classes and duplicate ids are ERR_INVALID_ARG", () => {
    const bad: [number, unknown, object?][] = [
      [Number.NaN, []],
      [-1, []],
      [Number.POSITIVE_INFINITY, []],
      [1, null],
      [1, [null]],
      [1, [{}]],
      [1, [{ id: 7 }]],
      [1, [{ id: "a" }, { id: "a" }]],
      [1, [{ id: "a", weight: 0 }]],
      [1, [{ id: "a", weight: -2 }]],
      [1, [{ id: "a", weight: Number.POSITIVE_INFINITY }]],
      [1, [{ id: "a", weight: "2" }]],
      [1, [{ id: "a", demandBps: -1 }]],
      [1, [{ id: "a", demandBps: Number.NaN }]],
      [1, [{ id: "a", class: "urgent" }]],
      [1, [{ id: "a" }], { classWeights: { bulk: 0 } }],
    ];
    for (const [c, flows, o] of bad) {
      expect(
        code(() => allocate(c, flows as Flow[], o)),
        JSON.stringify([c, flows, o]),
      ).toBe("ERR_INVALID_ARG");
    }
  });
});

describe("allocate: properties over random flows", () => {
  const flow = fc.record(
    {
      weight: fc.double({ min: 0.01, max: 100, noNaN: true }),
      demandBps: fc.oneof(
        fc.constant(0),
        fc.integer({ min: 0, max: 2e9 }),
        fc.double({ min: 0, max: 2e9, noNaN: true }),
      ),
      class: fc.constantFrom<FlowClass>(...FLOW_CLASSES),
    },
    { requiredKeys: ["weight"] },
  );
  const input = fc.record({
    capacity: fc.oneof(fc.integer({ min: 0, max: 1e10 }), fc.double({ min: 0, max: 1e10, noNaN: true })),
    flows: fc.array(flow, { maxLength: 40 }).map((fs) => fs.map((f, i): Flow => ({ id: `f${i}`, ...f }))),
  });

  it("never exceeds the capacity, gives no flow more than its demand, and is work-conserving", () => {
    fc.assert(
      fc.property(input, ({ capacity, flows }) => {
        const a = allocate(capacity, flows);
        const rates = flows.map((f) => a.get(f.id)!);
        const total = rates.reduce((s, r) => s + r, 0);
        expect(total).toBeLessThanOrEqual(Math.floor(capacity));
        flows.forEach((f, i) => {
          expect(Number.isInteger(rates[i])).toBe(true);
          expect(rates[i]).toBeGreaterThanOrEqual(0);
          expect(rates[i]).toBeLessThanOrEqual(demandOf(f));
        });
        const demand = flows.reduce((s, f) => s + demandOf(f), 0);
        expect(total).toBe(Math.min(Math.floor(capacity), demand));
      }),
      { numRuns: 500 },
    );
  });

  it("is weighted max-min fair: no flow short of its demand has a smaller weighted share than another (±1 bit/s)", () => {
    fc.assert(
      fc.property(input, ({ capacity, flows }) => {
        const a = allocate(capacity, flows);
        for (const i of flows) {
          const ri = a.get(i.id)!;
          if (ri >= demandOf(i)) continue;
          // i could only gain by taking from a flow whose weighted share is at least its own.
          for (const j of flows) {
            const rj = a.get(j.id)!;
            expect((rj - 1) / weightOf(j)).toBeLessThanOrEqual(((ri + 1) / weightOf(i)) * (1 + 1e-12));
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it("matches progressive filling to within a bit/s of rounding", () => {
    fc.assert(
      fc.property(input, ({ capacity, flows }) => {
        const a = allocate(capacity, flows);
        const ref = reference(
          capacity,
          flows.map((f) => ({ w: weightOf(f), d: demandOf(f) })),
        );
        flows.forEach((f, i) => {
          expect(Math.abs(a.get(f.id)! - ref[i]!)).toBeLessThanOrEqual(1 + ref[i]! * 1e-9);
        });
      }),
      { numRuns: 500 },
    );
  });
});

describe("streams for an allocated rate", () => {
  it("⌈rate × RTT / per-stream window⌉ within the mode's bounds, as the mode policy computes it", () => {
    const path = { mode: "internet" as const, rttMs: 50, streamWindowBytes: 64 * 1024 };
    // One stream carries 64 KiB per 50 ms = 10.49 Mbit/s.
    expect(streamsForRate(100 * M, path)).toBe(10);
    expect(streamsForRate(1000 * M, path)).toBe(16);
    expect(streamsForRate(1 * M, path)).toBe(4);
    expect(streamsForRate(100 * M, { ...path, mode: "datacenter" }, { ...DEFAULT_STREAM_BOUNDS })).toBe(10);
    expect(streamsForRate(0, path)).toBe(4);
    for (const rate of [0, 5 * M, 100 * M, 3e9]) {
      expect(streamsForRate(rate, path)).toBe(streamTarget({ ...path, bandwidthBps: rate }));
    }
    expect(tuneForRate(100 * M, path)).toEqual({
      rttMs: 50,
      streamWindowBytes: 64 * 1024,
      bandwidthBps: 100 * M,
      streams: DEFAULT_STREAM_BOUNDS.internet,
    });
  });
});
