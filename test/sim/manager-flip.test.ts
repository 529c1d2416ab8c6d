// The kill switch flipped during a live migration, on the simulator: two
// DWCPManagers over a simulated network with latency and jitter (streams keep
// their order, as TCP does); the source's guest keeps writing; `forceV1` (and the rollout) flip
// on either side at random moments, so pages and the destination's answers
// cross both generations while each side switches. Every run must complete
// with the destination equal to the paused guest: a message lost at a flip
// shows as a migration that times out or an image that differs.
// SIM_SEEDS=n runs n seeds (default 12); SIM_SEED=s runs just seed s.
import "./ts-backends.js";
import { describe, expect, it } from "vitest";
import type { PeerLink } from "../../src/manager.js";
import { MemoryImage } from "../../src/migration/memory-image.js";
import { SimNetwork, Simulator } from "../../src/testing/index.js";
import { simManager } from "../helpers/managers.js";

const PAGES = 1024; // 4 MiB

interface FlipRun {
  seed: number;
  flips: number;
  violations: string[];
  v1: number;
  v3: number;
}

async function run(seed: number): Promise<FlipRun> {
  const sim = new Simulator({ seed, traceLines: 60 });
  const r = sim.random;
  const latencyMs = 0.2 + r.next() * 20;
  const net = new SimNetwork(sim, {
    latencyMs,
    jitterMs: r.next() * latencyMs * 0.3,
    drop: 0,
    duplicate: 0,
    reorder: 0,
  });
  const a = simManager(sim, net, "a");
  const b = simManager(sim, net, "b");
  const violations: string[] = [];
  let flips = 0;
  let finished = false;
  let linkA: PeerLink | undefined;
  let linkB: PeerLink | undefined;
  b.on("link", (l) => {
    linkB = l;
  });
  const src = new MemoryImage({ pageCount: PAGES });
  src.fillPages("mixed", seed);
  const hot = 32 + r.int(256);
  const write = () => {
    if (finished) return;
    if (!src.paused) src.write(r.int(hot) * 4096 + r.int(511) * 8, new Uint8Array([r.int(256), 7, 7, 7]));
    sim.after(0.5, write, "guest");
  };
  // Flips on either side at random moments, some in quick succession.
  const flip = () => {
    const m = r.next() < 0.7 ? a : b;
    const f = m.flags.flags;
    if (r.next() < 0.8) m.flags.update({ forceV1: !f.forceV1 });
    else m.flags.update({ v3RolloutPercentage: f.v3RolloutPercentage === 100 ? 0 : 100 });
    flips++;
    sim.trace(
      `flip ${m === a ? "a" : "b"}: forceV1 ${m.flags.flags.forceV1}, rollout ${m.flags.flags.v3RolloutPercentage}`,
    );
  };
  const flipAgain = () => {
    if (finished) return;
    flip();
    sim.after(r.next() < 0.3 ? r.next() * 2 : 2 + r.next() * 20, flipAgain, "flip");
  };
  const main = async () => {
    const bound = await b.listen({ v1: "b:1", v3: "b:3" });
    linkA = await a.connect({ v1: bound.v1, v3: bound.v3! });
    sim.after(0, write, "guest");
    sim.after(r.next() * 10, flipAgain, "flip");
    const incoming = b.acceptMigration("a", { env: sim.env("b"), timeoutMs: 10_000 });
    const m = a.migrate("b", src, { env: sim.env("a"), timeoutMs: 10_000 });
    // As the demo does: a flip as a round ends.
    m.on("round", () => {
      if (r.next() < 0.5) flip();
    });
    const [sent, got] = await Promise.allSettled([m.done, incoming.done]);
    if (sent.status === "rejected") violations.push(`the source failed: ${String(sent.reason)}`);
    if (got.status === "rejected") violations.push(`the destination failed: ${String(got.reason)}`);
    if (got.status === "fulfilled" && Buffer.compare(got.value.image, src.bytes) !== 0)
      violations.push("the destination's image differs from the paused guest");
  };
  const done = main().catch((e: unknown) => {
    violations.push(`threw: ${String(e)}`);
  });
  let over = false;
  void done.finally(() => {
    over = true;
    finished = true;
  });
  await sim.run({ until: 120_000, stopWhen: () => over });
  if (!over) violations.push(`not finished by ${sim.now.toFixed(0)} ms of virtual time`);
  finished = true;
  const stats = { v1: linkA?.stats.v1 ?? 0, v3: linkA?.stats.v3 ?? 0 };
  let closed = false;
  void Promise.all([a.close(), b.close()]).finally(() => {
    closed = true;
  });
  await sim.run({ until: sim.now + 30_000, stopWhen: () => closed });
  if (violations.length > 0)
    violations.push(
      `latency ${latencyMs.toFixed(2)} ms, flips ${flips}, link a→b ${JSON.stringify(linkA?.stats)}, b→a ${JSON.stringify(linkB?.stats)}`,
      ...sim.recentTrace(),
    );
  return { seed, flips, violations, ...stats };
}

describe("the kill switch flipped during a live migration, on the simulator", () => {
  const only = process.env.SIM_SEED;
  const count = Number(process.env.SIM_SEEDS ?? 12);
  const seeds = only ? [Number(only)] : Array.from({ length: count }, (_, i) => i + 1);
  it(`${seeds.length} seeds: every migration completes, the destination equal to the paused guest; both generations carried pages`, async () => {
    let both = 0;
    for (const seed of seeds) {
      const res = await run(seed);
      expect(
        res.violations,
        `seed ${seed} (replay: SIM_SEED=${seed} npx vitest run test/sim/manager-flip.test.ts)`,
      ).toEqual([]);
      if (res.v1 > 0 && res.v3 > 0) both++;
    }
    // The flips were real: in most runs both generations carried the migration.
    expect(both).toBeGreaterThan(seeds.length / 2);
  }, 300_000);
});
