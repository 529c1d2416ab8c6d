/**
 * The long seeded run of the ASS sync replicas in the simulator:
 *
 *   npx tsx scripts/sync-sim.ts --seeds 1000            1,000 runs across sizes
 *   npx tsx scripts/sync-sim.ts --seeds 200 --from 800  resume at run 800
 *   npx tsx scripts/sync-sim.ts --seed 17 --nodes 12    replay one run (prints its trace)
 *   npx tsx scripts/sync-sim.ts --seeds 100 --signed    internet mode (signed writes)
 *
 * Run i uses simulator seed i; its size comes from a fixed plan: every 50th
 * run has 50 nodes, every 10th 20–30, the rest 5–15 (the big ones cost the
 * most, since delta sync costs n² frames per change). Each run draws its own
 * fault mix (drop, duplication, reorder, partitions, crashes, clock skew;
 * test/sync/replica-sim.ts), writes, heals at 5 s and measures the virtual
 * time until every replica equals the model of all writes, against the
 * stated bound. Prints the distribution of convergence times (p50/p99/max),
 * of quiescence (GC done, Merkle roots equal), bytes per update, and every
 * failing seed with its replay command; exits 1 if any run failed.
 */
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { type ReplicaSimResult, runReplicaSim } from "../test/sync/replica-sim.js";

const { values } = parseArgs({
  options: {
    seeds: { type: "string", default: "200" },
    from: { type: "string", default: "1" },
    seed: { type: "string" },
    nodes: { type: "string" },
    signed: { type: "boolean", default: false },
  },
});

/** The size of run i (a fixed plan, so a seed replays with its size). */
function sizeOf(i: number): number {
  if (i % 50 === 0) return 50;
  if (i % 10 === 0) return 20 + (i % 11);
  return 5 + (i % 11);
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const signing = values.signed;

if (values.seed !== undefined) {
  const seed = Number(values.seed);
  const nodes = Number(values.nodes ?? sizeOf(seed));
  const r = await runReplicaSim({ seed, nodes, signing });
  console.log(JSON.stringify({ ...r, trace: undefined }, null, 1));
  console.log(r.trace.join("\n"));
  process.exit(r.converged && r.convergenceMs <= r.boundMs ? 0 : 1);
}

const from = Number(values.from);
const count = Number(values.seeds);
const started = performance.now();
const results: ReplicaSimResult[] = [];
const failures: string[] = [];
for (let i = from; i < from + count; i++) {
  const nodes = Number(values.nodes ?? sizeOf(i));
  const r = await runReplicaSim({ seed: i, nodes, signing });
  results.push(r);
  const over = r.convergenceMs > r.boundMs;
  if (!r.converged || over || r.quiescedMs === Number.POSITIVE_INFINITY) {
    const what = !r.converged
      ? "did not converge"
      : over
        ? `converged in ${r.convergenceMs} ms, over the bound of ${r.boundMs.toFixed(0)} ms`
        : "did not quiesce (GC, roots) within 30 s";
    const line = `seed ${i} (${nodes} nodes; ${r.mix}): ${what}; replay: npx tsx scripts/sync-sim.ts --seed ${i} --nodes ${nodes}${signing ? " --signed" : ""}`;
    failures.push(line);
    console.log(`FAIL ${line}`);
  }
  if ((i - from + 1) % 100 === 0)
    console.log(
      `${i - from + 1} runs, ${failures.length} failed, ${((performance.now() - started) / 1000).toFixed(0)} s`,
    );
}

const conv = results.filter((r) => r.converged).map((r) => r.convergenceMs);
const quiet = results.filter((r) => r.quiescedMs !== Number.POSITIVE_INFINITY).map((r) => r.quiescedMs);
const bySize = new Map<string, ReplicaSimResult[]>();
for (const r of results) {
  const band = r.nodes >= 50 ? "50" : r.nodes >= 20 ? "20-30" : "5-15";
  bySize.set(band, [...(bySize.get(band) ?? []), r]);
}
console.log(`\n${results.length} runs (${signing ? "internet mode" : "plain"}), ${failures.length} failed`);
console.log(
  `convergence after heal, virtual ms: p50 ${pct(conv, 50)}  p99 ${pct(conv, 99)}  max ${Math.max(...conv)}  (bound per run ${Math.min(...results.map((r) => r.boundMs)).toFixed(0)}-${Math.max(...results.map((r) => r.boundMs)).toFixed(0)} ms)`,
);
console.log(
  `quiescence (GC done, roots equal) after heal: p50 ${pct(quiet, 50)}  p99 ${pct(quiet, 99)}  max ${Math.max(...quiet)}`,
);
for (const [band, rs] of [...bySize].sort()) {
  const b = rs.map((r) => r.bytesPerUpdate);
  const c = rs.filter((r) => r.converged).map((r) => r.convergenceMs);
  console.log(
    `  ${band.padEnd(5)} nodes: ${String(rs.length).padStart(4)} runs, convergence p50 ${pct(c, 50)} p99 ${pct(c, 99)} max ${Math.max(...c)} ms; bytes/update p50 ${pct(b, 50).toFixed(0)} max ${Math.max(...b).toFixed(0)}`,
  );
}
console.log(`wall time ${((performance.now() - started) / 1000).toFixed(1)} s`);
for (const f of failures) console.log(`FAIL ${f}`);
process.exit(failures.length > 0 ? 1 : 0);
