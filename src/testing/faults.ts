/**
 * Swarm testing: each seed draws its own mix of faults (some on, some off,
 * each at its own rate), so across many seeds every combination is tried,
 * including the quiet ones where rare interleavings show.
 */
import type { Random } from "../env/index.js";
import type { LinkConditions, SimNetwork } from "./network.js";

/** The faults of one run. */
export interface FaultMix {
  link: LinkConditions;
  /** Partitions (and asymmetric ones) come and go. */
  partitions: boolean;
  asymmetric: boolean;
  /** Nodes crash and restart. */
  crashes: boolean;
  /** Nodes' clocks are offset and drift. */
  skew: boolean;
}

const pick = <T>(r: Random, xs: readonly T[]): T => xs[r.int(xs.length)]!;

/** Draws a mix: each fault on with probability ½, at a rate drawn from a few orders of magnitude. */
export function swarmMix(r: Random): FaultMix {
  const on = () => r.next() < 0.5;
  return {
    link: {
      latencyMs: pick(r, [0.05, 0.5, 2, 20]),
      jitterMs: pick(r, [0, 0.1, 1, 5]),
      drop: on() ? pick(r, [0.0005, 0.002, 0.01]) : 0,
      duplicate: on() ? pick(r, [0.0005, 0.002, 0.01]) : 0,
      reorder: on() ? pick(r, [0.001, 0.01, 0.05]) : 0,
    },
    partitions: on(),
    asymmetric: on(),
    crashes: on(),
    skew: on(),
  };
}

/** One line describing a mix, for traces and failure reports. */
export function describeMix(m: FaultMix): string {
  const l = m.link;
  const parts = [`latency ${l.latencyMs}+exp(${l.jitterMs}) ms`];
  if (l.drop) parts.push(`drop ${l.drop}`);
  if (l.duplicate) parts.push(`dup ${l.duplicate}`);
  if (l.reorder) parts.push(`reorder ${l.reorder}`);
  if (m.partitions) parts.push(m.asymmetric ? "partitions (some one-way)" : "partitions");
  if (m.crashes) parts.push("crashes");
  if (m.skew) parts.push("clock skew");
  return parts.join(", ");
}

/** What {@link scheduleFaults} does to nodes: the harness restarts their processes. */
export interface FaultHooks {
  crash?(node: string): void;
  restart?(node: string): void;
}

/**
 * Schedules the mix's partitions and crashes between `from` and `to` (virtual
 * ms); by `to` every partition is healed and every node is up again, so a run
 * can check liveness after it.
 */
export function scheduleFaults(
  net: SimNetwork,
  mix: FaultMix,
  nodes: readonly string[],
  from: number,
  to: number,
  hooks: FaultHooks = {},
): void {
  const sim = net.sim;
  const r = sim.random;
  const span = to - from;
  if (mix.partitions && nodes.length > 1) {
    const n = 1 + r.int(3);
    for (let i = 0; i < n; i++) {
      const start = from + r.next() * span * 0.8;
      const end = Math.min(to, start + r.next() * span * 0.3);
      const cut = nodes.filter(() => r.next() < 0.5);
      const side = cut.length > 0 && cut.length < nodes.length ? cut : [nodes[0]!];
      const rest = nodes.filter((x) => !side.includes(x));
      const oneWay = mix.asymmetric && r.next() < 0.5;
      sim.at(
        start,
        () => {
          const heal = net.partition(side, rest, oneWay);
          sim.at(end, heal, "heal");
        },
        "partition",
      );
    }
  }
  if (mix.crashes) {
    const n = 1 + r.int(2);
    for (let i = 0; i < n; i++) {
      const node = nodes[r.int(nodes.length)]!;
      const at = from + r.next() * span * 0.8;
      const back = Math.min(to, at + 1 + r.next() * span * 0.2);
      sim.at(
        at,
        () => {
          if (net.isDown(node)) return;
          net.crash(node);
          hooks.crash?.(node);
          sim.at(
            back,
            () => {
              net.restart(node);
              hooks.restart?.(node);
            },
            "restart",
          );
        },
        "crash",
      );
    }
  }
}
