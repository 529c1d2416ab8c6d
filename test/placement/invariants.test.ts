/**
 * ITP's online pipeline under fast-check: on random clusters and batches, no
 * host ends over its allocatable capacity, every placement honours every hard
 * rule, the plan depends only on the inputs and the seed, and a hard spread
 * keeps its skew within maxSkew whenever the instance allows it. The checks
 * below recompute everything from the plan; they do not reuse the pipeline's
 * bookkeeping.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Allocation, ClusterState, Host, Resources, VmRequest } from "../../src/placement/model.js";
import { place } from "../../src/placement/pipeline.js";

const ZONES = ["z0", "z1", "z2"];

const hostArb = (i: number) =>
  fc
    .record({
      cpu: fc.integer({ min: 0, max: 16_000 }),
      memory: fc.integer({ min: 0, max: 32_768 }),
      disk: fc.integer({ min: 0, max: 1000 }),
      gpu: fc.integer({ min: 0, max: 2 }),
      ocCpu: fc.constantFrom(1, 1.5, 2),
      zone: fc.constantFrom(...ZONES),
      arch: fc.constantFrom("x86", "arm"),
      taint: fc.constantFrom(undefined, "gpu", "spot"),
      draining: fc.integer({ min: 0, max: 9 }).map((x) => x === 0),
      maxVms: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }),
    })
    .map(
      (r): Host => ({
        id: `h${i}`,
        capacity: { cpu: r.cpu, memory: r.memory, disk: r.disk, gpu: r.gpu },
        overcommit: { cpu: r.ocCpu },
        labels: { zone: r.zone, region: r.zone === "z2" ? "r1" : "r0", arch: r.arch },
        ...(r.taint ? { taints: [{ key: r.taint, ...(r.taint === "spot" ? { value: "yes" } : {}) }] } : {}),
        ...(r.draining ? { draining: true } : {}),
        ...(r.maxVms !== undefined ? { maxVms: r.maxVms } : {}),
      }),
    );

interface GroupRule {
  antiAffinity: "hard" | "soft" | false;
  spread: VmRequest["spread"];
}
const groupRuleArb: fc.Arbitrary<GroupRule> = fc.record({
  antiAffinity: fc.constantFrom("hard" as const, "soft" as const, false as const),
  spread: fc.option(
    fc.record({
      topologyKey: fc.constantFrom("zone", "region"),
      maxSkew: fc.integer({ min: 1, max: 2 }),
      mode: fc.constantFrom("hard" as const, "soft" as const),
    }),
    { nil: undefined },
  ),
});

const vmArb = fc.record({
  cpu: fc.integer({ min: 0, max: 6000 }),
  memory: fc.integer({ min: 0, max: 12_000 }),
  disk: fc.integer({ min: 0, max: 300 }),
  gpu: fc.constantFrom(0, 0, 0, 1),
  group: fc.constantFrom(undefined, 0, 1, 2),
  arch: fc.constantFrom(undefined, undefined, "arm", "x86"),
  zones: fc.option(fc.subarray(ZONES, { minLength: 1 }), { nil: undefined }),
  tolerate: fc.constantFrom(undefined, "gpu", "spot", "spot=no"),
  affinity: fc.constantFrom(undefined, "z0", "z1"),
});

type VmGen = typeof vmArb extends fc.Arbitrary<infer T> ? T : never;

const instanceArb = fc
  .record({
    hostCount: fc.integer({ min: 1, max: 12 }),
    rules: fc.array(groupRuleArb, { minLength: 3, maxLength: 3 }),
    vms: fc.array(vmArb, { maxLength: 40 }),
    initial: fc.array(fc.tuple(fc.nat(), vmArb), { maxLength: 15 }),
    seed: fc.integer(),
  })
  .chain((r) =>
    fc.tuple(...Array.from({ length: r.hostCount }, (_, i) => hostArb(i))).map((hosts) => ({ ...r, hosts })),
  )
  .map(({ hosts, rules, vms, initial, seed }) => {
    const toVm = (v: VmGen, id: string): VmRequest => {
      const rule = v.group === undefined ? undefined : rules[v.group]!;
      const tol = v.tolerate?.split("=");
      return {
        id,
        resources: { cpu: v.cpu, memory: v.memory, disk: v.disk, gpu: v.gpu },
        ...(v.group !== undefined ? { group: `g${v.group}` } : {}),
        ...(rule?.antiAffinity ? { antiAffinity: rule.antiAffinity } : {}),
        ...(rule?.spread ? { spread: rule.spread } : {}),
        ...(v.arch ? { nodeSelector: { arch: v.arch } } : {}),
        ...(v.zones ? { zones: v.zones } : {}),
        ...(tol
          ? { tolerations: [tol.length > 1 ? { key: tol[0]!, value: tol[1]! } : { key: tol[0]! }] }
          : {}),
        ...(v.affinity ? { affinity: { zone: v.affinity } } : {}),
      };
    };
    // Initial allocations that themselves respect capacity, maxVms and hard anti-affinity.
    const allocations: Allocation[] = [];
    const load = hosts.map(() => ({ cpu: 0, memory: 0, disk: 0, gpu: 0, n: 0, groups: new Set<string>() }));
    initial.forEach(([at, v], k) => {
      const i = at % hosts.length;
      const h = hosts[i]!;
      const l = load[i]!;
      const vm = toVm(v, `old${k}`);
      const fits =
        l.cpu + v.cpu <= alloc(h, "cpu") &&
        l.memory + v.memory <= alloc(h, "memory") &&
        l.disk + v.disk <= alloc(h, "disk") &&
        l.gpu + v.gpu <= alloc(h, "gpu") &&
        (h.maxVms === undefined || l.n < h.maxVms) &&
        !(vm.group !== undefined && l.groups.has(vm.group));
      if (!fits) return;
      l.cpu += v.cpu;
      l.memory += v.memory;
      l.disk += v.disk;
      l.gpu += v.gpu;
      l.n++;
      if (vm.group !== undefined) l.groups.add(vm.group);
      allocations.push({
        vm: vm.id,
        host: h.id,
        resources: vm.resources,
        ...(vm.group !== undefined ? { group: vm.group } : {}),
      });
    });
    const state: ClusterState = { hosts, allocations };
    return { state, vms: vms.map((v, k) => toVm(v, `vm${k}`)), seed };
  });

function alloc(h: Host, r: keyof Resources): number {
  return Math.floor((h.capacity[r] ?? 0) * (h.overcommit?.[r] ?? 1));
}

function tolerated(vm: VmRequest, key: string, value: string | undefined): boolean {
  return (vm.tolerations ?? []).some((t) => t.key === key && (t.value === undefined || t.value === value));
}

const limits = fc.constantFrom("log2" as const, "all" as const, "adaptive" as const, 1, 3);

describe("ITP pipeline invariants", () => {
  it("no host ends over its allocatable capacity or maxVms after a batch", () => {
    fc.assert(
      fc.property(instanceArb, limits, ({ state, vms, seed }, limit) => {
        const plan = place(state, vms, { seed, limit });
        const byId = new Map(vms.map((v) => [v.id, v]));
        for (const h of state.hosts) {
          const mine = [
            ...state.allocations.filter((a) => a.host === h.id).map((a) => a.resources),
            ...plan.placements.filter((p) => p.host === h.id).map((p) => byId.get(p.vm)!.resources),
          ];
          for (const r of ["cpu", "memory", "disk", "gpu"] as const) {
            const sum = mine.reduce((s, x) => s + (x[r] ?? 0), 0);
            expect(sum, `${h.id} ${r}`).toBeLessThanOrEqual(alloc(h, r));
          }
          if (h.maxVms !== undefined) expect(mine.length).toBeLessThanOrEqual(h.maxVms);
        }
        expect(plan.placements.length + plan.unplaced.length).toBe(vms.length);
      }),
      { numRuns: 1000 },
    );
  });

  it("every placement honours selector, taints, zones, draining and hard anti-affinity", () => {
    // Tallies that the generated instances exercise each rule (a vacuous pass fails).
    const seen = { placed: 0, selector: 0, taint: 0, zones: 0, hardAnti: 0, unplaced: 0 };
    fc.assert(
      fc.property(instanceArb, limits, ({ state, vms, seed }, limit) => {
        const plan = place(state, vms, { seed, limit });
        const hosts = new Map(state.hosts.map((h) => [h.id, h]));
        const byId = new Map(vms.map((v) => [v.id, v]));
        const groupOn = (group: string, host: string) =>
          state.allocations.filter((a) => a.group === group && a.host === host).length +
          plan.placements.filter((p) => p.host === host && byId.get(p.vm)!.group === group).length;
        for (const p of plan.placements) {
          const vm = byId.get(p.vm)!;
          const h = hosts.get(p.host)!;
          seen.placed++;
          if (vm.nodeSelector) seen.selector++;
          if (h.taints) seen.taint++;
          if (vm.zones) seen.zones++;
          if (vm.antiAffinity === "hard") seen.hardAnti++;
          expect(h.draining ?? false).toBe(false);
          for (const [k, v] of Object.entries(vm.nodeSelector ?? {})) expect(h.labels?.[k]).toBe(v);
          for (const t of h.taints ?? []) expect(tolerated(vm, t.key, t.value)).toBe(true);
          if (vm.zones) expect(vm.zones).toContain(h.labels?.zone);
          if (vm.antiAffinity === "hard") expect(groupOn(vm.group!, p.host)).toBe(1);
        }
        // Unplaced means no host passed: the scan went through every host.
        for (const u of plan.unplaced) expect(u.metrics.evaluated).toBe(state.hosts.length);
        seen.unplaced += plan.unplaced.length;
      }),
      { numRuns: 1000 },
    );
    for (const [k, v] of Object.entries(seen)) expect(v, k).toBeGreaterThan(100);
  });

  it("gives the same plan for the same inputs and seed (and copies of them)", () => {
    fc.assert(
      fc.property(instanceArb, limits, ({ state, vms, seed }, limit) => {
        const a = place(state, vms, { seed, limit });
        const b = place(structuredClone(state), structuredClone(vms), { seed, limit });
        expect(b).toEqual(a);
      }),
      { numRuns: 300 },
    );
  });

  it("keeps a hard spread's skew ≤ maxSkew when the instance allows it", () => {
    // Every zone has hosts with room for every VM, and the existing replicas
    // start within the skew, so the constraint is satisfiable at every step.
    const arb = fc.record({
      zones: fc.integer({ min: 2, max: 5 }),
      hostsPerZone: fc.integer({ min: 1, max: 4 }),
      maxSkew: fc.integer({ min: 1, max: 3 }),
      replicas: fc.integer({ min: 1, max: 40 }),
      others: fc.integer({ min: 0, max: 30 }),
      antiAffinity: fc.boolean(),
      key: fc.constantFrom("zone", "region"),
      initial: fc.array(fc.nat(), { maxLength: 6 }),
      seed: fc.integer(),
      limit: limits,
      zoneOrder: fc.integer({ min: 0, max: 1000 }),
    });
    fc.assert(
      fc.property(arb, (c) => {
        const hosts: Host[] = [];
        for (let z = 0; z < c.zones; z++) {
          for (
            let k = 0;
            k < c.hostsPerZone + (c.antiAffinity ? Math.ceil(c.replicas / c.zones) + c.maxSkew + 6 : 0);
            k++
          ) {
            const zone = `z${(z + c.zoneOrder) % c.zones}`;
            hosts.push({
              id: `h${hosts.length}`,
              capacity: { cpu: 200_000, memory: 400_000 },
              labels: { zone, region: zone },
            });
          }
        }
        const spread = { topologyKey: c.key, maxSkew: c.maxSkew, mode: "hard" as const };
        // Initial replicas, one per zone at most (skew ≤ 1 ≤ maxSkew), on distinct hosts.
        const usedZones = new Set<number>();
        const allocations: Allocation[] = [];
        c.initial.forEach((z, k) => {
          const zi = z % c.zones;
          if (usedZones.has(zi)) return;
          usedZones.add(zi);
          const h = hosts.find((x) => x.labels?.zone === `z${zi}`)!;
          allocations.push({ vm: `old${k}`, host: h.id, resources: { cpu: 1000, memory: 1000 }, group: "g" });
        });
        // Replicas interleaved with unrelated VMs, which take room but not spread.
        const vms: VmRequest[] = [];
        for (let i = 0; i < Math.max(c.replicas, c.others); i++) {
          if (i < c.replicas) {
            vms.push({
              id: `r${i}`,
              resources: { cpu: 1000 + ((i * 37) % 3000), memory: 1000 + ((i * 91) % 5000) },
              group: "g",
              spread,
              ...(c.antiAffinity ? { antiAffinity: "hard" as const } : {}),
            });
          }
          if (i < c.others) vms.push({ id: `o${i}`, resources: { cpu: 2000, memory: 4000 } });
        }
        const plan = place({ hosts, allocations }, vms, { seed: c.seed, limit: c.limit });
        expect(plan.unplaced).toEqual([]);
        const hostZone = new Map(hosts.map((h) => [h.id, h.labels!.zone!]));
        const byId = new Map(vms.map((v) => [v.id, v]));
        const counts = new Map<string, number>();
        for (const h of hosts) counts.set(h.labels!.zone!, 0);
        const bump = (host: string) => counts.set(hostZone.get(host)!, counts.get(hostZone.get(host)!)! + 1);
        for (const a of allocations) bump(a.host);
        // After every prefix of the plan, not only at the end.
        const skew = () => Math.max(...counts.values()) - Math.min(...counts.values());
        expect(skew()).toBeLessThanOrEqual(c.maxSkew);
        for (const p of plan.placements) {
          if (byId.get(p.vm)!.group !== "g") continue;
          bump(p.host);
          expect(skew()).toBeLessThanOrEqual(c.maxSkew);
        }
      }),
      { numRuns: 500 },
    );
  });
});
