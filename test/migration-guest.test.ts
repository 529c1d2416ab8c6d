// A simulated guest (a worker thread dirtying its hot set) migrated while it
// runs: the destination equals the paused guest byte for byte, and a guest that
// keeps dirtying more than a round carries is throttled by auto-converge.
import { afterEach, describe, expect, it } from "vitest";
import { acceptMigration } from "../src/migration/receiver.js";
import { migrate } from "../src/migration/sender.js";
import { SimulatedGuest } from "../src/migration/simulated-guest.js";
import { channelPair } from "./helpers/channels.js";

const guests: SimulatedGuest[] = [];
afterEach(async () => {
  await Promise.all(guests.splice(0).map((g) => g.close()));
});

async function guest(o: Parameters<typeof SimulatedGuest.start>[0]): Promise<SimulatedGuest> {
  const g = await SimulatedGuest.start(o);
  guests.push(g);
  return g;
}

describe("migrating a running simulated guest", () => {
  it("the destination equals the paused guest, which wrote during pre-copy", async () => {
    const g = await guest({
      bytes: 32 << 20,
      hotBytes: 4 << 20,
      dirtyBytesPerSecond: 64 << 20,
      fill: "mixed",
    });
    const [a, b] = channelPair();
    const incoming = acceptMigration(b);
    const before = g.touches;
    const [stats, got] = await Promise.all([migrate(a, g).done, incoming.done]);
    expect(g.stats().parked).toBe(true);
    expect(g.touches).toBeGreaterThan(before);
    expect(Buffer.compare(g.bytes, got.image)).toBe(0);
    expect(stats.rounds).toBeGreaterThanOrEqual(2);
    expect(stats.hde.delta.pages + stats.hde.same.pages).toBeGreaterThan(0);
  });

  it("auto-converge: a hot set dirtied faster than the downtime allows is throttled, 20 % then +10 %", async () => {
    const g = await guest({
      bytes: 16 << 20,
      hotBytes: 8 << 20,
      dirtyBytesPerSecond: 256 << 20,
      hotLayout: "scattered",
      fill: "random",
    });
    const [a, b] = channelPair();
    const incoming = acceptMigration(b);
    const throttles: number[] = [];
    const m = migrate(a, g, { downtimeLimitMs: 0.001, maxRounds: 6 });
    m.on("round", (s) => throttles.push(s.cpuThrottlePercentage));
    const [stats, got] = await Promise.all([m.done, incoming.done]);
    expect(Buffer.compare(g.bytes, got.image)).toBe(0);
    expect(stats.rounds).toBe(7); // six pre-copy rounds, then stop and copy
    expect(Math.max(...throttles)).toBeGreaterThanOrEqual(20);
    expect(g.stats().throttlePercent).toBe(stats.cpuThrottlePercentage);
    // Steps of QEMU's rule: 0 until the second high round, then 20, 30, …
    for (const t of throttles) expect(t === 0 || (t >= 20 && (t - 20) % 10 === 0)).toBe(true);
  });

  it("a cancelled migration leaves the guest running and unthrottled", async () => {
    const g = await guest({ bytes: 16 << 20, hotBytes: 8 << 20, dirtyBytesPerSecond: 256 << 20 });
    const [a, b] = channelPair();
    const ac = new AbortController();
    const incoming = acceptMigration(b);
    const m = migrate(a, g, { downtimeLimitMs: 0.001, maxRounds: 20, signal: ac.signal });
    m.on("round", (s) => {
      if (s.rounds === 4) ac.abort();
    });
    await expect(m.done).rejects.toMatchObject({ code: "ERR_ABORTED" });
    await expect(incoming.done).rejects.toMatchObject({ code: "ERR_ABORTED" });
    const s = g.stats();
    expect(s.parked).toBe(false);
    expect(s.throttlePercent).toBe(0);
    const t = g.touches;
    await new Promise((r) => setTimeout(r, 100));
    expect(g.touches).toBeGreaterThan(t);
  });
});
