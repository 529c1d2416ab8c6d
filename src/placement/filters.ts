/**
 * The hard filters: a host that fails one of them never receives the VM. A VM
 * is first prepared once ({@link prepareVm}: its selector, tolerations, zones
 * and spread figures in the shape the checks read), then each candidate host
 * costs a handful of array reads ({@link checkHost}). The check returns only a
 * filter name; the sentence that explains it ({@link describeFilter}) is built
 * when someone asks, so the fast path builds no strings.
 */
import { invalidArg } from "../errors.js";
import type { SpreadConstraint, Taint, VmRequest } from "./model.js";
import { checkResources, type Domains, type Usage } from "./usage.js";

/** The hard filters, in the order they run (cheapest and most selective first). */
export const FILTERS = [
  "draining",
  "maxVms",
  "zone",
  "selector",
  "taint",
  "cpu",
  "memory",
  "disk",
  "gpu",
  "antiAffinity",
  "spread",
] as const;
/** One hard filter's name. */
export type FilterName = (typeof FILTERS)[number];
/** Each filter's position in {@link FILTERS} (the index of its counter). */
export const FILTER_INDEX: Readonly<Record<FilterName, number>> = Object.fromEntries(
  FILTERS.map((f, i) => [f, i]),
) as Record<FilterName, number>;

/** A VM's spread constraint, resolved against the current usage. */
export interface SpreadContext {
  /** The constraint (the VM's own, or the placer's default spread). */
  readonly constraint: SpreadConstraint;
  /** True for mode "hard": the spread filter applies, not only the score. */
  readonly hard: boolean;
  /** The domains of the constraint's topology key. */
  readonly domains: Domains;
  /** The group's VMs per domain (live: updated by every placement). */
  readonly counts: Int32Array;
  /** Domains holding at least one host that passes every other filter (1) or none (0). */
  readonly eligible: Uint8Array;
  /** Fewest VMs of the group in an eligible domain (0 when none is eligible). */
  readonly min: number;
}

/** A VM as the filters and scores read it: prepared once per placement. */
export interface VmContext {
  /** The request itself. */
  readonly vm: VmRequest;
  /** Requested milli-CPU. */
  readonly cpu: number;
  /** Requested memory (MiB). */
  readonly memory: number;
  /** Requested disk (MiB), 0 when absent. */
  readonly disk: number;
  /** Requested GPUs, 0 when absent. */
  readonly gpu: number;
  /** The node selector as label/value pairs. */
  readonly selector: readonly (readonly [string, string])[];
  /** Allowed zones, or undefined for any. */
  readonly zones: ReadonlySet<string> | undefined;
  /** Tolerated taints: key → the tolerated values, or `true` for every value. */
  readonly tolerations: ReadonlyMap<string, true | ReadonlySet<string | undefined>>;
  /** No two VMs of the group on one host (hard anti-affinity with a group). */
  readonly hardAntiAffinity: boolean;
  /** Undefined when the VM has no spread constraint (or no group to count). */
  readonly spread: SpreadContext | undefined;
}

const NO_TOLERATIONS: ReadonlyMap<string, true | ReadonlySet<string | undefined>> = new Map();
const NO_SELECTOR: readonly (readonly [string, string])[] = [];

function tolerationMap(
  ts: readonly Taint[] | undefined,
): ReadonlyMap<string, true | ReadonlySet<string | undefined>> {
  if (!ts || ts.length === 0) return NO_TOLERATIONS;
  const m = new Map<string, true | Set<string | undefined>>();
  for (const t of ts) {
    if (t.value === undefined) m.set(t.key, true);
    else {
      const cur = m.get(t.key);
      if (cur === true) continue;
      if (cur) cur.add(t.value);
      else m.set(t.key, new Set([t.value]));
    }
  }
  return m;
}

/**
 * Prepares `vm` for filtering and scoring against `usage`. `defaultSpread`
 * applies to a grouped VM that has no spread constraint of its own.
 * @throws DWCPError ERR_INVALID_ARG on a malformed request (bad resources, a maxSkew below 1).
 */
export function prepareVm(vm: VmRequest, usage: Usage, defaultSpread?: SpreadConstraint): VmContext {
  if (typeof vm !== "object" || vm === null || typeof vm.id !== "string") {
    throw invalidArg("vm.id", "a string", vm?.id);
  }
  checkResources(`vm ${vm.id} resources`, vm.resources);
  const constraint = vm.spread ?? (vm.group !== undefined ? defaultSpread : undefined);
  if (constraint && (!Number.isInteger(constraint.maxSkew) || constraint.maxSkew < 1)) {
    throw invalidArg(`vm ${vm.id} spread.maxSkew`, "an integer ≥ 1", constraint.maxSkew);
  }
  const base: VmContext = {
    vm,
    cpu: vm.resources.cpu,
    memory: vm.resources.memory,
    disk: vm.resources.disk ?? 0,
    gpu: vm.resources.gpu ?? 0,
    selector: vm.nodeSelector ? Object.entries(vm.nodeSelector) : NO_SELECTOR,
    zones: vm.zones ? new Set(vm.zones) : undefined,
    tolerations: tolerationMap(vm.tolerations),
    hardAntiAffinity: vm.antiAffinity === "hard" && vm.group !== undefined,
    spread: undefined,
  };
  if (!constraint || vm.group === undefined) return base;
  const domains = usage.domains(constraint.topologyKey);
  const counts = usage.groupDomainCounts(vm.group, constraint.topologyKey);
  // A domain is eligible when one of its hosts passes every other filter (the
  // kube-scheduler's reading of skew): a domain the VM could never enter must
  // not pin the minimum at zero and block every other domain.
  const eligible = new Uint8Array(domains.names.length);
  let min = Number.POSITIVE_INFINITY;
  domains.hosts.forEach((hs, d) => {
    for (const h of hs) {
      if (checkHost(base, usage, h) === undefined) {
        eligible[d] = 1;
        min = Math.min(min, counts[d]!);
        break;
      }
    }
  });
  const spread: SpreadContext = {
    constraint,
    hard: constraint.mode === "hard",
    domains,
    counts,
    eligible,
    min: Number.isFinite(min) ? min : 0,
  };
  return { ...base, spread };
}

function tolerated(ctx: VmContext, t: Taint): boolean {
  const tol = ctx.tolerations.get(t.key);
  return tol === true || tol?.has(t.value) === true;
}

/**
 * The first filter host `h` fails for the prepared VM, or undefined when it
 * passes them all. Reads the live usage: a host filled by an earlier VM of the
 * batch fails here.
 */
export function checkHost(ctx: VmContext, usage: Usage, h: number): FilterName | undefined {
  const host = usage.hosts[h]!;
  if (host.draining) return "draining";
  if (host.maxVms !== undefined && usage.vms[h]! >= host.maxVms) return "maxVms";
  if (ctx.zones && !ctx.zones.has(host.labels?.zone as string)) return "zone";
  for (const [k, v] of ctx.selector) if (host.labels?.[k] !== v) return "selector";
  if (host.taints) for (const t of host.taints) if (!tolerated(ctx, t)) return "taint";
  if (usage.usedCpu[h]! + ctx.cpu > usage.allocCpu[h]!) return "cpu";
  if (usage.usedMemory[h]! + ctx.memory > usage.allocMemory[h]!) return "memory";
  if (ctx.disk > 0 && usage.usedDisk[h]! + ctx.disk > usage.allocDisk[h]!) return "disk";
  if (ctx.gpu > 0 && usage.usedGpu[h]! + ctx.gpu > usage.allocGpu[h]!) return "gpu";
  if (ctx.hardAntiAffinity && usage.groupOnHost(ctx.vm.group!, h) > 0) return "antiAffinity";
  const s = ctx.spread;
  if (s?.hard) {
    const d = s.domains.ofHost[h]!;
    // kube-scheduler's test: the domain after placing, against the least
    // loaded eligible domain before it. Holding it on every placement keeps
    // max − min ≤ maxSkew, since the minimum never falls.
    if (d < 0 || s.counts[d]! + 1 - s.min > s.constraint.maxSkew) return "spread";
  }
  return undefined;
}

/**
 * Why host `h` fails filter `f` for the prepared VM, in one line
 * ("memory: needs 4096 MiB, 1024 free"). Built only when an explanation is asked for.
 */
export function describeFilter(f: FilterName, ctx: VmContext, usage: Usage, h: number): string {
  const host = usage.hosts[h]!;
  const free = (alloc: Float64Array, used: Float64Array) => alloc[h]! - used[h]!;
  switch (f) {
    case "draining":
      return "draining: the host is draining";
    case "maxVms":
      return `maxVms: holds ${usage.vms[h]} of at most ${host.maxVms}`;
    case "zone":
      return `zone: ${host.labels?.zone ?? "(no zone label)"} not in [${[...(ctx.zones ?? [])].join(", ")}]`;
    case "selector": {
      const miss = ctx.selector.find(([k, v]) => host.labels?.[k] !== v);
      const [k, v] = miss ?? ["?", "?"];
      return `selector: needs ${k}=${v}, host has ${host.labels?.[k] === undefined ? `no ${k}` : `${k}=${host.labels[k]}`}`;
    }
    case "taint": {
      const t = host.taints?.find((x) => !tolerated(ctx, x));
      return `taint: ${t?.key}${t?.value === undefined ? "" : `=${t.value}`} not tolerated`;
    }
    case "cpu":
      return `cpu: needs ${ctx.cpu} mCPU, ${free(usage.allocCpu, usage.usedCpu)} free`;
    case "memory":
      return `memory: needs ${ctx.memory} MiB, ${free(usage.allocMemory, usage.usedMemory)} free`;
    case "disk":
      return `disk: needs ${ctx.disk} MiB, ${free(usage.allocDisk, usage.usedDisk)} free`;
    case "gpu":
      return `gpu: needs ${ctx.gpu}, ${free(usage.allocGpu, usage.usedGpu)} free`;
    case "antiAffinity":
      return `antiAffinity: ${usage.groupOnHost(ctx.vm.group!, h)} VM(s) of group ${ctx.vm.group} already here`;
    case "spread": {
      const s = ctx.spread!;
      const key = s.constraint.topologyKey;
      const d = s.domains.ofHost[h]!;
      if (d < 0) return `spread: the host has no ${key} label`;
      return `spread: ${key}=${s.domains.names[d]} would hold ${s.counts[d]! + 1} of group ${ctx.vm.group}, the least loaded eligible ${key} holds ${s.min} (maxSkew ${s.constraint.maxSkew})`;
    }
  }
}
