// ITP in the manager: `manager.placement()` plans with the weights of the
// generation selection puts ITP on and commits in the node's ACP. Two agents
// on one store placing at once never overcommit; on internet paths with
// enableV3Placement a group's VMs spread across regions, on datacenter paths
// they pack.
import { afterEach, describe, expect, it } from "vitest";
import { overcommittedHosts } from "../../bench/lib/place-race.js";
import { LocalBackend, memoryStorage } from "../../src/consensus/index.js";
import type { Host, VmRequest } from "../../src/placement/model.js";
import { memory } from "../../src/transport/memory/index.js";
import { closeManagers, manager, tlsMesh } from "../helpers/managers.js";
import { PSK } from "../helpers/nodes.js";

afterEach(closeManagers);

const hosts: Host[] = ["eu", "us", "ap"].flatMap((region) =>
  [0, 1].map((i) => ({
    id: `${region}-${i}`,
    capacity: { cpu: 16_000, memory: 65_536 },
    labels: { region },
  })),
);
const group = (n: number, name: string): VmRequest[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `${name}-${i}`,
    group: name,
    resources: { cpu: 1000, memory: 2048 },
  }));

describe("ITP in the manager", () => {
  it("two agents on one store, placing at once: every VM placed once, no host over capacity", async () => {
    const shared = new LocalBackend({ storage: memoryStorage() });
    const agents = ["a", "b"].map((id) =>
      manager({
        nodeId: id,
        v1: { transport: memory(), psk: PSK },
        v3: { transport: memory(), psk: PSK },
        detectMode: false,
        consensus: { backend: shared },
      }),
    );
    const placers = await Promise.all(agents.map((m) => m.placement()));
    expect(placers[0]!.mode).toBe("datacenter");
    for (const h of hosts) await placers[0]!.store.putHost(h);
    // 6 hosts × 16 CPUs; 2 × 60 VMs of 1 CPU = 120 asked for 96 places.
    const outs = await Promise.all(placers.map((p, i) => p.place(group(60, `g${i}`))));
    const state = await placers[1]!.store.read();
    expect(overcommittedHosts(state)).toEqual([]);
    expect(state.allocations).toHaveLength(96);
    expect(new Set(state.allocations.map((a) => a.vm)).size).toBe(96);
    expect(outs.reduce((n, o) => n + o.unplaced.length, 0)).toBe(24);
    await shared.close();
  });

  it("on internet paths with enableV3Placement a group spreads across regions; on datacenter paths it packs", async () => {
    const regionsOf = async (mode: "internet" | "datacenter") => {
      const [m] = await tlsMesh([`${mode}-1`, `${mode}-2`], () => ({
        assumeMode: mode,
        flags: { enableV3Transport: true, enableV3Placement: true, v3RolloutPercentage: 100 },
        // Every host scored: the weights alone decide (with ⌈log₂ n⌉ a sample of hosts would).
        placement: { limit: "all" },
      }));
      const p = await m!.placement();
      for (const h of hosts) await p.store.putHost(h);
      const out = await p.place(group(6, "web"));
      await closeManagers();
      return {
        mode: p.mode,
        regions: new Set(out.placements.map((x) => x.host.split("-")[0])).size,
        hosts: new Set(out.placements.map((x) => x.host)).size,
      };
    };
    const internet = await regionsOf("internet");
    expect(internet.mode).toBe("internet");
    expect(internet.regions).toBe(3);
    const dc = await regionsOf("datacenter");
    expect(dc.mode).toBe("datacenter");
    expect(dc.hosts).toBe(1);
  }, 60_000);
});
