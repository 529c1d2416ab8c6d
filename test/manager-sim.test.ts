// DWCPManager under the simulator: given an env, the manager, its nodes, links
// and flag store run on virtual time. Two managers over a simulated network
// connect, lose v3 under messages, roll back to v1 with nothing lost, and take
// v3 back after the default 30 s cool-down, all in virtual time.
import { describe, expect, it } from "vitest";
import type { PeerLink } from "../src/manager.js";
import { SimNetwork, Simulator } from "../src/testing/index.js";
import { simManager } from "./helpers/managers.js";

/** Runs the simulation until `cond` holds, failing past `withinMs` of virtual time. */
async function runUntil(sim: Simulator, cond: () => boolean, withinMs: number, what: string): Promise<void> {
  const end = sim.now + withinMs;
  await sim.run({ stopWhen: cond, until: end });
  if (!cond()) throw new Error(`${what}: not by virtual ${end.toFixed(0)} ms (now ${sim.now.toFixed(0)})`);
}

/** `p`'s outcome, driving the simulation until it settles. */
async function settle<T>(sim: Simulator, p: Promise<T>, withinMs: number, what: string): Promise<T> {
  let done = false;
  const watched = p.finally(() => {
    done = true;
  });
  watched.catch(() => {});
  await runUntil(sim, () => done, withinMs, what);
  return watched;
}

describe("DWCPManager on the simulator's env", () => {
  it("connects, rolls back to v1 without loss and takes v3 back after the 30 s cool-down, in virtual time", async () => {
    const sim = new Simulator({ seed: 7 });
    const net = new SimNetwork(sim);
    const a = simManager(sim, net, "a", { rollback: { minSamples: 10 } });
    const b = simManager(sim, net, "b", { rollback: { minSamples: 10 } });
    const bound = await settle(sim, b.listen({ v1: "b:1", v3: "b:3" }), 1000, "listen");
    let linkB: PeerLink | undefined;
    b.on("link", (l) => {
      linkB = l;
    });
    const linkA = await settle(sim, a.connect({ v1: bound.v1, v3: bound.v3! }), 5000, "connect");
    await runUntil(sim, () => linkB?.v3 !== undefined && linkA.active === "v3", 1000, "v3 on both sides");
    const got: number[] = [];
    linkB!.on("message", (m) => got.push(m.seq));
    const breaker: { state: string; at: number; component: string }[] = [];
    a.on("breaker", (_l, e) => breaker.push({ state: e.state, at: sim.now, component: e.component }));

    const sends: Promise<number>[] = [];
    for (let i = 0; i < 50; i++) sends.push(linkA.send(new Uint8Array(500)));
    const wallBefore = sim.env("observer").clock.wall();
    linkA.v3!.conn.abort(new Error("injected v3 failure"));
    for (let i = 0; i < 50; i++) sends.push(linkA.send(new Uint8Array(500)));
    await settle(sim, Promise.all(sends), 5000, "every send");
    await runUntil(sim, () => got.length === 100 && breaker.length > 0, 1000, "delivery and the breaker");
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(breaker[0]).toMatchObject({ state: "open", component: "transport" });
    expect(linkA.active).toBe("v1");
    expect(a.components("b").transport.reason).toBe("automatic rollback (breaker open)");
    // The failure was reported at the simulated wall clock, not the machine's.
    const last = a.counters().errors.last!;
    expect(last.at).toBeGreaterThanOrEqual(wallBefore);
    expect(last.at).toBeLessThanOrEqual(sim.env("observer").clock.wall());

    // The default cool-down (30 s) passes in virtual time; the health check runs every 250 ms.
    const openedAt = breaker[0]!.at;
    expect(a.breakers("b").transport?.retryAt).toBeGreaterThan(0);
    await runUntil(sim, () => breaker.some((e) => e.state === "half-open"), 31_000, "half-open");
    const halfOpenAt = breaker.find((e) => e.state === "half-open")!.at;
    expect(halfOpenAt - openedAt).toBeGreaterThanOrEqual(30_000);
    expect(halfOpenAt - openedAt).toBeLessThan(30_000 + 250 + 1);
    await runUntil(sim, () => linkA.active === "v3", 5000, "v3 redialled and carrying again");
    for (let i = 0; i < 40; i++) await settle(sim, linkA.send(new Uint8Array(500)), 1000, `send ${i}`);
    await runUntil(sim, () => breaker.at(-1)?.state === "closed", 1000, "closed");
    expect(got).toHaveLength(140);

    await settle(sim, Promise.all([a.close(), b.close()]), 10_000, "close");
  }, 30_000);
});
