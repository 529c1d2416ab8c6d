// Bandwidth traces: the file format round trip, hostile files, and the replay
// scorer. Every trace here is synthetic (generated in the test), never measured.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { seededRandom } from "../src/env/index.js";
import {
  ESTIMATORS,
  formatTrace,
  HORIZONS,
  Predictor,
  parseTrace,
  readTrace,
  type Sample,
  type ScoredPrediction,
  scoreTrace,
  type Trace,
  writeTrace,
} from "../src/prediction/index.js";
import { code, M } from "./helpers/prediction.js";

const dir = mkdtempSync(join(tmpdir(), "dwcp-trace-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A synthetic trace: 100 → 40 Mbit/s at 10 s, ±5 % noise, goodput and delivery rate every 200 ms. */
function synthetic(): Trace {
  const r = seededRandom(9);
  const samples: Sample[] = [];
  for (let at = 0; at <= 20_000; at += 200) {
    const rate = at < 10_000 ? 100 * M : 40 * M;
    samples.push({ at, bps: Math.round(rate * (1 + 0.05 * (2 * r.next() - 1))), kind: "goodput", rttMs: 50 });
    samples.push({
      at,
      bps: Math.round(rate * 1.02),
      kind: "deliveryRate",
      ...(at % 1000 === 0 ? { lowerBound: true } : {}),
    });
  }
  return {
    name: "synthetic-step",
    source: "synthetic",
    description: "generated: 100 → 40 Mbit/s at 10 s",
    meta: {
      schedule: [
        { atS: 0, rateMbit: 100 },
        { atS: 10, rateMbit: 40 },
      ],
    },
    samples,
  };
}

describe("trace files", () => {
  it("round-trip through text and through a file, one sample per line", () => {
    const t = synthetic();
    expect(parseTrace(formatTrace(t))).toEqual(t);
    const file = join(dir, "step.json");
    writeTrace(file, t);
    expect(readTrace(file)).toEqual(t);
    const lines = readFileSync(file, "utf8").trimEnd().split("\n");
    expect(lines).toHaveLength(t.samples.length + 2);
    expect(JSON.parse(lines[1]!.replace(/,$/, ""))).toEqual(t.samples[0]);
    const empty: Trace = { name: "empty", source: "synthetic", samples: [] };
    expect(parseTrace(formatTrace(empty))).toEqual(empty);
  });

  it("keeps only the fields it knows, and a __proto__ key pollutes nothing", () => {
    const text =
      '{"name":"x","source":"recorded","extra":1,"samples":[' +
      '{"at":0,"bps":1,"kind":"goodput","note":"hi","__proto__":{"polluted":true}}]}';
    const t = parseTrace(text);
    expect(t).toEqual({ name: "x", source: "recorded", samples: [{ at: 0, bps: 1, kind: "goodput" }] });
    expect(({} as { polluted?: boolean }).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(t.samples[0])).toBe(Object.prototype);
  });

  it("hostile texts are ERR_INVALID_ARG", () => {
    const s = '{"at":0,"bps":1,"kind":"goodput"}';
    const bad = [
      "",
      "not json",
      "[]",
      "null",
      `{"source":"recorded","samples":[]}`,
      `{"name":"","source":"recorded","samples":[]}`,
      `{"name":"${"n".repeat(257)}","source":"recorded","samples":[]}`,
      `{"name":"x","source":"measured","samples":[]}`,
      `{"name":"x","source":"recorded","description":7,"samples":[]}`,
      `{"name":"x","source":"recorded","description":"${"d".repeat(4097)}","samples":[]}`,
      `{"name":"x","source":"recorded","meta":[1],"samples":[]}`,
      `{"name":"x","source":"recorded","samples":{}}`,
      `{"name":"x","source":"recorded","samples":[${s},{"at":-1,"bps":1,"kind":"goodput"}]}`,
      `{"name":"x","source":"recorded","samples":[{"at":0,"bps":"1","kind":"goodput"}]}`,
      `{"name":"x","source":"recorded","samples":[{"at":0,"bps":1e999,"kind":"goodput"}]}`,
      `{"name":"x","source":"recorded","samples":[{"at":0,"bps":1,"kind":"lstm"}]}`,
      `{"name":"x","source":"recorded","samples":[{"at":0,"bps":1,"kind":"goodput","lossRate":-0.1}]}`,
      `{"name":"x","source":"recorded","samples":[${s},${s},${s}]}`,
    ];
    for (const text of bad) {
      expect(
        code(() => parseTrace(text, { maxSamples: 2 })),
        text.slice(0, 120),
      ).toBe("ERR_INVALID_ARG");
    }
    // Deep nesting inside meta is plain JSON: it parses, and is kept as it is.
    const deep = `{"name":"x","source":"recorded","meta":{"a":${"[".repeat(100_000)}${"]".repeat(100_000)}},"samples":[]}`;
    expect(parseTrace(deep).samples).toEqual([]);
    expect(code(() => parseTrace("{}", { maxSamples: 0 }))).toBe("ERR_INVALID_ARG");
  });

  it("hostile files: too large, not a file, not UTF-8, missing; a bad trace is never written", () => {
    const big = join(dir, "big.json");
    writeFileSync(big, formatTrace(synthetic()));
    expect(code(() => readTrace(big, { maxBytes: 1000 }))).toBe("ERR_INVALID_ARG");
    const sub = join(dir, "a-directory");
    mkdirSync(sub);
    expect(code(() => readTrace(sub))).toBe("ERR_INVALID_ARG");
    const latin = join(dir, "latin1.json");
    writeFileSync(latin, Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]));
    expect(code(() => readTrace(latin))).toBe("ERR_INVALID_ARG");
    expect(code(() => readTrace(join(dir, "missing.json")))).toBe("ERR_SYSCALL");
    const out = join(dir, "never.json");
    const trace = { ...synthetic(), source: "guessed" } as unknown as Trace;
    expect(code(() => writeTrace(out, trace))).toBe("ERR_INVALID_ARG");
    expect(code(() => readFileSync(out))).toBe("ENOENT");
  });
});

describe("scoreTrace", () => {
  it("hand-computed: EWMA 0.5 on 100, 200, 100 scores 50 % MAPE, 50 % coverage at 1 s", () => {
    const t: Trace = {
      name: "three",
      source: "synthetic",
      samples: [0, 200, 100].map((_, i) => ({ at: i * 1000, bps: [100, 200, 100][i]!, kind: "goodput" })),
    };
    const s = scoreTrace(t, { ewma: { alpha: 0.5 }, scoreEveryMs: 1000 });
    expect(s.trace).toBe("three");
    expect(s.samples).toBe(3);
    expect(s.estimators.ewma["1s"]).toEqual({ mape: 0.5, coverage: 0.5, n: 2 });
    expect(s.estimators.ewma["10s"]).toEqual({ n: 0 });
    // Both predictions were made before any estimator had history: the fallback (harmonic) was chosen.
    expect(s.selected["1s"]).toMatchObject({ n: 2, picks: { harmonic: 2 } });
    expect(s.selected["1s"].mape).toBe(s.estimators.harmonic["1s"].mape);
  });

  it("tallies every prediction the live predictor scores over the whole trace", () => {
    const t = synthetic();
    const scored: ScoredPrediction[] = [];
    let now = 0;
    const p = new Predictor({ env: { clock: { now: () => now } }, onScore: (x) => scored.push(x) });
    for (const s of t.samples) {
      now = s.at;
      p.add(s);
    }
    const result = scoreTrace(t);
    const tally = (xs: ScoredPrediction[]) => ({
      mape: xs.reduce((a, x) => a + Math.abs(x.realised - x.bps) / x.realised, 0) / xs.length,
      coverage: xs.filter((x) => x.realised >= x.low && x.realised <= x.high).length / xs.length,
      n: xs.length,
    });
    for (const h of HORIZONS) {
      for (const e of ESTIMATORS) {
        const want = tally(scored.filter((x) => x.estimator === e && x.horizon === h));
        const got = result.estimators[e][h];
        expect(got.n, `${e} ${h}`).toBe(want.n);
        expect(got.mape!, `${e} ${h}`).toBeCloseTo(want.mape, 12);
        expect(got.coverage!, `${e} ${h}`).toBeCloseTo(want.coverage, 12);
      }
      const chosen = scored.filter((x) => x.horizon === h && x.selected);
      expect(result.selected[h].n).toBe(chosen.length);
      expect(result.selected[h].mape!).toBeCloseTo(tally(chosen).mape, 12);
      const picks = Object.values(result.selected[h].picks).reduce((a, b) => a + b, 0);
      expect(picks).toBe(chosen.length);
    }
    // Samples every 200 ms: a round of predictions every 600 ms (the first sample 500 ms or more
    // after the last round), 0 to 19,800 ms; the 1 s horizons of those up to 18,600 ms close in the trace.
    expect(result.estimators.harmonic["1s"].n).toBe(32);
    expect(result.estimators.harmonic["10s"].n).toBe(17);
  });

  it("on a synthetic steady trace (±5 % noise) the chosen estimator's 1 s MAPE is under 5 %", () => {
    const r = seededRandom(2);
    const samples: Sample[] = [];
    for (let at = 0; at <= 40_000; at += 500) {
      samples.push({ at, bps: 100 * M * (1 + 0.05 * (2 * r.next() - 1)), kind: "goodput" });
    }
    const s = scoreTrace({ name: "steady", source: "synthetic", samples });
    expect(s.selected["1s"].mape!).toBeLessThan(0.05);
    expect(s.selected["1s"].n).toBeGreaterThan(70);
  });
});
