/**
 * ITP's online placement: for each VM, filter → score → select over a seeded,
 * limited scan of the hosts, then book the VM so the next one sees it.
 *
 * Pure: no I/O, no clock; the only randomness is the seeded shuffle, so the
 * same state, VMs, options and seed give the same plan on every machine. The
 * plan is a proposal: committing it (comparing each touched host's revision)
 * is the commit layer's job.
 *
 * The scan follows Nomad's feasibility iterators: one seeded permutation of
 * the hosts per call, and each VM resumes where the previous one stopped, so
 * successive VMs look at different hosts without reshuffling.
 */
import { seededRandom } from "../env/index.js";
import { DWCPError } from "../errors.js";
import { type CandidateLimit, feasibleWanted, permutation } from "./candidates.js";
import {
  type CandidateExplanation,
  metricsOf,
  type PlacementMetrics,
  scoreRecord,
  unplacedReason,
  type VmExplanation,
} from "./explain.js";
import { checkHost, describeFilter, FILTER_INDEX, FILTERS, prepareVm, type VmContext } from "./filters.js";
import type { ClusterState, Placement, ScoreWeights, SpreadConstraint, VmRequest } from "./model.js";
import { SCORES, type ScoreInputs, scoreHost, scoreInputs, weightVector } from "./scores.js";
import { Usage } from "./usage.js";
import { weightsFor } from "./weights.js";

/** One VM's scan so far. */
interface Scan {
  best: number;
  bestTotal: number;
  evaluated: number;
  scored: number;
}

/** Options of {@link place} and {@link Placer}. */
export interface PlaceOptions {
  /** Seed of the host shuffle. @default 0 */
  readonly seed?: number;
  /** Score weights. @default weightsFor("datacenter") */
  readonly weights?: ScoreWeights;
  /** Feasible hosts scored per VM. @default "log2" (Nomad's ⌈log₂ n⌉, at least 2) */
  readonly limit?: CandidateLimit;
  /** Build a {@link VmExplanation} per VM (every candidate, with reasons and scores). @default false */
  readonly explain?: boolean;
  /** Spread for grouped VMs that carry none (see `defaultSpreadFor(mode)`). @default none */
  readonly defaultSpread?: SpreadConstraint;
}

/** A VM that found no host. */
export interface Unplaced {
  readonly vm: string;
  /** One line: how many hosts were evaluated and what removed them. */
  readonly reason: string;
  readonly metrics: PlacementMetrics;
}

/** The outcome of placing one VM. */
export interface VmOutcome {
  /** The chosen host, absent when none passed the filters. */
  readonly host?: string;
  readonly metrics: PlacementMetrics;
  /** Present when the options ask for explanations. */
  readonly explanation?: VmExplanation;
}

/** The plan of {@link place}. */
export interface PlaceResult {
  /** Placements in the order the VMs were given. A moved VM appears with its new (or same) host. */
  readonly placements: Placement[];
  readonly unplaced: Unplaced[];
  /** One per VM, in order, when the options ask for explanations. */
  readonly explanations?: VmExplanation[];
}

/**
 * A placer over one cluster state: places VMs one at a time, each booked in
 * its usage so the next placement sees it. Keeps the state it was built from
 * unchanged.
 */
export class Placer {
  /** The live usage (what the state held plus everything placed since). */
  readonly usage: Usage;
  private readonly inputs: ScoreInputs;
  private readonly weights: Float64Array;
  private readonly wanted: number;
  private readonly order: Int32Array;
  private readonly explain: boolean;
  private readonly defaultSpread: SpreadConstraint | undefined;
  private cursor = 0;
  private readonly counters = new Int32Array(FILTERS.length);
  private readonly scratch = new Float64Array(SCORES.length);

  /** @throws DWCPError ERR_INVALID_ARG on a malformed state, weights or limit. */
  constructor(state: ClusterState, options: PlaceOptions = {}) {
    this.usage = new Usage(state);
    this.inputs = scoreInputs(state);
    this.weights = weightVector(options.weights ?? weightsFor("datacenter"));
    const n = state.hosts.length;
    this.wanted = feasibleWanted(options.limit ?? "log2", n);
    this.order = permutation(n, seededRandom(options.seed ?? 0));
    this.explain = options.explain ?? false;
    this.defaultSpread = options.defaultSpread;
  }

  /**
   * Places `vm`: filters hosts in the seeded order until enough pass, scores
   * those, takes the best (ties: the first seen) and books it. A VM already
   * allocated (a move) is taken off its host first and put back if it finds
   * none; its current host is always evaluated, so staying is always an option.
   * @throws DWCPError ERR_INVALID_ARG on a malformed request.
   */
  place(vm: VmRequest): VmOutcome {
    const usage = this.usage;
    const previous = typeof vm?.id === "string" ? usage.remove(vm.id) : undefined;
    let ctx: VmContext;
    try {
      ctx = prepareVm(vm, usage, this.defaultSpread);
    } catch (e) {
      if (previous) usage.add(usage.index.get(previous.host)!, vm.id, previous.resources, previous.group);
      throw e;
    }
    const counters = this.counters;
    counters.fill(0);
    const candidates: CandidateExplanation[] | undefined = this.explain ? [] : undefined;
    const n = this.order.length;
    const scan: Scan = { best: -1, bestTotal: Number.NEGATIVE_INFINITY, evaluated: 0, scored: 0 };
    const current = vm.currentHost === undefined ? undefined : usage.index.get(vm.currentHost);
    if (current !== undefined) this.consider(ctx, current, scan, candidates);
    let i = 0;
    for (; i < n && scan.scored < this.wanted; i++) {
      const h = this.order[(this.cursor + i) % n]!;
      if (h !== current) this.consider(ctx, h, scan, candidates);
    }
    if (n > 0) this.cursor = (this.cursor + i) % n;
    const { best, evaluated, scored } = scan;
    const metrics = metricsOf(evaluated, scored, counters);
    let host: string | undefined;
    if (best >= 0) {
      usage.add(best, vm.id, vm.resources, vm.group);
      host = usage.hosts[best]!.id;
    } else if (previous) {
      // Nowhere to go: it stays where it was, as the cluster still holds it there.
      usage.add(usage.index.get(previous.host)!, vm.id, previous.resources, previous.group);
    }
    const out: { host?: string; metrics: PlacementMetrics; explanation?: VmExplanation } = { metrics };
    if (host !== undefined) out.host = host;
    if (candidates) {
      out.explanation =
        host === undefined ? { vm: vm.id, metrics, candidates } : { vm: vm.id, host, metrics, candidates };
    }
    return out;
  }

  /** Filters host `h`, scores it if it passes, and keeps the best so far in `scan`. */
  private consider(
    ctx: VmContext,
    h: number,
    scan: Scan,
    candidates: CandidateExplanation[] | undefined,
  ): void {
    const usage = this.usage;
    scan.evaluated++;
    const f = checkHost(ctx, usage, h);
    if (f !== undefined) {
      this.counters[FILTER_INDEX[f]]!++;
      candidates?.push({ host: usage.hosts[h]!.id, filter: f, reason: describeFilter(f, ctx, usage, h) });
      return;
    }
    scan.scored++;
    let out: Float64Array | undefined;
    if (candidates) {
      out = this.scratch;
      out.fill(0);
    }
    const total = scoreHost(ctx, usage, this.inputs, h, this.weights, out);
    if (candidates && out) {
      candidates.push({
        host: usage.hosts[h]!.id,
        scores: scoreRecord(out),
        total: Math.round(total * 100) / 100,
      });
    }
    // Strictly greater: ties go to the host seen first, which the seed decides.
    if (total > scan.bestTotal) {
      scan.bestTotal = total;
      scan.best = h;
    }
  }
}

/**
 * Places `vms` onto `state`'s hosts one after another (each sees the ones
 * before it) and returns the plan. Deterministic: the same inputs and seed
 * give the same plan.
 * @throws DWCPError ERR_INVALID_ARG on a malformed state, request or option, or a VM id given twice.
 */
export function place(
  state: ClusterState,
  vms: readonly VmRequest[],
  options: PlaceOptions = {},
): PlaceResult {
  const seen = new Set<string>();
  for (const vm of vms) {
    if (seen.has(vm?.id)) throw new DWCPError("ERR_INVALID_ARG", `vm ${JSON.stringify(vm?.id)} given twice`);
    seen.add(vm?.id);
  }
  const placer = new Placer(state, options);
  const placements: Placement[] = [];
  const unplaced: Unplaced[] = [];
  const explanations: VmExplanation[] | undefined = options.explain ? [] : undefined;
  for (const vm of vms) {
    const o = placer.place(vm);
    if (o.host !== undefined) placements.push({ vm: vm.id, host: o.host });
    else unplaced.push({ vm: vm.id, reason: unplacedReason(vm.id, o.metrics), metrics: o.metrics });
    if (explanations && o.explanation) explanations.push(o.explanation);
  }
  return explanations ? { placements, unplaced, explanations } : { placements, unplaced };
}
