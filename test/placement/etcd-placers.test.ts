// ITP's optimistic commit on a real etcd ×3: 8 placers at once, plans of 5
// VMs, more VMs than room. No host ends over capacity, no VM is placed twice,
// and every placement a placer reported is in the store.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { racePlacers } from "../../bench/lib/place-race.js";
import { EtcdBackend } from "../../src/consensus/etcd/index.js";
import type { Host, VmRequest } from "../../src/placement/model.js";
import type { Planner } from "../../src/placement/store.js";
import { type EtcdCluster, etcdSkipReason, startEtcd } from "../helpers/etcd.js";

const skip = etcdSkipReason();
if (skip) console.warn(`skipped: ITP placers on etcd: ${skip}`);

/** First fit on the state it is given (the commit, not the planner, is under test here). */
const firstFit: Planner = (state, vms) => {
  const free = new Map(state.hosts.map((h) => [h.id, { cpu: h.capacity.cpu, memory: h.capacity.memory }]));
  for (const a of state.allocations) {
    const f = free.get(a.host)!;
    f.cpu -= a.resources.cpu;
    f.memory -= a.resources.memory;
  }
  const placements = [];
  const unplaced = [];
  for (const v of vms) {
    const h = [...free].find(([, f]) => f.cpu >= v.resources.cpu && f.memory >= v.resources.memory);
    if (!h) unplaced.push({ vm: v.id });
    else {
      h[1].cpu -= v.resources.cpu;
      h[1].memory -= v.resources.memory;
      placements.push({ vm: v.id, host: h[0] });
    }
  }
  return { placements, unplaced };
};

describe.skipIf(skip !== "")("ITP placers on etcd ×3", () => {
  let cluster: EtcdCluster;
  let backend: EtcdBackend;
  beforeAll(async () => {
    cluster = await startEtcd({ size: 3 });
    backend = new EtcdBackend({ endpoints: [...cluster.endpoints] });
  }, 60_000);
  afterAll(async () => {
    await backend?.close();
    await cluster?.stop();
  });

  it("8 placers, 240 VMs for 200 places: no overcommit, no VM twice, 200 placed", async () => {
    const hosts: Host[] = Array.from({ length: 50 }, (_, i) => ({
      id: `h${i}`,
      capacity: { cpu: 8000, memory: 16384 },
    }));
    const vms: VmRequest[] = Array.from({ length: 240 }, (_, i) => ({
      id: `vm${i}`,
      resources: { cpu: 2000, memory: 4096 },
    }));
    const r = await racePlacers(backend, {
      hosts,
      vms,
      placers: 8,
      batch: 5,
      planner: firstFit,
      prefix: "/itp-race/",
    });
    expect(r.overcommitted).toEqual([]);
    expect(r.duplicates).toEqual([]);
    expect(r.placed).toBe(200);
    expect(r.unplaced).toBe(40);
    // First fit makes every placer aim at the same hosts: they raced.
    expect(r.retries).toBeGreaterThan(0);
  }, 120_000);
});
