// SWIM with Lifeguard in the seeded message-level simulation (swim-sim.ts):
// join, failure detection within a bound derived from the options, stalls
// and loss without false deaths, a slow node kept from accusing others by its
// Local Health Multiplier, graceful leave, hostile input, signed updates, and
// replay of a seed.
import { sign as edSign, verify as edVerify } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { seededRandom } from "../../src/env/index.js";
import { DWCPError } from "../../src/errors.js";
import {
  decodeMessage,
  encodeMessage,
  MAX_MESSAGE_BYTES,
  type SignedUpdate,
  SWIM_DEFAULTS,
  type SwimMessage,
  type SwimStats,
  suspicionBounds,
  suspicionTimeout,
  updateBytes,
} from "../../src/sync/swim/index.js";
import { MemberList } from "../../src/sync/swim/member-list.js";
import { seededKeys } from "../consensus/bft/harness.js";
import { SwimNet } from "./swim-sim.js";

const NO_SIG = new Uint8Array(0);
const upd = (kind: SignedUpdate["kind"], node: string, incarnation: number, origin = node): SignedUpdate => ({
  kind,
  node,
  incarnation,
  origin,
  signature: NO_SIG,
});
const gossip = (...updates: SignedUpdate[]): Uint8Array => encodeMessage({ type: "gossip", updates });

type Counter = Exclude<keyof SwimStats, "rejected">;
function total(net: SwimNet, k: Counter): number {
  let s = 0;
  for (const n of net.nodes.values()) s += n.swim.stats()[k];
  return s;
}

/**
 * The detection bound with the default options, for n members and awareness
 * 0: every live node probes the crashed one within 2(n − 1) probe intervals
 * (the rest of its round-robin round, then at worst the whole next one), the
 * probe fails one interval later, and the suspicion it starts (or joins)
 * lasts at most the longest suspicion timeout, after which it declares the
 * node dead itself, if gossip did not tell it sooner.
 */
function detectionBound(n: number): number {
  const o = SWIM_DEFAULTS;
  const { maxMs } = suspicionBounds(n, o.suspicionMult, o.suspicionMaxTimeoutMult, o.probeIntervalMs);
  return (2 * (n - 1) + 1) * o.probeIntervalMs + maxMs;
}

async function converge(net: SwimNet, limit = 30_000): Promise<number> {
  await net.run(limit, () => net.converged());
  expect(net.converged()).toBe(true);
  return net.sim.now;
}

describe("SWIM membership", () => {
  it("Lifeguard's suspicion timeout starts at max and reaches min after k confirmations", () => {
    const b = suspicionBounds(10, 4, 6, 1000);
    expect(b).toEqual({ minMs: 4000, maxMs: 24_000, confirmations: 2 });
    expect(suspicionTimeout(b, 0)).toBe(24_000);
    expect(suspicionTimeout(b, 1)).toBeLessThan(24_000);
    expect(suspicionTimeout(b, 1)).toBeGreaterThan(4000);
    expect(suspicionTimeout(b, 2)).toBe(4000);
    // log10 scaling: 100 members double the minimum.
    expect(suspicionBounds(100, 4, 6, 1000).minMs).toBe(8000);
    // Too few members to confirm: the minimum at once.
    expect(suspicionTimeout(suspicionBounds(3, 4, 6, 1000), 0)).toBe(4000);
  });

  for (const n of [5, 20]) {
    it(`${n} nodes converge to full membership after joining through one seed`, async () => {
      const net = new SwimNet({ seed: 11 + n });
      net.cluster(n);
      const t = await converge(net, 10_000);
      // Each node saw each other join exactly once, and nobody was ever suspected.
      for (const a of net.upNodes()) {
        const joined = net.events.filter((e) => e.observer === a && e.type === "joined").map((e) => e.node);
        expect(new Set(joined).size).toBe(n - 1);
        expect(joined.length).toBe(n - 1);
      }
      expect(total(net, "suspicionsSeen")).toBe(0);
      console.log(`join n=${n}: full membership at ${t.toFixed(0)} ms virtual (joins spread over 500 ms)`);
      net.close();
    });
  }

  it("a crashed node is declared dead by every live node within the derived bound, with no false positive", async () => {
    const n = 10;
    const bound = detectionBound(n); // 19 s + 24 s = 43 s
    expect(bound).toBe(43_000);
    const times: number[] = [];
    for (const seed of [1, 2, 3, 4, 5]) {
      const net = new SwimNet({ seed });
      net.cluster(n);
      const t0 = await converge(net);
      net.crash("n3");
      await net.run(t0 + bound + 5000);
      for (const a of net.upNodes()) {
        const seen = net.events.find((e) => e.observer === a && e.node === "n3" && e.type === "dead");
        expect(seen, `${a} never declared n3 dead (seed ${seed})`).toBeDefined();
        expect(seen!.t - t0).toBeLessThanOrEqual(bound);
        times.push(seen!.t - t0);
        // Dead still, or forgotten once the retention passed: never alive again.
        expect([undefined, "dead"]).toContain(net.swim(a).member("n3")?.state);
      }
      // No other node was even suspected, and the bound's premise held: awareness stayed 0.
      expect(net.events.filter((e) => e.node !== "n3" && e.type !== "joined")).toEqual([]);
      expect(total(net, "awarenessPeak")).toBe(0);
      net.close();
    }
    // Lifeguard's confirmations at work: no node waited out an unconfirmed suspicion.
    expect(Math.max(...times)).toBeLessThan(suspicionBounds(n, 4, 6, 1000).maxMs);
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    console.log(
      `crash n=${n}: dead everywhere after mean ${mean.toFixed(0)} ms, max ${Math.max(...times).toFixed(0)} ms ` +
        `(bound ${bound} ms), 0 false positives, 5 seeds`,
    );
  });

  for (const stallMs of [1000, 3000]) {
    it(`a node stalled for ${stallMs} ms is at most suspected, refutes, and is never declared dead`, async () => {
      let suspicions = 0;
      let refuted = 0;
      for (const seed of [1, 2, 3, 4, 5, 6]) {
        const net = new SwimNet({ seed });
        net.cluster(10);
        const t0 = await converge(net);
        net.stall("n4", stallMs);
        await net.run(t0 + 40_000);
        expect(net.events.filter((e) => e.type === "dead" || e.type === "left")).toEqual([]);
        expect(net.converged()).toBe(true);
        const s = net.eventsAbout("n4", "suspect").length;
        suspicions += s;
        refuted += total(net, "falseSuspicions");
        // Every suspicion of n4 ended in a refutation: it raised its incarnation.
        if (s > 0) expect(net.swim("n4").incarnation).toBeGreaterThan(0);
        net.close();
      }
      // A stall of a whole probe interval and more is always noticed; one of 1 s rarely is.
      if (stallMs > SWIM_DEFAULTS.probeIntervalMs) expect(suspicions).toBeGreaterThan(0);
      console.log(
        `stall ${stallMs} ms, n=10, 6 seeds: ${suspicions} suspicions seen of the stalled node, ` +
          `${refuted} refuted (false suspicions), 0 declared dead`,
      );
    });
  }

  it("with 10 % message loss, n = 10 sees no false death over 60 s", async () => {
    let seen = 0;
    let raised = 0;
    let peak = 0;
    let joinedBy = 0;
    for (const seed of [1, 2, 3, 4, 5]) {
      const net = new SwimNet({ seed, drop: 0.1 });
      net.cluster(10);
      // Joins complete despite the loss (a join is retried until a seed answers).
      joinedBy = Math.max(joinedBy, await converge(net, 10_000));
      await net.run(60_000);
      expect(net.converged()).toBe(true);
      expect(net.counters.dropped).toBeGreaterThan(0.08 * net.counters.sent);
      expect(net.events.filter((e) => e.type === "dead")).toEqual([]);
      seen += total(net, "suspicionsSeen");
      raised += total(net, "suspicionsRaised");
      expect(total(net, "falseSuspicions")).toBe(total(net, "suspicionsSeen"));
      for (const nd of net.nodes.values()) peak = Math.max(peak, nd.swim.stats().awarenessPeak);
      net.close();
    }
    console.log(
      `10 % loss, n=10, 60 s, 5 seeds: full membership by ${joinedBy.toFixed(0)} ms; ${raised} suspicions ` +
        `raised (${seen} seen cluster-wide), all refuted, 0 dead; peak awareness ${peak}`,
    );
  });

  it("a slow node's Local Health Multiplier rises and keeps it from accusing healthy nodes", async () => {
    const run = async (lifeguard: boolean) => {
      const net = new SwimNet({ seed: 5, options: lifeguard ? {} : { awarenessMax: 0 } });
      net.cluster(10);
      const t0 = await converge(net);
      net.slow("n5", 2000);
      await net.run(t0 + 60_000);
      const slow = net.swim("n5").stats();
      const others = [...net.nodes.values()].filter((x) => x.name !== "n5").map((x) => x.swim.stats());
      const result = {
        dead: net.events.filter((e) => e.type === "dead").length,
        // Suspicions the slow node raised: every one is of a healthy node.
        accusations: slow.suspicionsRaised,
        slowPeak: slow.awarenessPeak,
        othersPeak: Math.max(...others.map((s) => s.awarenessPeak)),
      };
      net.close();
      return result;
    };
    const on = await run(true);
    const off = await run(false);
    expect(on.dead).toBe(0);
    expect(on.slowPeak).toBeGreaterThanOrEqual(2);
    expect(on.slowPeak).toBeGreaterThan(on.othersPeak);
    expect(on.accusations).toBeLessThan(off.accusations);
    console.log(
      `slow node (0–2 s per message), n=10, 60 s: LHM peak ${on.slowPeak} (others ≤ ${on.othersPeak}); ` +
        `suspicions of healthy nodes by it: ${on.accusations} with Lifeguard, ${off.accusations} without; ` +
        `0 dead either way: ${off.dead === 0}`,
    );
  });

  it("a graceful leave reaches every member as left, never as dead, and is forgotten after the retention", async () => {
    const net = new SwimNet({ seed: 21 });
    net.cluster(6);
    const t0 = await converge(net);
    net.swim("n2").leave();
    expect(net.swim("n2").state).toBe("leaving");
    await net.run(t0 + 5000);
    expect(net.swim("n2").state).toBe("left");
    for (const a of ["n0", "n1", "n3", "n4", "n5"]) {
      expect(net.swim(a).member("n2")?.state).toBe("left");
      expect(net.events.filter((e) => e.observer === a && e.node === "n2" && e.type === "left")).toHaveLength(
        1,
      );
    }
    expect(net.events.filter((e) => e.type === "dead" || e.type === "suspect")).toEqual([]);
    await net.run(t0 + 5000 + SWIM_DEFAULTS.deadRetentionMs + 1000);
    for (const a of ["n0", "n1", "n3", "n4", "n5"]) expect(net.swim(a).member("n2")).toBeUndefined();
    net.close();
  });

  it("the same seed replays the same event trace; another seed does not", async () => {
    const once = async (seed: number) => {
      const net = new SwimNet({ seed, drop: 0.05 });
      net.cluster(8);
      await net.run(5000);
      net.crash("n5");
      net.stall("n2", 2000);
      await net.run(30_000);
      net.close();
      return {
        hash: net.sim.traceHash,
        events: net.events.map((e) => `${e.t} ${e.observer} ${e.type} ${e.node}`),
      };
    };
    const a = await once(7);
    const b = await once(7);
    const c = await once(8);
    expect(b.hash).toBe(a.hash);
    expect(b.events).toEqual(a.events);
    expect(a.events.some((e) => e.endsWith("dead n5"))).toBe(true);
    expect(c.hash).not.toBe(a.hash);
  });
});

describe("SWIM hostile input", () => {
  const valid: SwimMessage[] = [
    { type: "ping", seq: 7, target: "n1", updates: [upd("alive", "n2", 3), upd("suspect", "n3", 1, "n2")] },
    { type: "ping-req", seq: 9, target: "n4", nack: true, updates: [upd("dead", "n5", 2, "n1")] },
    { type: "ack", seq: 1, updates: [] },
    { type: "nack", seq: 2, updates: [upd("alive", "n9", 0)] },
    { type: "sync", reply: true, state: [upd("alive", "n0", 1), upd("dead", "n7", 4, "n0")], updates: [] },
  ];

  it("valid messages round-trip; every truncation is ERR_BAD_FRAME", () => {
    for (const m of valid) {
      const bytes = encodeMessage(m);
      expect(decodeMessage(bytes)).toEqual(m);
      for (let i = 0; i < bytes.length; i++) {
        const err = (() => {
          try {
            decodeMessage(bytes.subarray(0, i));
          } catch (e) {
            return e;
          }
        })();
        expect(err).toBeInstanceOf(DWCPError);
        expect((err as DWCPError).code).toMatch(/^ERR_(BAD_FRAME|PROTOCOL)$/);
      }
      expect(() => decodeMessage(new Uint8Array([...bytes, 0]))).toThrow(/trailing/);
    }
  });

  it("oversized counts and lengths are ERR_RESOURCE_LIMIT, before allocation", () => {
    const code = (b: Uint8Array) => {
      try {
        decodeMessage(b);
        return "ok";
      } catch (e) {
        return e instanceof DWCPError ? e.code : "not a DWCPError";
      }
    };
    expect(code(new Uint8Array([0xd5, 1, 5, 255]))).toBe("ERR_RESOURCE_LIMIT"); // 255 piggybacked
    expect(code(new Uint8Array([0xd5, 1, 6, 0, 0xff, 0xff]))).toBe("ERR_RESOURCE_LIMIT"); // 65535 entries
    expect(code(new Uint8Array(MAX_MESSAGE_BYTES + 1))).toBe("ERR_RESOURCE_LIMIT");
    // A 200-byte signature.
    expect(code(new Uint8Array([0xd5, 1, 5, 1, 1, 1, 0x61, 0, 0, 0, 0, 1, 0x61, 200]))).toBe(
      "ERR_RESOURCE_LIMIT",
    );
    expect(code(new Uint8Array([0xd5, 1, 99, 0]))).toBe("ERR_PROTOCOL");
    expect(code(new Uint8Array([0xd5, 2, 5, 0]))).toBe("ERR_PROTOCOL");
    // An alive asserted by another node than its subject.
    expect(code(gossip(upd("alive", "n1", 5, "n2")))).toBe("ERR_PROTOCOL");
  });

  it("random and mutated bytes throw only DWCPError from decode and nothing from receive", () => {
    const net = new SwimNet({ seed: 3 });
    const swim = net.add("n0", { maxMembers: 32 });
    const seeds = valid.map((m) => encodeMessage(m));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc
            .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }))))
            .map(([b, muts]) => {
              const c = b.slice();
              for (const [i, v] of muts) c[i % c.length] = v;
              return c;
            }),
        ),
        (bytes) => {
          try {
            decodeMessage(bytes);
          } catch (e) {
            if (!(e instanceof DWCPError)) throw e;
          }
          swim.receive("x", bytes);
        },
      ),
      { seed: 42, numRuns: 3000 },
    );
    expect(swim.members().length).toBeLessThanOrEqual(32);
    net.close();
  });

  it("floods of new members and indirect probes stay within their caps", async () => {
    const net = new SwimNet({ seed: 4 });
    const swim = net.add("n0", { maxMembers: 64, maxRelays: 16 });
    let k = 0;
    for (let i = 0; i < 100; i++)
      swim.receive("evil", gossip(...Array.from({ length: 32 }, () => upd("alive", `fake${k++}`, 0))));
    expect(swim.members().length).toBe(64);
    expect(swim.stats().rejected.ERR_RESOURCE_LIMIT).toBe(3200 - 64);
    for (let i = 0; i < 100; i++)
      swim.receive(
        "evil",
        encodeMessage({ type: "ping-req", seq: i, target: "ghost", nack: true, updates: [] }),
      );
    expect(swim.stats().relays).toBe(16);
    // The relays time out and free their places.
    await net.run(2000);
    swim.receive(
      "evil",
      encodeMessage({ type: "ping-req", seq: 500, target: "ghost", nack: true, updates: [] }),
    );
    expect(swim.stats().relays).toBe(17);
    // A full-state request cannot buy unbounded answers: about 10 per second.
    const sent = net.counters.sent;
    for (let i = 0; i < 100; i++)
      swim.receive("evil", encodeMessage({ type: "sync", reply: false, state: [], updates: [] }));
    expect(net.counters.sent - sent).toBeLessThanOrEqual(10);
    net.close();
  });

  it("a forged death with a stale incarnation is ignored (and one with the current incarnation is not)", async () => {
    const net = new SwimNet({ seed: 9 });
    net.cluster(4);
    const t0 = await converge(net);
    // n2 is accused and refutes: its incarnation becomes 1 everywhere.
    net.inject("n1", "n2", gossip(upd("suspect", "n2", 0, "n1")));
    await net.run(t0 + 3000);
    expect(net.swim("n2").incarnation).toBe(1);
    for (const a of ["n0", "n1", "n3"])
      expect(net.swim(a).member("n2")).toMatchObject({ state: "alive", incarnation: 1 });
    net.swim("n0").receive("n3", gossip(upd("dead", "n2", 0, "n3")));
    expect(net.swim("n0").member("n2")).toMatchObject({ state: "alive", incarnation: 1 });
    expect(net.eventsAbout("n2", "dead")).toEqual([]);
    // Control: the same forgery with the current incarnation takes hold (then n2 refutes it).
    net.swim("n0").receive("n3", gossip(upd("dead", "n2", 1, "n3")));
    expect(net.swim("n0").member("n2")?.state).toBe("dead");
    await net.run(net.sim.now + 5000);
    expect(net.swim("n0").member("n2")).toMatchObject({ state: "alive", incarnation: 2 });
    net.close();
  });

  it("with signing on, updates are verified by origin: another node cannot raise a member's incarnation", async () => {
    const n = 5;
    const { publicKeys, privateKeys } = seededKeys(77, n);
    const index = (id: string) => (/^n\d+$/.test(id) ? Number(id.slice(1)) : -1);
    const verify = (u: SignedUpdate) => {
      const i = index(u.origin);
      return i >= 0 && i < n && edVerify(null, updateBytes(u), publicKeys[i]!, u.signature);
    };
    const signAs = (i: number, u: Omit<SignedUpdate, "signature">): SignedUpdate => ({
      ...u,
      signature: new Uint8Array(edSign(null, updateBytes(u), privateKeys[i]!)),
    });
    const net = new SwimNet({
      seed: 13,
      optionsFor: (name) => ({ sign: (u) => signAs(index(name), u).signature, verify }),
    });
    net.cluster(n);
    const t0 = await converge(net);
    net.crash("n4");
    await net.run(t0 + detectionBound(n));
    for (const a of ["n0", "n1", "n2", "n3"]) expect(net.swim(a).member("n4")?.state).toBe("dead");
    const n0 = net.swim("n0");
    const before = n0.stats().rejected.unverified ?? 0;
    // n3 forges n1's alive at incarnation 7: signed by n3, or unsigned.
    n0.receive("n3", gossip(signAs(3, { kind: "alive", node: "n1", incarnation: 7, origin: "n1" })));
    n0.receive("n3", gossip(upd("alive", "n1", 7)));
    // ... and resurrects the dead n4 with its own signature.
    n0.receive("n3", gossip(signAs(3, { kind: "alive", node: "n4", incarnation: 9, origin: "n4" })));
    expect(n0.stats().rejected.unverified).toBe(before + 3);
    expect(n0.member("n1")?.incarnation).toBe(0);
    expect(n0.member("n4")?.state).toBe("dead");
    // Control: n1's own signature on the same update is accepted, relayed by anyone.
    n0.receive("n3", gossip(signAs(1, { kind: "alive", node: "n1", incarnation: 7, origin: "n1" })));
    expect(n0.member("n1")?.incarnation).toBe(7);
    net.close();
  });
});

describe("SWIM probe order", () => {
  it("a member urged (its link found closed) is probed next, once, then the round goes on; a dead one is not urged", () => {
    const list = new MemberList(seededRandom(3));
    const member = (id: string, state: "alive" | "dead") => ({
      id,
      state,
      incarnation: 0,
      since: 0,
      update: { kind: state, node: id, incarnation: 0, origin: id, signature: new Uint8Array(0) },
    });
    for (const id of ["a", "b", "c", "d"]) list.add(member(id, "alive"));
    const round = [list.nextProbe()!.id, list.nextProbe()!.id];
    list.urge("d");
    list.urge("d");
    const next = list.nextProbe()!.id;
    expect(next).toBe("d");
    // The rest of the round is what it would have been, d's own turn included.
    const rest = [list.nextProbe()!.id, list.nextProbe()!.id];
    expect(new Set([...round, ...rest])).toEqual(new Set(["a", "b", "c", "d"]));
    list.add(member("x", "dead"));
    list.urge("x");
    expect(list.nextProbe()!.id).not.toBe("x");
  });
});
