// PeerLink and sessions under the deterministic simulator: many seeds, each
// with its own mix of faults (test/sim/link-harness.ts), every one checked
// for exactly-once, in-order delivery and for sends that settle truthfully.
// SIM_SEEDS=n runs n seeds (default 500); SIM_SEED=s runs just seed s.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { type LinkRunResult, runLink } from "./link-harness.js";

const regression: { seeds: number[] } = JSON.parse(
  readFileSync(new URL("./regression-seeds.json", import.meta.url), "utf8"),
);

function report(r: LinkRunResult): string {
  return [
    `seed ${r.seed} (${r.mix}): ${r.violations.length} violation(s)`,
    ...r.violations.slice(0, 10).map((v) => `  ${v}`),
    `  replay: SIM_SEED=${r.seed} npx vitest run test/sim/link.test.ts`,
    "  last trace lines:",
    ...r.trace.slice(-40).map((l) => `    ${l}`),
  ].join("\n");
}

describe("the simulator is deterministic", () => {
  it("the same seed gives the same trace hash; another seed another", async () => {
    const [one, again, two] = [
      await runLink({ seed: 1 }),
      await runLink({ seed: 1 }),
      await runLink({ seed: 2 }),
    ];
    expect(one.events).toBeGreaterThan(500);
    expect(again.traceHash).toBe(one.traceHash);
    expect(again.events).toBe(one.events);
    expect(two.traceHash).not.toBe(one.traceHash);
  });
});

describe("PeerLink over the simulated network", () => {
  const only = process.env.SIM_SEED;
  const count = Number(process.env.SIM_SEEDS ?? 500);
  const seeds = only
    ? [Number(only)]
    : [...new Set([...regression.seeds, ...Array.from({ length: count }, (_, i) => i + 1)])];

  it(`delivers exactly once and in order, and reports as sent only what arrived, over ${seeds.length} seeds of swarm faults (drop, duplicate, reorder, partitions, crashes, clock skew, generation switches)`, {
    timeout: 300_000,
  }, async () => {
    const failures: string[] = [];
    const totals = {
      sent: 0,
      resolved: 0,
      delivered: 0,
      duplicatesDropped: 0,
      resent: 0,
      links: 0,
      events: 0,
    };
    const mixes = { drop: 0, dup: 0, reorder: 0, partitions: 0, crashes: 0, skew: 0 };
    for (const seed of seeds) {
      const r = await runLink({ seed });
      if (r.violations.length > 0) failures.push(report(r));
      totals.sent += r.sent;
      totals.resolved += r.resolved;
      totals.delivered += r.delivered;
      totals.duplicatesDropped += r.duplicatesDropped;
      totals.resent += r.resent;
      totals.links += r.links;
      totals.events += r.events;
      if (r.mix.includes("drop")) mixes.drop++;
      if (r.mix.includes("dup")) mixes.dup++;
      if (r.mix.includes("reorder")) mixes.reorder++;
      if (r.mix.includes("partitions")) mixes.partitions++;
      if (r.mix.includes("crashes")) mixes.crashes++;
      if (r.mix.includes("skew")) mixes.skew++;
    }
    console.log(`${seeds.length} seeds: ${JSON.stringify(totals)}; mixes ${JSON.stringify(mixes)}`);
    expect(failures, failures.join("\n\n")).toEqual([]);
    if (only) return;
    // The runs exercised what they claim to: every fault occurred, messages were
    // resent after failures and repeats were dropped, and most sends got through.
    for (const [fault, n] of Object.entries(mixes)) expect(n, fault).toBeGreaterThan(seeds.length / 5);
    expect(totals.resent).toBeGreaterThan(0);
    expect(totals.duplicatesDropped).toBeGreaterThan(0);
    expect(totals.resolved).toBeGreaterThan(totals.sent / 2);
  });
});
