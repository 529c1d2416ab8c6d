// The estimators of PBA on synthetic series (generated here, not measured):
// hand-computed steps, convergence on steady, step, ramp and on/off rates, and
// lower-bound samples that never pull a figure down.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../src/env/index.js";
import { isDWCPError } from "../src/errors.js";
import {
  Bbr,
  type Estimator,
  Ewma,
  Harmonic,
  Holt,
  Kalman,
  type Sample,
  type SampleKind,
} from "../src/prediction/index.js";
import { g, M } from "./helpers/prediction.js";

const all = (): Estimator[] => [new Harmonic(), new Ewma(), new Holt(), new Kalman(), new Bbr()];

/** A synthetic series: `rate(t)` sampled every `dt` ms for `ms`, times (1 ± noise) from a seeded PRNG. */
function series(rate: (t: number) => number, ms: number, dt = 500, noise = 0, seed = 1): Sample[] {
  const r = seededRandom(seed);
  const out: Sample[] = [];
  for (let at = 0; at <= ms; at += dt) out.push(g(at, rate(at) * (1 + noise * (2 * r.next() - 1))));
  return out;
}

function feed(e: Estimator, samples: readonly Sample[]): void {
  for (const s of samples) e.add(s);
}

describe("each estimator, step by step (hand-computed)", () => {
  it("ewma: the average moves alpha of the way to each sample", () => {
    const e = new Ewma({ alpha: 0.5 });
    expect(e.predict()).toBeUndefined();
    feed(e, [g(0, 100), g(500, 200)]);
    expect(e.predict()).toBe(150);
    e.add(g(1000, 50));
    expect(e.predict()).toBe(100);
  });

  it("holt: level plus the trend's mean contribution over the horizon (undamped: half the horizon)", () => {
    const e = new Holt({ alpha: 0.5, beta: 0.5, damping: 1 });
    feed(e, [g(0, 100), g(1000, 200)]);
    // level 150, trend 25 bit/s per s
    expect(e.predict(1000, 1000)).toBeCloseTo(162.5, 9);
    expect(e.predict(1000, 10_000)).toBeCloseTo(275, 9);
    expect(e.predict(2000, 1000)).toBeCloseTo(187.5, 9);
    const damped = new Holt({ alpha: 0.5, beta: 0.5, damping: 0.5 });
    feed(damped, [g(0, 100), g(1000, 200)]);
    // The trend fades: ∫₀¹ 0.5^s ds = 0.5/ln 2 of it is gained in the first second.
    expect(damped.predict(2000, 0)).toBeCloseTo(150 + (25 * 0.5) / Math.LN2, 9);
    expect(damped.predict(1000, 10_000)!).toBeLessThan(e.predict(1000, 10_000)!);
  });

  it("kalman: the first update weighs the sample by P/(P+R) with P = Q + R", () => {
    const e = new Kalman();
    feed(e, [g(0, 100), g(500, 130)]);
    // Before enough history Q = R, so the gain is 2/3.
    expect(e.predict()).toBeCloseTo(120, 9);
  });

  it("harmonic: robustMPC's harmonic mean over (1 + the largest recent relative error)", () => {
    const e = new Harmonic();
    e.add(g(0, 100));
    expect(e.predict()).toBe(100);
    e.add(g(500, 50)); // error of the previous mean 100: |100 − 50| / 50 = 1
    expect(e.predict()).toBeCloseTo(2 / (1 / 100 + 1 / 50) / 2, 9);
    e.add(g(1000, 100)); // error |66.67 − 100| / 100 = 1/3; the largest is still 1
    expect(e.predict()).toBeCloseTo(75 / 2, 9);
    const short = new Harmonic({ window: 2 });
    feed(short, [g(0, 100), g(500, 50), g(1000, 100), g(1500, 100)]);
    // Window [100, 100]; errors [1/3 (of 66.67 against 100), 0]: 100 / (1 + 1/3).
    expect(short.predict()).toBeCloseTo(75, 9);
  });

  it("bbr: max over max(10 min-RTTs, 1 s); min RTT over 10 s; the newest rate once the window is empty", () => {
    const e = new Bbr();
    feed(e, [g(0, 100, { rttMs: 50 }), g(500, 80), g(1000, 60), g(1600, 50)]);
    expect(e.predict(1600)).toBe(60); // window [600, 1600]
    expect(e.predict(5000)).toBe(50);
    e.add(g(5000, 10, { rttMs: 80 }));
    expect(e.minRtt(9000)).toBe(50);
    expect(e.minRtt(10_500)).toBe(80);
    // Ten round trips of 200 ms make a 2 s window.
    const slow = new Bbr();
    feed(slow, [g(0, 100, { rttMs: 200 }), g(1500, 50), g(1900, 40)]);
    expect(slow.predict(1900)).toBe(100);
    // The kernel's BBR bandwidth feeds the max; the smoothing estimators ignore it.
    const kernel: Sample = { at: 2000, bps: 500, kind: "bbrBw" };
    slow.add(kernel);
    expect(slow.predict(2000)).toBe(500);
    const ewma = new Ewma();
    ewma.add(kernel);
    expect(ewma.predict()).toBeUndefined();
  });

  it("options out of range are ERR_INVALID_ARG", () => {
    const bad = [
      () => new Ewma({ alpha: 0 }),
      () => new Ewma({ alpha: 1.5 }),
      () => new Holt({ beta: -1 }),
      () => new Holt({ damping: 0 }),
      () => new Kalman({ window: 3 }),
      () => new Kalman({ window: 4.5 }),
      () => new Harmonic({ window: 0 }),
      () => new Bbr({ bwRtts: Number.NaN }),
    ];
    for (const make of bad)
      expect(() => make(), String(make)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG" }));
    let thrown: unknown;
    try {
      new Ewma({ alpha: Number.POSITIVE_INFINITY });
    } catch (err) {
      thrown = err;
    }
    expect(isDWCPError(thrown, "ERR_INVALID_ARG")).toBe(true);
  });
});

describe("convergence on synthetic series", () => {
  it("steady 100 Mbit/s ± 5 %: every estimator ends within 6 % of the rate", () => {
    for (const e of all()) {
      feed(
        e,
        series(() => 100 * M, 20_000, 500, 0.05),
      );
      expect(Math.abs(e.predict(20_000, 1000)! / (100 * M) - 1), e.name).toBeLessThan(0.06);
    }
  });

  it("a step from 100 to 40 Mbit/s: every estimator is within 10 % of 40 five seconds later", () => {
    const samples = series((t) => (t < 20_000 ? 100 * M : 40 * M), 25_000, 500, 0.02);
    for (const e of all()) {
      feed(e, samples);
      expect(e.predict(25_000, 1000)! / (40 * M), e.name).toBeGreaterThan(0.9);
      expect(e.predict(25_000, 1000)! / (40 * M), e.name).toBeLessThan(1.1);
    }
  });

  it("a ramp of 4 Mbit/s per second: Holt follows the trend, the level-only EWMA lags behind it", () => {
    const rate = (t: number) => (20 + (4 * t) / 1000) * M;
    const samples = series(rate, 20_000);
    const holt = new Holt();
    const ewma = new Ewma();
    feed(holt, samples);
    feed(ewma, samples);
    const truth = rate(20_500); // the mean over the next second of a linear ramp
    const holtErr = Math.abs(holt.predict(20_000, 1000)! / truth - 1);
    const ewmaErr = Math.abs(ewma.predict()! / truth - 1);
    expect(holtErr).toBeLessThan(0.03);
    expect(ewmaErr).toBeGreaterThan(0.04);
    expect(holtErr).toBeLessThan(ewmaErr);
  });

  it("on/off cross traffic (100 and 50 Mbit/s, 5 s each): each estimator ends every phase within 10 % of it", () => {
    const level = (t: number) => (Math.floor(t / 5000) % 2 === 0 ? 100 * M : 50 * M);
    for (const make of [
      () => new Harmonic(),
      () => new Ewma(),
      () => new Holt(),
      () => new Kalman(),
      () => new Bbr(),
    ]) {
      const e = make();
      for (const s of series(level, 30_000, 500)) {
        e.add(s);
        if (s.at % 5000 === 4500) {
          const ratio = e.predict(s.at, 1000)! / level(s.at);
          expect(ratio, `${e.name} at ${s.at}`).toBeGreaterThan(0.9);
          expect(ratio, `${e.name} at ${s.at}`).toBeLessThan(1.1);
        }
      }
    }
  });
});

describe("lower-bound samples", () => {
  it("below the estimate: every estimator's figure is unchanged; above it: raised", () => {
    for (const make of [
      () => new Harmonic(),
      () => new Ewma(),
      () => new Holt(),
      () => new Kalman(),
      () => new Bbr(),
    ]) {
      const e = make();
      feed(
        e,
        series(() => 100 * M, 10_000, 500, 0.05, 3),
      );
      const before = [e.predict(10_100, 1000)!, e.predict(10_100, 10_000)!];
      e.add(g(10_100, 10 * M, { lowerBound: true }));
      expect([e.predict(10_100, 1000), e.predict(10_100, 10_000)], e.name).toEqual(before);
      e.add(g(10_100, 300 * M, { lowerBound: true }));
      expect(e.predict(10_100, 1000)!, e.name).toBeGreaterThan(before[0]!);
      expect(e.predict(10_100, 10_000)!, e.name).toBeGreaterThan(before[1]!);
    }
  });

  it("on any series, a lower bound never lowers any estimator's figure at any horizon (property)", () => {
    const kinds: SampleKind[] = ["goodput", "deliveryRate", "probe", "bbrBw"];
    const step = fc.record({
      gap: fc.integer({ min: 0, max: 3000 }),
      bps: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 1e10, noNaN: true })),
      kind: fc.constantFrom(...kinds),
      lowerBound: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        const es = all();
        let at = 0;
        for (const st of steps) {
          at += st.gap;
          const s: Sample = {
            at,
            bps: st.bps,
            kind: st.kind,
            ...(st.lowerBound ? { lowerBound: true } : {}),
          };
          const before = es.map((e) => [e.predict(at, 1000), e.predict(at, 10_000)]);
          for (const e of es) e.add(s);
          if (!st.lowerBound) continue;
          es.forEach((e, i) => {
            const [one, ten] = before[i]!;
            if (one !== undefined) expect(e.predict(at, 1000)!, e.name).toBeGreaterThanOrEqual(one);
            if (ten !== undefined) expect(e.predict(at, 10_000)!, e.name).toBeGreaterThanOrEqual(ten);
          });
        }
      }),
      { numRuns: 300 },
    );
  });
});
