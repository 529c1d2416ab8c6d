import { describe, expect, it } from "vitest";
import { MemoryNetwork, memory, seededRandom } from "../src/transport/memory/index.js";
import { transportCompliance } from "./compliance/transport.js";

transportCompliance("memory", () => {
  const t = memory();
  return {
    server: t,
    client: t,
    listenAddress: "compliance:0",
    deadAddress: "nobody-here",
    checksAddressSyntax: false,
  };
});

transportCompliance("memory with 2 ms latency", () => {
  const t = memory({ latencyMs: 2 }, new MemoryNetwork());
  return {
    server: t,
    client: t,
    listenAddress: "slow:0",
    deadAddress: "nobody-here",
    checksAddressSyntax: false,
  };
});

describe("memory transport knobs", () => {
  it("delays every chunk by the configured latency", async () => {
    const t = memory({ latencyMs: 30 }, new MemoryNetwork());
    let arrived = 0;
    const listener = await t.listen("lat:0", async (conn) => {
      try {
        for await (const _ of conn) arrived = performance.now();
      } catch (err) {
        expect(err).toMatchObject({ code: "ERR_CLOSED" }); // reset by the abort below
      }
    });
    const conn = await t.dial(listener.address);
    const sent = performance.now();
    conn.send(Uint8Array.of(1));
    await new Promise((r) => setTimeout(r, 80));
    expect(arrived - sent).toBeGreaterThanOrEqual(29);
    conn.abort();
    await listener.close();
  });

  it("drops chunks at the configured rate, reproducibly for a seed", async () => {
    async function run(seed: number): Promise<number[]> {
      const t = memory({ lossRate: 0.3, seed }, new MemoryNetwork());
      const got: number[] = [];
      const listener = await t.listen("loss:0", async (conn) => {
        for await (const c of conn) got.push(c[0]!);
      });
      const conn = await t.dial(listener.address);
      for (let i = 0; i < 200; i++) conn.send(Uint8Array.of(i));
      await conn.close();
      await listener.close();
      return got;
    }
    const a = await run(7);
    expect(a.length).toBeGreaterThan(100);
    expect(a.length).toBeLessThan(180);
    expect(await run(7)).toEqual(a);
    expect(a).toEqual([...a].sort((x, y) => x - y));
  });

  it("seededRandom is deterministic and uniform enough", () => {
    const r = seededRandom(42);
    const xs = Array.from({ length: 10_000 }, r);
    expect(seededRandom(42)()).toBe(xs[0]);
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.48);
    expect(mean).toBeLessThan(0.52);
  });
});
