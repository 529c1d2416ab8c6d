/**
 * ITP's batch placement: rebalancing, defragmentation and evacuation solved as
 * a mixed-integer program with HiGHS (the `highs` package, compiled to WASM),
 * under a time limit, falling back to a heuristic the caller passes when the
 * solver cannot give a plan.
 *
 * The formulation, over the VMs to place (or move) and the hosts:
 * - binaries `x[v][h]` (VM v on host h), created only where v passes the hard
 *   filters on h (node selector, taints, zones, draining, fits alone in what
 *   the fixed allocations leave, max VMs, a hard spread's topology label):
 *   a filtered pair is a variable that does not exist, i.e. fixed at zero;
 * - binaries `y[h]` (host used) where the objective prices a used host;
 * - each VM exactly once (`Σh x = 1`), or at most once with a penalty `P` per
 *   unplaced VM (`allowUnplaced`), `P` larger than any change the rest of the
 *   objective can make, so the most VMs are placed first;
 * - capacity per host and resource: `Σv req·x ≤ free·y`, where free is
 *   ⌊capacity × overcommit⌋ minus what the fixed allocations use; `x ≤ y`;
 * - max VMs per host; hard anti-affinity: at most one hard member of a group
 *   per host, and none with another member of the group;
 * - hard topology spread: per group and topology key, `m ≤ count[d] ≤ m + S`
 *   over the eligible domains, with `m` a continuous minimum, which is
 *   `max count − min count ≤ S`.
 *
 * Objectives (weights combine them): `hosts` counts hosts in use, `cost` sums
 * the price of hosts in use, `migrations` sums the memory (GiB) of VMs that
 * leave their `currentHost`. Soft scores (soft anti-affinity and spread,
 * affinity, network) are the online pipeline's business and are not modelled.
 *
 * The `highs` solve is synchronous: it blocks the event loop for up to the
 * time limit. Batch work is meant for a placer process's background turn.
 */
import type { Highs } from "highs";
import { type Env, nodeEnv } from "../env/index.js";
import { DWCPError, invalidArg } from "../errors.js";
import { columnName, type LpColumn, type LpRow, type LpTerm, writeLp } from "./lp-format.js";
import {
  type Allocation,
  type ClusterState,
  type Host,
  type Placement,
  RESOURCES,
  type Resource,
  type Resources,
  type VmRequest,
} from "./model.js";

/** Weights of the batch objectives; each is ≥ 0 and absent means 0. */
export interface ObjectiveWeights {
  /** Per host in use. */
  readonly hosts?: number;
  /** Per GiB of memory of VMs that leave their `currentHost`. */
  readonly migrations?: number;
  /** Per unit of `Host.price` of hosts in use. */
  readonly cost?: number;
}

/** What the batch solve minimises: one named objective, or weights over them. */
export type PlacementObjective = "hosts" | "migrations" | "cost" | ObjectiveWeights;

/** A heuristic to fall back to: the online pipeline, typically. */
export type PlacementFallback = (
  state: ClusterState,
  vms: readonly VmRequest[],
) => readonly Placement[] | Promise<readonly Placement[]>;

/** Options of {@link solvePlacement}. */
export interface SolvePlacementOptions {
  /** @default "hosts" */
  readonly objective?: PlacementObjective;
  /** Whole call's budget (building the model, loading the solver, solving). @default 2000 */
  readonly timeLimitMs?: number;
  /**
   * Let VMs go unplaced at a penalty, so an over-full instance still gives the
   * plan that places the most. Otherwise an over-full instance is infeasible.
   * @default false
   */
  readonly allowUnplaced?: boolean;
  /** Used when the solver gives no plan (infeasible, no incumbent in time, too large, not loadable, error). */
  readonly fallback?: PlacementFallback;
  /**
   * Refuse models with more binaries than this (ERR_RESOURCE_LIMIT).
   * @default 25 per ms of `timeLimitMs`, at most 200,000 (50,000 at the default 2 s)
   */
  readonly maxBinaries?: number;
  /** Relative MIP gap at which the solve stops as optimal. @default 1e-6 */
  readonly relativeGap?: number;
  /** Clock for the time budget. @default nodeEnv */
  readonly env?: Env;
  /** Loads the HiGHS runtime (a seam for tests). @default the `highs` package, loaded once */
  readonly loadSolver?: () => Promise<Highs>;
}

/**
 * How the solve ended:
 * - `optimal`: proved optimal (within `relativeGap`);
 * - `time-limit`: the time ran out with a feasible incumbent, which is returned;
 * - `infeasible`: no plan meets the hard constraints (with every VM placed);
 * - `no-solution`: the time ran out with no incumbent;
 * - `too-large`: refused before solving (more than `maxBinaries`);
 * - `unavailable`: the WASM solver could not be loaded;
 * - `error`: the solver failed, or its answer broke a constraint on re-check.
 */
export type SolveStatus =
  | "optimal"
  | "time-limit"
  | "infeasible"
  | "no-solution"
  | "too-large"
  | "unavailable"
  | "error";

/** What a plan does, counted from the plan itself (not from the solver). */
export interface PlanMetrics {
  /** Hosts holding at least one VM after the plan (fixed allocations included). */
  readonly hostsUsed: number;
  /** Σ price of the hosts in use. */
  readonly cost: number;
  /** VMs with a `currentHost` that the plan puts elsewhere or leaves unplaced. */
  readonly moves: number;
  /** Their memory, MiB. */
  readonly movedMiB: number;
  /** VMs the plan does not place. */
  readonly unplaced: number;
}

/** The outcome of {@link solvePlacement}. */
export interface SolvePlacementResult {
  /** One per placed VM, in the order of the request. */
  readonly placements: readonly Placement[];
  /** Ids of the VMs left unplaced. */
  readonly unplaced: readonly string[];
  readonly status: SolveStatus;
  /**
   * The weighted objective of the returned plan, counted from the plan (unplaced
   * penalty included when `allowUnplaced`); null when nothing was planned.
   */
  readonly objective: number | null;
  /** The solver's proven lower bound on the objective, when it ran. */
  readonly bound: number | null;
  /** HiGHS's relative MIP gap (0 when optimal), null when the solver gave no plan. */
  readonly gap: number | null;
  /** Elapsed ms of the whole call, fallback included. */
  readonly solveMs: number;
  readonly usedFallback: boolean;
  readonly metrics: PlanMetrics;
  /** Model size (0 when not built). */
  readonly binaries: number;
  readonly rows: number;
  /** Why the solver gave no plan, when it did not. */
  readonly detail?: string;
}

/** One broken rule found by {@link verifyPlan}. */
export interface PlanViolation {
  readonly kind:
    | "unknown-vm"
    | "duplicate"
    | "unknown-host"
    | "filter"
    | "capacity"
    | "max-vms"
    | "anti-affinity"
    | "spread";
  readonly detail: string;
}

const DEFAULT_TIME_LIMIT_MS = 2000;
/**
 * The default cap on binaries scales with the time limit: here, building a
 * model costs ~6 µs per binary and HiGHS parsing its LP text ~14 µs, neither
 * interruptible, so 25 binaries per ms keeps them to half the budget.
 */
const BINARIES_PER_MS = 25;
const MAX_BINARIES = 200_000;
/**
 * The relative gap at which HiGHS calls a plan optimal. Its own default, 1e-4,
 * hides a small migration against a large unplaced penalty; 1e-6 does not,
 * and costs little on instances of this size.
 */
const DEFAULT_REL_GAP = 1e-6;
const MIB_PER_GIB = 1024;

// ---------------------------------------------------------------------------
// The rules, shared by the model builder and the checker.

/** What a host may hold of `r`: ⌊capacity × overcommit⌋ (integers, so sums compare exactly). */
export function allocatable(host: Host, r: Resource): number {
  const ratio = host.overcommit?.[r] ?? 1;
  // The epsilon absorbs binary noise such as 1000 × 1.1 = 1100.0000000000002.
  return Math.floor((host.capacity[r] ?? 0) * ratio + 1e-9);
}

function amount(res: Resources, r: Resource): number {
  return res[r] ?? 0;
}

/**
 * The static hard filters: node selector, taints, zones, draining. A VM with
 * `zones` lands only on hosts whose `zone` label is listed (an empty list
 * allows none); a toleration with a key alone tolerates every value.
 */
export function hostAdmits(host: Host, vm: VmRequest): boolean {
  if (host.draining) return false;
  const labels = host.labels ?? {};
  if (vm.nodeSelector) {
    for (const [k, v] of Object.entries(vm.nodeSelector)) if (labels[k] !== v) return false;
  }
  if (vm.zones !== undefined) {
    const zone = labels.zone;
    if (zone === undefined || !vm.zones.includes(zone)) return false;
  }
  for (const t of host.taints ?? []) {
    const ok = (vm.tolerations ?? []).some(
      (tol) => tol.key === t.key && (tol.value === undefined || tol.value === t.value),
    );
    if (!ok) return false;
  }
  return true;
}

/** A group's hard spread rules: each distinct (key, maxSkew) carried by one of its VMs. */
function hardSpreads(members: readonly VmRequest[]): { key: string; maxSkew: number }[] {
  const out: { key: string; maxSkew: number }[] = [];
  for (const v of members) {
    const s = v.spread;
    if (s?.mode !== "hard") continue;
    if (!out.some((o) => o.key === s.topologyKey && o.maxSkew === s.maxSkew)) {
      out.push({ key: s.topologyKey, maxSkew: s.maxSkew });
    }
  }
  return out;
}

/**
 * The eligible domains of a hard spread rule: the label values of hosts that
 * carry the key and admit (static filters) at least one member bound by it.
 * Hosts without the key hold no member bound by the rule.
 */
function eligibleDomains(hosts: readonly Host[], members: readonly VmRequest[], key: string): string[] {
  const bound = members.filter((v) => v.spread?.mode === "hard" && v.spread.topologyKey === key);
  const ds = new Set<string>();
  for (const h of hosts) {
    const d = h.labels?.[key];
    if (d !== undefined && bound.some((v) => hostAdmits(h, v))) ds.add(d);
  }
  return [...ds].sort();
}

/** The skew a rule allows: its maxSkew, or the skew the fixed allocations already have if larger (a plan never has to cure what it did not cause). */
function allowedSkew(maxSkew: number, fixedCounts: readonly number[]): number {
  if (fixedCounts.length < 2) return maxSkew;
  return Math.max(maxSkew, Math.max(...fixedCounts) - Math.min(...fixedCounts));
}

/** The allocations that stay put: those of VMs not being (re)placed. */
function fixedAllocations(state: ClusterState, vmIds: ReadonlySet<string>): Allocation[] {
  return state.allocations.filter((a) => !vmIds.has(a.vm));
}

// ---------------------------------------------------------------------------
// Validation.

function checkResources(res: Resources, what: string): void {
  for (const r of RESOURCES) {
    const v = res[r];
    if (v !== undefined && !(Number.isFinite(v) && v >= 0))
      throw invalidArg(`${what}.${r}`, "a finite number ≥ 0", v);
  }
}

function validate(state: ClusterState, vms: readonly VmRequest[]): void {
  const hostIds = new Set<string>();
  for (const h of state.hosts) {
    if (hostIds.has(h.id)) throw invalidArg("host id", "unique host ids", h.id);
    hostIds.add(h.id);
    checkResources(h.capacity, `host ${h.id} capacity`);
    for (const r of RESOURCES) {
      const o = h.overcommit?.[r];
      if (o !== undefined && !(Number.isFinite(o) && o >= 0))
        throw invalidArg(`host ${h.id} overcommit.${r}`, "a finite ratio ≥ 0", o);
    }
    if (h.price !== undefined && !(Number.isFinite(h.price) && h.price >= 0))
      throw invalidArg(`host ${h.id} price`, "a finite number ≥ 0", h.price);
    if (h.maxVms !== undefined && !(Number.isInteger(h.maxVms) && h.maxVms >= 0))
      throw invalidArg(`host ${h.id} maxVms`, "an integer ≥ 0", h.maxVms);
  }
  const vmIds = new Set<string>();
  for (const v of vms) {
    if (vmIds.has(v.id)) throw invalidArg("vm id", "unique VM ids", v.id);
    vmIds.add(v.id);
    checkResources(v.resources, `vm ${v.id} resources`);
    const s = v.spread;
    if (s && !(Number.isInteger(s.maxSkew) && s.maxSkew >= 0))
      throw invalidArg(`vm ${v.id} spread.maxSkew`, "an integer ≥ 0", s.maxSkew);
  }
}

function weightsOf(objective: PlacementObjective): Required<ObjectiveWeights> {
  const w =
    objective === "hosts"
      ? { hosts: 1 }
      : objective === "cost"
        ? { cost: 1 }
        : objective === "migrations"
          ? { migrations: 1 }
          : objective;
  const out = { hosts: w.hosts ?? 0, migrations: w.migrations ?? 0, cost: w.cost ?? 0 };
  for (const [k, v] of Object.entries(out)) {
    if (!(Number.isFinite(v) && v >= 0)) throw invalidArg(`objective.${k}`, "a finite weight ≥ 0", v);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Metrics and the independent checker.

/** What a plan does: hosts in use, their price, the moves and their memory. */
export function planMetrics(
  state: ClusterState,
  vms: readonly VmRequest[],
  placements: readonly Placement[],
): PlanMetrics {
  const vmIds = new Set(vms.map((v) => v.id));
  const used = new Set<string>();
  for (const a of fixedAllocations(state, vmIds)) used.add(a.host);
  const where = new Map<string, string>();
  for (const p of placements) {
    if (vmIds.has(p.vm) && !where.has(p.vm)) where.set(p.vm, p.host);
  }
  for (const h of where.values()) used.add(h);
  let cost = 0;
  let hostsUsed = 0;
  for (const h of state.hosts) {
    if (!used.has(h.id)) continue;
    hostsUsed++;
    cost += h.price ?? 0;
  }
  let moves = 0;
  let movedMiB = 0;
  for (const v of vms) {
    if (v.currentHost === undefined || where.get(v.id) === v.currentHost) continue;
    moves++;
    movedMiB += v.resources.memory;
  }
  return { hostsUsed, cost, moves, movedMiB, unplaced: vms.length - where.size };
}

/**
 * Checks a plan against capacity and every hard constraint, from the plan
 * alone: the solver's answer, a fallback's, or a plan read back before commit.
 * VMs of `vms` that already have allocations in `state` are being moved: their
 * old allocations do not count. A partial plan is checked as it stands
 * (unplaced VMs are not violations).
 */
export function verifyPlan(
  state: ClusterState,
  vms: readonly VmRequest[],
  placements: readonly Placement[],
): { readonly ok: boolean; readonly violations: readonly PlanViolation[] } {
  const violations: PlanViolation[] = [];
  const vmById = new Map(vms.map((v) => [v.id, v]));
  const hostById = new Map(state.hosts.map((h) => [h.id, h]));
  const vmIds = new Set(vmById.keys());
  const placed = new Map<string, string>();
  for (const p of placements) {
    const vm = vmById.get(p.vm);
    const host = hostById.get(p.host);
    if (!vm) violations.push({ kind: "unknown-vm", detail: `placement of unknown VM ${p.vm}` });
    else if (placed.has(p.vm)) violations.push({ kind: "duplicate", detail: `VM ${p.vm} placed twice` });
    else if (!host) violations.push({ kind: "unknown-host", detail: `VM ${p.vm} on unknown host ${p.host}` });
    else {
      placed.set(p.vm, p.host);
      if (!hostAdmits(host, vm))
        violations.push({ kind: "filter", detail: `VM ${p.vm} may not land on ${p.host}` });
    }
  }

  // Who is on each host after the plan.
  const fixed = fixedAllocations(state, vmIds);
  const onHost = new Map<string, { fixed: Allocation[]; placed: VmRequest[] }>();
  const slot = (h: string) => {
    let s = onHost.get(h);
    if (!s) {
      s = { fixed: [], placed: [] };
      onHost.set(h, s);
    }
    return s;
  };
  for (const a of fixed) slot(a.host).fixed.push(a);
  for (const [vm, h] of placed) slot(h).placed.push(vmById.get(vm)!);

  for (const [hid, s] of onHost) {
    const host = hostById.get(hid);
    if (!host || s.placed.length === 0) continue; // what was there before is not this plan's doing
    for (const r of RESOURCES) {
      const asked = s.placed.reduce((n, v) => n + amount(v.resources, r), 0);
      if (asked === 0) continue;
      const total = s.fixed.reduce((n, a) => n + amount(a.resources, r), 0) + asked;
      if (total > allocatable(host, r)) {
        violations.push({ kind: "capacity", detail: `${hid} ${r}: ${total} > ${allocatable(host, r)}` });
      }
    }
    const count = s.fixed.length + s.placed.length;
    if (host.maxVms !== undefined && count > host.maxVms) {
      violations.push({ kind: "max-vms", detail: `${hid}: ${count} VMs > ${host.maxVms}` });
    }
    for (const v of s.placed) {
      if (v.antiAffinity !== "hard" || v.group === undefined) continue;
      const mates =
        s.fixed.filter((a) => a.group === v.group).length +
        s.placed.filter((w) => w !== v && w.group === v.group).length;
      if (mates > 0)
        violations.push({ kind: "anti-affinity", detail: `${v.id} shares ${hid} with its group ${v.group}` });
    }
  }

  // Hard spread, per group and rule, over the eligible domains.
  for (const [group, members] of groupsOf(vms)) {
    for (const rule of hardSpreads(members)) {
      const domains = eligibleDomains(state.hosts, members, rule.key);
      if (domains.length === 0) continue;
      const fixedCount = new Map<string, number>(domains.map((d) => [d, 0]));
      for (const a of fixed) {
        const d = hostById.get(a.host)?.labels?.[rule.key];
        if (a.group === group && d !== undefined && fixedCount.has(d))
          fixedCount.set(d, fixedCount.get(d)! + 1);
      }
      const count = new Map(fixedCount);
      for (const v of members) {
        const h = placed.get(v.id);
        const d = h === undefined ? undefined : hostById.get(h)?.labels?.[rule.key];
        if (
          v.spread?.mode === "hard" &&
          v.spread.topologyKey === rule.key &&
          h !== undefined &&
          d === undefined
        ) {
          violations.push({ kind: "spread", detail: `${v.id} on ${h}, which has no ${rule.key} label` });
        }
        if (d !== undefined && count.has(d)) count.set(d, count.get(d)! + 1);
      }
      const allowed = allowedSkew(rule.maxSkew, [...fixedCount.values()]);
      const cs = [...count.values()];
      const skew = Math.max(...cs) - Math.min(...cs);
      if (skew > allowed) {
        violations.push({
          kind: "spread",
          detail: `group ${group} over ${rule.key}: skew ${skew} > ${allowed}`,
        });
      }
    }
  }
  return { ok: violations.length === 0, violations };
}

function groupsOf(vms: readonly VmRequest[]): Map<string, VmRequest[]> {
  const groups = new Map<string, VmRequest[]>();
  for (const v of vms) {
    if (v.group === undefined) continue;
    const g = groups.get(v.group);
    if (g) g.push(v);
    else groups.set(v.group, [v]);
  }
  return groups;
}

// ---------------------------------------------------------------------------
// Evacuation.

/**
 * An evacuation as a batch request: the state with `hostIds` draining, and a
 * request per VM allocated there (its `currentHost` set, so it must move:
 * a draining host admits nothing). Solve it with {@link solvePlacement}.
 */
export function evacuation(
  state: ClusterState,
  hostIds: readonly string[],
): { readonly state: ClusterState; readonly vms: readonly VmRequest[] } {
  const drain = new Set(hostIds);
  const hosts = state.hosts.map((h) => (drain.has(h.id) ? { ...h, draining: true } : h));
  const vms: VmRequest[] = state.allocations
    .filter((a) => drain.has(a.host))
    .map((a) => ({
      id: a.vm,
      resources: a.resources,
      currentHost: a.host,
      ...(a.group !== undefined ? { group: a.group } : {}),
    }));
  return { state: { ...state, hosts }, vms };
}

// ---------------------------------------------------------------------------
// The model.

/** The built MILP and how to read its answer. */
interface BuiltModel {
  readonly columns: LpColumn[];
  readonly objective: LpTerm[];
  readonly rows: LpRow[];
  /** Constant part of the objective (hosts already in use, moves already forced, VMs that cannot be placed). */
  readonly offset: number;
  /** Column → (vm index, host index) for the x columns. */
  readonly xOf: Map<number, readonly [number, number]>;
  readonly binaries: number;
  /** VMs with no candidate host. */
  readonly hopeless: number[];
  /** Unplaced penalty (0 when VMs must all be placed). */
  readonly penalty: number;
}

/** Counts the candidates (cheap) so an oversized model is refused before it is built. */
function candidates(
  state: ClusterState,
  vms: readonly VmRequest[],
): { cand: number[][]; free: number[][]; fixedCount: number[]; fixedGroups: Map<string, number>[] } {
  const vmIds = new Set(vms.map((v) => v.id));
  const hostIndex = new Map(state.hosts.map((h, j) => [h.id, j]));
  const free = state.hosts.map((h) => RESOURCES.map((r) => allocatable(h, r)));
  const fixedCount = state.hosts.map(() => 0);
  const fixedGroups = state.hosts.map(() => new Map<string, number>());
  for (const a of fixedAllocations(state, vmIds)) {
    const j = hostIndex.get(a.host);
    if (j === undefined) continue; // an allocation on a host not in the state weighs on no host here
    RESOURCES.forEach((r, k) => {
      free[j]![k]! -= amount(a.resources, r);
    });
    fixedCount[j]!++;
    if (a.group !== undefined) fixedGroups[j]!.set(a.group, (fixedGroups[j]!.get(a.group) ?? 0) + 1);
  }
  const cand = vms.map((v) => {
    const out: number[] = [];
    const hardKeys = hardSpreads([v]).map((s) => s.key);
    state.hosts.forEach((h, j) => {
      if (!hostAdmits(h, v)) return;
      // A VM asking none of an overfull resource does not make it worse, as verifyPlan sees it too.
      if (RESOURCES.some((r, k) => amount(v.resources, r) > Math.max(0, free[j]![k]!))) return;
      if (h.maxVms !== undefined && fixedCount[j]! >= h.maxVms) return;
      if (v.antiAffinity === "hard" && v.group !== undefined && (fixedGroups[j]!.get(v.group) ?? 0) > 0)
        return;
      if (hardKeys.some((k) => h.labels?.[k] === undefined)) return;
      out.push(j);
    });
    return out;
  });
  return { cand, free, fixedCount, fixedGroups };
}

function buildModel(
  state: ClusterState,
  vms: readonly VmRequest[],
  w: Required<ObjectiveWeights>,
  allowUnplaced: boolean,
  pre: ReturnType<typeof candidates>,
): BuiltModel {
  const { cand, free, fixedCount, fixedGroups } = pre;
  const hosts = state.hosts;
  const columns: LpColumn[] = [];
  const objective: LpTerm[] = [];
  const rows: LpRow[] = [];
  const xOf = new Map<number, readonly [number, number]>();
  let offset = 0;

  const hostPrice = (j: number) => w.hosts + w.cost * (hosts[j]!.price ?? 0);
  const penalty = allowUnplaced ? penaltyOf(state, vms, w) : 0;

  // x columns, and per host the candidates on it.
  const xCol: Map<number, number>[] = vms.map(() => new Map());
  const onHost: number[][] = hosts.map(() => []);
  cand.forEach((js, i) => {
    for (const j of js) {
      const c = columns.length;
      columns.push({ kind: "binary" });
      xCol[i]!.set(j, c);
      xOf.set(c, [i, j]);
      onHost[j]!.push(i);
    }
  });

  // y columns: only where a used host costs something and is not already in use.
  const yCol = hosts.map((_h, j) => {
    if (fixedCount[j]! > 0) {
      offset += hostPrice(j);
      return undefined;
    }
    if (onHost[j]!.length === 0 || hostPrice(j) === 0) return undefined;
    const c = columns.length;
    columns.push({ kind: "binary" });
    objective.push({ col: c, coef: hostPrice(j) });
    return c;
  });

  // Migration cost: a VM that leaves its current host pays its memory.
  const hostIndex = new Map(hosts.map((h, j) => [h.id, j]));
  vms.forEach((v, i) => {
    if (v.currentHost === undefined || w.migrations === 0) return;
    const gib = (w.migrations * v.resources.memory) / MIB_PER_GIB;
    offset += gib;
    const j = hostIndex.get(v.currentHost);
    const c = j === undefined ? undefined : xCol[i]!.get(j);
    if (c !== undefined && gib !== 0) objective.push({ col: c, coef: -gib });
  });

  // Each VM once (or at most once, at a penalty).
  const hopeless: number[] = [];
  vms.forEach((_v, i) => {
    const terms: LpTerm[] = [...xCol[i]!.values()].map((col) => ({ col, coef: 1 }));
    if (terms.length === 0) {
      hopeless.push(i);
      offset += penalty;
      return;
    }
    if (allowUnplaced) {
      const u = columns.length;
      columns.push({ kind: "continuous", upper: 1 });
      objective.push({ col: u, coef: penalty });
      terms.push({ col: u, coef: 1 });
    }
    rows.push({ terms, op: "=", rhs: 1 });
  });

  hosts.forEach((h, j) => {
    const here = onHost[j]!;
    if (here.length === 0) return;
    const y = yCol[j];
    // Capacity: skipped where even every candidate together fits (the row could never bind).
    RESOURCES.forEach((r, k) => {
      const demand = here.reduce((s, i) => s + amount(vms[i]!.resources, r), 0);
      const room = free[j]![k]!;
      if (demand === 0 || (demand <= room && y === undefined)) return;
      const terms: LpTerm[] = here
        .filter((i) => amount(vms[i]!.resources, r) > 0)
        .map((i) => ({ col: xCol[i]!.get(j)!, coef: amount(vms[i]!.resources, r) }));
      if (y !== undefined) {
        terms.push({ col: y, coef: -room });
        rows.push({ terms, op: "<=", rhs: 0 });
      } else rows.push({ terms, op: "<=", rhs: room });
    });
    // x ≤ y: a tighter relaxation than the capacity rows alone, so bounds prove optimality sooner.
    if (y !== undefined) {
      for (const i of here)
        rows.push({
          terms: [
            { col: xCol[i]!.get(j)!, coef: 1 },
            { col: y, coef: -1 },
          ],
          op: "<=",
          rhs: 0,
        });
    }
    if (h.maxVms !== undefined && fixedCount[j]! + here.length > h.maxVms) {
      rows.push({
        terms: here.map((i) => ({ col: xCol[i]!.get(j)!, coef: 1 })),
        op: "<=",
        rhs: h.maxVms - fixedCount[j]!,
      });
    }
    // Hard anti-affinity, per group on this host: hard members H, others N.
    const byGroup = new Map<string, { hard: number[]; soft: number[] }>();
    for (const i of here) {
      const v = vms[i]!;
      if (v.group === undefined) continue;
      let g = byGroup.get(v.group);
      if (!g) {
        g = { hard: [], soft: [] };
        byGroup.set(v.group, g);
      }
      (v.antiAffinity === "hard" ? g.hard : g.soft).push(i);
    }
    for (const g of byGroup.values()) {
      if (g.hard.length === 0) continue;
      const xh = (i: number): number => xCol[i]!.get(j)!;
      if (g.hard.length >= 2)
        rows.push({ terms: g.hard.map((i) => ({ col: xh(i), coef: 1 })), op: "<=", rhs: 1 });
      // |N|·Σ x_H + Σ x_N ≤ |N|: a hard member here leaves no room for any other member.
      const n = g.soft.length;
      if (n > 0) {
        rows.push({
          terms: [
            ...g.hard.map((i) => ({ col: xh(i), coef: n })),
            ...g.soft.map((i) => ({ col: xh(i), coef: 1 })),
          ],
          op: "<=",
          rhs: n,
        });
      }
    }
  });

  // Two rows that change no plan but let the solver prove optimality sooner.
  // (1) Aggregate room, when every VM must be placed: the hosts switched on
  // must hold the total demand, a knapsack on y from which HiGHS derives cover
  // cuts (bin packing's size bound and more).
  if (!allowUnplaced) {
    RESOURCES.forEach((r, k) => {
      const total = vms.reduce((t, v) => t + amount(v.resources, r), 0);
      if (total === 0) return;
      let rest = total;
      const terms: LpTerm[] = [];
      hosts.forEach((_h, j) => {
        if (onHost[j]!.length === 0) return;
        const room = Math.max(0, free[j]![k]!);
        const y = yCol[j];
        if (y === undefined) rest -= room;
        else if (room > 0) terms.push({ col: y, coef: room });
      });
      if (rest > 0 && terms.length > 0) rows.push({ terms, op: ">=", rhs: rest });
    });
  }
  // (2) Interchangeable hosts (same room, limits, labels, price and candidates,
  // and no VM's current host while moves cost) are switched on in order, so
  // the search does not revisit mirror images.
  const homes = new Set(w.migrations > 0 ? vms.map((v) => v.currentHost) : []);
  const twins = new Map<string, number[]>();
  hosts.forEach((h, j) => {
    if (yCol[j] === undefined || homes.has(h.id)) return;
    const key = JSON.stringify([free[j], h.maxVms ?? null, hostPrice(j), h.labels ?? {}, onHost[j]]);
    const t = twins.get(key);
    if (t) t.push(j);
    else twins.set(key, [j]);
  });
  for (const t of twins.values()) {
    for (let k = 1; k < t.length; k++) {
      rows.push({
        terms: [
          { col: yCol[t[k - 1]!]!, coef: 1 },
          { col: yCol[t[k]!]!, coef: -1 },
        ],
        op: ">=",
        rhs: 0,
      });
    }
  }

  // Hard topology spread: m ≤ count[d] ≤ m + S for every eligible domain d.
  for (const [group, members] of groupsOf(vms)) {
    for (const rule of hardSpreads(members)) {
      const domains = eligibleDomains(hosts, members, rule.key);
      if (domains.length < 2) continue;
      const fixedIn = domains.map((d) =>
        hosts.reduce(
          (s, h, j) => s + (h.labels?.[rule.key] === d ? (fixedGroups[j]!.get(group) ?? 0) : 0),
          0,
        ),
      );
      const allowed = allowedSkew(rule.maxSkew, fixedIn);
      const m = columns.length;
      columns.push({ kind: "continuous" });
      domains.forEach((d, k) => {
        const terms: LpTerm[] = [];
        vms.forEach((v, i) => {
          if (v.group !== group) return;
          for (const [j, col] of xCol[i]!)
            if (hosts[j]!.labels?.[rule.key] === d) terms.push({ col, coef: 1 });
        });
        terms.push({ col: m, coef: -1 });
        rows.push({ terms, op: ">=", rhs: -fixedIn[k]! });
        rows.push({ terms, op: "<=", rhs: allowed - fixedIn[k]! });
      });
    }
  }

  const binaries = columns.filter((c) => c.kind === "binary").length;
  return { columns, objective, rows, offset, xOf, binaries, hopeless, penalty };
}

// ---------------------------------------------------------------------------
// The solver.

let highsRuntime: Promise<Highs> | undefined;

/** The `highs` runtime, loaded once per process; a failed load is retried next time. */
function defaultLoad(): Promise<Highs> {
  if (!highsRuntime) {
    // The package is CommonJS to TypeScript but ships an ES module whose default export is the loader.
    highsRuntime = import("highs").then((m) => (m as unknown as { default: () => Promise<Highs> }).default());
    highsRuntime.catch(() => {
      highsRuntime = undefined;
    });
  }
  return highsRuntime;
}

/** Loads the solver ahead of the first batch solve (its WASM takes tens of ms); true when it loaded. */
export async function preloadSolver(): Promise<boolean> {
  try {
    await defaultLoad();
    return true;
  } catch {
    return false;
  }
}

interface RawAnswer {
  readonly status: SolveStatus;
  /** Column values, indexed as the model's columns. */
  readonly x?: Float64Array;
  readonly objective?: number;
  readonly bound?: number;
  readonly gap?: number;
  readonly detail?: string;
}

// HiGHS model status codes (highs.constants.modelStatus).
const MS_OPTIMAL = 7;
const MS_INFEASIBLE = 8;
const MS_UNBOUNDED_OR_INFEASIBLE = 9;
const MS_EMPTY = 6;
const MS_LIMIT_FIRST = 11; // objective bound … interrupted: limits, with or without an incumbent
const MS_LIMIT_LAST = 17;
const FEASIBLE_POINT = 2; // primal_solution_status
/** Kept back from the solver's time limit for reading its answer and re-checking the plan. */
const READ_BACK_MS = 20;

/**
 * Solves LP text under the deadline (`endsAt` on `clock`). The time limit is
 * set once the text is parsed, so parsing (a tenth of a second for a few
 * thousand columns) comes out of the same budget.
 */
function runHighs(
  highs: Highs,
  lp: string,
  numCols: number,
  clock: Env["clock"],
  endsAt: number,
  relGap: number,
): RawAnswer {
  return highs.withModel({ format: "lp", data: lp }, (model): RawAnswer => {
    const seconds = Math.max(0.001, (endsAt - clock.now()) / 1000);
    model.options.set({ output_flag: false, time_limit: seconds, mip_rel_gap: relGap });
    model.run();
    const ms = model.getModelStatus();
    const primal = Number(model.info.get("primal_solution_status"));
    const hasPoint = primal === FEASIBLE_POINT;
    const read = (): { x: Float64Array; objective: number; bound: number; gap: number } => {
      const raw = model.getSolution().colValue;
      return {
        x: inIndexOrder(raw, numCols, (k) => model.getColName(k)),
        objective: model.getObjectiveValue(),
        bound: Number(model.info.get("mip_dual_bound")),
        gap: Number(model.info.get("mip_gap")),
      };
    };
    if (ms === MS_OPTIMAL || ms === MS_EMPTY) return { status: "optimal", ...read() };
    if (ms === MS_INFEASIBLE || ms === MS_UNBOUNDED_OR_INFEASIBLE) return { status: "infeasible" };
    if (ms >= MS_LIMIT_FIRST && ms <= MS_LIMIT_LAST) {
      return hasPoint
        ? { status: "time-limit", ...read() }
        : { status: "no-solution", detail: `HiGHS stopped (model status ${ms}) with no incumbent` };
    }
    return { status: "error", detail: `HiGHS model status ${ms}` };
  });
}

/**
 * The solver's column values in this model's column order. The LP text names
 * every column in order in its objective, so the orders agree; a sample of
 * names confirms it (a name lookup costs tens of µs), and a full remap by
 * name is the fallback should a solver version number them otherwise.
 */
function inIndexOrder(raw: Float64Array, numCols: number, nameOf: (k: number) => string): Float64Array {
  const n = raw.length;
  const step = Math.max(1, Math.floor(n / 16));
  let same = n === numCols;
  for (let k = 0; same && k < n; k += step) same = nameOf(k) === columnName(k);
  if (same && n > 0) same = nameOf(n - 1) === columnName(n - 1);
  if (same) return raw;
  const out = new Float64Array(numCols);
  for (let k = 0; k < n; k++) {
    const col = Number(nameOf(k).slice(1));
    if (Number.isInteger(col) && col >= 0 && col < numCols) out[col] = raw[k]!;
  }
  return out;
}

/**
 * Places (or moves) `vms` onto `state.hosts` by solving the batch MILP under
 * a time limit. VMs of `vms` that already have allocations in `state` are
 * being moved: their old allocations are released. Every other allocation
 * stays where it is and uses its host's room.
 *
 * When the solver gives no plan (infeasible, no incumbent in time, too large,
 * the WASM not loadable, an error) and `fallback` is given, the fallback's
 * plan is returned with `usedFallback` set; without a fallback, an
 * infeasible or timed-out solve returns an empty plan with its status, and a
 * model too large or a solver that will not load throws (ERR_RESOURCE_LIMIT,
 * ERR_UNSUPPORTED). A fallback's plan is passed on as it is (only its first
 * placement per requested VM): check it with {@link verifyPlan} before a
 * commit, as any plan.
 *
 * @throws DWCPError ERR_INVALID_ARG on duplicate ids or bad numbers.
 */
export async function solvePlacement(
  state: ClusterState,
  vms: readonly VmRequest[],
  options: SolvePlacementOptions = {},
): Promise<SolvePlacementResult> {
  const env = options.env ?? nodeEnv;
  const start = env.clock.now();
  const timeLimitMs = options.timeLimitMs ?? DEFAULT_TIME_LIMIT_MS;
  if (!(timeLimitMs > 0 && Number.isFinite(timeLimitMs))) {
    throw invalidArg("timeLimitMs", "a positive number of ms", timeLimitMs);
  }
  const maxBinaries = options.maxBinaries ?? Math.min(MAX_BINARIES, Math.ceil(timeLimitMs * BINARIES_PER_MS));
  if (!(Number.isInteger(maxBinaries) && maxBinaries > 0)) {
    throw invalidArg("maxBinaries", "a positive integer", maxBinaries);
  }
  const relGap = options.relativeGap ?? DEFAULT_REL_GAP;
  if (!(relGap >= 0 && relGap < 1)) throw invalidArg("relativeGap", "a number in [0, 1)", relGap);
  validate(state, vms);
  const w = weightsOf(options.objective ?? "hosts");
  const allowUnplaced = options.allowUnplaced ?? false;

  const finish = async (
    status: SolveStatus,
    fields: Partial<Pick<SolvePlacementResult, "placements" | "objective" | "bound" | "gap" | "detail">> & {
      binaries?: number;
      rows?: number;
      error?: DWCPError;
    },
  ): Promise<SolvePlacementResult> => {
    let placements = fields.placements;
    let usedFallback = false;
    if (placements === undefined) {
      if (options.fallback) {
        const ids = new Set(vms.map((v) => v.id));
        const seen = new Set<string>();
        // Only the first placement of each requested VM: a fallback's extra or repeated entries are not ours to pass on.
        placements = (await options.fallback(state, vms)).filter((p) => {
          if (!ids.has(p.vm) || seen.has(p.vm)) return false;
          seen.add(p.vm);
          return true;
        });
        usedFallback = true;
      } else if (fields.error) {
        throw fields.error;
      } else placements = [];
    }
    const placedIds = new Set(placements.map((p) => p.vm));
    const metrics = planMetrics(state, vms, placements);
    // A plan that leaves VMs out has no value in a model where all must be placed.
    const nothing = !allowUnplaced && placements.length < vms.length;
    return {
      placements,
      unplaced: vms.filter((v) => !placedIds.has(v.id)).map((v) => v.id),
      status,
      objective:
        fields.objective ??
        (nothing ? null : objectiveOf(metrics, w, allowUnplaced ? penaltyOf(state, vms, w) : 0)),
      bound: fields.bound ?? null,
      gap: fields.gap ?? null,
      solveMs: env.clock.now() - start,
      usedFallback,
      metrics,
      binaries: fields.binaries ?? 0,
      rows: fields.rows ?? 0,
      ...(fields.detail !== undefined ? { detail: fields.detail } : {}),
    };
  };

  if (vms.length === 0) return finish("optimal", { placements: [], gap: 0 });

  const pre = candidates(state, vms);
  const xCount = pre.cand.reduce((s, c) => s + c.length, 0);
  const yBound = state.hosts.length;
  if (xCount + yBound > maxBinaries) {
    const detail = `the model would have up to ${xCount + yBound} binaries (limit ${maxBinaries})`;
    return finish("too-large", { detail, error: new DWCPError("ERR_RESOURCE_LIMIT", detail) });
  }
  const model = buildModel(state, vms, w, allowUnplaced, pre);
  const size = { binaries: model.binaries, rows: model.rows.length };
  if (model.hopeless.length > 0 && !allowUnplaced) {
    const detail = `no host can take VM ${vms[model.hopeless[0]!]!.id}`;
    return finish("infeasible", { ...size, detail });
  }
  if (model.columns.length === 0) {
    // Every VM is hopeless and may stay unplaced: the empty plan is the optimum.
    return finish("optimal", {
      ...size,
      placements: [],
      bound: model.offset,
      gap: 0,
    });
  }

  let highs: Highs;
  try {
    highs = await (options.loadSolver ?? defaultLoad)();
  } catch (err) {
    const detail = `the HiGHS solver could not be loaded: ${err instanceof Error ? err.message : String(err)}`;
    return finish("unavailable", {
      ...size,
      detail,
      error: new DWCPError("ERR_UNSUPPORTED", detail, { cause: err }),
    });
  }
  const lp = writeLp(model);
  if (env.clock.now() - start >= timeLimitMs) {
    return finish("no-solution", { ...size, detail: "the time limit ran out while the model was built" });
  }
  let answer: RawAnswer;
  try {
    answer = runHighs(highs, lp, model.columns.length, env.clock, start + timeLimitMs - READ_BACK_MS, relGap);
  } catch (err) {
    answer = { status: "error", detail: `HiGHS failed: ${err instanceof Error ? err.message : String(err)}` };
  }
  const x = answer.x;
  if (!x) return finish(answer.status, { ...size, ...detailOf(answer) });

  const placements: Placement[] = [];
  const chosen = new Map<number, number>();
  for (const [col, [i, j]] of model.xOf) if (x[col]! > 0.5) chosen.set(i, j);
  vms.forEach((v, i) => {
    const j = chosen.get(i);
    if (j !== undefined) placements.push({ vm: v.id, host: state.hosts[j]!.id });
  });
  // The solver works in floating point; re-check its answer before anyone commits it.
  const check = verifyPlan(state, vms, placements);
  if (!check.ok || (!allowUnplaced && placements.length < vms.length)) {
    const why = check.violations[0]?.detail ?? "a VM left unplaced";
    return finish("error", { ...size, detail: `the solver's plan failed the re-check: ${why}` });
  }
  return finish(answer.status, {
    ...size,
    placements,
    bound: answer.bound! + model.offset,
    gap: answer.gap!,
  });
}

function detailOf(a: RawAnswer): { detail?: string } {
  return a.detail !== undefined ? { detail: a.detail } : {};
}

/**
 * The price of one unplaced VM: more than the rest of the objective can ever
 * differ by (every host used, every VM moved), so placing one more VM always wins.
 */
function penaltyOf(state: ClusterState, vms: readonly VmRequest[], w: Required<ObjectiveWeights>): number {
  return (
    1 +
    state.hosts.reduce((s, h) => s + w.hosts + w.cost * (h.price ?? 0), 0) +
    (w.migrations * vms.reduce((s, v) => s + v.resources.memory, 0)) / MIB_PER_GIB
  );
}

/** A plan's weighted objective, from its metrics: what the MILP's objective equals for the same plan. */
export function objectiveOf(metrics: PlanMetrics, weights: ObjectiveWeights, unplacedPenalty = 0): number {
  return (
    (weights.hosts ?? 0) * metrics.hostsUsed +
    (weights.cost ?? 0) * metrics.cost +
    ((weights.migrations ?? 0) * metrics.movedMiB) / MIB_PER_GIB +
    unplacedPenalty * metrics.unplaced
  );
}
