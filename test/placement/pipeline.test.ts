/**
 * ITP's pipeline beyond the invariants: explanations (per candidate and the
 * counts), candidate limiting, the soft scores that decide between feasible
 * hosts, and the per-mode weights.
 */
import { describe, expect, it } from "vitest";
import { isDWCPError } from "../../src/errors.js";
import { feasibleWanted } from "../../src/placement/candidates.js";
import type { ClusterState, Host, ScoreWeights, VmRequest } from "../../src/placement/model.js";
import { Placer, place } from "../../src/placement/pipeline.js";
import { bestFitV3 } from "../../src/placement/scores.js";
import { defaultSpreadFor, weightsFor } from "../../src/placement/weights.js";

const ZERO: ScoreWeights = {
  binpack: 0,
  balance: 0,
  spread: 0,
  affinity: 0,
  antiAffinity: 0,
  network: 0,
  migration: 0,
  price: 0,
};

function host(id: string, extra: Partial<Host> = {}): Host {
  return { id, capacity: { cpu: 8000, memory: 16_384 }, labels: { zone: "z0", region: "r0" }, ...extra };
}

function uniform(n: number, labels: (i: number) => Record<string, string> = () => ({})): Host[] {
  return Array.from({ length: n }, (_, i) => host(`h${i}`, { labels: { zone: `z${i % 3}`, ...labels(i) } }));
}

const small = (id: string, extra: Partial<VmRequest> = {}): VmRequest => ({
  id,
  resources: { cpu: 500, memory: 1024 },
  ...extra,
});

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(isDWCPError(e) && e.code).toBe(code);
    return;
  }
  throw new Error("expected a throw");
}

describe("explanations", () => {
  const state: ClusterState = {
    hosts: [
      host("full"),
      host("drain", { draining: true }),
      host("ok", { price: 2 }),
      host("arm", { labels: { zone: "z0", arch: "arm" } }),
    ],
    allocations: [{ vm: "big", host: "full", resources: { cpu: 1000, memory: 15_360 } }],
  };
  const vm: VmRequest = { id: "v", resources: { cpu: 1000, memory: 4096 }, nodeSelector: { zone: "z0" } };

  it("says why each host was filtered out and how each feasible one scored", () => {
    const r = place(state, [vm], { explain: true, limit: "all" });
    expect(r.placements).toEqual([{ vm: "v", host: r.explanations![0]!.host }]);
    const ex = r.explanations![0]!;
    const by = new Map(ex.candidates.map((c) => [c.host, c]));
    expect(by.get("full")).toEqual({
      host: "full",
      filter: "memory",
      reason: "memory: needs 4096 MiB, 1024 free",
    });
    expect(by.get("drain")?.filter).toBe("draining");
    const ok = by.get("ok")!;
    expect(ok.filter).toBeUndefined();
    expect(Object.keys(ok.scores!).sort()).toEqual(Object.keys(ZERO).sort());
    // The total is the weighted sum of the breakdown.
    const w = weightsFor("datacenter");
    const sum = (Object.keys(ok.scores!) as (keyof ScoreWeights)[]).reduce(
      (s, k) => s + w[k] * ok.scores![k],
      0,
    );
    expect(ok.total).toBeCloseTo(sum, 0);
    // Cheaper is better: "arm" (price 0) outranks "ok" (price 2) on price alone.
    expect(by.get("arm")!.scores!.price).toBeGreaterThan(ok.scores!.price);
    expect(ex.metrics).toEqual({ evaluated: 4, filtered: { memory: 1, draining: 1 }, scored: 2 });
  });

  it("names the failing label, taint, zone and spread in one line each", () => {
    const s: ClusterState = {
      hosts: [
        host("a", { labels: { zone: "z1", arch: "x86" } }),
        host("b", { taints: [{ key: "gpu", value: "a100" }] }),
        host("c", { maxVms: 0 }),
      ],
      allocations: [],
    };
    const r = place(
      s,
      [{ ...small("v"), nodeSelector: { arch: "arm" }, tolerations: [{ key: "gpu", value: "t4" }] }],
      {
        explain: true,
      },
    );
    const reasons = r.explanations![0]!.candidates.map((c) => c.reason).sort();
    expect(reasons).toEqual([
      "maxVms: holds 0 of at most 0",
      "selector: needs arch=arm, host has arch=x86",
      "selector: needs arch=arm, host has no arch",
    ]);
    const z = place(s, [{ ...small("w"), zones: ["z9"] }], { explain: true });
    expect(z.explanations![0]!.candidates.find((c) => c.host === "a")!.reason).toBe("zone: z1 not in [z9]");
    const t = place(
      { hosts: [s.hosts[1]!], allocations: [] },
      [{ ...small("x"), tolerations: [{ key: "gpu", value: "t4" }] }],
      { explain: true },
    );
    expect(t.explanations![0]!.candidates[0]!.reason).toBe("taint: gpu=a100 not tolerated");
    const sp: ClusterState = {
      hosts: [
        host("p", { labels: { zone: "z0" } }),
        host("q", { labels: { zone: "z1" } }),
        host("nolabel", { labels: {} }),
      ],
      allocations: [{ vm: "old", host: "p", resources: { cpu: 1, memory: 1 }, group: "g" }],
    };
    const spreadVm = small("s", { group: "g", spread: { topologyKey: "zone", maxSkew: 1, mode: "hard" } });
    const e = place(sp, [spreadVm], { explain: true, limit: "all" });
    expect(e.placements).toEqual([{ vm: "s", host: "q" }]);
    const why = new Map(e.explanations![0]!.candidates.map((c) => [c.host, c.reason]));
    expect(why.get("p")).toBe(
      "spread: zone=z0 would hold 2 of group g, the least loaded eligible zone holds 0 (maxSkew 1)",
    );
    expect(why.get("nolabel")).toBe("spread: the host has no zone label");
  });

  it("reports an unplaced VM with its counts, explanations or not", () => {
    for (const explain of [false, true]) {
      const r = place(state, [{ id: "huge", resources: { cpu: 1000, memory: 1 << 20 } }], { explain });
      expect(r.placements).toEqual([]);
      expect(r.unplaced[0]!.metrics).toEqual({
        evaluated: 4,
        filtered: { memory: 3, draining: 1 },
        scored: 0,
      });
      expect(r.unplaced[0]!.reason).toBe("vm huge: no feasible host among 4 evaluated: memory 3, draining 1");
      expect(r.explanations === undefined).toBe(!explain);
    }
  });

  it("does not change the plan when explanations are on", () => {
    const hosts = uniform(50);
    const vms = Array.from({ length: 80 }, (_, i) =>
      small(`v${i}`, { resources: { cpu: 100 * (i % 7), memory: 700 * (i % 5) } }),
    );
    const a = place({ hosts, allocations: [] }, vms, { seed: 3 });
    const b = place({ hosts, allocations: [] }, vms, { seed: 3, explain: true });
    expect(b.placements).toEqual(a.placements);
    expect(a.explanations).toBeUndefined();
    expect(b.explanations).toHaveLength(80);
  });
});

describe("candidate limiting", () => {
  it("computes Nomad's log₂ and kube's adaptive percentage", () => {
    expect(feasibleWanted("log2", 1000)).toBe(10);
    expect(feasibleWanted("log2", 2)).toBe(2);
    expect(feasibleWanted("log2", 1)).toBe(1);
    expect(feasibleWanted("adaptive", 50)).toBe(50);
    expect(feasibleWanted("adaptive", 1000)).toBe(420);
    expect(feasibleWanted("adaptive", 5000)).toBe(500);
    expect(feasibleWanted("adaptive", 100_000)).toBe(5000);
    expect(feasibleWanted("all", 77)).toBe(77);
    expect(feasibleWanted(5, 3)).toBe(3);
    expectCode(() => feasibleWanted(0, 3), "ERR_INVALID_ARG");
  });

  it("scores only as many feasible hosts as the limit asks, and keeps looking past infeasible ones", () => {
    const hosts = uniform(1000);
    for (const [limit, want] of [
      ["log2", 10],
      [4, 4],
      ["adaptive", 420],
      ["all", 1000],
    ] as const) {
      const r = new Placer({ hosts, allocations: [] }, { limit }).place(small("v"));
      expect(r.metrics).toEqual({ evaluated: want, filtered: {}, scored: want });
    }
    // Only 5 hosts in z9: the scan goes on until it found log2(100) = 7, or ran out.
    const sparse = uniform(100, (i) => (i % 20 === 0 ? { zone: "z9" } : {}));
    const r = new Placer({ hosts: sparse, allocations: [] }, { explain: true }).place(
      small("v", { zones: ["z9"] }),
    );
    expect(r.metrics).toEqual({ evaluated: 100, filtered: { zone: 95 }, scored: 5 });
    expect(r.host).toMatch(/^h(0|20|40|60|80)$/);
  });

  it("looks at different hosts under different seeds, and at the best host with no limit", () => {
    const hosts = uniform(200);
    const chosen = new Set<string>();
    for (let seed = 0; seed < 10; seed++)
      chosen.add(place({ hosts, allocations: [] }, [small("v")], { seed }).placements[0]!.host);
    expect(chosen.size).toBeGreaterThan(1);
    // One host half full: bin-packing over every host finds it whatever the seed.
    const busy = { hosts, allocations: [{ vm: "x", host: "h137", resources: { cpu: 4000, memory: 8192 } }] };
    for (let seed = 0; seed < 5; seed++) {
      expect(place(busy, [small("v")], { seed, limit: "all" }).placements[0]!.host).toBe("h137");
    }
  });
});

describe("scores", () => {
  it("implements BestFit v3 within [0, 18]", () => {
    expect(bestFitV3(0, 0)).toBe(18);
    expect(bestFitV3(1, 1)).toBe(0);
    expect(bestFitV3(0.5, 0.5)).toBeCloseTo(20 - 2 * Math.sqrt(10));
  });

  it("prefers the current host of a moved VM, and leaves a draining one", () => {
    const hosts = uniform(64);
    const state: ClusterState = {
      hosts,
      allocations: [{ vm: "m", host: "h42", resources: { cpu: 500, memory: 1024 } }],
    };
    const vm = small("m", { currentHost: "h42" });
    const r = place(state, [vm], { weights: { ...ZERO, migration: 1 } });
    expect(r.placements).toEqual([{ vm: "m", host: "h42" }]);
    const drained = { ...state, hosts: hosts.map((h) => (h.id === "h42" ? { ...h, draining: true } : h)) };
    const moved = place(drained, [vm], { weights: { ...ZERO, migration: 1 } });
    expect(moved.placements[0]!.host).not.toBe("h42");
    // The move freed h42: its own space counted as free while choosing.
    const tight = {
      hosts: [host("only", { capacity: { cpu: 500, memory: 1024 } })],
      allocations: [{ vm: "m", host: "only", resources: { cpu: 500, memory: 1024 } }],
    };
    expect(place(tight, [small("m", { currentHost: "only" })]).placements).toEqual([
      { vm: "m", host: "only" },
    ]);
    // A move that finds no host leaves the VM booked where it was.
    const p = new Placer(tight);
    const stuck = p.place({ id: "m", resources: { cpu: 501, memory: 1024 }, currentHost: "only" });
    expect(stuck.host).toBeUndefined();
    expect(p.usage.hostOf("m")).toBe(0);
    expect(p.usage.usedCpu[0]).toBe(500);
  });

  it("follows the RTT matrix to the peers a VM talks to, and the price", () => {
    const hosts = [host("a"), host("b"), host("c", { price: 5 }), host("d", { price: 1 })];
    const rttMs = { a: { b: 40, c: 2, d: 90 }, b: { c: 30, d: 10 }, c: { d: 60 } };
    const r = place({ hosts, allocations: [], rttMs }, [small("v", { talksTo: ["a"] })], {
      weights: { ...ZERO, network: 1 },
      limit: "all",
    });
    expect(r.placements[0]!.host).toBe("a");
    const r2 = place(
      { hosts: hosts.slice(1), allocations: [], rttMs },
      [small("v", { talksTo: ["a", "b"] })],
      { weights: { ...ZERO, network: 1 }, limit: "all" },
    );
    expect(r2.placements[0]!.host).toBe("c"); // 2 + 30 beats b (40 + 0) and d (90 + 10)
    const r3 = place({ hosts, allocations: [] }, [small("v")], {
      weights: { ...ZERO, price: 1 },
      limit: "all",
    });
    expect(["a", "b"]).toContain(r3.placements[0]!.host);
  });

  it("spreads soft anti-affinity and follows soft affinity", () => {
    const hosts = uniform(6);
    const vms = Array.from({ length: 6 }, (_, i) => small(`v${i}`, { group: "g", antiAffinity: "soft" }));
    const r = place({ hosts, allocations: [] }, vms, {
      weights: { ...weightsFor("datacenter"), antiAffinity: 50 },
      limit: "all",
    });
    expect(new Set(r.placements.map((p) => p.host)).size).toBe(6);
    const aff = place({ hosts, allocations: [] }, [small("a", { affinity: { zone: "z2" } })], {
      weights: { ...ZERO, affinity: 1 },
      limit: "all",
    });
    expect(aff.placements[0]!.host).toMatch(/^h(2|5)$/);
  });
});

describe("per-mode weights", () => {
  // 9 hosts: 3 regions × 3 zones.
  const hosts = Array.from({ length: 9 }, (_, i) =>
    host(`h${i}`, { labels: { region: `r${Math.floor(i / 3)}`, zone: `r${Math.floor(i / 3)}-z${i % 3}` } }),
  );
  const group = Array.from({ length: 6 }, (_, i) => small(`v${i}`, { group: "svc" }));

  it("bin-packs in a datacenter (v1)", () => {
    const w = weightsFor("datacenter");
    expect(w.binpack).toBeGreaterThan(0);
    expect(defaultSpreadFor("datacenter")).toBeUndefined();
    const r = place({ hosts, allocations: [] }, group, { weights: w, limit: "all" });
    expect(new Set(r.placements.map((p) => p.host)).size).toBe(1);
  });

  it("spreads over hosts and regions on the internet (v3)", () => {
    const w = weightsFor("internet");
    expect(w.binpack).toBeLessThan(0);
    const r = place({ hosts, allocations: [] }, group, {
      weights: w,
      limit: "all",
      defaultSpread: defaultSpreadFor("internet")!,
    });
    expect(new Set(r.placements.map((p) => p.host)).size).toBe(6);
    const perRegion = new Map<string, number>();
    for (const p of r.placements) {
      const reg = hosts.find((h) => h.id === p.host)!.labels!.region!;
      perRegion.set(reg, (perRegion.get(reg) ?? 0) + 1);
    }
    expect([...perRegion.values()]).toEqual([2, 2, 2]);
  });
});

describe("input checks", () => {
  it("refuses malformed input with ERR_INVALID_ARG", () => {
    const s: ClusterState = { hosts: [host("a")], allocations: [] };
    expectCode(() => place(s, [small("v"), small("v")]), "ERR_INVALID_ARG");
    expectCode(() => place(s, [{ id: "v", resources: { cpu: -1, memory: 1 } }]), "ERR_INVALID_ARG");
    expectCode(
      () => place(s, [small("v", { group: "g", spread: { topologyKey: "zone", maxSkew: 0 } })]),
      "ERR_INVALID_ARG",
    );
    expectCode(() => place({ hosts: [host("a"), host("a")], allocations: [] }, []), "ERR_INVALID_ARG");
    expectCode(() => place(s, [], { weights: { ...ZERO, price: Number.NaN } }), "ERR_INVALID_ARG");
  });
});
