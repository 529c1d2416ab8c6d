// The baseline of `npm run bench -- place`: Nomad's service-job placement as
// its documentation and design notes describe it, written here from that
// description (no Nomad code), over DWCP's placement model so both placers
// read the same instance.
//
// Per evaluation (one call):
// - one shuffle of the hosts (seeded here); each placement resumes the scan
//   where the previous one stopped (the rotating static source);
// - feasibility, first failing check wins: node eligibility (draining), the
//   job's constraints (node selector, zone allow-list, taints standing in for
//   node-class constraints, a per-node allocation cap), resource fit (cpu,
//   memory, disk, devices) and `distinct_hosts` for groups that ask for hard
//   anti-affinity;
// - scores of each feasible node: BinPack (BestFit v3, `20 − (10^freeCpu +
//   10^freeMem)` over the fractions free after placing, clamped to [0, 18],
//   divided by 18) and, when the node already holds VMs of the same group,
//   the job anti-affinity penalty −(collisions + 1) / desired count; the
//   final score is the mean of the scores present;
// - a limit iterator passes ⌈log₂ n⌉ feasible nodes (at least 2), setting aside
//   up to 3 whose final score is negative while better ones may follow;
// - max score picks the winner (first seen on ties).
// Spread blocks are soft in Nomad and left out: the comparison reports the
// skew each placer leaves.

import { seededRandom } from "../../src/env/index.js";
import type { ClusterState, Placement, VmRequest } from "../../src/placement/model.js";

/** The reference's plan. */
export interface BestFitPlan {
  placements: Placement[];
  unplaced: string[];
}

const MAX_SKIP = 3;

function bestFit(freeCpu: number, freeMem: number): number {
  const s = 20 - (10 ** freeCpu + 10 ** freeMem);
  return Math.min(18, Math.max(0, s));
}

/** Places `vms` in order with the Nomad-style iterator stack; deterministic for a seed. */
export function placeBestFit(state: ClusterState, vms: readonly VmRequest[], seed: number): BestFitPlan {
  const hosts = state.hosts;
  const n = hosts.length;
  const index = new Map(hosts.map((h, i) => [h.id, i]));
  const cap = (i: number, r: "cpu" | "memory" | "disk" | "gpu") =>
    Math.floor((hosts[i]!.capacity[r] ?? 0) * (hosts[i]!.overcommit?.[r] ?? 1));
  const allocCpu = hosts.map((_, i) => cap(i, "cpu"));
  const allocMem = hosts.map((_, i) => cap(i, "memory"));
  const allocDisk = hosts.map((_, i) => cap(i, "disk"));
  const allocGpu = hosts.map((_, i) => cap(i, "gpu"));
  const usedCpu = new Float64Array(n);
  const usedMem = new Float64Array(n);
  const usedDisk = new Float64Array(n);
  const usedGpu = new Float64Array(n);
  const count = new Int32Array(n);
  // group → node → VMs of the group proposed or running there
  const groupOn = new Map<string, Map<number, number>>();
  const book = (i: number, r: VmRequest["resources"], group: string | undefined) => {
    usedCpu[i]! += r.cpu;
    usedMem[i]! += r.memory;
    usedDisk[i]! += r.disk ?? 0;
    usedGpu[i]! += r.gpu ?? 0;
    count[i]! += 1;
    if (group !== undefined) {
      let m = groupOn.get(group);
      if (!m) {
        m = new Map<number, number>();
        groupOn.set(group, m);
      }
      m.set(i, (m.get(i) ?? 0) + 1);
    }
  };
  const desired = new Map<string, number>();
  for (const a of state.allocations) {
    const i = index.get(a.host);
    if (i !== undefined) book(i, a.resources, a.group);
    if (a.group !== undefined) desired.set(a.group, (desired.get(a.group) ?? 0) + 1);
  }
  for (const v of vms) if (v.group !== undefined) desired.set(v.group, (desired.get(v.group) ?? 0) + 1);

  const order = Array.from({ length: n }, (_, i) => i);
  const rnd = seededRandom(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = rnd.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const limit = Math.max(2, Math.ceil(Math.log2(Math.max(1, n))));
  let offset = 0;

  const feasible = (v: VmRequest, i: number): boolean => {
    const h = hosts[i]!;
    if (h.draining) return false;
    if (v.nodeSelector) for (const k in v.nodeSelector) if (h.labels?.[k] !== v.nodeSelector[k]) return false;
    if (v.zones && !v.zones.includes(h.labels?.zone as string)) return false;
    if (h.taints) {
      for (const t of h.taints) {
        const ok = v.tolerations?.some(
          (x) => x.key === t.key && (x.value === undefined || x.value === t.value),
        );
        if (!ok) return false;
      }
    }
    if (h.maxVms !== undefined && count[i]! >= h.maxVms) return false;
    const r = v.resources;
    if (usedCpu[i]! + r.cpu > allocCpu[i]!) return false;
    if (usedMem[i]! + r.memory > allocMem[i]!) return false;
    if ((r.disk ?? 0) > 0 && usedDisk[i]! + (r.disk ?? 0) > allocDisk[i]!) return false;
    if ((r.gpu ?? 0) > 0 && usedGpu[i]! + (r.gpu ?? 0) > allocGpu[i]!) return false;
    if (v.antiAffinity === "hard" && v.group !== undefined && (groupOn.get(v.group)?.get(i) ?? 0) > 0)
      return false;
    return true;
  };

  const score = (v: VmRequest, i: number): number => {
    const fc = allocCpu[i]! > 0 ? Math.max(0, 1 - (usedCpu[i]! + v.resources.cpu) / allocCpu[i]!) : 0;
    const fm = allocMem[i]! > 0 ? Math.max(0, 1 - (usedMem[i]! + v.resources.memory) / allocMem[i]!) : 0;
    let sum = bestFit(fc, fm) / 18;
    let k = 1;
    const collisions = v.group !== undefined ? (groupOn.get(v.group)?.get(i) ?? 0) : 0;
    if (collisions > 0) {
      sum += -(collisions + 1) / (desired.get(v.group!) ?? 1);
      k++;
    }
    return sum / k;
  };

  const placements: Placement[] = [];
  const unplaced: string[] = [];
  for (const v of vms) {
    let best = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    let passed = 0;
    const skipped: { i: number; s: number }[] = [];
    let seen = 0;
    for (; seen < n && passed < limit; seen++) {
      const i = order[(offset + seen) % n]!;
      if (!feasible(v, i)) continue;
      const s = score(v, i);
      if (s < 0 && skipped.length < MAX_SKIP) {
        skipped.push({ i, s });
        continue;
      }
      passed++;
      if (s > bestScore) {
        bestScore = s;
        best = i;
      }
    }
    // The limit was not reached: the set-aside nodes are options again.
    for (const o of skipped) {
      if (passed >= limit) break;
      passed++;
      if (o.s > bestScore) {
        bestScore = o.s;
        best = o.i;
      }
    }
    if (n > 0) offset = (offset + seen) % n;
    if (best < 0) {
      unplaced.push(v.id);
      continue;
    }
    book(best, v.resources, v.group);
    placements.push({ vm: v.id, host: hosts[best]!.id });
  }
  return { placements, unplaced };
}
