/**
 * Histories with known verdicts for the linearizability checker.
 *
 * Linearizable by construction: concurrent clients run against a real register
 * map, and each operation takes effect at a random moment between its
 * invocation and its completion (or, for a `fail`, never; for an `info`, at
 * that moment or never). Whatever the checker says, a linearization exists: the
 * order in which the simulation applied the operations.
 *
 * Not linearizable by construction: such a background, with an anomaly woven
 * into it by extra processes on values nothing else writes, so that no
 * background operation can explain it away.
 */
import type { History, RecordedCall, Token, Value } from "../../src/consensus/lincheck/index.js";
import { HistoryRecorder } from "../../src/consensus/lincheck/index.js";

/** Shape of a generated history. */
export interface CorpusOptions {
  readonly seed: number;
  /** Operations of the background workload. */
  readonly operations: number;
  /** Concurrent clients. */
  readonly processes: number;
  /** Keys; 0 for an unkeyed history (one register). */
  readonly keys: number;
  /** Distinct values written: few make reads ambiguous, which is what makes the search work. @default 5 */
  readonly values?: number;
  /** Chance that an operation ends `info` (applied or not). @default 0.02 */
  readonly infoRate?: number;
  /** Chance that an operation ends `fail` without being applied. @default 0.03 */
  readonly failRate?: number;
}

/** The anomalies {@link anomalousHistory} can weave in. */
export const ANOMALIES = [
  /** write a; write b; then a read returns a. */
  "stale-read",
  /** write x; write a (acknowledged); then cas(x -> d) succeeds, as if a were lost. */
  "lost-write",
  /** write x; then two concurrent cas(x -> y) and cas(x -> z) both succeed. */
  "double-cas",
  /** a read returns a value no one wrote. */
  "phantom-read",
  /** p writes A then B; q reads B's new value, then A's previous one. */
  "cross-key-read",
  /** p writes x then a to A, then b to B, then reads x from A: it does not read its own write. */
  "read-your-write",
] as const;
export type Anomaly = (typeof ANOMALIES)[number];

/** A deterministic PRNG (xorshift32), so every corpus entry can be rebuilt from its seed. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 0x2545f491;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 0x100000000;
  };
}

type Slot =
  | { readonly phase: "idle" }
  | {
      readonly phase: "invoked" | "applied";
      readonly token: Token;
      readonly key: string;
      readonly call: RecordedCall;
      /** Once applied: whether it took effect, and a read's result. */
      readonly took?: boolean;
      readonly result?: Value;
    };

/**
 * Runs the background workload on `rec`. `extra` runs one scripted step now and
 * then, given the registers, until it returns true.
 */
function simulate(
  o: CorpusOptions,
  rec: HistoryRecorder,
  extra?: (registers: Map<string, Value>) => boolean,
): void {
  const rand = rng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const nvalues = o.values ?? 5;
  const infoRate = o.infoRate ?? 0.02;
  const failRate = o.failRate ?? 0.03;
  const keys = o.keys === 0 ? [""] : Array.from({ length: o.keys }, (_, i) => `k${i}`);
  const registers = new Map<string, Value>();
  const value = () => `${Math.floor(rand() * nvalues)}`;
  const slots: Slot[] = Array.from({ length: o.processes }, () => ({ phase: "idle" }));
  const pids = Array.from({ length: o.processes }, (_, i) => i);
  let started = 0;
  let extraDone = extra === undefined;
  while (started < o.operations || slots.some((s) => s.phase !== "idle") || !extraDone) {
    if (!extraDone && rand() < 0.1) extraDone = extra!(registers);
    const i = Math.floor(rand() * slots.length);
    const s = slots[i]!;
    if (s.phase === "idle") {
      if (started >= o.operations) continue;
      started++;
      const key = pick(keys);
      const r = rand();
      const call: RecordedCall =
        r < 0.4
          ? { f: "read" }
          : r < 0.75
            ? { f: "write", value: value() }
            : { f: "cas", from: rand() < 0.1 ? null : value(), to: value() };
      const token = rec.invoke(pids[i]!, o.keys === 0 ? call : { ...call, key });
      slots[i] = { phase: "invoked", token, key, call };
    } else if (s.phase === "invoked") {
      const r = rand();
      if (r < failRate) {
        rec.fail(s.token);
        slots[i] = { phase: "idle" };
      } else if (r < failRate + infoRate) {
        rec.info(s.token);
        pids[i]! += o.processes;
        slots[i] = { phase: "idle" };
      } else {
        // The linearization point.
        const cur = registers.get(s.key) ?? null;
        const c = s.call;
        if (c.f === "read") slots[i] = { ...s, phase: "applied", took: true, result: cur };
        else if (c.f === "write") {
          registers.set(s.key, c.value);
          slots[i] = { ...s, phase: "applied", took: true };
        } else {
          const took = cur === c.from;
          if (took) registers.set(s.key, c.to);
          slots[i] = { ...s, phase: "applied", took };
        }
      }
    } else {
      if (rand() < infoRate) {
        rec.info(s.token);
        pids[i]! += o.processes;
      } else if (s.took) rec.ok(s.token, s.call.f === "read" ? s.result! : undefined);
      else rec.fail(s.token);
      slots[i] = { phase: "idle" };
    }
  }
}

/** A linearizable history (see the module's comment). */
export function linearizableHistory(o: CorpusOptions): History {
  const rec = new HistoryRecorder();
  simulate(o, rec);
  return rec.history();
}

/**
 * A history that is not linearizable because of `anomaly`, woven into a
 * linearizable background. The anomaly's operations are by processes numbered
 * from 1,000,000, on values starting with `u`, which nothing else writes; in a keyed
 * history on keys of their own (`a0`, and `a1` for `cross-key-read` and `read-your-write`), in an
 * unkeyed one on the one register.
 */
export function anomalousHistory(anomaly: Anomaly, o: CorpusOptions): History {
  const keyed = o.keys > 0;
  const A = keyed ? "a0" : "";
  const B = keyed ? "a1" : "";
  // A script: invocations (numbered in order) and their completions.
  type Step = { p: number; key: string; call: RecordedCall } | { done: number; result?: Value };
  const w = (p: number, key: string, value: string): Step => ({ p, key, call: { f: "write", value } });
  const r = (p: number, key: string): Step => ({ p, key, call: { f: "read" } });
  const cas = (p: number, key: string, from: string, to: string): Step => ({
    p,
    key,
    call: { f: "cas", from, to },
  });
  const script: Step[] = {
    "stale-read": [
      w(0, A, "ua"),
      { done: 0 },
      w(1, A, "ub"),
      { done: 1 },
      r(2, A),
      { done: 2, result: "ua" },
    ],
    "lost-write": [
      w(0, A, "ux"),
      { done: 0 },
      w(1, A, "ua"),
      { done: 1 },
      cas(2, A, "ux", "ud"),
      { done: 2 },
    ],
    "double-cas": [
      w(0, A, "ux"),
      { done: 0 },
      cas(1, A, "ux", "uy"),
      cas(2, A, "ux", "uz"),
      { done: 1 },
      { done: 2 },
    ],
    "phantom-read": [r(0, A), { done: 0, result: "unever" }],
    "cross-key-read": [
      w(0, A, "ux"),
      { done: 0 },
      w(0, A, "ua"),
      { done: 1 },
      w(0, B, "ub"),
      { done: 2 },
      r(1, B),
      { done: 3, result: "ub" },
      r(1, A),
      { done: 4, result: "ux" },
    ],
    "read-your-write": [
      w(0, A, "ux"),
      { done: 0 },
      w(0, A, "ua"),
      { done: 1 },
      w(0, B, "ub"),
      { done: 2 },
      r(0, A),
      { done: 3, result: "ux" },
    ],
  }[anomaly];
  const rec = new HistoryRecorder();
  const tokens: Token[] = [];
  let next = 0;
  simulate(o, rec, (registers) => {
    const step = script[next++]!;
    if ("done" in step) rec.ok(tokens[step.done]!, step.result);
    else {
      tokens.push(rec.invoke(1_000_000 + step.p, keyed ? { ...step.call, key: step.key } : step.call));
      // The background keeps reading what the anomaly's writes left.
      if (step.call.f === "write") registers.set(step.key, step.call.value);
    }
    return next >= script.length;
  });
  return rec.history();
}
