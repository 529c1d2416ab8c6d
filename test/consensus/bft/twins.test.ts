// Twins on the BFT replicas, the CI-sized sample: for n = 4 with one twin,
// the Latin cover (every partition into up to three groups × leader choice at
// every one of 4 rounds);
// for n = 7 with two twins, seeded samples; the regression entries first.
// Each run checks safety after every delivery, and liveness after the heal.
// BFT_TWINS_N7=k runs k samples for n = 7 (default 20); BFT_SCENARIO=<name>
// with BFT_SEED=s runs just that one. The long run is scripts/bft-twins.ts.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { counts, latinCover, N4, N4_3, N7, parseScenario, sampled } from "./twins.js";
import { describeFailure, noiseFor, runTwins, type TwinsResult } from "./twins-run.js";

interface Regression {
  twins: { scenario: string; seed: number; found: string }[];
}
/** Share of n = 7 rounds drawn from partitions with a quorum group (as the long run does). */
const N7_LIVE = 0.75;

const regression: Regression = JSON.parse(
  readFileSync(new URL("./regression-seeds.json", import.meta.url), "utf8"),
);

function tally(results: readonly TwinsResult[]) {
  return {
    runs: results.length,
    failed: results.filter((r) => r.violations.length > 0).length,
    commits: results.reduce((s, r) => s + r.commits, 0),
    withEquivocation: results.filter((r) => r.equivocationsReceived > 0).length,
    received: results.reduce((s, r) => s + r.equivocationsReceived, 0),
    reported: results.reduce((s, r) => s + r.equivocationsReported, 0),
    accusations: results.reduce((s, r) => s + r.accusations.length, 0),
    worstViewsToCommit: Math.max(0, ...results.map((r) => r.viewsToCommit)),
    events: results.reduce((s, r) => s + r.events, 0),
  };
}

describe("BFT under Twins", () => {
  it("a scenario and seed replay event for event; another seed runs differently", async () => {
    const s = latinCover(N4)[7]!;
    const [a, b, c] = [
      await runTwins({ scenario: s, seed: 5 }),
      await runTwins({ scenario: s, seed: 5 }),
      await runTwins({ scenario: s, seed: 6 }),
    ];
    expect(a.events).toBeGreaterThan(100);
    expect(b.traceHash).toBe(a.traceHash);
    expect(b.events).toBe(a.events);
    expect(c.traceHash).not.toBe(a.traceHash);
  });

  const only = process.env.BFT_SCENARIO;
  if (only) {
    it(`replays ${only} seed ${process.env.BFT_SEED ?? 1}`, async () => {
      const r = await runTwins({ scenario: parseScenario(only), seed: Number(process.env.BFT_SEED ?? 1) });
      expect(r.violations, describeFailure(r)).toEqual([]);
    });
    return;
  }

  it.each(regression.twins)("regression: $scenario seed $seed ($found)", async ({ scenario, seed }) => {
    const r = await runTwins({ scenario: parseScenario(scenario), seed });
    expect(r.violations, describeFailure(r)).toEqual([]);
  });

  it(`n = 4, one twin: all ${counts(N4_3).perRound} partition (≤ 3 groups) × leader choices at each of ${N4_3.rounds} rounds (the Latin cover) hold safety, liveness and honest evidence`, {
    timeout: 300_000,
  }, async () => {
    const results: TwinsResult[] = [];
    const cover = latinCover(N4_3);
    for (const [i, s] of cover.entries()) results.push(await runTwins({ scenario: s, seed: i + 1 }));
    const t = tally(results);
    console.log(`Twins n=4 Latin cover: ${JSON.stringify(t)}`);
    const failures = results.filter((r) => r.violations.length > 0).map((r) => describeFailure(r));
    expect(failures, failures.join("\n\n")).toEqual([]);
    // The sample did what it is for: twins diverged into equivocations that honest
    // replicas received, and every one received was reported.
    expect(t.withEquivocation).toBeGreaterThan(0);
    expect(t.reported).toBe(t.received);
    expect(t.commits).toBeGreaterThan(results.length * 3);
  });

  it("with asynchrony before the heal (loss, duplicates, delays, a crash-restart of an honest replica): 24 seeded scenarios of n = 4 and n = 7", {
    timeout: 300_000,
  }, async () => {
    const results: TwinsResult[] = [];
    for (let seed = 1; seed <= 24; seed++) {
      const scenario = seed % 4 === 0 ? sampled(N7, seed, N7_LIVE) : sampled(N4_3, seed);
      results.push(await runTwins({ scenario, seed, noise: noiseFor(seed) }));
    }
    const t = tally(results);
    console.log(`Twins with noise: ${JSON.stringify(t)}`);
    const failures = results.filter((r) => r.violations.length > 0).map((r) => describeFailure(r));
    expect(failures, failures.join("\n\n")).toEqual([]);
    expect(results.filter((r) => r.noise.includes("crash")).length).toBeGreaterThan(4);
    expect(t.reported).toBe(t.received);
  });

  const n7 = Number(process.env.BFT_TWINS_N7 ?? 20);
  it(`n = 7, two twins: ${n7} seeded samples of ${N7.rounds} rounds with up to three groups (¾ of rounds with a quorum group)`, {
    timeout: 300_000,
  }, async () => {
    const results: TwinsResult[] = [];
    for (let seed = 1; seed <= n7; seed++)
      results.push(await runTwins({ scenario: sampled(N7, seed, N7_LIVE), seed }));
    const t = tally(results);
    console.log(`Twins n=7 sample: ${JSON.stringify(t)}`);
    const failures = results.filter((r) => r.violations.length > 0).map((r) => describeFailure(r));
    expect(failures, failures.join("\n\n")).toEqual([]);
    expect(t.reported).toBe(t.received);
  });
});
