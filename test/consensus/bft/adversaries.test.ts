// Scripted adversaries against the BFT replicas in the simulator. Every run
// checks safety, the committed chain and honest signing after each delivery,
// and liveness after the adversary stops; each test adds what its adversary
// must (or must not) cause: evidence naming exactly the equivocating member,
// no accusation of an honest one, rejections counted, commits while it acts.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  type Adversary,
  type AdversaryResult,
  both,
  conflictingTimeouts,
  conflictingVoter,
  crashRestart,
  equivocatingLeader,
  flood,
  forger,
  late,
  replayer,
  runAdversary,
  silent,
  talksOnlyTo,
} from "./adversaries.js";

interface Regression {
  adversaries: { name: string; seed: number; found: string }[];
}
const regression: Regression = JSON.parse(
  readFileSync(new URL("./regression-seeds.json", import.meta.url), "utf8"),
);

function report(r: AdversaryResult): string {
  return [
    `${r.name} seed ${r.seed}: ${r.violations.length} violation(s)`,
    ...r.violations.slice(0, 10).map((v) => `  ${v}`),
    `  accusations: ${r.accusations.slice(0, 10).join(" ") || "none"}`,
    "  last trace lines:",
    ...r.trace.slice(-40).map((l) => `    ${l}`),
  ].join("\n");
}

const SEEDS = [1, 2, 3];

/** Runs `make()` under each seed; every run must hold every property. */
async function runAll(make: () => Adversary, opts: { n?: number; silent?: number[] } = {}) {
  const out: AdversaryResult[] = [];
  for (const seed of SEEDS) {
    const r = await runAdversary({ seed, adversary: make(), ...opts });
    expect(r.violations, report(r)).toEqual([]);
    out.push(r);
  }
  return out;
}

const accused = (rs: readonly AdversaryResult[]) =>
  new Set(rs.flatMap((r) => r.accusations.map((a) => a.split(/[>:]/)[1])));
const sumRejected = (r: AdversaryResult, at: "statsAtStop" | "statsAtEnd") =>
  Object.values(r[at]).reduce((s, st) => s + Object.values(st.rejected).reduce((a, b) => a + b, 0), 0);

describe("BFT against scripted adversaries", () => {
  it.each(regression.adversaries)("regression: $name seed $seed ($found)", async ({ name, seed }) => {
    const make = BY_NAME[name];
    expect(make, `no adversary named ${name}`).toBeDefined();
    const r = await runAdversary({ seed, adversary: make!() });
    expect(r.violations, report(r)).toEqual([]);
  });

  it("a member silent from the start (f = 1 of 4): commits go on, nobody is accused", async () => {
    const rs = await runAll(() => ({ name: "member 3 down" }), { silent: [3] });
    for (const r of rs) {
      expect(r.commitsWhileActive).toBeGreaterThan(0);
      expect(r.accusations).toEqual([]);
    }
  });

  it("a member silent for 1.5 s, then back: commits go on while it is silent and after", async () => {
    for (const r of await runAll(() => silent(2))) {
      expect(r.commitsWhileActive).toBeGreaterThan(0);
      expect(r.accusations).toEqual([]);
    }
  });

  it("a member whose messages all arrive just past the view timeout, or who talks to one member only: commits go on, nobody is accused", async () => {
    for (const make of [() => late(2, 110), () => talksOnlyTo(3, 0)])
      for (const r of await runAll(make)) {
        expect(r.commitsWhileActive).toBeGreaterThan(0);
        expect(r.accusations).toEqual([]);
      }
  });

  it("n = 7 with two members down (f = 2): commits go on", async () => {
    for (const r of await runAll(() => ({ name: "members 1 and 5 down" }), { n: 7, silent: [1, 5] }))
      expect(r.commitsWhileActive).toBeGreaterThan(0);
  });

  it("an equivocating leader: every honest replica that received both proposals reports it, and only it", async () => {
    const rs = await runAll(() => equivocatingLeader(0));
    expect([...accused(rs)]).toEqual(["0"]);
    for (const r of rs) {
      expect(r.equivocationsReceived).toBeGreaterThan(0);
      expect(r.equivocationsReported).toBe(r.equivocationsReceived);
      expect(r.commitsWhileActive).toBeGreaterThan(0);
    }
  });

  it("an equivocating leader whose halves never meet: no replica can tell, so nobody is accused, and commits go on", async () => {
    for (const r of await runAll(() => equivocatingLeader(0, null))) {
      expect(r.equivocationsReceived).toBe(0);
      expect(r.accusations).toEqual([]);
      expect(r.commitsWhileActive).toBeGreaterThan(0);
    }
  });

  it("a member voting for conflicting blocks is reported by the leaders it voted to, and only it", async () => {
    const rs = await runAll(() => conflictingVoter(2));
    expect([...accused(rs)]).toEqual(["2"]);
    for (const r of rs) {
      expect(r.equivocationsReceived).toBeGreaterThan(0);
      expect(r.equivocationsReported).toBe(r.equivocationsReceived);
    }
  });

  it("a member signing two timeouts per view is reported by every replica that received both, and only it", async () => {
    const rs = await runAll(() => conflictingTimeouts(3));
    expect([...accused(rs)]).toEqual(["3"]);
    for (const r of rs) {
      expect(r.accusations.every((a) => a.includes(":timeout@"))).toBe(true);
      expect(r.equivocationsReceived).toBeGreaterThan(0);
      expect(r.equivocationsReported).toBe(r.equivocationsReceived);
      expect(r.commitsWhileActive).toBeGreaterThan(0);
    }
  });

  it("n = 7: an equivocating leader and a conflicting voter at once (f = 2) are both reported, nobody else", async () => {
    const rs = await runAll(() => both(equivocatingLeader(3), conflictingVoter(5)), { n: 7 });
    expect([...accused(rs)].sort()).toEqual(["3", "5"]);
    for (const r of rs) expect(r.equivocationsReported).toBe(r.equivocationsReceived);
  });

  it("replayed old-view messages change nothing and accuse nobody", async () => {
    for (const r of await runAll(() => replayer())) {
      expect(r.injected).toBeGreaterThan(100);
      expect(r.accusations).toEqual([]);
      expect(r.commitsWhileActive).toBeGreaterThan(0);
    }
  });

  it("bad signatures and forged sender ids are refused and counted, and accuse nobody", async () => {
    for (const r of await runAll(() => forger(1))) {
      expect(r.accusations).toEqual([]);
      const auth = Object.values(r.statsAtStop).reduce((s, st) => s + (st.rejected.ERR_AUTH_FAILED ?? 0), 0);
      expect(auth).toBeGreaterThan(50);
      expect(r.commitsWhileActive).toBeGreaterThan(0);
    }
  });

  it("a flood of junk is refused, every message counted, and the replicas keep committing", async () => {
    for (const r of await runAll(() => flood(3, "junk"))) {
      expect(r.injected).toBeGreaterThan(2000);
      expect(sumRejected(r, "statsAtEnd")).toBeGreaterThanOrEqual(r.injected);
      expect(r.commitsWhileActive).toBeGreaterThan(0);
      expect(r.accusations).toEqual([]);
    }
  });

  it("a flood of valid but stale messages accuses nobody, and the replicas keep committing", async () => {
    for (const r of await runAll(() => flood(3, "stale"))) {
      expect(r.injected).toBeGreaterThan(1000);
      expect(r.commitsWhileActive).toBeGreaterThan(0);
      expect(r.accusations).toEqual([]);
    }
  });

  it("an honest member that crashes and restarts signs nothing that conflicts with its first life (no amnesia)", async () => {
    for (const r of await runAll(() => crashRestart(1))) expect(r.accusations).toEqual([]);
  });
});

const BY_NAME: Record<string, () => Adversary> = {
  "member 2 silent": () => silent(2),
  "member 2 late by 110 ms": () => late(2, 110),
  "member 3 talks only to member 0": () => talksOnlyTo(3, 0),
  "leader 0 equivocates": () => equivocatingLeader(0),
  "member 2 votes for conflicting blocks": () => conflictingVoter(2),
  "member 3 signs conflicting timeouts": () => conflictingTimeouts(3),
  "replay of old-view messages": () => replayer(),
  "forged signatures and sender ids (member 1 and the path)": () => forger(1),
  "member 3 floods junk": () => flood(3, "junk"),
  "member 3 floods stale": () => flood(3, "stale"),
  "member 1 crashes and restarts": () => crashRestart(1),
};
