/**
 * Per-host usage bookkeeping for the placement pipeline: what each host may
 * hold (capacity × overcommit), what it holds now, and how many VMs of each
 * group sit on each host and in each topology domain.
 *
 * Hosts are addressed by index (their position in `state.hosts`) and the
 * numbers live in typed arrays: the filters and scores run once per candidate
 * per VM, so a lookup must cost an array read, not a map walk. Placing a VM
 * updates every figure at once ({@link Usage.add}), so a batch placed one VM
 * after another sees its own earlier decisions.
 */
import { DWCPError, invalidArg } from "../errors.js";
import type { Allocation, ClusterState, Host, Resources } from "./model.js";

/** A topology key's domains: one index per distinct label value, and each host's domain (−1: no label). */
export interface Domains {
  /** The label values, indexed by domain. */
  readonly names: readonly string[];
  /** Each host's domain index, −1 when the host lacks the label. */
  readonly ofHost: Int32Array;
  /** The host indices of each domain, in host order. */
  readonly hosts: readonly (readonly number[])[];
}

function checkAmount(name: string, v: unknown, optional: boolean): number {
  if (v === undefined && optional) return 0;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw invalidArg(name, "a finite number ≥ 0", v);
  return v;
}

/** Validates a resource vector (finite, non-negative), naming the offender on failure. */
export function checkResources(name: string, r: Resources | undefined): void {
  if (typeof r !== "object" || r === null) throw invalidArg(name, "a resource object", r);
  checkAmount(`${name}.cpu`, r.cpu, false);
  checkAmount(`${name}.memory`, r.memory, false);
  checkAmount(`${name}.disk`, r.disk, true);
  checkAmount(`${name}.gpu`, r.gpu, true);
}

function allocatable(h: Host, r: "cpu" | "memory" | "disk" | "gpu"): number {
  const ratio = h.overcommit?.[r] ?? 1;
  if (typeof ratio !== "number" || !Number.isFinite(ratio) || ratio < 0) {
    throw invalidArg(`host ${h.id} overcommit.${r}`, "a finite number ≥ 0", ratio);
  }
  // Floored: resources are integers, and a fractional allocatable would let a
  // check pass that a later exact sum would not.
  return Math.floor((h.capacity[r] ?? 0) * ratio);
}

/** The usage of every host of a cluster, updated as VMs are placed. */
export class Usage {
  /** The hosts, in the state's order (a host's index is its position here). */
  readonly hosts: readonly Host[];
  /** Host id → index. */
  readonly index: ReadonlyMap<string, number>;
  /** Allocatable milli-CPU per host (capacity × overcommit, floored). */
  readonly allocCpu: Float64Array;
  /** Allocatable memory (MiB) per host. */
  readonly allocMemory: Float64Array;
  /** Allocatable disk (MiB) per host. */
  readonly allocDisk: Float64Array;
  /** Allocatable GPUs per host. */
  readonly allocGpu: Float64Array;
  /** Used milli-CPU per host. */
  readonly usedCpu: Float64Array;
  /** Used memory (MiB) per host. */
  readonly usedMemory: Float64Array;
  /** Used disk (MiB) per host. */
  readonly usedDisk: Float64Array;
  /** Used GPUs per host. */
  readonly usedGpu: Float64Array;
  /** VMs per host. */
  readonly vms: Int32Array;
  /** Largest host memory capacity: the yardstick of migration cost. */
  readonly maxMemory: number;
  /** Highest host price: the yardstick of the price score. */
  readonly maxPrice: number;
  /** Current allocation of each VM id (vm → host index and what it uses), for moves. */
  private readonly placed = new Map<string, { host: number; resources: Resources; group?: string }>();
  /** group → host index → VMs of the group there. */
  private readonly groupHosts = new Map<string, Map<number, number>>();
  /** topology key → its domains, built on first use. */
  private readonly domainsByKey = new Map<string, Domains>();
  /** group → topology key → VMs of the group per domain, built on first use and kept current. */
  private readonly groupDomains = new Map<string, Map<string, Int32Array>>();

  /**
   * Builds the usage of `state`. Allocations on hosts the state does not list
   * are ignored (a host that left holds nothing placement can use).
   * @throws DWCPError ERR_INVALID_ARG on duplicate host ids, negative or non-finite amounts.
   */
  constructor(state: ClusterState) {
    this.hosts = state.hosts;
    const n = state.hosts.length;
    const index = new Map<string, number>();
    this.allocCpu = new Float64Array(n);
    this.allocMemory = new Float64Array(n);
    this.allocDisk = new Float64Array(n);
    this.allocGpu = new Float64Array(n);
    this.usedCpu = new Float64Array(n);
    this.usedMemory = new Float64Array(n);
    this.usedDisk = new Float64Array(n);
    this.usedGpu = new Float64Array(n);
    this.vms = new Int32Array(n);
    let maxMemory = 0;
    let maxPrice = 0;
    state.hosts.forEach((h, i) => {
      if (typeof h.id !== "string") throw invalidArg("host.id", "a string", h.id);
      if (index.has(h.id))
        throw new DWCPError("ERR_INVALID_ARG", `duplicate host id ${JSON.stringify(h.id)}`);
      index.set(h.id, i);
      checkResources(`host ${h.id} capacity`, h.capacity);
      this.allocCpu[i] = allocatable(h, "cpu");
      this.allocMemory[i] = allocatable(h, "memory");
      this.allocDisk[i] = allocatable(h, "disk");
      this.allocGpu[i] = allocatable(h, "gpu");
      maxMemory = Math.max(maxMemory, h.capacity.memory);
      maxPrice = Math.max(maxPrice, checkAmount(`host ${h.id} price`, h.price, true));
    });
    this.index = index;
    this.maxMemory = maxMemory;
    this.maxPrice = maxPrice;
    for (const a of state.allocations) {
      const h = index.get(a.host);
      if (h === undefined) continue;
      checkResources(`allocation ${a.vm} resources`, a.resources);
      this.add(h, a.vm, a.resources, a.group);
    }
  }

  /** Where VM `vm` is allocated now (host index), if anywhere. */
  hostOf(vm: string): number | undefined {
    return this.placed.get(vm)?.host;
  }

  /** Records VM `vm` on host `h`: every figure the next placement reads moves with it. */
  add(h: number, vm: string, r: Resources, group: string | undefined): void {
    // A VM listed twice (a stale duplicate) counts once, where it was seen last.
    if (this.placed.has(vm)) this.remove(vm);
    this.usedCpu[h]! += r.cpu;
    this.usedMemory[h]! += r.memory;
    this.usedDisk[h]! += r.disk ?? 0;
    this.usedGpu[h]! += r.gpu ?? 0;
    this.vms[h]! += 1;
    this.placed.set(vm, group === undefined ? { host: h, resources: r } : { host: h, resources: r, group });
    if (group !== undefined) this.bumpGroup(group, h, 1);
  }

  /** Takes VM `vm` off its host (a move starts here); returns what it was, if it was placed. */
  remove(vm: string): Allocation | undefined {
    const p = this.placed.get(vm);
    if (!p) return undefined;
    const h = p.host;
    const r = p.resources;
    this.usedCpu[h]! -= r.cpu;
    this.usedMemory[h]! -= r.memory;
    this.usedDisk[h]! -= r.disk ?? 0;
    this.usedGpu[h]! -= r.gpu ?? 0;
    this.vms[h]! -= 1;
    this.placed.delete(vm);
    if (p.group !== undefined) this.bumpGroup(p.group, h, -1);
    const host = this.hosts[h]!.id;
    return p.group === undefined ? { vm, host, resources: r } : { vm, host, resources: r, group: p.group };
  }

  private bumpGroup(group: string, h: number, d: number): void {
    let m = this.groupHosts.get(group);
    if (!m) {
      m = new Map();
      this.groupHosts.set(group, m);
    }
    const c = (m.get(h) ?? 0) + d;
    if (c === 0) m.delete(h);
    else m.set(h, c);
    const byKey = this.groupDomains.get(group);
    if (byKey) {
      for (const [key, counts] of byKey) {
        const dom = this.domainsByKey.get(key)!.ofHost[h]!;
        if (dom >= 0) counts[dom]! += d;
      }
    }
  }

  /** VMs of `group` on host `h`. */
  groupOnHost(group: string, h: number): number {
    return this.groupHosts.get(group)?.get(h) ?? 0;
  }

  /** The hosts holding VMs of `group`, with their counts (read-only view). */
  groupHostCounts(group: string): ReadonlyMap<number, number> | undefined {
    return this.groupHosts.get(group);
  }

  /** The domains of topology key `key` (label values), built once per key. */
  domains(key: string): Domains {
    let d = this.domainsByKey.get(key);
    if (d) return d;
    const names: string[] = [];
    const byName = new Map<string, number>();
    const ofHost = new Int32Array(this.hosts.length).fill(-1);
    const hosts: number[][] = [];
    this.hosts.forEach((h, i) => {
      const v = h.labels?.[key];
      if (v === undefined) return;
      let k = byName.get(v);
      if (k === undefined) {
        k = names.length;
        byName.set(v, k);
        names.push(v);
        hosts.push([]);
      }
      ofHost[i] = k;
      hosts[k]!.push(i);
    });
    d = { names, ofHost, hosts };
    this.domainsByKey.set(key, d);
    return d;
  }

  /** VMs of `group` per domain of `key` (indexed like {@link Domains.names}); kept current by add/remove. */
  groupDomainCounts(group: string, key: string): Int32Array {
    let byKey = this.groupDomains.get(group);
    if (!byKey) {
      byKey = new Map();
      this.groupDomains.set(group, byKey);
    }
    let counts = byKey.get(key);
    if (counts) return counts;
    const dom = this.domains(key);
    counts = new Int32Array(dom.names.length);
    for (const [h, c] of this.groupHosts.get(group) ?? []) {
      const k = dom.ofHost[h]!;
      if (k >= 0) counts[k]! += c;
    }
    byKey.set(key, counts);
    return counts;
  }
}
