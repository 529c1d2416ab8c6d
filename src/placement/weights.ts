/**
 * Per-mode defaults for the soft scores. A datacenter (v1) cluster is one
 * failure domain with cheap links: fill hosts (bin-pack) so whole hosts stay
 * free for large VMs and idle ones can be powered down. An internet (v3)
 * cluster spans regions over the WAN: spread hosts and geographies so one
 * region's loss takes few replicas, and weigh RTT and moves more, since both
 * cross slow links. Hybrid sits between.
 */
import type { Mode } from "../mode/classifier.js";
import type { ScoreWeights, SpreadConstraint } from "./model.js";

const WEIGHTS: Readonly<Record<Mode, ScoreWeights>> = {
  datacenter: Object.freeze({
    binpack: 10,
    balance: 3,
    spread: 5,
    affinity: 5,
    antiAffinity: 5,
    network: 2,
    migration: 5,
    price: 1,
  }),
  internet: Object.freeze({
    binpack: -4,
    balance: 2,
    spread: 10,
    affinity: 5,
    antiAffinity: 8,
    network: 6,
    migration: 8,
    price: 3,
  }),
  hybrid: Object.freeze({
    binpack: 4,
    balance: 3,
    spread: 8,
    affinity: 5,
    antiAffinity: 6,
    network: 4,
    migration: 6,
    price: 2,
  }),
};

/**
 * The default score weights of `mode`: datacenter bin-packs (binpack +10),
 * internet spreads (binpack −4, spread 10, network 6, migration 8), hybrid in between.
 */
export function weightsFor(mode: Mode): ScoreWeights {
  return WEIGHTS[mode];
}

/**
 * The spread a grouped VM without its own constraint gets in `mode`: on the
 * internet, a soft spread over regions (maxSkew 1), so replicas land in
 * different geographies unless something outweighs it; none elsewhere.
 */
export function defaultSpreadFor(mode: Mode): SpreadConstraint | undefined {
  return mode === "internet" ? { topologyKey: "region", maxSkew: 1, mode: "soft" } : undefined;
}
