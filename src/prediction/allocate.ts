/**
 * Sharing a link's capacity across its flows: weighted max-min fairness,
 * computed by water-filling (as in Google's BwE). Every flow's share rises in
 * proportion to its weight until the flow has all it asks for or the capacity
 * is spent; what a satisfied flow leaves goes to the others, by weight.
 */
import { invalidArg } from "../errors.js";

/** A flow's priority class; each maps to a weight. */
export type FlowClass = "migration" | "consensus" | "sync" | "bulk" | "background";

/** Every {@link FlowClass}, most important first. */
export const FLOW_CLASSES: readonly FlowClass[] = Object.freeze([
  "migration",
  "consensus",
  "sync",
  "bulk",
  "background",
]);

/**
 * Default class weights: migration > consensus = sync > bulk > background,
 * each level twice the next, so a migration gets 8 times a background flow's
 * share when both want more than the link has.
 */
export const DEFAULT_CLASS_WEIGHTS: Readonly<Record<FlowClass, number>> = Object.freeze({
  migration: 8,
  consensus: 4,
  sync: 4,
  bulk: 2,
  background: 1,
});

/** One flow on a link. */
export interface Flow {
  /** Unique among the flows allocated together. */
  id: string;
  /** Weight within its class, multiplied by the class's weight; finite and > 0. @default 1 */
  weight?: number;
  /** The most the flow can use, bits/s (≥ 0). @default unlimited */
  demandBps?: number;
  /** Priority class. @default "bulk" */
  class?: FlowClass;
}

/** Options of {@link allocate}. */
export interface AllocateOptions {
  /** Weights of the classes, each finite and > 0; a class left out keeps its default. @default DEFAULT_CLASS_WEIGHTS */
  classWeights?: Partial<Record<FlowClass, number>>;
}

function positive(name: string, v: unknown): number {
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0)
    throw invalidArg(name, "a finite number > 0", v);
  return v;
}

/**
 * Each flow's rate, in whole bits/s: the weighted max-min fair share of
 * `capacityBps`. The rates never add up to more than the capacity, no flow gets
 * more than its demand, and when the demands add up to the capacity or more the
 * rates add up to the capacity (rounded down to whole bits/s).
 * @throws DWCPError `ERR_INVALID_ARG` for a bad capacity, flow, weight or duplicate id
 */
export function allocate(
  capacityBps: number,
  flows: readonly Flow[],
  options: AllocateOptions = {},
): Map<string, number> {
  if (typeof capacityBps !== "number" || !Number.isFinite(capacityBps) || capacityBps < 0)
    throw invalidArg("capacityBps", "a finite number ≥ 0", capacityBps);
  if (!Array.isArray(flows)) throw invalidArg("flows", "an array", flows);
  const classWeights = { ...DEFAULT_CLASS_WEIGHTS };
  for (const c of FLOW_CLASSES) {
    const w = options.classWeights?.[c];
    if (w !== undefined) classWeights[c] = positive(`classWeights.${c}`, w);
  }
  const n = flows.length;
  const ids = new Set<string>();
  const weight = new Float64Array(n);
  const demand = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    // Flows may come from a caller's configuration: nothing about them is taken on trust.
    const f: unknown = flows[i];
    if (typeof f !== "object" || f === null) throw invalidArg(`flows[${i}]`, "a flow", f);
    const { id, class: cls = "bulk", weight: w = 1, demandBps: d = Number.POSITIVE_INFINITY } = f as Flow;
    if (typeof id !== "string" || ids.has(id)) throw invalidArg(`flows[${i}].id`, "a unique string", id);
    ids.add(id);
    if (!FLOW_CLASSES.includes(cls))
      throw invalidArg(`flows[${i}].class`, `one of ${FLOW_CLASSES.join(", ")}`, cls);
    weight[i] = classWeights[cls] * positive(`flows[${i}].weight`, w);
    if (typeof d !== "number" || Number.isNaN(d) || d < 0)
      throw invalidArg(`flows[${i}].demandBps`, "a number ≥ 0", d);
    demand[i] = Math.floor(d);
  }

  // Water-filling: in order of demand per unit of weight, each flow either fits
  // under its share of what is left (and takes its demand) or no later flow
  // fits either (and all of them share the rest by weight).
  const key = Array.from(demand, (d, i) => d / weight[i]!);
  const order = [...Array(n).keys()].sort((a, b) => (key[a]! < key[b]! ? -1 : key[a]! > key[b]! ? 1 : a - b));
  const fair = new Float64Array(n);
  let left = capacityBps;
  let weights = order.reduce((s, i) => s + weight[i]!, 0);
  for (let k = 0; k < n; k++) {
    const i = order[k]!;
    if (demand[i]! <= (left * weight[i]!) / weights) {
      fair[i] = demand[i]!;
      left -= demand[i]!;
      weights -= weight[i]!;
      continue;
    }
    const level = left / weights;
    for (let j = k; j < n; j++) fair[order[j]!] = Math.min(level * weight[order[j]!]!, demand[order[j]!]!);
    break;
  }

  // Whole bits/s: round down, then hand the bits lost to rounding back, one each
  // to the flows that lost the most, while the capacity and their demands allow.
  const rate = Array.from(fair, Math.floor);
  const cap = Math.floor(capacityBps);
  let spare = cap - rate.reduce((s, r) => s + r, 0);
  const short = order
    .filter((i) => rate[i]! < demand[i]!)
    .sort((a, b) => fair[b]! - rate[b]! - (fair[a]! - rate[a]!));
  for (let k = 0; spare > 0 && k < short.length; k++, spare--) rate[short[k]!]!++;
  // Floating-point sums may leave the floors one bit over the capacity.
  for (let k = n - 1; spare < 0 && k >= 0; k--) {
    const i = order[k]!;
    if (rate[i]! > 0) {
      rate[i]!--;
      spare++;
    }
  }
  return new Map(flows.map((f, i) => [f.id, rate[i]!]));
}
