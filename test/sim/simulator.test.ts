// The simulator's own pieces: event order, node clocks, the network's fault
// knobs and the storage model.
import { describe, expect, it } from "vitest";
import { CLEAN_LINK, nodeEnv, SimDisks, SimNetwork, Simulator } from "../../src/testing/index.js";

describe("Simulator", () => {
  it("runs events by virtual time, then in the order they were scheduled; a cancelled one never runs", async () => {
    const sim = new Simulator({ seed: 1 });
    const order: string[] = [];
    sim.at(5, () => order.push("b@5"));
    sim.at(1, () => order.push("a@1"));
    sim.at(5, () => order.push("c@5"));
    const t = sim.at(3, () => order.push("never"));
    sim.cancel(t);
    // A promise continuation runs before the next event, at the same virtual time.
    sim.at(2, () => void Promise.resolve().then(() => order.push(`then@${sim.now}`)));
    await sim.run();
    expect(order).toEqual(["a@1", "then@2", "b@5", "c@5"]);
    expect(sim.now).toBe(5);
  });

  it("gives each node a clock with its offset and drift, whose timers fire in virtual time", async () => {
    const sim = new Simulator({ seed: 1 });
    const env = sim.env("n", { offsetMs: 1000, drift: 0.5 });
    let firedAt = -1;
    env.clock.setTimeout(() => {
      firedAt = sim.now;
    }, 30);
    await sim.run();
    // 30 ms of a clock running 1.5× fast is 20 ms of virtual time; it reads 1000 + 1.5 × 20.
    expect(firedAt).toBe(20);
    expect(env.clock.now()).toBe(1030);
  });

  it("draws the same random streams for the same seed and node, different ones otherwise", () => {
    const a = new Simulator({ seed: 7 }).env("n").random;
    const b = new Simulator({ seed: 7 }).env("n").random;
    const c = new Simulator({ seed: 8 }).env("n").random;
    const d = new Simulator({ seed: 7 }).env("m").random;
    const draw = (r: typeof a) => Array.from({ length: 8 }, () => r.int(1 << 30));
    const first = draw(a);
    expect(draw(b)).toEqual(first);
    expect(draw(c)).not.toEqual(first);
    expect(draw(d)).not.toEqual(first);
  });

  it("the real environment's randomness stays in range (next in [0, 1), int in [0, n))", () => {
    for (let i = 0; i < 1000; i++) {
      const x = nodeEnv.random.next();
      expect(x >= 0 && x < 1).toBe(true);
      const k = nodeEnv.random.int(7);
      expect(Number.isInteger(k) && k >= 0 && k < 7).toBe(true);
    }
    expect(nodeEnv.random.int(2 ** 50)).toBeLessThan(2 ** 50);
    expect(nodeEnv.random.bytes(16)).toHaveLength(16);
  });

  it("stops at `until` and fails a run that never ends (maxEvents)", async () => {
    const sim = new Simulator({ seed: 1 });
    const tick = () => sim.after(1, tick);
    tick();
    await sim.run({ until: 50 });
    expect(sim.now).toBe(50);
    await expect(sim.run({ maxEvents: 100 })).rejects.toMatchObject({ code: "ERR_PROTOCOL" });
  });
});

describe("SimNetwork", () => {
  it("a partition cuts both ways, a one-way partition one way, and heal restores both", () => {
    const net = new SimNetwork(new Simulator({ seed: 1 }), CLEAN_LINK);
    const heal = net.partition(["a"], ["b"]);
    expect(net.fate("a", "b", 10).drop).toBe(true);
    expect(net.fate("b", "a", 10).drop).toBe(true);
    heal();
    expect(net.fate("a", "b", 10).drop).toBeFalsy();
    const healOneWay = net.partition(["a"], ["b"], true);
    expect(net.fate("a", "b", 10).drop).toBe(true);
    expect(net.fate("b", "a", 10).drop).toBeFalsy();
    healOneWay();
    expect(net.stats.partitioned).toBe(3);
  });

  it("drops, duplicates and reorders chunks at the configured rates", () => {
    const net = new SimNetwork(new Simulator({ seed: 3 }), {
      latencyMs: 1,
      jitterMs: 1,
      drop: 0.1,
      duplicate: 0.1,
      reorder: 0.1,
    });
    for (let i = 0; i < 10_000; i++) net.fate("a", "b", 100);
    for (const n of [net.stats.dropped, net.stats.duplicated, net.stats.reordered]) {
      expect(n).toBeGreaterThan(700);
      expect(n).toBeLessThan(1300);
    }
  });

  it("a crashed node's connections are reset and dials to it fail until it restarts", async () => {
    const sim = new Simulator({ seed: 1 });
    const net = new SimNetwork(sim);
    const accepted: unknown[] = [];
    await net.transport("b").listen("b:1", (c) => accepted.push(c));
    const conn = await net.transport("a").dial("b:1");
    const closed = new Promise((r) => conn.once("close", r));
    await sim.run();
    expect(accepted).toHaveLength(1);
    net.crash("b");
    await sim.run();
    await closed;
    expect(conn.status).toBe("aborted");
    await expect(net.transport("a").dial("b:1")).rejects.toMatchObject({ code: "ERR_CONNECT" });
    net.restart("b");
    await expect(net.transport("a").dial("b:1")).resolves.toBeDefined();
  });
});

describe("SimDisks", () => {
  it("a crash loses what was appended but not synced, and keeps what was", async () => {
    const sim = new Simulator({ seed: 1 });
    const disks = new SimDisks(sim);
    const s = disks.storage("n");
    s.append("wal", Uint8Array.of(1));
    const synced = s.sync("wal");
    await sim.run();
    await synced;
    s.append("wal", Uint8Array.of(2));
    disks.crash("n");
    expect(disks.storage("n").read("wal")).toEqual([Uint8Array.of(1)]);
  });
});
