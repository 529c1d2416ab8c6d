/**
 * The core of `npm run bench -- place` on a tiny instance: both placers run,
 * the independent judge finds no broken hard rule in ITP's plan, and the judge
 * itself catches a broken plan (so a clean verdict means something).
 */
import { describe, expect, it } from "vitest";
import { judge, makeInstance, runPlaceBench } from "../../bench/place.js";

describe("bench place (tiny)", () => {
  it("races ITP against the BestFit-v3 reference and judges both plans", () => {
    const o = runPlaceBench({ hosts: 60, vms: 400, seed: 7, rounds: 1 });
    expect(o.oursPerSecond).toBeGreaterThan(0);
    expect(o.baselinePerSecond).toBeGreaterThan(0);
    expect(o.ours.placed + o.ours.unplaced).toBe(400);
    expect(o.ours.placed).toBeGreaterThan(300);
    expect(o.ours.violations).toEqual({
      capacity: 0,
      selector: 0,
      taint: 0,
      zone: 0,
      draining: 0,
      maxVms: 0,
      antiAffinity: 0,
      spread: 0,
    });
    // The reference honours every rule it knows (it has no hard spread).
    const { spread: _s, ...rest } = o.baseline.violations;
    expect(Object.values(rest).every((v) => v === 0)).toBe(true);
    expect(o.ours.hostsUsed).toBeGreaterThan(0);
    expect(o.ours.maxUtilisation).toBeLessThanOrEqual(1);
  });

  it("builds the same instance from the same seed", () => {
    expect(makeInstance(30, 100, 3)).toEqual(makeInstance(30, 100, 3));
    expect(makeInstance(30, 100, 3)).not.toEqual(makeInstance(30, 100, 4));
  });

  it("judges a broken plan as broken", () => {
    const { state, vms } = makeInstance(10, 40, 2);
    const draining = state.hosts.find((h) => h.draining) ?? state.hosts[0]!;
    const hosts = state.hosts.map((h) => (h === draining ? { ...h, draining: true } : h));
    // Everything on one host: over capacity, on a draining host.
    const q = judge(
      { ...state, hosts },
      vms,
      vms.map((v) => ({ vm: v.id, host: draining.id })),
    );
    expect(q.violations.capacity).toBe(1);
    expect(q.violations.draining).toBe(40);
    expect(q.hostsUsed).toBe(1);
  });
});
