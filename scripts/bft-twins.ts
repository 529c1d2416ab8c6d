/**
 * The long Twins run of the BFT replicas in the simulator:
 *
 *   npx tsx scripts/bft-twins.ts --seeds 10000        run 10,000 scenarios
 *   npx tsx scripts/bft-twins.ts --seeds 500 --from 4000   resume at run 4000
 *   npx tsx scripts/bft-twins.ts --seeds 2000 --noise   the same plan with asynchrony and crashes
 *   npx tsx scripts/bft-twins.ts --scenario n4f1g2r4:5.38.7.40 --seed 6   replay one
 *
 * Run i (from 1) uses simulator seed i and the i-th scenario of a fixed plan:
 * first the Latin cover of n = 4 with up to three groups (every partition ×
 * leader choice at every round), then the pairwise cover of n = 4 with two
 * groups (every pair of choices at every pair of rounds), then seeded samples
 * of the full products, three of n = 4 (three groups) to one of n = 7 (two
 * twins; there ¾ of the rounds are drawn from partitions that leave some
 * group a quorum, since uniform ones almost never do). Prints the scenario space, progress, every failure with its replay
 * command, and the totals and time per run; exits 1 if any run failed.
 * With --noise, each run also draws from its seed loss, duplicates, delays and
 * maybe a crash and restart of an honest replica, all before the heal.
 */
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import {
  counts,
  latinCover,
  liveChoices,
  N4,
  N4_3,
  N7,
  pairwiseRow,
  pairwiseRows,
  parseScenario,
  sampled,
  type TwinsScenario,
} from "../test/consensus/bft/twins.js";
import { describeFailure, noiseFor, runTwins, type TwinsResult } from "../test/consensus/bft/twins-run.js";

const { values } = parseArgs({
  options: {
    seeds: { type: "string", default: "200" },
    from: { type: "string", default: "1" },
    scenario: { type: "string" },
    seed: { type: "string", default: "1" },
    trace: { type: "string", default: "40" },
    noise: { type: "boolean", default: false },
  },
});

const latin = latinCover(N4_3);
const pairs = pairwiseRows(N4);

/** The plan's i-th scenario (i from 1) and the part of the plan it belongs to. */
function planned(i: number): { part: string; scenario: TwinsScenario } {
  let k = i - 1;
  if (k < latin.length) return { part: "n4 latin cover (≤3 groups)", scenario: latin[k]! };
  k -= latin.length;
  if (k < pairs) return { part: "n4 pairwise cover (≤2 groups)", scenario: pairwiseRow(N4, k) };
  k -= pairs;
  return k % 4 === 3
    ? { part: "n7 sampled (≤3 groups, ¾ of rounds with a quorum group)", scenario: sampled(N7, i, 0.75) }
    : { part: "n4 sampled (≤3 groups)", scenario: sampled(N4_3, i) };
}

function space(): void {
  for (const s of [N4, N4_3, N7]) {
    const c = counts(s);
    console.log(
      `n=${s.n} twins=${s.twins} groups≤${s.maxGroups} rounds=${s.rounds}: ${c.partitions} partitions × ${s.n} leaders = ${c.perRound} choices/round (${liveChoices(s).length} with a quorum group); ${c.sequences} sequences, ${c.distinctUpToSymmetry} up to ${c.symmetries} symmetries`,
    );
  }
  console.log(
    `plan: ${latin.length} latin (n=4, ≤3 groups), ${pairs} pairwise (n=4, ≤2 groups), then samples 3:1 n=4:n=7`,
  );
}

async function main(): Promise<number> {
  if (values.scenario) {
    const seed = Number(values.seed);
    const r = await runTwins({
      scenario: parseScenario(values.scenario),
      seed,
      ...(values.noise ? { noise: noiseFor(seed) } : {}),
    });
    console.log(describeFailure(r, Number(values.trace)));
    console.log(
      `events ${r.events}, virtual ${r.virtualMs.toFixed(0)} ms, commits ${r.commits}, trace ${r.traceHash}`,
    );
    return r.violations.length > 0 ? 1 : 0;
  }
  const count = Number(values.seeds);
  const from = Number(values.from);
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(from) || from < 1) {
    console.error("usage: bft-twins.ts --seeds <n ≥ 1> [--from <i ≥ 1>] | --scenario <name> [--seed <s>]");
    return 2;
  }
  space();
  const parts = new Map<string, { runs: number; failed: number }>();
  const failures: TwinsResult[] = [];
  const times: number[] = [];
  const totals = {
    commits: 0,
    withEquivocation: 0,
    received: 0,
    reported: 0,
    lostInCrash: 0,
    accusations: 0,
    events: 0,
  };
  let worstViews = 0;
  const t0 = performance.now();
  for (let i = from; i < from + count; i++) {
    const { part, scenario } = planned(i);
    const t = performance.now();
    const r = await runTwins({ scenario, seed: i, ...(values.noise ? { noise: noiseFor(i) } : {}) });
    times.push(performance.now() - t);
    const p = parts.get(part) ?? { runs: 0, failed: 0 };
    parts.set(part, p);
    p.runs++;
    totals.commits += r.commits;
    totals.events += r.events;
    totals.received += r.equivocationsReceived;
    totals.reported += r.equivocationsReported;
    totals.lostInCrash += r.equivocationsLostInCrash;
    totals.accusations += r.accusations.length;
    if (r.equivocationsReceived > 0) totals.withEquivocation++;
    if (Number.isFinite(r.viewsToCommit)) worstViews = Math.max(worstViews, r.viewsToCommit);
    if (r.violations.length > 0) {
      p.failed++;
      failures.push(r);
      console.log(`FAIL ${describeFailure(r, Number(values.trace))}`);
    }
    const done = i - from + 1;
    if (done % 250 === 0 || done === count)
      console.log(
        `${done}/${count} runs, ${failures.length} failed, ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
  }
  const wall = (performance.now() - t0) / 1000;
  const sorted = [...times].sort((a, b) => a - b);
  const q = (x: number) => sorted[Math.min(sorted.length - 1, Math.floor(x * sorted.length))]!;
  console.log(`runs ${from}..${from + count - 1} in ${wall.toFixed(1)} s`);
  for (const [part, p] of parts) console.log(`  ${part}: ${p.runs} runs, ${p.failed} failed`);
  console.log(
    `  time per run: mean ${((wall * 1000) / count).toFixed(1)} ms, p50 ${q(0.5).toFixed(1)} ms, p99 ${q(0.99).toFixed(1)} ms, max ${sorted.at(-1)!.toFixed(1)} ms`,
  );
  console.log(
    `  ${totals.events} events, ${totals.commits} honest commits; ${totals.withEquivocation} runs where honest replicas received an equivocation: ${totals.received} received, ${totals.reported} reported (${totals.lostInCrash} more received by a replica that then crashed); ${totals.accusations} accusations; worst views from heal to commit ${worstViews}`,
  );
  if (failures.length > 0) {
    console.log(`FAILED (${failures.length}):`);
    for (const f of failures) console.log(`  ${f.name} --seed ${f.seed}: ${f.violations[0]}`);
  }
  return failures.length > 0 ? 1 : 0;
}

process.exitCode = await main();
