// A simulated guest (a worker thread dirtying its hot set) migrated while it
// runs: the destination equals the paused guest byte for byte; a cancelled
// migration leaves it running. (Auto-converge's steps are shown on virtual time,
// test/sim/migration.test.ts, where the guest's pace does not depend on the load.)
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
