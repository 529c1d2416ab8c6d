// The linearizability checker against histories whose verdict is known by
// construction (test/consensus/lincheck-corpus.ts), against an exhaustive
// search over every order on small arbitrary histories, and on its limits.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  checkLinearizable,
  type History,
  HistoryRecorder,
  type Operation,
  renderWindow,
} from "../../src/consensus/lincheck/index.js";
import { ANOMALIES, anomalousHistory, type CorpusOptions, linearizableHistory } from "./lincheck-corpus.js";

/**
 * Linearizability by brute force, from the definition: some order of the
 * operations that did not fail (an indeterminate one may be left out) respects
 * real time and the register's semantics, key by key.
 */
function bruteForce(h: History): boolean {
  const keys = new Map<string, Operation[]>();
  for (const op of h.operations) {
    if (op.status === "fail" || (op.status === "info" && op.call.f === "read")) continue;
    keys.set(op.key, [...(keys.get(op.key) ?? []), op]);
  }
  for (const ops of keys.values()) {
    const end = (op: Operation) => (op.status === "info" ? Number.POSITIVE_INFINITY : op.complete);
    const placed = ops.map(() => false);
    const dfs = (state: string | null): boolean => {
      if (ops.every((op, i) => placed[i] || op.status === "info")) return true;
      for (let i = 0; i < ops.length; i++) {
        if (placed[i]) continue;
        const op = ops[i]!;
        // Nothing still unplaced may have completed before this one began.
        if (ops.some((p, j) => j !== i && !placed[j] && end(p) < op.invoke)) continue;
        const c = op.call;
        let next: string | null;
        if (c.f === "read") {
          if (op.result !== state) continue;
          next = state;
        } else if (c.f === "write") next = c.value;
        else {
          if (state !== c.from) continue;
          next = c.to;
        }
        placed[i] = true;
        const found = dfs(next);
        placed[i] = false;
        if (found) return true;
      }
      return false;
    };
    if (!dfs(null)) return false;
  }
  return true;
}

/** Small arbitrary histories: up to 3 processes, few values, any outcomes. */
const smallHistory = fc
  .record({
    keyed: fc.boolean(),
    steps: fc.array(
      fc.record({
        p: fc.nat(2),
        key: fc.constantFrom("a", "b"),
        f: fc.constantFrom("read", "write", "cas"),
        v: fc.constantFrom(null, "1", "2"),
        w: fc.constantFrom("1", "2"),
        end: fc.constantFrom("ok", "ok", "ok", "fail", "info"),
      }),
      { maxLength: 16 },
    ),
  })
  .map(({ keyed, steps }) => {
    const rec = new HistoryRecorder();
    const pid = [0, 1, 2];
    const open: (ReturnType<HistoryRecorder["invoke"]> | undefined)[] = [];
    let ops = 0;
    for (const s of steps) {
      const t = open[s.p];
      if (t === undefined) {
        if (ops++ >= 8) continue;
        const call =
          s.f === "read"
            ? { f: "read" as const }
            : s.f === "write"
              ? { f: "write" as const, value: s.w }
              : { f: "cas" as const, from: s.v, to: s.w };
        open[s.p] = rec.invoke(pid[s.p]!, keyed ? { ...call, key: s.key } : call);
      } else {
        if (s.end === "ok") rec.ok(t, s.v);
        else if (s.end === "fail") rec.fail(t);
        else {
          rec.info(t);
          pid[s.p]! += 3;
        }
        open[s.p] = undefined;
      }
    }
    return rec.history();
  });

const shapes: CorpusOptions[] = [
  { seed: 1, operations: 400, processes: 2, keys: 0 },
  { seed: 2, operations: 400, processes: 5, keys: 0, infoRate: 0.1 },
  { seed: 3, operations: 800, processes: 8, keys: 1, values: 3 },
  { seed: 4, operations: 1000, processes: 6, keys: 4, failRate: 0.2 },
  { seed: 5, operations: 1000, processes: 10, keys: 10, values: 2, infoRate: 0.05 },
];

describe("checkLinearizable on the corpus", () => {
  it("finds every history linearizable that is so by construction, across seeds and shapes", () => {
    let checked = 0;
    for (const shape of shapes)
      for (let seed = shape.seed; seed < shape.seed + 200; seed += 20) {
        const h = linearizableHistory({ ...shape, seed });
        const r = checkLinearizable(h);
        expect(r.result, `seed ${seed} ${JSON.stringify(shape)}`).toBe("ok");
        expect(r.operations).toBe(h.operations.length);
        expect(r.keys.every((k) => k.result === "ok")).toBe(true);
        checked++;
      }
    expect(checked).toBe(50);
  });

  it("the corpus holds the operations that make it hard: concurrency, fail, info, and pending ones", () => {
    const h = linearizableHistory({ seed: 9, operations: 2000, processes: 8, keys: 2, infoRate: 0.05 });
    const count = (s: string) => h.operations.filter((op) => op.status === s).length;
    expect(count("ok")).toBeGreaterThan(1000);
    expect(count("fail")).toBeGreaterThan(20);
    expect(count("info")).toBeGreaterThan(20);
    // Operations overlap: some op is invoked while another is in flight.
    const overlapping = h.operations.filter((op, i) =>
      h.operations.slice(0, i).some((p) => p.complete > op.invoke),
    ).length;
    expect(overlapping).toBeGreaterThan(1000);
  });

  for (const anomaly of ANOMALIES)
    it(`finds "${anomaly}" not linearizable, on the anomaly's key only, keyed or not`, () => {
      for (const shape of shapes) {
        const h = anomalousHistory(anomaly, shape);
        const r = checkLinearizable(h, { explain: true });
        expect(r.result, JSON.stringify(shape)).toBe("illegal");
        const illegal = r.keys.filter((k) => k.result === "illegal").map((k) => k.key);
        expect(illegal).toEqual([shape.keys === 0 ? "" : "a0"]);
        // The window alone (without the freedom given to what lies outside it)
        // is illegal too.
        const w = r.keys.find((k) => k.window)!.window!;
        const alone = w.operations.map((op) =>
          op.complete > w.end ? { ...op, status: "info" as const, complete: Number.POSITIVE_INFINITY } : op,
        );
        expect(checkLinearizable({ keyed: h.keyed, operations: alone }).result).toBe("illegal");
      }
    });

  it("explains each anomaly with exactly its own operations when its key has no others", () => {
    const expected: Record<string, string[]> = {
      "stale-read": ["write ua", "write ub", "read -> ua"],
      "lost-write": ["write ux", "write ua", "cas ux -> ud"],
      "double-cas": ["write ux", "cas ux -> uy", "cas ux -> uz"],
      "phantom-read": ["read -> unever"],
      "cross-key-read": ["write ux", "write ua", "read -> ux"],
      "read-your-write": ["write ux", "write ua", "read -> ux"],
    };
    for (const anomaly of ANOMALIES) {
      const r = checkLinearizable(anomalousHistory(anomaly, shapes[4]!), { explain: true });
      const w = r.keys.find((k) => k.key === "a0")!.window!;
      const text = renderWindow(w);
      expect(w.operations).toHaveLength(expected[anomaly]!.length);
      for (const call of expected[anomaly]!) expect(text).toContain(call);
      expect(w.operations.every((op) => op.process >= 1_000_000)).toBe(true);
    }
  });

  it("explains an anomaly among other operations of its register with those that matter", () => {
    const r = checkLinearizable(anomalousHistory("stale-read", shapes[1]!), { explain: true });
    const w = r.keys[0]!.window!;
    // Three operations: the write of ua, the stale read of it, and one that
    // showed another value between them (the write of ub, or the background's
    // write, successful cas or read).
    const [first, middle, last] = w.operations;
    expect(w.operations).toHaveLength(3);
    expect([first!.process, last!.process]).toEqual([1_000_000, 1_000_002]);
    expect(middle!.status).toBe("ok");
    expect(first!.complete).toBeLessThan(middle!.invoke);
    expect(middle!.complete).toBeLessThan(last!.invoke);
    expect(w.of).toBeGreaterThan(300);
    expect(renderWindow(w)).toMatch(/^the register: these 3 operations have no linearization/);
  });
});

describe("checkLinearizable against an exhaustive search", () => {
  it("agrees on arbitrary small histories (any outcomes, fail and info included), explanations too", () => {
    let illegal = 0;
    let total = 0;
    fc.assert(
      fc.property(smallHistory, (h) => {
        const expected = bruteForce(h);
        total++;
        if (!expected) illegal++;
        const r = checkLinearizable(h, { explain: true });
        expect(r.result).toBe(expected ? "ok" : "illegal");
        // Each explanation is illegal on its own, by the exhaustive search too.
        for (const k of r.keys) {
          if (k.result !== "illegal") continue;
          const w = k.window!;
          const alone = w.operations.map((op) =>
            op.complete > w.end ? { ...op, status: "info" as const, complete: Number.POSITIVE_INFINITY } : op,
          );
          expect(bruteForce({ keyed: h.keyed, operations: alone })).toBe(false);
        }
      }),
      { numRuns: 1500 },
    );
    // Both verdicts were exercised.
    expect(illegal).toBeGreaterThan(total / 10);
    expect(total - illegal).toBeGreaterThan(total / 10);
  });

  it("every prefix of a linearizable history is linearizable (what its explanations rely on)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000 }), fc.double({ min: 0, max: 1 }), (seed, at) => {
        const h = linearizableHistory({ seed, operations: 60, processes: 4, keys: 0, values: 3 });
        const cut = Math.floor(at * 2 * h.operations.length);
        const prefix = h.operations
          .filter((op) => op.invoke <= cut && !(op.call.f === "read" && op.complete > cut))
          .map((op) =>
            op.complete > cut ? { ...op, status: "info" as const, complete: Number.POSITIVE_INFINITY } : op,
          );
        expect(checkLinearizable({ keyed: false, operations: prefix }).result).toBe("ok");
      }),
      { numRuns: 200 },
    );
  });
});

describe("checkLinearizable's limits", () => {
  /** Many concurrent indeterminate writes, then a read of a value none wrote: illegal, but only after every subset was tried. */
  function hard(writers: number): History {
    const rec = new HistoryRecorder();
    const ts = Array.from({ length: writers }, (_, i) => rec.invoke(i, { f: "write", value: `${i}` }));
    const read = rec.invoke(writers, { f: "read" });
    for (const t of ts) rec.info(t);
    rec.ok(read, "never");
    return rec.history();
  }

  it("says unknown, never a guess, when its time runs out", () => {
    const r = checkLinearizable(hard(22), { timeoutMs: 5 });
    expect(r.result).toBe("unknown");
    expect(r.keys[0]).toMatchObject({ result: "unknown", limit: "time" });
    expect(r.elapsedMs).toBeLessThan(2_000);
  });

  it("says unknown when the states it may memoise run out", () => {
    const r = checkLinearizable(hard(22), { maxStates: 10_000 });
    expect(r.result).toBe("unknown");
    expect(r.keys[0]).toMatchObject({ result: "unknown", limit: "states" });
    expect(r.keys[0]!.states).toBeGreaterThan(10_000);
    // One configuration of 23 operations: a word, the value, and the array itself.
    const m = checkLinearizable(hard(22), { maxMemoBytes: 1024 * 1024 });
    expect(m.keys[0]).toMatchObject({ result: "unknown", limit: "states" });
    expect(m.keys[0]!.states).toBeLessThanOrEqual(Math.floor((1024 * 1024) / (2 * 4 + 96)) + 1);
    expect(m.keys[0]!.states).toBeGreaterThan(1000);
  });

  it("decides the same kind of history when it is small enough", () => {
    const r = checkLinearizable(hard(10));
    expect(r.result).toBe("illegal");
    // Every subset of the ten writes, with each possible last value, was visited.
    expect(r.keys[0]!.states).toBeGreaterThanOrEqual(2 ** 10);
  });

  it("reports an illegal key even when another is undecided", () => {
    const hardOps = hard(22).operations.map((op) => ({ ...op, key: "hard" }));
    const bad = anomalousHistory("phantom-read", { seed: 3, operations: 10, processes: 2, keys: 1 });
    const shift = hardOps.length * 2;
    const ops: Operation[] = [
      ...hardOps,
      ...bad.operations.map((op) => ({ ...op, invoke: op.invoke + shift, complete: op.complete + shift })),
    ];
    const r = checkLinearizable({ keyed: true, operations: ops }, { maxStates: 10_000 });
    expect(r.keys.find((k) => k.key === "hard")!.result).toBe("unknown");
    expect(r.keys.find((k) => k.key === "a0")!.result).toBe("illegal");
    expect(r.result).toBe("illegal");
  });

  it("refuses an operation that completes before it is invoked", () => {
    const op: Operation = {
      process: 0,
      key: "",
      call: { f: "write", value: "1" },
      status: "ok",
      invoke: 5,
      complete: 2,
    };
    expect(() => checkLinearizable({ keyed: false, operations: [op] })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
  });
});

describe("checkLinearizable's speed", () => {
  it("checks a 10,000-operation history (10 keys, 8 processes, info and fail operations) in well under 10 s", () => {
    const h = linearizableHistory({ seed: 2026, operations: 10_000, processes: 8, keys: 10 });
    expect(h.operations.length).toBe(10_000);
    const r = checkLinearizable(h);
    expect(r.result).toBe("ok");
    const bad = anomalousHistory("stale-read", { seed: 2026, operations: 10_000, processes: 8, keys: 10 });
    const rb = checkLinearizable(bad, { explain: true });
    expect(rb.result).toBe("illegal");
    console.info(
      `lincheck: 10,000 operations checked in ${r.elapsedMs.toFixed(1)} ms (linearizable); ${rb.operations} in ${rb.elapsedMs.toFixed(1)} ms with an explanation (not linearizable)`,
    );
    // The bound is for a loaded machine; bench/lincheck.ts measures it.
    expect(r.elapsedMs).toBeLessThan(10_000);
    expect(rb.elapsedMs).toBeLessThan(10_000);
  });
});
