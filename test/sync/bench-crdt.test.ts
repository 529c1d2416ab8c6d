// The CRDT half of the sync benchmark (bench/sync-crdt.ts) on a tiny
// workload: the result has every figure for both systems, both converged and
// passed their content checks, and the two differ only on keys written
// concurrently (where Yjs orders by client id, not time).
import { describe, expect, it } from "vitest";
import { FIGURES, runCrdt } from "../../bench/sync-crdt.js";

describe("bench sync-crdt: runCrdt on a tiny workload", () => {
  it("measures both systems, which converge, and DWCP's one-key delta is within 100 B", async () => {
    const lines: string[] = [];
    const r = await runCrdt({
      writes: 500,
      keys: 100,
      syncEvery: 100,
      rounds: 1,
      warmup: false,
      log: (l) => lines.push(l),
    });
    expect(r.workload).toMatchObject({ writes: 500, keys: 100, replicas: 3, syncEvery: 100, rounds: 1 });
    expect(r.workload.valueBytes.min).toBeGreaterThanOrEqual(20);
    expect(r.workload.valueBytes.max).toBeLessThanOrEqual(40);
    expect(r.env.node).toBe(process.version);
    expect(r.env.cpu.length).toBeGreaterThan(0);
    expect(lines).toHaveLength(2);
    for (const sys of [r.dwcp, r.yjs]) {
      expect(sys.rounds).toHaveLength(1);
      const round = sys.rounds[0]!;
      for (const f of FIGURES) {
        expect(typeof round[f], f).toBe("number");
        expect(Number.isFinite(round[f] as number), f).toBe(true);
        expect(sys.median[f as keyof typeof sys.median], f).toBe(round[f]);
      }
      expect(round.oneKeyDeltaBytes).toBeGreaterThan(0);
      expect(round.stateBytes).toBeGreaterThan(0);
      expect(round.shippedBytes).toBeGreaterThan(0);
      expect(round.contentJsonBytes).toBeGreaterThan(0);
      expect(round.convergence).toMatchObject({
        replicasIdentical: true,
        keysWrong: 0,
        oneKeyDelivered: true,
      });
      expect(round.convergence.keysChecked).toBeGreaterThan(0);
      expect(sys.converged).toBe(true);
    }
    // DWCP checks every key against the write order; Yjs only the keys written without concurrency.
    const cross = r.crossCheck[0]!;
    expect(cross.concurrentKeys).toBeGreaterThan(0);
    expect(r.yjs.rounds[0]!.convergence.keysChecked).toBe(
      r.dwcp.rounds[0]!.convergence.keysChecked - cross.concurrentKeys,
    );
    expect(cross.differingKeys).toBeLessThanOrEqual(cross.concurrentKeys);
    expect(cross.differingOnlyWhereConcurrent).toBe(true);
    // Yjs asks with state vectors; DWCP's headers are not counted.
    expect(r.yjs.rounds[0]!.stateVectorBytes).toBeGreaterThan(0);
    expect(r.dwcp.rounds[0]!.stateVectorBytes).toBe(0);
    expect(r.goals["one-key delta ≤ 100 B (DWCP)"]).toMatchObject({ met: true });
    expect(r.goals["one-key delta ≤ 100 B (DWCP)"].bytes).toBeLessThanOrEqual(100);
    expect(r.goals["every replica converged, both systems, every round"].met).toBe(true);
    expect(r.ratios.oneKeyDeltaBytes).toBe(
      Math.round((r.dwcp.median.oneKeyDeltaBytes / r.yjs.median.oneKeyDeltaBytes) * 1000) / 1000,
    );
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });
});
