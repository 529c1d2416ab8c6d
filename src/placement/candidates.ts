/**
 * Candidate limiting: how many feasible hosts a placement scores before it
 * stops looking, and the seeded order it looks in. Scoring every host costs
 * O(hosts) per VM; a limited, shuffled scan costs O(limit) when most hosts
 * fit, and different placers with different seeds look at different hosts
 * first, so their plans collide less.
 */

import type { Random } from "../env/index.js";
import { invalidArg } from "../errors.js";

/**
 * How many feasible hosts to score per VM:
 * - `"log2"`: ⌈log₂ n⌉, at least 2 (Nomad's limit for service jobs) — the default;
 * - `"adaptive"`: kube-scheduler's percentageOfNodesToScore: 50 % of the hosts
 *   less 1 % per 125 hosts, at least 5 %, at least 100 hosts (all below 100);
 * - `"all"`: every host;
 * - a number: that many (at least 1).
 */
export type CandidateLimit = "log2" | "adaptive" | "all" | number;

/** The number of feasible hosts to find among `n` under `limit`. */
export function feasibleWanted(limit: CandidateLimit, n: number): number {
  if (n <= 0) return 0;
  if (limit === "all") return n;
  if (limit === "log2") return Math.min(n, Math.max(2, Math.ceil(Math.log2(n))));
  if (limit === "adaptive") {
    if (n < 100) return n;
    const pct = Math.max(5, 50 - n / 125);
    return Math.min(n, Math.max(100, Math.floor((n * pct) / 100)));
  }
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1) {
    throw invalidArg("limit", '"log2", "adaptive", "all" or an integer ≥ 1', limit);
  }
  return Math.min(n, limit);
}

/** A seeded Fisher–Yates permutation of 0 … n − 1. */
export function permutation(n: number, random: Random): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = random.int(i + 1);
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}
