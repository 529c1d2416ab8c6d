// Lease keeping and leader election, built once on the contract: the same
// cases on every backend (local here, etcd in etcd.test.ts).
import { describe, expect, it } from "vitest";
import type { ConsensusBackend } from "../../src/consensus/backend.js";
import { campaign, leader } from "../../src/consensus/election.js";
import { LeaseKeeper } from "../../src/consensus/lease-keeper.js";
import type { Env } from "../../src/env/index.js";
import { DWCPError } from "../../src/errors.js";
import type { ConformanceTarget } from "./conformance.js";

const text = (s: string) => new TextEncoder().encode(s);

/** A target and the Env its lease keepers run on (the backend's clock). */
export interface ElectionTarget extends ConformanceTarget {
  env: Env;
}

/** A backend whose keepAlive fails as if the store were unreachable, while `down` is set. */
function flaky(b: ConsensusBackend): { backend: ConsensusBackend; down: { on: boolean } } {
  const down = { on: false };
  const keepAlive = (id: number) =>
    down.on ? Promise.reject(new DWCPError("ERR_UNAVAILABLE", "no quorum")) : b.keepAlive(id);
  const backend = new Proxy(b, {
    get: (target, prop) => {
      if (prop === "keepAlive") return keepAlive;
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { backend, down };
}

export function electionSuite(name: string, open: () => Promise<ElectionTarget>): void {
  describe(`leases and elections: ${name}`, () => {
    async function withTarget(fn: (t: ElectionTarget) => Promise<void>): Promise<void> {
      const t = await open();
      try {
        await fn(t);
      } finally {
        await t.close();
      }
    }

    it("a kept lease outlives three TTLs with its key; abandoned, the key goes after the TTL; revoked, at once", () =>
      withTarget(async (t) => {
        const b = t.backend;
        const k = await LeaseKeeper.grant(b, 2, { env: t.env });
        let renewals = 0;
        k.on("renewed", () => renewals++);
        await b.put("/reg/a", text("a"), { lease: k.id });
        for (let i = 0; i < 6; i++) await t.elapse(1);
        expect(k.alive).toBe(true);
        expect(renewals).toBeGreaterThanOrEqual(4);
        expect((await b.range({ key: "/reg/a" })).count).toBe(1);
        k.abandon();
        await t.elapse(4);
        expect((await b.range({ key: "/reg/a" })).count).toBe(0);

        const k2 = await LeaseKeeper.grant(b, 5, { env: t.env });
        await b.put("/reg/b", text("b"), { lease: k2.id });
        await k2.revoke();
        expect(k2.alive).toBe(false);
        expect((await b.range({ key: "/reg/b" })).count).toBe(0);
      }));

    it("is lost with ERR_LEASE_NOT_FOUND when the store drops the lease, and with ERR_TIMEOUT when no renewal gets through within the TTL", () =>
      withTarget(async (t) => {
        const k = await LeaseKeeper.grant(t.backend, 3, { env: t.env });
        const lost: DWCPError[] = [];
        k.on("lost", (e) => lost.push(e));
        await t.backend.revoke(k.id);
        await t.elapse(2);
        expect(lost.map((e) => e.code)).toEqual(["ERR_LEASE_NOT_FOUND"]);

        const f = flaky(t.backend);
        const k2 = await LeaseKeeper.grant(f.backend, 3, { env: t.env });
        const lost2: DWCPError[] = [];
        k2.on("lost", (e) => lost2.push(e));
        f.down.on = true;
        await t.elapse(2);
        expect(k2.alive).toBe(true);
        await t.elapse(2);
        expect(lost2.map((e) => e.code)).toEqual(["ERR_TIMEOUT"]);
        expect(k2.alive).toBe(false);
      }));

    it("elects in campaign order; a resign hands over to the next; the old leader's guarded write is refused (ERR_NOT_LEADER)", () =>
      withTarget(async (t) => {
        const b = t.backend;
        const ka = await LeaseKeeper.grant(b, 10, { env: t.env });
        const kb = await LeaseKeeper.grant(b, 10, { env: t.env });
        const a = await campaign(b, "placer", text("a"), ka);
        let bLeads = false;
        const pb = campaign(b, "placer", text("b"), kb).then((l) => {
          bLeads = true;
          return l;
        });
        await t.elapse(0.5);
        expect(bLeads).toBe(false);
        expect(new TextDecoder().decode((await leader(b, "placer"))!.value)).toBe("a");
        await a.txn([], [{ type: "put", key: "/plan", value: text("from a") }]);

        await a.resign();
        const lb = await pb;
        expect(lb.revision).toBeGreaterThan(a.revision);
        expect((await leader(b, "placer"))!.revision).toBe(lb.revision);
        await expect(
          a.txn([], [{ type: "put", key: "/plan", value: text("stale a") }]),
        ).rejects.toMatchObject({
          code: "ERR_NOT_LEADER",
        });
        await lb.txn([], [{ type: "put", key: "/plan", value: text("from b") }]);
        expect(new TextDecoder().decode((await b.range({ key: "/plan" })).kvs[0]!.value)).toBe("from b");
        await ka.revoke();
        await kb.revoke();
      }));

    it("fences a leader whose lease expired while it was paused: its write is refused by the store, the next candidate leads", () =>
      withTarget(async (t) => {
        const b = t.backend;
        const ka = await LeaseKeeper.grant(b, 2, { env: t.env });
        const kb = await LeaseKeeper.grant(b, 10, { env: t.env });
        const a = await campaign(b, "owner", text("a"), ka);
        const pb = campaign(b, "owner", text("b"), kb);
        // A pause: a's renewals stop, its key expires with the lease in the store.
        ka.abandon();
        await t.elapse(4);
        const lb = await pb;
        expect(lb.revision).toBeGreaterThan(a.revision);
        const before = (await b.status()).revision;
        await expect(a.txn([], [{ type: "put", key: "/vm/1", value: text("a") }])).rejects.toMatchObject({
          code: "ERR_NOT_LEADER",
        });
        expect((await b.range({ key: "/vm/1" })).count).toBe(0);
        expect((await b.status()).revision).toBe(before);
        expect(a.signal.aborted).toBe(true);
        await kb.revoke();
      }));

    it("the next in line takes over when the leader's lease is revoked, not a later candidate; an aborted campaign withdraws", () =>
      withTarget(async (t) => {
        const b = t.backend;
        const keepers = await Promise.all([0, 1, 2].map(() => LeaseKeeper.grant(b, 10, { env: t.env })));
        const first = await campaign(b, "e", text("0"), keepers[0]!);
        const second = campaign(b, "e", text("1"), keepers[1]!);
        await t.elapse(0.2);
        const ac = new AbortController();
        const third = campaign(b, "e", text("2"), keepers[2]!, { signal: ac.signal });
        await t.elapse(0.2);
        await keepers[0]!.revoke();
        const l2 = await second;
        expect(l2.revision).toBeGreaterThan(first.revision);
        expect(new TextDecoder().decode((await leader(b, "e"))!.value)).toBe("1");
        ac.abort();
        await expect(third).rejects.toMatchObject({ code: "ERR_ABORTED" });
        expect((await b.range({ key: "/dwcp/election/e/", prefix: true })).count).toBe(1);
        await l2.resign();
        expect(await leader(b, "e")).toBeUndefined();
        await keepers[1]!.revoke();
        await keepers[2]!.revoke();
      }));
  });
}
