// One Twins scenario, run: the instances of its setup on a BftNet, each
// message routed by the partition of its own round, each round's leader the
// scenario's; once an honest replica is past the scripted rounds (or they
// stalled), the network is whole, leaders rotate, and the oracle wants every
// honest replica to commit a block of a view at or after the heal within k views. The run ends when every honest
// instance has committed after the heal, or at the first broken property.
import { seededRandom } from "../../../src/env/index.js";
import { BftNet } from "./harness.js";
import { runToVerdict, watch } from "./invariants.js";
import { instancesOf, type TwinsScenario } from "./twins.js";
import { FIRST_VIEW } from "./wire.js";

/** Virtual time a run goes on after it ends, for syncs in flight to complete. */

/** Options of {@link runTwins}. */
export interface TwinsRunOptions {
  readonly scenario: TwinsScenario;
  /** The simulator's seed (latencies, replicas' randomness, keys). */
  readonly seed: number;
  /** Virtual ms after which the script ends even if the replicas are still in its rounds. @default 5000 */
  readonly stallMs?: number;
  /** Asynchrony before the heal (loss, duplicates, delay) and maybe a crash; @default none */
  readonly noise?: TwinsNoise;
  /** k of the liveness bound. @default 3n */
  readonly livenessViews?: number;
  /** Give up at this virtual time, ms. @default 600_000 */
  readonly untilMs?: number;
  /** Trace lines kept. @default 300 */
  readonly traceLines?: number;
}

/** Faults added to a scenario before its heal. */
export interface TwinsNoise {
  /** Probability that a message is lost. */
  readonly drop: number;
  /** Probability that it arrives twice. */
  readonly duplicate: number;
  /** Mean of an exponential extra delay, ms. */
  readonly jitterMs: number;
  /** Whether one honest replica crashes and restarts (before the heal). */
  readonly crash: boolean;
}

/** A noise mix drawn from `seed` alone: each fault on or off, at a rate of a few orders of magnitude. */
export function noiseFor(seed: number): TwinsNoise {
  const r = seededRandom(seed ^ 0x4015e);
  const pick = (xs: readonly number[]) => xs[r.int(xs.length)]!;
  return {
    drop: r.next() < 0.5 ? pick([0.01, 0.05, 0.2]) : 0,
    duplicate: r.next() < 0.5 ? pick([0.01, 0.1]) : 0,
    jitterMs: pick([0.5, 5, 50, 300]),
    crash: r.next() < 0.5,
  };
}

/** One line describing a noise mix. */
export function describeNoise(z: TwinsNoise | undefined): string {
  if (!z) return "no noise";
  return `drop ${z.drop}, dup ${z.duplicate}, jitter ${z.jitterMs} ms${z.crash ? ", a crash" : ""}`;
}

/** What one run saw. */
export interface TwinsResult {
  readonly name: string;
  readonly seed: number;
  /** The noise mix, described ({@link describeNoise}). */
  readonly noise: string;
  readonly violations: readonly string[];
  readonly trace: readonly string[];
  readonly traceHash: string;
  readonly events: number;
  readonly virtualMs: number;
  /** Honest commits, and the deepest height every honest instance reached. */
  readonly commits: number;
  readonly accusations: readonly string[];
  /** Instance>member pairs that received an equivocation, and the ones reported. */
  readonly equivocationsReceived: number;
  readonly equivocationsReported: number;
  /** Received equivocations a crash of the receiver made undetectable. */
  readonly equivocationsLostInCrash: number;
  /** The most views an honest instance took after the heal to commit. */
  readonly viewsToCommit: number;
  /** Rejections counted by the honest replicas, by reason. */
  readonly rejected: Record<string, number>;
}

/** Runs one scenario under one seed. */
export async function runTwins(o: TwinsRunOptions): Promise<TwinsResult> {
  const { scenario } = o;
  const { setup, rounds } = scenario;
  const instances = instancesOf(setup);
  const indexOf = new Map(instances.map((s, i) => [s.name, i]));
  const groupOf = rounds.map((r) => {
    const g = new Map<number, number>();
    r.partition.forEach((members, k) => {
      for (const i of members) g.set(i, k);
    });
    return g;
  });
  const roundOf = (view: number | undefined) =>
    view === undefined ? undefined : view - FIRST_VIEW < rounds.length ? view - FIRST_VIEW : undefined;
  let healed = false;
  const net = await BftNet.start({
    seed: o.seed,
    n: setup.n,
    instances,
    traceLines: o.traceLines ?? 300,
    leaderOf: (view) => {
      const r = roundOf(view);
      return r !== undefined && r >= 0 ? rounds[r]!.leader : view % setup.n;
    },
    route: (view, from, to) => {
      if (healed) return true;
      const r = roundOf(view);
      if (r === undefined || r < 0) return true;
      const g = groupOf[r]!;
      return g.get(indexOf.get(from.name)!) === g.get(indexOf.get(to.name)!);
    },
    // Before the heal the network is asynchronous as well as partitioned: loss,
    // duplicates and delays; after it, synchronous (the partial-synchrony model).
    tamper: (d) => {
      const z = o.noise;
      if (!z || healed) return [d];
      const r = net.sim.random;
      if (r.next() < z.drop) return [];
      const late = { ...d, delayMs: d.delayMs - Math.log(1 - r.next()) * z.jitterMs };
      return r.next() < z.duplicate
        ? [late, { ...late, delayMs: late.delayMs + r.next() * z.jitterMs }]
        : [late];
    },
  });
  const inv = watch(net, instances, o.livenessViews ?? 3 * setup.n);
  const honest = instances.filter((s) => !s.byzantine).map((s) => net.instances.get(s.name)!);
  let down = 0;
  let pendingHeal: string | undefined;
  const heal = (why: string) => {
    if (healed) return;
    // Liveness is owed with at most f faulty: a crashed honest replica must be back first.
    if (down > 0) {
      pendingHeal = why;
      return;
    }
    healed = true;
    const top = Math.max(...honest.map((r) => r.replica.view));
    inv.healedAt(top);
    net.sim.trace(`heal (${why}): every link up from view ${top}`);
  };
  // The scripted rounds are over once an honest replica is past them; a round
  // whose partition leaves no quorum anywhere would hold every replica in it
  // for ever (its timeouts never meet), so the script also ends at stallMs.
  net.observers.push({
    step: () => {
      if (honest.some((r) => r.replica.view >= FIRST_VIEW + rounds.length)) heal("rounds done");
    },
  });
  net.sim.at(o.stallMs ?? 5000, () => heal("stalled"), "heal");
  if (o.noise?.crash) {
    // One honest replica crashes (its unsynced writes lost) and restarts from its disk.
    const r = net.sim.random;
    const victim = honest[r.int(honest.length)]!.spec.name;
    const at = 50 + r.next() * 1500;
    net.sim.at(
      at,
      () => {
        // Liveness is judged from the heal with at most f faulty: no crash after it.
        if (healed) return;
        down++;
        net.crash(victim);
        net.sim.at(
          at + 100 + r.next() * 400,
          () =>
            void net.restart(victim).then(() => {
              down--;
              if (pendingHeal) heal(pendingHeal);
            }),
          "restart",
        );
      },
      "crash",
    );
  }
  net.sim.trace(`scenario ${scenario.name} seed ${o.seed}`);
  net.clients(2, 20);
  await runToVerdict(net, inv, { untilMs: o.untilMs ?? 600_000, maxEvents: 400_000 });
  net.close();
  const rejected: Record<string, number> = {};
  for (const r of net.instances.values()) {
    if (r.spec.byzantine) continue;
    for (const [k, v] of Object.entries(r.replica.stats().rejected)) rejected[k] = (rejected[k] ?? 0) + v;
  }
  const worst = Math.max(0, ...inv.viewsToCommit.values());
  return {
    name: scenario.name,
    seed: o.seed,
    noise: describeNoise(o.noise),
    violations: inv.violations,
    trace: net.sim.recentTrace(),
    traceHash: net.sim.traceHash,
    events: net.sim.events,
    virtualMs: net.sim.now,
    commits: inv.commits,
    accusations: inv.accusations,
    equivocationsReceived: inv.expected.size,
    equivocationsReported: [...inv.expected].filter((p) => inv.reported.has(p)).length,
    equivocationsLostInCrash: inv.lostInCrash,
    viewsToCommit: worst,
    rejected,
  };
}

/** A failure as a report: what broke, how to replay it, the last trace lines. */
export function describeFailure(r: TwinsResult, lines = 40): string {
  return [
    `${r.name} seed ${r.seed} (${r.noise}): ${r.violations.length} violation(s)`,
    ...r.violations.slice(0, 10).map((v) => `  ${v}`),
    `  replay: npx tsx scripts/bft-twins.ts --scenario ${r.name} --seed ${r.seed}${r.noise === "no noise" ? "" : " --noise"}`,
    "  last trace lines:",
    ...r.trace.slice(-lines).map((l) => `    ${l}`),
  ].join("\n");
}
