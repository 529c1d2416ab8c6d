// The Predictor on synthetic series (generated here, not measured): live MAPE
// and interval coverage against hand-computed cases, the choice of estimator,
// lower bounds, hostile samples and options, and the simulator's virtual clock.
import { describe, expect, it } from "vitest";
import { seededRandom } from "../src/env/index.js";
import { ErrorWindow } from "../src/prediction/error.js";
import {
  ESTIMATORS,
  type EstimatorName,
  Predictor,
  type PredictorOptions,
  type Sample,
  type ScoredPrediction,
} from "../src/prediction/index.js";
import { Simulator } from "../src/testing/index.js";
import { code, g, M } from "./helpers/prediction.js";

/** A predictor on a hand-driven clock that follows the samples fed to it. */
function manual(options: Omit<PredictorOptions, "env"> = {}) {
  let now = 0;
  const scored: ScoredPrediction[] = [];
  const p = new Predictor({ ...options, env: { clock: { now: () => now } }, onScore: (s) => scored.push(s) });
  return {
    p,
    scored,
    feed(samples: readonly Sample[]) {
      for (const s of samples) {
        now = s.at;
        p.add(s);
      }
    },
    at(t: number) {
      now = t;
    },
  };
}

describe("live error: hand-computed", () => {
  it("MAPE and coverage of each scored prediction (EWMA 0.5 and robustMPC on 100, 200, 100)", () => {
    const m = manual({ ewma: { alpha: 0.5 }, scoreEveryMs: 1000 });
    m.feed([g(0, 100), g(1000, 200), g(2000, 100)]);
    const f = m.p.forecast()!;
    // EWMA predicted 100 (interval 100 × (1 ± 0.5)), then 200 came: error 0.5, outside.
    // Then 150 ([75, 225]), and 100 came: error 0.5, inside.
    expect(f.estimators.ewma!["1s"]).toEqual({ bps: 125, mape: 0.5, coverage: 0.5, n: 2 });
    // robustMPC: 100, then 200 came (0.5, outside [50, 150]); then 133.3 / (1 + 0.5) = 88.9 and 100 came.
    const h = f.estimators.harmonic!["1s"];
    expect(h.mape).toBeCloseTo((0.5 + (100 - 800 / 9) / 100) / 2, 12);
    expect(h.coverage).toBe(0.5);
    expect(h.n).toBe(2);
    // The 10 s predictions have not closed.
    expect(f.estimators.ewma!["10s"]).toEqual({ bps: 125, n: 0 });
  });

  it("the realised rate is the mean of the measurements in (t, t + h]: lower bounds and BBR bandwidth are left out", () => {
    const m = manual({ scoreEveryMs: 1000 });
    m.feed([
      g(0, 100),
      g(500, 100),
      g(750, 999, { lowerBound: true }),
      { at: 800, bps: 999, kind: "bbrBw" },
      { at: 1000, bps: 300, kind: "deliveryRate" },
    ]);
    const at0 = m.scored.filter((s) => s.at === 0 && s.horizon === "1s");
    expect(at0.map((s) => s.estimator).sort()).toEqual([...ESTIMATORS].sort());
    for (const s of at0) expect([s.realised, s.samples, s.bps]).toEqual([200, 2, 100]);
    // A horizon that saw only lower bounds is never scored.
    m.feed([g(2100, 500, { lowerBound: true }), g(3100, 50)]);
    expect(m.scored.filter((s) => s.at === 1000 && s.horizon === "1s")).toEqual([]);
    // 10 s horizons close at the first sample at or past t + 10 s.
    m.feed([g(9000, 100), g(10_000, 100)]);
    const ten = m.scored.filter((s) => s.horizon === "10s");
    expect(ten.length).toBeGreaterThan(0);
    expect(ten.every((s) => s.at === 0 && s.samples === 5)).toBe(true);
    expect(ten[0]!.realised).toBeCloseTo((100 + 300 + 50 + 100 + 100) / 5, 12);
  });

  it("the interval: prediction × (1 ± band) until minHistory, then the empirical quantiles of realised / predicted", () => {
    const m = manual({
      ewma: { alpha: 0.5 },
      scoreEveryMs: 1000,
      minHistory: 2,
      interval: [0, 1],
      band: 0.5,
    });
    m.feed([g(0, 100), g(1000, 200), g(2000, 100), g(3000, 100)]);
    const ewma = m.scored.filter((s) => s.estimator === "ewma" && s.horizon === "1s");
    expect(ewma.map((s) => [s.at, s.bps, s.low, s.high])).toEqual([
      [0, 100, 50, 150],
      [1000, 150, 75, 225],
      // Ratios so far 2 and 2/3: the interval spans them.
      [2000, 125, 125 * (100 / 150), 250],
    ]);
  });

  it("ErrorWindow: type-6 quantiles, MAPE and coverage over the last `size` predictions", () => {
    const w = new ErrorWindow({ size: 19, minHistory: 5, quantiles: [0.1, 0.9], band: 0.2 });
    expect(w.interval(10)).toEqual({ low: 8, high: 12 });
    expect(w.mape()).toBeUndefined();
    for (let r = 1; r <= 19; r++) w.add(1, r, 0, 10);
    // Rank 0.1 × 20 = 2 and 0.9 × 20 = 18 of the sorted ratios 1..19.
    expect(w.interval(10)).toEqual({ low: 20, high: 180 });
    expect(w.coverage()).toBeCloseTo(10 / 19, 12);
    const mape = [...Array(19).keys()].reduce((s, i) => s + i / (i + 1), 0) / 19;
    expect(w.mape()).toBeCloseTo(mape, 12);
    w.add(1, 1, 0, 10); // the oldest (ratio 1) goes, a new 1 comes: same ratios
    expect(w.n).toBe(19);
    expect(w.interval(10)).toEqual({ low: 20, high: 180 });
  });

  it("the windowed figures equal a recomputation from the scored predictions (last 30)", () => {
    const r = seededRandom(11);
    const m = manual();
    const samples: Sample[] = [];
    for (let at = 0; at <= 60_000; at += 200) {
      samples.push(g(at, (at % 20_000 < 10_000 ? 80 : 30) * M * (1 + 0.1 * (2 * r.next() - 1))));
    }
    m.feed(samples);
    const f = m.p.forecast()!;
    for (const name of ESTIMATORS) {
      for (const h of ["1s", "10s"] as const) {
        const last = m.scored.filter((s) => s.estimator === name && s.horizon === h).slice(-30);
        const mape = last.reduce((a, s) => a + Math.abs(s.realised - s.bps) / s.realised, 0) / last.length;
        const inside = last.filter((s) => s.realised >= s.low && s.realised <= s.high).length / last.length;
        const got = f.estimators[name]![h];
        expect(got.n, `${name} ${h}`).toBe(30);
        expect(got.mape!, `${name} ${h}`).toBeCloseTo(mape, 12);
        expect(got.coverage!, `${name} ${h}`).toBeCloseTo(inside, 12);
      }
    }
  });
});

describe("the forecast", () => {
  it("is undefined before a sample; with only the kernel's BBR bandwidth, it is BBR's", () => {
    const m = manual();
    expect(m.p.forecast()).toBeUndefined();
    m.feed([{ at: 0, bps: 50 * M, kind: "bbrBw", rttMs: 40 }]);
    const f = m.p.forecast()!;
    expect(Object.keys(f.estimators)).toEqual(["bbr"]);
    expect(f.horizons["1s"]).toMatchObject({
      estimator: "bbr",
      bps: 50 * M,
      low: 25 * M,
      high: 75 * M,
      n: 0,
    });
    expect([f.samples, f.rttMs, f.minRttMs]).toEqual([1, 40, 40]);
  });

  it("uses the estimator with the lowest recent MAPE; before minHistory, the fallback", () => {
    const ramp = (at: number) => g(at, (20 + (4 * at) / 1000) * M);
    const m = manual();
    m.feed([ramp(0), ramp(500), ramp(1000)]);
    expect(m.p.forecast()!.horizons["1s"].estimator).toBe("harmonic");
    const k = manual({ fallback: "kalman" });
    k.feed([ramp(0), ramp(500), ramp(1000)]);
    expect(k.p.forecast()!.horizons["1s"].estimator).toBe("kalman");
    for (let at = 1500; at <= 20_000; at += 500) m.feed([ramp(at)]);
    const f = m.p.forecast()!;
    for (const h of ["1s", "10s"] as const) {
      const ranked = ESTIMATORS.filter((e) => f.estimators[e]![h].n >= 5).sort(
        (a, b) => f.estimators[a]![h].mape! - f.estimators[b]![h].mape!,
      );
      expect(f.horizons[h].estimator, h).toBe(ranked[0]);
      const chosen = f.estimators[ranked[0] as EstimatorName]![h];
      expect(f.horizons[h]).toMatchObject({ bps: chosen.bps, mape: chosen.mape, coverage: chosen.coverage });
      expect(f.horizons[h].low).toBeLessThanOrEqual(f.horizons[h].high);
    }
    // On a ramp the trend-blind harmonic mean lags most: it is not the one chosen.
    expect(f.horizons["1s"].estimator).not.toBe("harmonic");
  });

  it("a lower bound below the figures changes no estimator's figure, and is never the realised rate", () => {
    const r = seededRandom(5);
    const m = manual();
    for (let at = 0; at <= 20_000; at += 500) m.feed([g(at, 100 * M * (1 + 0.05 * (2 * r.next() - 1)))]);
    const before = m.p.forecast()!;
    const scoredBefore = m.scored.length;
    m.feed([g(20_000, 1 * M, { lowerBound: true })]);
    const after = m.p.forecast()!;
    expect(after.estimators).toEqual(before.estimators);
    expect(after.horizons).toEqual(before.horizons);
    expect(m.scored.length).toBe(scoredBefore);
    m.feed([g(20_000, 500 * M, { lowerBound: true })]);
    for (const e of ESTIMATORS) {
      expect(m.p.forecast()!.estimators[e]!["1s"].bps, e).toBeGreaterThan(before.estimators[e]!["1s"].bps);
    }
  });

  it("keeps bounded state: the error windows hold at most errorWindow predictions", () => {
    const m = manual({ errorWindow: 7, scoreEveryMs: 50 });
    for (let at = 0; at <= 60_000; at += 10) m.feed([g(at, (50 + (at % 3000) / 100) * M)]);
    const f = m.p.forecast()!;
    for (const e of ESTIMATORS) for (const h of ["1s", "10s"] as const) expect(f.estimators[e]![h].n).toBe(7);
    expect(f.samples).toBe(6001);
  });

  it("runs on the simulator's virtual clock", async () => {
    const sim = new Simulator({ seed: 3 });
    const env = sim.env("a");
    const p = new Predictor({ env });
    for (let i = 0; i < 40; i++) {
      sim.at(i * 250, () => p.add(g(env.clock.now(), (i < 20 ? 60 : 30) * M, { rttMs: 30 + (i % 4) })));
    }
    await sim.run();
    const f = p.forecast()!;
    expect(f.at).toBe(39 * 250);
    expect(f.minRttMs).toBe(30);
    expect(f.rttMs).toBe(33);
    expect(f.horizons["1s"].bps / (30 * M)).toBeGreaterThan(0.9);
    expect(f.horizons["1s"].bps / (30 * M)).toBeLessThan(1.1);
  });
});

describe("hostile input", () => {
  it("malformed samples and samples out of time order are ERR_INVALID_ARG", () => {
    const p = new Predictor({ env: { clock: { now: () => 0 } } });
    const bad: unknown[] = [
      null,
      [],
      { at: "1", bps: 1, kind: "goodput" },
      { at: 0, bps: Number.NaN, kind: "goodput" },
      { at: 0, bps: -1, kind: "goodput" },
      { at: 0, bps: Number.POSITIVE_INFINITY, kind: "goodput" },
      { at: 0, bps: 1, kind: "lstm" },
      { at: 0, bps: 1, kind: "goodput", lowerBound: "yes" },
      { at: 0, bps: 1, kind: "goodput", rttMs: -1 },
      { at: 0, bps: 1, kind: "goodput", lossRate: 1.5 },
    ];
    for (const s of bad)
      expect(
        code(() => p.add(s as Sample)),
        JSON.stringify(s),
      ).toBe("ERR_INVALID_ARG");
    expect(p.samples).toBe(0);
    p.add(g(1000, 1));
    expect(code(() => p.add(g(999, 1)))).toBe("ERR_INVALID_ARG");
    expect(p.samples).toBe(1);
  });

  it("bad options are ERR_INVALID_ARG", () => {
    const bad: PredictorOptions[] = [
      { errorWindow: 0 },
      { errorWindow: 1.5 },
      { minHistory: 31 },
      { interval: [0.9, 0.1] },
      { interval: [0.1] as unknown as [number, number] },
      { band: -1 },
      { scoreEveryMs: 10 },
      { fallback: "lstm" as EstimatorName },
      { kalman: { window: 2 } },
    ];
    for (const o of bad)
      expect(
        code(() => new Predictor(o)),
        JSON.stringify(o),
      ).toBe("ERR_INVALID_ARG");
  });
});
