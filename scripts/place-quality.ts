/**
 * ITP's quality check (issue #24, must-show 2): on random small instances
 * (≤ 20 hosts, ≤ 60 VMs), how far a heuristic's hosts used and cost are from
 * HiGHS's optimum. The heuristic is the batch mode (src/placement/batch.ts,
 * run once per objective) unless --heuristic names another.
 *
 *   npx tsx scripts/place-quality.ts                          200 instances, the batch mode placeBatch()
 *   npx tsx scripts/place-quality.ts --heuristic pipeline     the online pipeline's place() instead
 *   npx tsx scripts/place-quality.ts --instances 50 --seed 7  fewer, another series
 *   npx tsx scripts/place-quality.ts --heuristic first-fit    the first-fit stand-in (tests this script)
 *   npx tsx scripts/place-quality.ts --out quality.json       JSON to a file, summary to stdout
 *   npx tsx scripts/place-quality.ts --options-cost '{"weights": {...}}'   place() options per objective
 *
 * Instance i is drawn from seed `seed + i`: 4–20 hosts of three shapes (price
 * per shape, ±10 %, three zones), VMs of eight shapes added until a drawn load
 * (30–80 % of the hosts' cpu or memory) or 60 VMs, some in groups of 2–3 with
 * hard anti-affinity. Each instance is solved twice by the MILP (objective
 * `hosts`, then `cost`) and the heuristic places it (once per objective when
 * the options differ, and always for the batch mode); the gap is (heuristic − optimum) / optimum. An
 * instance the MILP does not prove optimal in the time limit is compared with
 * its incumbent and counted; one where the heuristic leaves a VM unplaced
 * that the optimum places is counted and left out of the gaps.
 *
 * Without --out the JSON goes to stdout and the summary to stderr.
 */
import { writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { type Random, seededRandom } from "../src/env/index.js";
import { planMetrics, type SolvePlacementResult, solvePlacement, verifyPlan } from "../src/placement/milp.js";
import type { ClusterState, Host, Placement, VmRequest } from "../src/placement/model.js";

const { values } = parseArgs({
  options: {
    instances: { type: "string", default: "200" },
    seed: { type: "string", default: "1" },
    heuristic: { type: "string", default: "batch" },
    "time-limit": { type: "string", default: "10000" },
    "options-hosts": { type: "string", default: "{}" },
    "options-cost": { type: "string", default: "{}" },
    out: { type: "string" },
  },
});

const N = Number(values.instances);
const SEED = Number(values.seed);
const TIME_LIMIT_MS = Number(values["time-limit"]);
const optionsFor = {
  hosts: JSON.parse(values["options-hosts"]) as Record<string, unknown>,
  cost: JSON.parse(values["options-cost"]) as Record<string, unknown>,
};

/** A heuristic under test: the plan it makes for `vms`, aiming at `objective` if it can. */
type Heuristic = (
  state: ClusterState,
  vms: readonly VmRequest[],
  options: Record<string, unknown>,
  objective: "hosts" | "cost",
) => Placement[];
/** Heuristics that take the objective into account: run once per objective. */
const OBJECTIVE_AWARE = new Set(["batch"]);

// ---------------------------------------------------------------------------
// Instances.

const HOST_SHAPES = [
  { cpu: 16_000, memory: 65_536, price: 1.0 },
  { cpu: 32_000, memory: 131_072, price: 1.8 },
  { cpu: 64_000, memory: 262_144, price: 3.2 },
];
/** (cores, GiB) */
const VM_SHAPES: readonly [number, number][] = [
  [1, 2],
  [2, 4],
  [2, 8],
  [4, 8],
  [4, 16],
  [8, 16],
  [8, 32],
  [16, 64],
];

function instance(seed: number): { state: ClusterState; vms: VmRequest[] } {
  const rnd: Random = seededRandom(seed);
  const nHosts = 4 + rnd.int(17);
  const hosts: Host[] = Array.from({ length: nHosts }, (_, j) => {
    const s = HOST_SHAPES[rnd.int(HOST_SHAPES.length)]!;
    return {
      id: `h${j}`,
      capacity: { cpu: s.cpu, memory: s.memory },
      price: Math.round(s.price * (0.9 + 0.2 * rnd.next()) * 100) / 100,
      labels: { zone: `z${j % 3}` },
    };
  });
  const cap = hosts.reduce(
    (a, h) => ({ cpu: a.cpu + h.capacity.cpu, memory: a.memory + h.capacity.memory }),
    {
      cpu: 0,
      memory: 0,
    },
  );
  const load = 0.3 + 0.5 * rnd.next();
  const vms: VmRequest[] = [];
  const used = { cpu: 0, memory: 0 };
  let group: { id: string; left: number } | undefined;
  let groups = 0;
  while (vms.length < 60) {
    const [cores, gib] = VM_SHAPES[rnd.int(VM_SHAPES.length)]!;
    const res = { cpu: cores * 1000, memory: gib * 1024 };
    if ((used.cpu + res.cpu) / cap.cpu > load || (used.memory + res.memory) / cap.memory > load) break;
    used.cpu += res.cpu;
    used.memory += res.memory;
    if (!group && rnd.next() < 0.15) group = { id: `g${groups++}`, left: 2 + rnd.int(2) };
    const g = group;
    vms.push({
      id: `v${vms.length}`,
      resources: res,
      ...(g ? { group: g.id, antiAffinity: "hard" as const } : {}),
    });
    if (g && --g.left === 0) group = undefined;
  }
  return { state: { hosts, allocations: [] }, vms };
}

// ---------------------------------------------------------------------------
// Heuristics.

/** The stand-in: each VM, in order, on the first host (in order) where the plan so far stays valid. */
const firstFit: Heuristic = (state, vms) => {
  const plan: Placement[] = [];
  for (const v of vms) {
    for (const h of state.hosts) {
      const next = [...plan, { vm: v.id, host: h.id }];
      if (verifyPlan(state, vms, next).ok) {
        plan.push({ vm: v.id, host: h.id });
        break;
      }
    }
  }
  return plan;
};

async function loadHeuristic(name: string): Promise<Heuristic> {
  if (name === "first-fit") return firstFit;
  if (name === "batch") {
    const { placeBatch } = await import("../src/placement/batch.js");
    return (state, vms, options, objective) => [
      ...placeBatch(state, vms, { ...options, objective }).placements,
    ];
  }
  if (name !== "pipeline") throw new Error(`unknown --heuristic ${name} (batch | pipeline | first-fit)`);
  let mod: Record<string, unknown>;
  try {
    mod = (await import("../src/placement/pipeline.js")) as Record<string, unknown>;
  } catch (err) {
    throw new Error(
      `cannot load the online pipeline (src/placement/pipeline.ts): ${(err as Error).message}\n` +
        "run with --heuristic first-fit to check this script with its stand-in",
    );
  }
  const place = mod.place;
  if (typeof place !== "function")
    throw new Error("src/placement/pipeline.ts exports no place(state, vms, options)");
  return (state, vms, options) => {
    const out = place(state, vms, options) as { placements?: readonly Placement[] };
    if (!Array.isArray(out?.placements)) throw new Error("place() returned no placements array");
    return [...out.placements];
  };
}

// ---------------------------------------------------------------------------
// The run.

interface Side {
  readonly status: SolvePlacementResult["status"];
  readonly solveMs: number;
  readonly milpGap: number | null;
  readonly optimum: number;
  readonly heuristic: number | null;
  /** (heuristic − optimum) / optimum; null when the heuristic left a VM unplaced. */
  readonly gap: number | null;
}

interface Row {
  readonly seed: number;
  readonly hosts: number;
  readonly vms: number;
  /** Run time of the heuristic per plan (the mean of its runs on this instance). */
  readonly heuristicMs: number;
  readonly heuristicUnplaced: number;
  readonly byHosts: Side;
  readonly byCost: Side;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function distribution(xs: readonly number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return {
    n: s.length,
    mean,
    p50: quantile(s, 0.5),
    p90: quantile(s, 0.9),
    max: s.length ? s[s.length - 1]! : Number.NaN,
    within5pct: s.filter((g) => g <= 0.05 + 1e-12).length / Math.max(1, s.length),
    exact: s.filter((g) => g <= 1e-12).length / Math.max(1, s.length),
  };
}

async function main(): Promise<void> {
  const heuristic = await loadHeuristic(values.heuristic);
  const sameOptions =
    !OBJECTIVE_AWARE.has(values.heuristic) &&
    JSON.stringify(optionsFor.hosts) === JSON.stringify(optionsFor.cost);
  const rows: Row[] = [];
  let skipped = 0;
  for (let i = 0; i < N; i++) {
    const seed = SEED + i;
    const { state, vms } = instance(seed);
    const hostsOpt = await solvePlacement(state, vms, { objective: "hosts", timeLimitMs: TIME_LIMIT_MS });
    const costOpt = await solvePlacement(state, vms, { objective: "cost", timeLimitMs: TIME_LIMIT_MS });
    if (hostsOpt.placements.length < vms.length || costOpt.placements.length < vms.length) {
      skipped++; // no full plan in the time limit (or none exists): nothing to compare with
      continue;
    }
    const t0 = performance.now();
    const planH = heuristic(state, vms, { seed, ...optionsFor.hosts }, "hosts");
    const planC = sameOptions ? planH : heuristic(state, vms, { seed, ...optionsFor.cost }, "cost");
    const heuristicMs = (performance.now() - t0) / (sameOptions ? 1 : 2);
    for (const plan of sameOptions ? [planH] : [planH, planC]) {
      const bad = verifyPlan(state, vms, plan).violations;
      if (bad.length > 0)
        throw new Error(`instance ${seed}: the heuristic's plan breaks a rule: ${bad[0]!.detail}`);
    }
    const mH = planMetrics(state, vms, planH);
    const mC = planMetrics(state, vms, planC);
    const side = (r: SolvePlacementResult, optimum: number, heur: number, unplaced: number): Side => ({
      status: r.status,
      solveMs: Math.round(r.solveMs),
      milpGap: r.gap,
      optimum,
      heuristic: unplaced > 0 ? null : heur,
      gap: unplaced > 0 ? null : (heur - optimum) / optimum,
    });
    rows.push({
      seed,
      hosts: state.hosts.length,
      vms: vms.length,
      heuristicMs: Math.round(heuristicMs * 1000) / 1000,
      heuristicUnplaced: Math.max(mH.unplaced, mC.unplaced),
      byHosts: side(hostsOpt, hostsOpt.metrics.hostsUsed, mH.hostsUsed, mH.unplaced),
      byCost: side(
        costOpt,
        Math.round(costOpt.metrics.cost * 100) / 100,
        Math.round(mC.cost * 100) / 100,
        mC.unplaced,
      ),
    });
    if ((i + 1) % 20 === 0) process.stderr.write(`  ${i + 1}/${N}\n`);
  }

  const gaps = (k: "byHosts" | "byCost") => rows.flatMap((r) => (r[k].gap === null ? [] : [r[k].gap]));
  const solveTimes = rows.flatMap((r) => [r.byHosts.solveMs, r.byCost.solveMs]);
  const heuristicTimes = rows.map((r) => r.heuristicMs);
  const summary = {
    heuristic: values.heuristic,
    instances: N,
    compared: rows.length,
    skipped,
    heuristicLeftUnplaced: rows.filter((r) => r.heuristicUnplaced > 0).length,
    notProvedOptimal: rows.filter((r) => r.byHosts.status !== "optimal" || r.byCost.status !== "optimal")
      .length,
    hostsGap: distribution(gaps("byHosts")),
    costGap: distribution(gaps("byCost")),
    milpSolveMs: (({ n, mean, p50, p90, max }) => ({ n, mean, p50, p90, max }))(distribution(solveTimes)),
    heuristicMs: (({ n, mean, p50, p90, max }) => ({ n, mean, p50, p90, max }))(distribution(heuristicTimes)),
  };
  const json = JSON.stringify(
    { config: { seed: SEED, timeLimitMs: TIME_LIMIT_MS, optionsFor }, summary, rows },
    null,
    1,
  );
  const pct = (x: number) => `${(100 * x).toFixed(2)} %`;
  const line = (name: string, d: ReturnType<typeof distribution>) =>
    `${name}: mean ${pct(d.mean)}  p50 ${pct(d.p50)}  p90 ${pct(d.p90)}  max ${pct(d.max)}  ` +
    `within 5 % ${pct(d.within5pct)}  exact ${pct(d.exact)}  (n=${d.n})`;
  const text = [
    `heuristic ${summary.heuristic}: ${rows.length} of ${N} instances compared (${skipped} skipped: no full MILP plan), ` +
      `${summary.heuristicLeftUnplaced} where the heuristic left VMs unplaced, ` +
      `${summary.notProvedOptimal} not proved optimal within ${TIME_LIMIT_MS} ms`,
    line("hosts gap", summary.hostsGap),
    line("cost gap ", summary.costGap),
    `MILP solve ms: mean ${summary.milpSolveMs.mean.toFixed(0)}  p50 ${summary.milpSolveMs.p50}  ` +
      `p90 ${summary.milpSolveMs.p90}  max ${summary.milpSolveMs.max}  (per solve)`,
    `heuristic ms: mean ${summary.heuristicMs.mean.toFixed(2)}  p50 ${summary.heuristicMs.p50}  ` +
      `p90 ${summary.heuristicMs.p90}  max ${summary.heuristicMs.max}  (per plan)`,
    `goal (mean gap ≤ 5 % on both): ${summary.hostsGap.mean <= 0.05 && summary.costGap.mean <= 0.05 ? "met" : "NOT met"}`,
  ].join("\n");
  if (values.out) {
    writeFileSync(values.out, `${json}\n`);
    process.stdout.write(`${text}\n`);
  } else {
    process.stdout.write(`${json}\n`);
    process.stderr.write(`${text}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
