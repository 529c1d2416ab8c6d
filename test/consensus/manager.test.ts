// ACP in the manager: the configured backend, the node registered under a
// lease (and again after losing it), the fleet's flags followed through the
// store, and the consensus metrics.
import { afterEach, describe, expect, it } from "vitest";
import { LocalBackend, memoryStorage, registeredNodes } from "../../src/consensus/index.js";
import { DWCPError } from "../../src/errors.js";
import { memory } from "../../src/transport/memory/index.js";
import { closeManagers, manager, until } from "../helpers/managers.js";
import { PSK } from "../helpers/nodes.js";
import { parseProm, promValue } from "../helpers/prom.js";

afterEach(closeManagers);

function node(nodeId: string, consensus: Parameters<typeof manager>[0]["consensus"]) {
  return manager({
    nodeId,
    v1: { transport: memory(), psk: PSK },
    v3: { transport: memory(), psk: PSK },
    detectMode: false,
    ...(consensus ? { consensus } : {}),
  });
}

describe("ACP in the manager", () => {
  it("registers the node under a lease, counts commits in the metrics, and deregisters on close", async () => {
    const shared = new LocalBackend({ storage: memoryStorage() });
    const m = node("node-r", { backend: shared, register: { ttlSeconds: 2 } });
    const c = await m.consensus();
    expect(await m.consensus()).toBe(c);
    expect((await registeredNodes(shared)).map((n) => n.nodeId)).toEqual(["node-r"]);
    await c.backend.put("/app/x", new TextEncoder().encode("1"));
    const samples = parseProm(await m.metrics());
    expect(promValue(samples, "dwcp_consensus_registered", { node: "node-r", backend: "local" })).toBe(1);
    // The lease grant, the registration's put and the app's put.
    expect(promValue(samples, "dwcp_consensus_commits_total", { node: "node-r" })).toBeGreaterThanOrEqual(3);
    expect(
      promValue(samples, "dwcp_consensus_commit_latency_seconds_count", { node: "node-r" }),
    ).toBeGreaterThanOrEqual(3);
    await m.close();
    expect(await registeredNodes(shared)).toEqual([]);
    await expect(m.consensus()).rejects.toMatchObject({ code: "ERR_CLOSED" });
  });

  it("a failed opening (the store unreachable) is not kept: the next call opens it", async () => {
    const shared = new LocalBackend({ storage: memoryStorage() });
    let down = true;
    const flaky = new Proxy(shared, {
      get: (target, prop) => {
        if (prop === "grant" && down)
          return () => Promise.reject(new DWCPError("ERR_UNAVAILABLE", "no quorum"));
        const v = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const m = node("node-u", { backend: flaky, register: { ttlSeconds: 2 } });
    await expect(m.consensus()).rejects.toMatchObject({ code: "ERR_UNAVAILABLE" });
    down = false;
    const c = await m.consensus();
    expect(c.registration?.registered).toBe(true);
    expect((await registeredNodes(shared)).map((n) => n.nodeId)).toEqual(["node-u"]);
  });

  it("registers again under a new lease after losing it, and counts the expiry", async () => {
    const shared = new LocalBackend({ storage: memoryStorage() });
    const m = node("node-l", { backend: shared, register: { ttlSeconds: 1 } });
    const c = await m.consensus();
    const first = (await registeredNodes(shared))[0]!;
    await shared.revoke(first.lease);
    expect(await registeredNodes(shared)).toEqual([]);
    const again = new Promise((r) => c.registration!.once("registered", r));
    await again;
    const now = (await registeredNodes(shared))[0]!;
    expect(now.lease).not.toBe(first.lease);
    expect(now.revision).toBeGreaterThan(first.revision);
    const samples = parseProm(await m.metrics());
    expect(promValue(samples, "dwcp_consensus_lease_expiries_total", { node: "node-l" })).toBe(1);
    expect(promValue(samples, "dwcp_consensus_registered", { node: "node-l" })).toBe(1);
  });

  it("a fleet flips the kill switch together: one node publishes, every node applies it, in store order", async () => {
    const shared = new LocalBackend({ storage: memoryStorage() });
    const nodes = ["n1", "n2", "n3"].map((id) => node(id, { backend: shared, fleetFlags: true }));
    const acps = await Promise.all(nodes.map((n) => n.consensus()));
    const rev = await acps[0]!.fleetFlags!.publish({ forceV1: true });
    await until(() => nodes.every((n) => n.flags.flags.forceV1), 2000, "every node's kill switch");
    for (const a of acps) expect(a.fleetFlags!.revision).toBe(rev);
    // A later node catches up from the store.
    const late = node("n4", { backend: shared, fleetFlags: true });
    await late.consensus();
    await until(() => late.flags.flags.forceV1, 2000, "the late node's kill switch");
    // Two publishers at once: both updates land, one after the other.
    await Promise.all([
      acps[1]!.fleetFlags!.publish({ v3RolloutPercentage: 40 }),
      acps[2]!.fleetFlags!.publish({ enableV3Transport: true }),
    ]);
    await until(
      () => nodes.every((n) => n.flags.flags.v3RolloutPercentage === 40 && n.flags.flags.enableV3Transport),
      2000,
      "both updates everywhere",
    );
    await expect(acps[0]!.fleetFlags!.publish({ v3RolloutPercentage: 300 })).rejects.toMatchObject({
      code: "ERR_INVALID_FLAGS",
    });
  });

  it("a document in the store that is not valid flags is reported and changes nothing", async () => {
    const shared = new LocalBackend({ storage: memoryStorage() });
    const m = node("n-bad", { backend: shared, fleetFlags: true });
    const c = await m.consensus();
    const errors: string[] = [];
    c.fleetFlags!.on("error", (e) => errors.push(e.code));
    const before = m.flags.flags;
    for (const doc of [
      '{"flags":{"v3RolloutPercentage":"all"}}',
      "not json",
      '{"flags":[1]}',
      '{"other":{}}',
    ])
      await shared.put("/dwcp/flags", new TextEncoder().encode(doc));
    await until(() => errors.length === 4, 2000, "four refusals");
    expect(errors).toEqual([
      "ERR_INVALID_FLAGS",
      "ERR_INVALID_FLAGS",
      "ERR_INVALID_FLAGS",
      "ERR_INVALID_FLAGS",
    ]);
    expect(m.flags.flags).toEqual(before);
    expect(c.fleetFlags!.revision).toBe(0);
    // A bad document does not block the next update: it is replaced.
    const rev = await c.fleetFlags!.publish({ forceV1: true });
    await until(() => m.flags.flags.forceV1, 2000, "the kill switch over a bad document");
    expect(c.fleetFlags!.revision).toBe(rev);
    // The store closing ends the following, without an error loop.
    await shared.close();
    await new Promise((r) => setTimeout(r, 50));
    await c.fleetFlags!.close();
    expect(errors.filter((e) => e === "ERR_CLOSED")).toEqual([]);
  });
});
