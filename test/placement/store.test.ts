// ITP's optimistic commit: a plan commits only if no host it touches changed
// since its read (a stale plan is rejected, naming the hosts); placers racing
// with a capacity-respecting planner never overcommit a host; moves leave the
// old host in the same transaction.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LocalBackend, memoryStorage } from "../../src/consensus/index.js";
import type { ClusterState, Host, VmRequest } from "../../src/placement/model.js";
import { PlacementStore, type Planner, placeAndCommit } from "../../src/placement/store.js";

const host = (id: string, cpu = 4000, memory = 8192): Host => ({ id, capacity: { cpu, memory } });
const vm = (id: string, cpu = 1000, memory = 2048): VmRequest => ({ id, resources: { cpu, memory } });

/** First fit on the state it is given: never exceeds a host's capacity as that state shows it. */
const firstFit: Planner = (state, vms) => {
  const used = new Map<string, { cpu: number; memory: number }>();
  for (const h of state.hosts) used.set(h.id, { cpu: 0, memory: 0 });
  for (const a of state.allocations) {
    const u = used.get(a.host)!;
    u.cpu += a.resources.cpu;
    u.memory += a.resources.memory;
  }
  const placements = [];
  const unplaced = [];
  for (const v of vms) {
    const h = state.hosts.find((h) => {
      const u = used.get(h.id)!;
      return u.cpu + v.resources.cpu <= h.capacity.cpu && u.memory + v.resources.memory <= h.capacity.memory;
    });
    if (!h) {
      unplaced.push({ vm: v.id });
      continue;
    }
    const u = used.get(h.id)!;
    u.cpu += v.resources.cpu;
    u.memory += v.resources.memory;
    placements.push({ vm: v.id, host: h.id });
  }
  return { placements, unplaced };
};

function overcommitted(state: ClusterState): string[] {
  return state.hosts
    .filter((h) => {
      const on = state.allocations.filter((a) => a.host === h.id);
      return (
        on.reduce((s, a) => s + a.resources.cpu, 0) > h.capacity.cpu ||
        on.reduce((s, a) => s + a.resources.memory, 0) > h.capacity.memory
      );
    })
    .map((h) => h.id);
}

describe("PlacementStore", () => {
  it("a plan made on a stale read is rejected, naming the host that changed; on a fresh read it commits", async () => {
    const db = new LocalBackend({ storage: memoryStorage() });
    const store = new PlacementStore(db);
    await store.putHost(host("h1"));
    await store.putHost(host("h2"));
    const seenByA = await store.read();
    const seenByB = await store.read();
    expect(
      await store.commit({ placements: [{ vm: "a", host: "h1" }], vms: [vm("a")] }, seenByA),
    ).toMatchObject({
      committed: true,
    });
    const late = await store.commit({ placements: [{ vm: "b", host: "h1" }], vms: [vm("b")] }, seenByB);
    expect(late).toMatchObject({ committed: false, stale: ["h1"] });
    // A plan on the untouched host still commits from the old read.
    expect(
      await store.commit({ placements: [{ vm: "c", host: "h2" }], vms: [vm("c")] }, seenByB),
    ).toMatchObject({
      committed: true,
    });
    const now = await store.read();
    expect(now.allocations.map((a) => `${a.vm}@${a.host}`).sort()).toEqual(["a@h1", "c@h2"]);
    // A move: the VM leaves h1 and lands on h2 in one transaction.
    await store.commit({ placements: [{ vm: "a", host: "h2" }], vms: [vm("a")] }, now);
    expect((await store.read()).allocations.map((a) => `${a.vm}@${a.host}`).sort()).toEqual(["a@h2", "c@h2"]);
    await expect(store.removeHost("h2")).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    await store.removeHost("h1");
    await db.close();
  });

  it("property: a commit succeeds exactly when no host it touches changed since its read", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(3), fc.constantFrom("read", "commit"), fc.nat(2)), {
          minLength: 1,
          maxLength: 30,
        }),
        async (steps) => {
          const db = new LocalBackend({ storage: memoryStorage() });
          const store = new PlacementStore(db);
          for (const h of ["h0", "h1", "h2"]) await store.putHost(host(h, 1e6, 1e6));
          const reads: (Awaited<ReturnType<PlacementStore["read"]>> | undefined)[] = [];
          // The model: the revision at which each host's allocations last changed.
          const changedAt = new Map<string, number>();
          let n = 0;
          for (const [placer, action, h] of steps) {
            if (action === "read" || !reads[placer]) {
              reads[placer] = await store.read();
              continue;
            }
            const read = reads[placer]!;
            const id = `vm${n++}`;
            const out = await store.commit({ placements: [{ vm: id, host: `h${h}` }], vms: [vm(id)] }, read);
            const fresh = (changedAt.get(`h${h}`) ?? 0) <= read.revision;
            expect(out.committed).toBe(fresh);
            if (out.committed) changedAt.set(`h${h}`, out.revision);
          }
          await db.close();
        },
      ),
      { numRuns: 60 },
    );
  });

  it("8 placers racing for too little room: every plan commits or retries, no host is overcommitted, no VM placed twice", async () => {
    const db = new LocalBackend({ storage: memoryStorage() });
    const store = new PlacementStore(db);
    // 10 hosts × 4 VMs of room; 8 placers × 6 VMs = 48 asked for 40 places.
    for (let i = 0; i < 10; i++) await store.putHost(host(`h${i}`));
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, (_, p) =>
        placeAndCommit(
          store,
          Array.from({ length: 6 }, (_, i) => vm(`p${p}-${i}`)),
          firstFit,
        ),
      ),
    );
    const state = await store.read();
    expect(overcommitted(state)).toEqual([]);
    expect(state.allocations).toHaveLength(40);
    expect(new Set(state.allocations.map((a) => a.vm)).size).toBe(40);
    expect(outcomes.reduce((s, o) => s + o.placements.length, 0)).toBe(40);
    expect(outcomes.reduce((s, o) => s + o.unplaced.length, 0)).toBe(8);
    // They raced: some had to plan again.
    expect(outcomes.some((o) => o.attempts > 1)).toBe(true);
    await db.close();
  });

  it("a record that is not one fails the read with ERR_BAD_FRAME", async () => {
    const db = new LocalBackend({ storage: memoryStorage() });
    const store = new PlacementStore(db);
    await store.putHost(host("h1"));
    await db.put(
      "/dwcp/placement/alloc/h1",
      new TextEncoder().encode('[{"vm":"x","host":"h9","resources":{}}]'),
    );
    await expect(store.read()).rejects.toMatchObject({ code: "ERR_BAD_FRAME" });
    await db.put("/dwcp/placement/alloc/h1", new TextEncoder().encode("{"));
    await expect(store.read()).rejects.toMatchObject({ code: "ERR_BAD_FRAME" });
    await db.close();
  });
});
