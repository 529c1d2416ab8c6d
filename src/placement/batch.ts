/**
 * ITP's batch placement: a whole set of VMs placed at once (rebalancing,
 * defragmentation, the MILP's fallback), packed for an objective — fewest
 * hosts in use, or lowest price of the hosts in use — rather than placed one
 * by one in arrival order as the online path does.
 *
 * Three steps, all on the online pipeline's bookkeeping ({@link Usage}) and
 * hard filters ({@link checkHost}), plus the two rules the batch solver's
 * checker reads over the whole plan (a hard anti-affinity member shares no
 * host with its group, soft members included; a hard spread counts the
 * statically eligible domains):
 * 1. **Construct.** VMs in decreasing order of their dominant normalised
 *    resource (ties: larger hard groups first, then the seed). Each goes to the
 *    open host it fills best (best fit); when none admits it, a host is opened:
 *    the one with the most room (`hosts`) or the lowest price per unit of room
 *    (`cost`). Hosts already in use cost nothing more, so they come first.
 *    Built with both opening rules; the better plan (more VMs placed first) is kept.
 * 2. **Improve.** A local search over the set of open hosts: close one or two
 *    open hosts and open up to two closed ones in their place (three for one,
 *    for cost); candidates in order of the objective they would reach (for
 *    `hosts`, the roomiest set first), the first that packs is taken. A set
 *    packs when the displaced VMs fit in it (best fit, with one ejection: a VM
 *    moved aside to make room), else when every batch VM repacks into it under
 *    a few orderings, else when a bounded depth-first search finds a packing
 *    (tight sets defeat every greedy order). Only moves that improve the score
 *    (VMs placed, the objective, the other figure) are accepted, so the search
 *    never makes a plan worse. VMs still unplaced are tried again at the end.
 * 3. **Check.** The plan goes through {@link verifyPlan}; one that fails (a
 *    bug) is never returned: the constructed plan is, or the error surfaces.
 *
 * Deterministic: the work is bounded by a count of repacks, and the seed
 * breaks ties; the time limit is a safety net (when it fires, the plan depends
 * on the machine's speed, and {@link BatchStats.timedOut} says so).
 */
import { type Clock, nodeEnv, type Random, seededRandom } from "../env/index.js";
import { DWCPError, invalidArg } from "../errors.js";
import { metricsOf, unplacedReason } from "./explain.js";
import { checkHost, FILTER_INDEX, FILTERS, type FilterName, prepareVm, type VmContext } from "./filters.js";
import { hostAdmits, verifyPlan } from "./milp.js";
import type { ClusterState, Placement, VmRequest } from "./model.js";
import type { PlaceResult, Unplaced } from "./pipeline.js";
import { Usage } from "./usage.js";

/** What a batch minimises: hosts in use, or the sum of their `price`. */
export type BatchObjective = "hosts" | "cost";

/** Options of {@link placeBatch}. */
export interface BatchOptions {
  /** @default "hosts" */
  readonly objective?: BatchObjective;
  /** Breaks ties between equal VMs and hosts, and shuffles the extra repack orders. @default 0 */
  readonly seed?: number;
  /** Run the local search after construction. @default true */
  readonly localSearch?: boolean;
  /** Most repacks (each tries one host set) the local search may spend. @default 4000 */
  readonly maxRepacks?: number;
  /**
   * Nodes (one VM placed each) of the bounded exact search a host set gets
   * when every greedy order fails to pack it; 0 turns the search off.
   * @default 3000
   */
  readonly exactNodes?: number;
  /** Safety net on the local search's run time, in ms of `clock`. @default 2000 */
  readonly timeLimitMs?: number;
  /** Where the time limit reads the time. @default nodeEnv.clock */
  readonly clock?: Clock;
}

/** A plan's standing: more VMs placed first, then the objective, then the other figure. */
export interface BatchScore {
  readonly placed: number;
  readonly hostsUsed: number;
  readonly cost: number;
}

/** How a batch went. */
export interface BatchStats {
  readonly objective: BatchObjective;
  /** The constructed plan's score (before the local search). */
  readonly constructed: BatchScore;
  /** The returned plan's score. */
  readonly final: BatchScore;
  /** Host sets tried by the local search. */
  readonly repacks: number;
  /** Moves the local search took. */
  readonly moves: number;
  /** The time limit cut the search short (the plan then depends on the machine's speed). */
  readonly timedOut: boolean;
  /** The searched plan failed {@link verifyPlan} and the constructed one was returned (a bug if ever true). */
  readonly fellBack: boolean;
}

/** The plan of {@link placeBatch}: {@link PlaceResult} with the search's figures. */
export interface BatchResult extends PlaceResult {
  readonly stats: BatchStats;
}

const DEFAULT_MAX_REPACKS = 4000;
const DEFAULT_TIME_LIMIT_MS = 2000;
/** Orderings a full repack tries (dominant, sum, each resource, then seeded jitters of the dominant order). */
const REPACK_ORDERS = 6;
/** Open hosts (the emptiest) that moves closing two hosts, or opening three, start from. */
const WIDE_MOVE_HOSTS = 24;
const DEFAULT_EXACT_NODES = 3000;
/** Prices are compared with this slack, so binary noise never counts as an improvement. */
const EPS = 1e-9;

/** A group's hard spread rule over the whole plan, as the batch checker reads it. */
interface SpreadRule {
  /** Largest skew allowed: maxSkew, or the fixed allocations' own skew if larger. */
  readonly allowed: number;
  /** Per host: its eligible domain's index, −1 for a domain that is not eligible, −2 for no label. */
  readonly domain: Int32Array;
  /** The group's VMs per eligible domain (fixed allocations included). */
  readonly counts: Int32Array;
  /** Batch VMs bound by the rule (index into the batch): they may not land on a host without the label. */
  readonly bound: ReadonlySet<number>;
}

/** A candidate move: the hosts it closes and opens, and the score it would reach. */
interface Move {
  readonly out: readonly number[];
  readonly into: readonly number[];
  readonly primary: number;
  readonly secondary: number;
  /** Room the new host set leaves over the batch's demand (the scarcest resource, as a fraction of the demand). */
  readonly slack: number;
}

const ACTIVE_RESOURCES = ["cpu", "memory", "disk", "gpu"] as const;

/** The batch's packing state: the live usage plus the batch-wide rules and each VM's host. */
class Packing {
  readonly usage: Usage;
  readonly n: number;
  readonly ctx: VmContext[];
  /** Host of each batch VM (−1: unplaced). */
  readonly where: Int32Array;
  /** Hosts holding allocations outside the batch: in use whatever the plan does. */
  readonly fixedUsed: Uint8Array;
  /** VMs outside the batch per host. */
  readonly fixedVms: Int32Array;
  /**
   * Each host's class: hosts of one class are interchangeable while they hold
   * no batch VM (same room, labels, taints, limits, price), so a search tries
   * one of them. A host with fixed allocations is a class of its own.
   */
  readonly classOf: Int32Array;
  /** Each VM's dominant normalised demand (its sort key). */
  readonly size: Float64Array;
  /** Each VM's summed normalised demand. */
  readonly sum: Float64Array;
  /** Allocatable and used amounts per active resource (views of the usage's arrays). */
  private readonly alloc: Float64Array[];
  private readonly used: Float64Array[];
  /** Per active resource and host: allocatable less the fixed allocations (before any batch VM lands). */
  private readonly left: Float64Array[];
  /** Per active resource: the largest allocatable amount (the yardstick). */
  private readonly norm: number[];
  /** Each VM's demand per active resource. */
  private readonly demand: number[][];
  /** group → hard anti-affinity members of the batch per host. */
  private readonly hardPlaced = new Map<string, Int32Array>();
  /** group → its hard spread rules. */
  private readonly rules = new Map<string, SpreadRule[]>();

  constructor(
    state: ClusterState,
    readonly vms: readonly VmRequest[],
  ) {
    const usage = new Usage(state);
    this.usage = usage;
    this.n = state.hosts.length;
    // The batch's VMs are being (re)placed: what they hold now does not count.
    for (const v of vms) usage.remove(v.id);
    this.fixedUsed = new Uint8Array(this.n);
    for (let h = 0; h < this.n; h++) if (usage.vms[h]! > 0) this.fixedUsed[h] = 1;
    this.fixedVms = Int32Array.from(usage.vms);
    this.where = new Int32Array(vms.length).fill(-1);
    this.ctx = vms.map((v) => {
      const s = v.spread;
      if (s && v.group !== undefined && (!Number.isInteger(s.maxSkew) || s.maxSkew < 1)) {
        throw invalidArg(`vm ${v.id} spread.maxSkew`, "an integer ≥ 1", s.maxSkew);
      }
      // The spread is checked here over the whole plan (static eligible
      // domains, as the checker counts them), not by the online filter's
      // reading of the live usage; the rest of the context is static.
      const { spread: _spread, ...rest } = v;
      return prepareVm(rest, usage);
    });

    const allAlloc = [usage.allocCpu, usage.allocMemory, usage.allocDisk, usage.allocGpu];
    const allUsed = [usage.usedCpu, usage.usedMemory, usage.usedDisk, usage.usedGpu];
    const pick = (c: VmContext, r: number) =>
      r === 0 ? c.cpu : r === 1 ? c.memory : r === 2 ? c.disk : c.gpu;
    this.alloc = [];
    this.used = [];
    this.norm = [];
    const active: number[] = [];
    ACTIVE_RESOURCES.forEach((_, r) => {
      if (!this.ctx.some((c) => pick(c, r) > 0)) return;
      let max = 0;
      for (let h = 0; h < this.n; h++) max = Math.max(max, allAlloc[r]![h]!);
      active.push(r);
      this.alloc.push(allAlloc[r]!);
      this.used.push(allUsed[r]!);
      this.norm.push(max > 0 ? max : 1);
    });
    this.left = active.map((_, k) => Float64Array.from(this.alloc[k]!, (a, h) => a - this.used[k]![h]!));
    this.demand = this.ctx.map((c) => active.map((r) => pick(c, r)));
    this.size = new Float64Array(vms.length);
    this.sum = new Float64Array(vms.length);
    this.demand.forEach((d, i) => {
      let mx = 0;
      let s = 0;
      d.forEach((x, k) => {
        const f = x / this.norm[k]!;
        mx = Math.max(mx, f);
        s += f;
      });
      this.size[i] = mx;
      this.sum[i] = s;
    });
    this.buildRules(state);
    const classes = new Map<string, number>();
    this.classOf = new Int32Array(this.n);
    for (let h = 0; h < this.n; h++) {
      const host = state.hosts[h]!;
      const key = this.fixedUsed[h]
        ? `#${h}`
        : JSON.stringify([
            this.left.map((l) => l[h]),
            host.labels ?? {},
            host.taints ?? [],
            host.maxVms ?? null,
            host.draining ?? false,
            host.price ?? 0,
          ]);
      let c = classes.get(key);
      if (c === undefined) {
        c = classes.size;
        classes.set(key, c);
      }
      this.classOf[h] = c;
    }
  }

  /** How full host `h` is: the mean over the active resources of its used share (0 when it has no room). */
  fullness(h: number): number {
    let s = 0;
    for (let k = 0; k < this.alloc.length; k++) {
      const a = this.alloc[k]![h]!;
      s += a > 0 ? this.used[k]![h]! / a : 1;
    }
    return this.alloc.length > 0 ? s / this.alloc.length : 1;
  }

  /** True when host `h` holds no VM of the batch. */
  holdsNoBatchVm(h: number): boolean {
    return this.usage.vms[h] === this.fixedVms[h];
  }

  /** The hard spread rules of each group, with the eligible domains as the checker defines them. */
  private buildRules(state: ClusterState): void {
    const members = new Map<string, number[]>();
    this.vms.forEach((v, i) => {
      if (v.group === undefined) return;
      const m = members.get(v.group);
      if (m) m.push(i);
      else members.set(v.group, [i]);
      if (v.antiAffinity === "hard" && !this.hardPlaced.has(v.group)) {
        this.hardPlaced.set(v.group, new Int32Array(this.n));
      }
    });
    const inBatch = new Set(this.vms.map((v) => v.id));
    for (const [group, idx] of members) {
      const seen = new Set<string>();
      const rules: SpreadRule[] = [];
      for (const i of idx) {
        const s = this.vms[i]!.spread;
        if (s?.mode !== "hard" || seen.has(`${s.topologyKey}\0${s.maxSkew}`)) continue;
        seen.add(`${s.topologyKey}\0${s.maxSkew}`);
        const key = s.topologyKey;
        const bound = new Set(
          idx.filter((j) => {
            const t = this.vms[j]!.spread;
            return t?.mode === "hard" && t.topologyKey === key;
          }),
        );
        const names = new Set<string>();
        for (const h of state.hosts) {
          const d = h.labels?.[key];
          if (d !== undefined && [...bound].some((j) => hostAdmits(h, this.vms[j]!))) names.add(d);
        }
        if (names.size === 0) continue;
        const sorted = [...names].sort();
        const at = new Map(sorted.map((d, k) => [d, k]));
        const domain = new Int32Array(this.n);
        state.hosts.forEach((h, k) => {
          const d = h.labels?.[key];
          domain[k] = d === undefined ? -2 : (at.get(d) ?? -1);
        });
        const counts = new Int32Array(sorted.length);
        for (const a of state.allocations) {
          if (a.group !== group || inBatch.has(a.vm)) continue;
          const h = this.usage.index.get(a.host);
          if (h !== undefined && domain[h]! >= 0) counts[domain[h]!]!++;
        }
        const fixedSkew = Math.max(...counts) - Math.min(...counts);
        rules.push({
          allowed: Math.max(s.maxSkew, sorted.length < 2 ? 0 : fixedSkew),
          domain,
          counts,
          bound,
        });
      }
      if (rules.length > 0) this.rules.set(group, rules);
    }
  }

  /** The first rule VM `i` breaks on host `h`, or undefined when it may land there now. */
  blocker(i: number, h: number): FilterName | undefined {
    const f = checkHost(this.ctx[i]!, this.usage, h);
    if (f !== undefined) return f;
    const g = this.vms[i]!.group;
    if (g === undefined) return undefined;
    // A soft member may not join a hard member of its group either: the hard one would share.
    const hp = this.hardPlaced.get(g);
    if (hp && hp[h]! > 0) return "antiAffinity";
    const rules = this.rules.get(g);
    if (rules) {
      for (const r of rules) {
        const d = r.domain[h]!;
        if (d === -2 && r.bound.has(i)) return "spread";
        if (d >= 0) {
          let min = Number.POSITIVE_INFINITY;
          for (const c of r.counts) if (c < min) min = c;
          // The kube-scheduler test against the least loaded eligible domain:
          // held at every step, max − min never exceeds the allowance.
          if (r.counts[d]! + 1 - min > r.allowed) return "spread";
        }
      }
    }
    return undefined;
  }

  /** True when VM `i` may land on host `h` now. */
  fits(i: number, h: number): boolean {
    return this.blocker(i, h) === undefined;
  }

  /** Books VM `i` on host `h`. */
  put(i: number, h: number): void {
    const v = this.vms[i]!;
    this.usage.add(h, v.id, v.resources, v.group);
    this.where[i] = h;
    this.bump(i, h, 1);
  }

  /** Takes VM `i` off its host. */
  take(i: number): void {
    const h = this.where[i]!;
    if (h < 0) return;
    this.usage.remove(this.vms[i]!.id);
    this.where[i] = -1;
    this.bump(i, h, -1);
  }

  private bump(i: number, h: number, d: number): void {
    const v = this.vms[i]!;
    if (v.group === undefined) return;
    if (v.antiAffinity === "hard") this.hardPlaced.get(v.group)![h]! += d;
    for (const r of this.rules.get(v.group) ?? []) {
      const k = r.domain[h]!;
      if (k >= 0) r.counts[k]! += d;
    }
  }

  /** Every hard spread holds over the whole plan (a move that took VMs away can break one). */
  spreadHolds(): boolean {
    for (const rules of this.rules.values()) {
      for (const r of rules) {
        let min = Number.POSITIVE_INFINITY;
        let max = Number.NEGATIVE_INFINITY;
        for (const c of r.counts) {
          min = Math.min(min, c);
          max = Math.max(max, c);
        }
        if (max - min > r.allowed) return false;
      }
    }
    return true;
  }

  /** Free room of host `h`: the sum over the active resources of what is left, in yardsticks. */
  room(h: number): number {
    let s = 0;
    for (let k = 0; k < this.alloc.length; k++) s += (this.alloc[k]![h]! - this.used[k]![h]!) / this.norm[k]!;
    return s;
  }

  /** What host `h` offers the batch of active resource `k`: allocatable less the fixed allocations. */
  offer(h: number, k: number): number {
    return this.left[k]![h]!;
  }

  /** Number of active resources. */
  get resources(): number {
    return this.alloc.length;
  }

  /** VM `i`'s demand of active resource `k`. */
  need(i: number, k: number): number {
    return this.demand[i]![k]!;
  }

  /** Hosts in use (fixed allocations or batch VMs). */
  inUse(h: number): boolean {
    return this.usage.vms[h]! > 0;
  }

  /** The plan's score. */
  score(): BatchScore {
    let placed = 0;
    for (const h of this.where) if (h >= 0) placed++;
    let hostsUsed = 0;
    let cost = 0;
    for (let h = 0; h < this.n; h++) {
      if (!this.inUse(h)) continue;
      hostsUsed++;
      cost += this.usage.hosts[h]!.price ?? 0;
    }
    return { placed, hostsUsed, cost };
  }

  /** The plan, in the order of the batch. */
  placements(): Placement[] {
    const out: Placement[] = [];
    this.where.forEach((h, i) => {
      if (h >= 0) out.push({ vm: this.vms[i]!.id, host: this.usage.hosts[h]!.id });
    });
    return out;
  }

  /** Why VM `i` has no host now: the filter counts over every host. */
  unplaced(i: number): Unplaced {
    const counters = new Int32Array(FILTERS.length);
    let scored = 0;
    for (let h = 0; h < this.n; h++) {
      const f = this.blocker(i, h);
      if (f === undefined) scored++;
      else counters[FILTER_INDEX[f]]!++;
    }
    const metrics = metricsOf(this.n, scored, counters);
    const vm = this.vms[i]!.id;
    return { vm, reason: unplacedReason(vm, metrics), metrics };
  }
}

/** Compares two scores for `objective`: negative when `a` is better. */
function compareScores(a: BatchScore, b: BatchScore, objective: BatchObjective): number {
  if (a.placed !== b.placed) return b.placed - a.placed;
  const [pa, sa] = objective === "hosts" ? [a.hostsUsed, a.cost] : [a.cost, a.hostsUsed];
  const [pb, sb] = objective === "hosts" ? [b.hostsUsed, b.cost] : [b.cost, b.hostsUsed];
  if (Math.abs(pa - pb) > EPS) return pa - pb;
  if (Math.abs(sa - sb) > EPS) return sa - sb;
  return 0;
}

/** The batch placer: construction, local search, and the orders and budgets they share. */
class BatchSearch {
  private readonly p: Packing;
  private readonly objective: BatchObjective;
  private readonly random: Random;
  /** Hosts in a seeded order: every scan walks them in it, so ties go the seed's way. */
  private readonly hostOrder: Int32Array;
  /** The batch VMs in decreasing dominant demand. */
  private readonly order: Int32Array;
  private readonly orders: Int32Array[];
  private readonly price: Float64Array;
  private readonly clock: Clock;
  private readonly deadline: number;
  private readonly maxRepacks: number;
  private readonly exactNodes: number;
  repacks = 0;
  moves = 0;
  timedOut = false;

  constructor(p: Packing, options: BatchOptions) {
    this.p = p;
    const objective = options.objective ?? "hosts";
    if (objective !== "hosts" && objective !== "cost") {
      throw invalidArg("objective", '"hosts" or "cost"', objective);
    }
    this.objective = objective;
    const maxRepacks = options.maxRepacks ?? DEFAULT_MAX_REPACKS;
    if (!Number.isInteger(maxRepacks) || maxRepacks < 0)
      throw invalidArg("maxRepacks", "an integer ≥ 0", maxRepacks);
    this.maxRepacks = maxRepacks;
    const exactNodes = options.exactNodes ?? DEFAULT_EXACT_NODES;
    if (!Number.isInteger(exactNodes) || exactNodes < 0)
      throw invalidArg("exactNodes", "an integer ≥ 0", exactNodes);
    this.exactNodes = exactNodes;
    const limit = options.timeLimitMs ?? DEFAULT_TIME_LIMIT_MS;
    if (typeof limit !== "number" || Number.isNaN(limit) || limit < 0) {
      throw invalidArg("timeLimitMs", "a number ≥ 0", limit);
    }
    this.clock = options.clock ?? nodeEnv.clock;
    this.deadline = this.clock.now() + limit;
    this.random = seededRandom(options.seed ?? 0);
    const n = p.n;
    this.hostOrder = shuffled(n, this.random);
    this.price = new Float64Array(n);
    for (let h = 0; h < n; h++) this.price[h] = p.usage.hosts[h]!.price ?? 0;

    // Hard groups are placed together when sizes tie: a large group needs its
    // hosts before small VMs have taken their last slots.
    const groupSize = new Map<string, number>();
    for (const v of p.vms) {
      if (v.group !== undefined && v.antiAffinity === "hard")
        groupSize.set(v.group, (groupSize.get(v.group) ?? 0) + 1);
    }
    const tie = shuffled(p.vms.length, this.random);
    const rank = new Int32Array(p.vms.length);
    tie.forEach((i, k) => {
      rank[i] = k;
    });
    const gs = (i: number) => groupSize.get(p.vms[i]!.group ?? "") ?? 0;
    const by = (key: (i: number) => number) =>
      Int32Array.from(
        [...p.vms.keys()].sort((a, b) => key(b) - key(a) || gs(b) - gs(a) || rank[a]! - rank[b]!),
      );
    this.order = by((i) => p.size[i]!);
    this.orders = [this.order, by((i) => p.sum[i]!)];
    for (let k = 0; k < p.resources; k++) this.orders.push(by((i) => p.need(i, k)));
    while (this.orders.length < REPACK_ORDERS) {
      // A seeded perturbation of the dominant order: sizes jittered by up to 30 %.
      const jitter = new Float64Array(p.vms.length);
      for (let i = 0; i < jitter.length; i++) jitter[i] = p.size[i]! * (0.85 + 0.3 * this.random.next());
      this.orders.push(by((i) => jitter[i]!));
    }
  }

  /**
   * Step 1: builds the plan with the objective's opening rule, and again with
   * the other's; keeps the better (more VMs placed first). On a tight
   * instance the cheapest hosts per unit of room may not take every VM where
   * the roomiest would, and the local search never gives up a placed VM.
   */
  construct(): void {
    const p = this.p;
    const other: BatchObjective = this.objective === "hosts" ? "cost" : "hosts";
    this.constructWith(this.objective);
    this.fill();
    const first = Int32Array.from(p.where);
    const firstScore = p.score();
    for (let i = 0; i < first.length; i++) p.take(i);
    this.constructWith(other);
    this.fill();
    if (compareScores(p.score(), firstScore, this.objective) >= 0) this.restore(first);
  }

  /**
   * Places the VMs still unplaced, until a pass places none: a host freed by
   * the search, or a group member that raised a spread's least loaded domain,
   * can make room for a VM that found none before.
   */
  fill(): void {
    const p = this.p;
    for (let progress = true; progress; ) {
      progress = false;
      for (const i of this.order) {
        if (p.where[i]! >= 0) continue;
        this.placeOne(i, this.objective);
        if (p.where[i]! >= 0) progress = true;
      }
    }
  }

  /** Each VM, largest first, to the open host it fills best, opening one by `rule` when none admits it. */
  private constructWith(rule: BatchObjective): void {
    for (const i of this.order) this.placeOne(i, rule);
  }

  /** VM `i` to the open host it fills best, or to the host `rule` opens when none admits it (or nowhere). */
  private placeOne(i: number, rule: BatchObjective): void {
    const p = this.p;
    let best = -1;
    let bestRoom = Number.POSITIVE_INFINITY;
    for (const h of this.hostOrder) {
      if (!p.inUse(h) || !p.fits(i, h)) continue;
      const r = p.room(h);
      if (r < bestRoom) {
        bestRoom = r;
        best = h;
      }
    }
    if (best < 0) best = this.hostToOpen(i, rule);
    if (best >= 0) p.put(i, best);
  }

  /** The closed host to open for VM `i`: most room (`hosts`), or least price per unit of room (`cost`). */
  private hostToOpen(i: number, rule: BatchObjective): number {
    const p = this.p;
    let best = -1;
    let bestKey = Number.POSITIVE_INFINITY;
    let bestTie = Number.POSITIVE_INFINITY;
    for (const h of this.hostOrder) {
      if (p.inUse(h) || !p.fits(i, h)) continue;
      const room = p.room(h);
      const price = this.price[h]!;
      // Ties: the cheaper host (hosts), the roomier one (cost).
      const [key, tie] =
        rule === "hosts" ? [-room, price] : [room > 0 ? price / room : Number.POSITIVE_INFINITY, -room];
      if (key < bestKey - EPS || (Math.abs(key - bestKey) <= EPS && tie < bestTie - EPS)) {
        best = h;
        bestKey = key;
        bestTie = tie;
      }
    }
    return best;
  }

  private outOfBudget(): boolean {
    if (this.repacks >= this.maxRepacks) return true;
    if (this.clock.now() > this.deadline) {
      this.timedOut = true;
      return true;
    }
    return false;
  }

  /** Step 2: take improving host-set moves until none packs or the budget is spent. */
  improve(): void {
    const p = this.p;
    for (;;) {
      const cur = p.score();
      const moves = this.candidates(cur);
      let taken = false;
      for (const m of moves) {
        if (this.outOfBudget()) return;
        if (this.tryMove(m, cur)) {
          this.moves++;
          taken = true;
          break;
        }
      }
      if (!taken) return;
    }
  }

  /** The improving moves from the current plan, best reachable score first, that pass the capacity bound. */
  private candidates(cur: BatchScore): Move[] {
    const p = this.p;
    const open: number[] = [];
    for (const h of this.hostOrder) if (p.inUse(h) && !p.fixedUsed[h]) open.push(h);
    // The emptiest first (by share of their room left): the likeliest to close. Stable: ties keep the seed's order.
    const full = new Map(open.map((h) => [h, p.fullness(h)]));
    open.sort((x, y) => full.get(x)! - full.get(y)!);
    // Closed hosts by class (same room, labels, taints, limits), cheapest first:
    // hosts of one class are interchangeable, so a move names the cheapest.
    const classes = new Map<string, number[]>();
    for (const h of this.hostOrder) {
      const host = p.usage.hosts[h]!;
      if (p.inUse(h) || host.draining) continue;
      const key = JSON.stringify([
        Array.from({ length: p.resources }, (_, k) => p.offer(h, k)),
        host.labels ?? {},
        host.taints ?? [],
        host.maxVms ?? null,
      ]);
      const c = classes.get(key);
      if (c) c.push(h);
      else classes.set(key, [h]);
    }
    const byClass = [...classes.values()].map((hs) => hs.sort((x, y) => this.price[x]! - this.price[y]!));
    // Up to two closed hosts to open (the cheapest of their classes), and for
    // the cost objective three: one roomy host can cost more than three small.
    const opens: number[][] = [[]];
    const triples: number[][] = [];
    const pick = (from: number, left: number, taken: number[], used: number[]): void => {
      if (taken.length > 0) (taken.length === 3 ? triples : opens).push([...taken]);
      if (left === 0) return;
      for (let c = from; c < byClass.length; c++) {
        const k = used[c] ?? 0;
        if (k >= byClass[c]!.length) continue;
        used[c] = k + 1;
        taken.push(byClass[c]![k]!);
        pick(c, left - 1, taken, used);
        taken.pop();
        used[c] = k;
      }
    };
    pick(0, this.objective === "cost" ? 3 : 2, [], []);
    // What the batch VMs need, against what the host set would offer.
    const need = new Float64Array(p.resources);
    const offer = new Float64Array(p.resources);
    p.where.forEach((h, i) => {
      if (h < 0) return;
      for (let k = 0; k < p.resources; k++) need[k]! += p.need(i, k);
    });
    for (let h = 0; h < p.n; h++) {
      if (!p.inUse(h)) continue;
      for (let k = 0; k < p.resources; k++) offer[k]! += p.offer(h, k);
    }
    /** The new set's slack (see {@link Move.slack}); negative when it cannot hold the batch. */
    const slackOf = (out: readonly number[], into: readonly number[]): number => {
      let slack = Number.POSITIVE_INFINITY;
      for (let k = 0; k < p.resources; k++) {
        let o = offer[k]!;
        for (const h of out) o -= p.offer(h, k);
        for (const h of into) o += p.offer(h, k);
        if (o < need[k]!) return -1;
        if (need[k]! > 0) slack = Math.min(slack, (o - need[k]!) / need[k]!);
      }
      return slack;
    };
    const moves: Move[] = [];
    const primaryOf = (hosts: number, cost: number) => (this.objective === "hosts" ? hosts : cost);
    const secondaryOf = (hosts: number, cost: number) => (this.objective === "hosts" ? cost : hosts);
    const curP = primaryOf(cur.hostsUsed, cur.cost);
    const curS = secondaryOf(cur.hostsUsed, cur.cost);
    const consider = (out: readonly number[], into: readonly number[]) => {
      const hosts = cur.hostsUsed - out.length + into.length;
      let cost = cur.cost;
      for (const h of out) cost -= this.price[h]!;
      for (const h of into) cost += this.price[h]!;
      const pr = primaryOf(hosts, cost);
      const se = secondaryOf(hosts, cost);
      const better = pr < curP - EPS || (Math.abs(pr - curP) <= EPS && se < curS - EPS);
      if (!better) return;
      const slack = slackOf(out, into);
      if (slack >= 0) moves.push({ out, into, primary: pr, secondary: se, slack });
    };
    // Close one or two open hosts, opening up to two closed ones in their place (three for one).
    // On a large batch the moves that close two hosts or open three are kept
    // to the emptiest hosts: their number grows with the square of the open hosts.
    const wide = Math.min(open.length, WIDE_MOVE_HOSTS);
    for (let a = 0; a < open.length; a++) {
      for (const into of opens) consider([open[a]!], into);
      if (a >= wide) continue;
      for (const into of triples) consider([open[a]!], into);
      for (let b = a + 1; b < wide; b++) {
        for (const into of opens) if (into.length > 0) consider([open[a]!, open[b]!], into);
      }
    }
    // Best objective first. At an equal host count the roomier set comes first:
    // it packs more surely and leaves room to close another host later (a
    // cheaper set of the same count is a later move). Stable: ties keep the
    // seeded host order.
    return moves.sort((x, y) => {
      if (Math.abs(x.primary - y.primary) > EPS) return x.primary - y.primary;
      if (this.objective === "hosts" && Math.abs(x.slack - y.slack) > EPS) return y.slack - x.slack;
      return x.secondary - y.secondary;
    });
  }

  /** Tries to pack the batch into the current host set less `m.out` plus `m.into`; keeps it on success. */
  private tryMove(m: Move, cur: BatchScore): boolean {
    const p = this.p;
    const saved = Int32Array.from(p.where);
    const allowed = new Uint8Array(p.n);
    for (let h = 0; h < p.n; h++) if (p.inUse(h)) allowed[h] = 1;
    for (const h of m.out) allowed[h] = 0;
    for (const h of m.into) allowed[h] = 1;
    const placed: number[] = [];
    saved.forEach((h, i) => {
      if (h >= 0) placed.push(i);
    });

    // First the cheap way: only the displaced VMs move.
    this.repacks++;
    const displaced = this.order.filter((i) => saved[i]! >= 0 && m.out.includes(saved[i]!));
    for (const i of displaced) p.take(i);
    let ok = true;
    for (const i of displaced) {
      if (!this.placeInto(i, allowed) && !this.eject(i, allowed)) {
        ok = false;
        break;
      }
    }
    if (ok && this.accept(cur)) return true;

    // Then every batch VM, repacked into the new set under several orders.
    for (const order of this.orders) {
      if (this.outOfBudget()) break;
      this.repacks++;
      for (const i of placed) p.take(i);
      const left: number[] = [];
      for (const i of order) if (saved[i]! >= 0 && !this.placeInto(i, allowed)) left.push(i);
      // A tight set often leaves one or two VMs over: moving a VM aside makes room for each.
      let all = true;
      for (const i of left) {
        if (!this.eject(i, allowed)) {
          all = false;
          break;
        }
      }
      if (all && this.accept(cur)) return true;
    }
    // Last, a bounded exact search: a set that is tight to a few per cent
    // defeats every greedy order, and a depth-first search with the empty
    // hosts of a class tried once finds such packings in a few hundred nodes.
    if (this.exactNodes > 0 && !this.outOfBudget()) {
      for (const i of placed) p.take(i);
      const items = Array.from(this.order).filter((i) => saved[i]! >= 0);
      const budget = { nodes: this.exactNodes };
      const found = this.search(items, 0, allowed, budget);
      this.repacks += Math.ceil((this.exactNodes - Math.max(0, budget.nodes)) / Math.max(1, items.length));
      if (found && this.accept(cur)) return true;
    }
    this.restore(saved);
    return false;
  }

  /** Depth-first: places `items[k…]` on the allowed hosts (best fit first), within `budget.nodes`. */
  private search(
    items: readonly number[],
    k: number,
    allowed: Uint8Array,
    budget: { nodes: number },
  ): boolean {
    if (k === items.length) return true;
    if (--budget.nodes < 0) return false;
    const p = this.p;
    const i = items[k]!;
    const tried = new Set<number>();
    const hosts: number[] = [];
    for (const h of this.hostOrder) {
      if (!allowed[h] || !p.fits(i, h)) continue;
      if (p.holdsNoBatchVm(h)) {
        if (tried.has(p.classOf[h]!)) continue;
        tried.add(p.classOf[h]!);
      }
      hosts.push(h);
    }
    const room = hosts.map((h) => p.room(h));
    const byRoom = hosts.map((_, j) => j).sort((a, b) => room[a]! - room[b]!);
    for (const j of byRoom) {
      p.put(i, hosts[j]!);
      if (this.search(items, k + 1, allowed, budget)) return true;
      p.take(i);
      if (budget.nodes < 0) return false;
    }
    return false;
  }

  /** A repacked plan is kept only when every hard spread holds and it beats `cur` (never worse, by construction). */
  private accept(cur: BatchScore): boolean {
    return this.p.spreadHolds() && compareScores(this.p.score(), cur, this.objective) < 0;
  }

  /** Best fit of VM `i` among the allowed hosts. */
  private placeInto(i: number, allowed: Uint8Array): boolean {
    const p = this.p;
    let best = -1;
    let bestRoom = Number.POSITIVE_INFINITY;
    for (const h of this.hostOrder) {
      if (!allowed[h] || !p.fits(i, h)) continue;
      const r = p.room(h);
      if (r < bestRoom) {
        bestRoom = r;
        best = h;
      }
    }
    if (best < 0) return false;
    p.put(i, best);
    return true;
  }

  /** Makes room for VM `i`: moves one batch VM from an allowed host to another, then puts `i` in its place. */
  private eject(i: number, allowed: Uint8Array): boolean {
    const p = this.p;
    for (const t of this.hostOrder) {
      if (!allowed[t]) continue;
      for (let u = 0; u < p.where.length; u++) {
        if (p.where[u] !== t) continue;
        p.take(u);
        if (p.fits(i, t)) {
          p.put(i, t);
          for (const t2 of this.hostOrder) {
            if (t2 === t || !allowed[t2] || !p.fits(u, t2)) continue;
            p.put(u, t2);
            return true;
          }
          p.take(i);
        }
        p.put(u, t);
      }
    }
    return false;
  }

  private restore(saved: Int32Array): void {
    const p = this.p;
    for (let i = 0; i < saved.length; i++) p.take(i);
    for (let i = 0; i < saved.length; i++) if (saved[i]! >= 0) p.put(i, saved[i]!);
  }
}

/** A seeded permutation of 0 … n − 1. */
function shuffled(n: number, random: Random): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = random.int(i + 1);
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

/**
 * Places `vms` onto `state`'s hosts as one batch, packed for `options.objective`
 * (fewest hosts in use, or lowest price of the hosts in use). VMs of the batch
 * that are allocated in `state` are being moved: their allocations do not
 * count. Every hard constraint holds (the plan passes {@link verifyPlan}); a VM
 * that fits nowhere is left unplaced with the reason. Deterministic: the same
 * inputs and seed give the same plan, unless the time limit cuts the search.
 * @throws DWCPError ERR_INVALID_ARG on a malformed state, request or option, or a VM id given twice.
 */
export function placeBatch(
  state: ClusterState,
  vms: readonly VmRequest[],
  options: BatchOptions = {},
): BatchResult {
  const seen = new Set<string>();
  for (const vm of vms) {
    if (seen.has(vm?.id)) throw new DWCPError("ERR_INVALID_ARG", `vm ${JSON.stringify(vm?.id)} given twice`);
    seen.add(vm?.id);
  }
  const p = new Packing(state, vms);
  const search = new BatchSearch(p, options);
  search.construct();
  const constructedPlan = p.placements();
  const constructed = p.score();
  if (options.localSearch ?? true) {
    search.improve();
    search.fill();
  }
  let placements = p.placements();
  let final = p.score();
  let fellBack = false;
  if (!verifyPlan(state, vms, placements).ok) {
    fellBack = true;
    // Never hand out a plan that breaks a rule: the constructed one, if it holds.
    const check = verifyPlan(state, vms, constructedPlan);
    if (!check.ok) {
      throw new DWCPError(
        "ERR_INVALID_ARG",
        `batch placement: no valid plan (${check.violations[0]?.detail ?? "unknown violation"})`,
      );
    }
    placements = constructedPlan;
    final = constructed;
  }
  const at = new Set(placements.map((x) => x.vm));
  const unplaced: Unplaced[] = [];
  vms.forEach((v, i) => {
    if (!at.has(v.id)) unplaced.push(p.unplaced(i));
  });
  return {
    placements,
    unplaced,
    stats: {
      objective: options.objective ?? "hosts",
      constructed,
      final,
      repacks: search.repacks,
      moves: search.moves,
      timedOut: search.timedOut,
      fellBack,
    },
  };
}
