// The sync replica (src/sync/replica.ts) in the seeded message-level simulator
// (replica-sim.ts): the map API, frames and hostile input, convergence to the
// model of all writes within the stated bound under drop, duplication,
// reorder, partitions, crashes and clock skew (a CI sample of 40 seeds across
// 5-50 nodes; scripts/sync-sim.ts runs thousands), the anti-entropy backstop
// alone, internet mode against a byzantine relay and a clock far ahead, and
// replay of a seed.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compareHlc } from "../../src/sync/hlc.js";
import { encodeLwwDelta, type LwwDelta } from "../../src/sync/lww-map.js";
import type { SyncChange, SyncReplica } from "../../src/sync/replica.js";
import {
  decodeEnvelopeList,
  decodeSyncFrame,
  encodeEnvelopeList,
  encodeSyncFrame,
  type SyncFrame,
} from "../../src/sync/replica-wire.js";
import { CONTEXT_DELTA, decodeEnvelope, signEnvelope } from "../../src/sync/signed.js";
import {
  CLEAN,
  convergenceBound,
  type Mix,
  ReplicaNet,
  type ReplicaSimResult,
  runReplicaSim,
  SIM_DEFAULTS,
} from "./replica-sim.js";

const SIM_EPOCH_MS = Date.UTC(2026, 0, 1);
const bytes = (...xs: number[]) => new Uint8Array(xs);
const text = (b: Uint8Array | undefined) => (b ? Buffer.from(b).toString() : undefined);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  return undefined;
}

/** A small clean cluster a, b, c, … started at once. */
function cluster(n: number, o: { seed?: number; mix?: Mix; signing?: boolean } = {}): ReplicaNet {
  const net = new ReplicaNet({
    seed: o.seed ?? 1,
    mix: o.mix ?? CLEAN,
    options: SIM_DEFAULTS,
    signing: o.signing ?? false,
  });
  for (let i = 0; i < n; i++) net.add(String.fromCharCode(97 + i));
  return net;
}

function converged(net: ReplicaNet, names?: string[]): boolean {
  const rs = names ? names.map((n) => net.replica(n)) : net.replicas();
  const d = hex(rs[0]!.stateDigest());
  return rs.every((r) => hex(r.stateDigest()) === d);
}

function rejected(rs: SyncReplica[], reason: string): number {
  return rs.reduce((s, r) => s + (r.stats().rejected[reason] ?? 0), 0);
}

describe("sync replica: the map API and the frames", () => {
  it("set, setFields, delete, get, keys and onChange, locally and on a peer", async () => {
    const net = cluster(2);
    const a = net.replica("a");
    const b = net.replica("b");
    const seen: SyncChange[] = [];
    const off = b.onChange((c) => seen.push(c));
    const t1 = a.set("vm-1", "host", bytes(1));
    const t2 = a.setFields("vm-1", { state: bytes(2), cpu: bytes(3) });
    expect(compareHlc(t2, t1)).toBeGreaterThan(0);
    a.set("vm-2", "host", bytes(4));
    expect(a.keys()).toEqual(["vm-1", "vm-2"]);
    expect(Object.keys(a.get("vm-1")!).sort()).toEqual(["cpu", "host", "state"]);
    await net.run(1000);
    expect(b.keys()).toEqual(["vm-1", "vm-2"]);
    expect(b.get("vm-1")!.cpu).toEqual(bytes(3));
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((c) => c.origin === "remote" && c.from === "a")).toBe(true);
    // b's merge of a's writes is a change of b's stream, but a sent it: b does not echo it back.
    expect(b.stats().echoesSuppressed).toBeGreaterThan(0);
    expect(b.stats().bytesSentByKind.delta).toBeLessThan(a.stats().bytesSentByKind.delta / 2);
    b.delete("vm-2");
    await net.run(2000);
    expect(a.get("vm-2")).toBeUndefined();
    expect(a.keys()).toEqual(["vm-1"]);
    expect(hex(a.stateDigest())).toBe(hex(b.stateDigest()));
    const before = seen.length;
    off();
    a.set("vm-3", "host", bytes(5));
    await net.run(3000);
    expect(seen.length).toBe(before);
    const s = a.stats();
    expect(s.localUpdates).toBe(4);
    expect(s.deltasSent).toBeGreaterThan(0);
    expect(s.bytesPerUpdate).toBe(s.bytesSent / 4);
    expect(s.bytesSentByKind.delta).toBeGreaterThan(0);
    // GC collected the tombstone once both had acked it (every 2 s).
    await net.run(8000);
    expect(a.stats().tombstones + b.stats().tombstones).toBe(0);
    expect(a.stats().tombstonesCollected + b.stats().tombstonesCollected).toBeGreaterThanOrEqual(2);
    expect(hex(a.root())).toBe(hex(b.root()));
    net.close();
    expect(codeOf(() => a.set("k", "f", bytes(1)))).toBe("ERR_CLOSED");
  });

  it("concurrent writes to one key: different fields both survive, one field goes to the larger timestamp", async () => {
    const net = cluster(3);
    const [a, b, c] = ["a", "b", "c"].map((n) => net.replica(n)) as [SyncReplica, SyncReplica, SyncReplica];
    const heal = net.partition(["a"], ["b", "c"]);
    a.set("vm", "host", Buffer.from("h-a"));
    b.set("vm", "state", Buffer.from("s-b"));
    await net.run(50);
    c.set("vm", "host", Buffer.from("h-c")); // later: wins over a's host
    await net.run(2000);
    heal();
    await net.run(4000);
    expect(converged(net)).toBe(true);
    for (const r of [a, b, c]) {
      expect(text(r.get("vm")!.host)).toBe("h-c");
      expect(text(r.get("vm")!.state)).toBe("s-b");
    }
    net.close();
  });

  it("frames round-trip and decode strictly, within their caps", () => {
    const frames: SyncFrame[] = [
      { kind: "delta", header: { seq: 7, ack: 3 }, payload: bytes(1, 2, 3) },
      { kind: "ack", header: { seq: 2 ** 40, ack: 0 } },
      { kind: "ae", body: bytes(1, 9) },
      { kind: "repair", header: { seq: 1, ack: 1 }, payload: new Uint8Array(0) },
    ];
    for (const f of frames) expect(decodeSyncFrame(encodeSyncFrame(f))).toEqual(f);
    const d = encodeSyncFrame(frames[0]!);
    expect(codeOf(() => decodeSyncFrame(Uint8Array.of(...d, 0)))).toBe("ERR_PROTOCOL"); // trailing byte
    expect(codeOf(() => decodeSyncFrame(d.subarray(0, d.length - 1)))).toBe("ERR_PROTOCOL");
    expect(codeOf(() => decodeSyncFrame(Uint8Array.of(9)))).toBe("ERR_PROTOCOL");
    expect(codeOf(() => decodeSyncFrame(d, d.length - 1))).toBe("ERR_RESOURCE_LIMIT");
    const list = encodeEnvelopeList([bytes(1), bytes(2, 3)]);
    expect(decodeEnvelopeList(list, 2, 10)).toEqual([bytes(1), bytes(2, 3)]);
    expect(codeOf(() => decodeEnvelopeList(list, 1, 10))).toBe("ERR_RESOURCE_LIMIT");
    expect(codeOf(() => decodeEnvelopeList(list, 2, 1))).toBe("ERR_RESOURCE_LIMIT");
    // A huge declared count costs nothing before it is refused.
    expect(codeOf(() => decodeEnvelopeList(bytes(0, 0, 0xff, 0xff), 1 << 20, 10))).toBe("ERR_PROTOCOL");
  });

  it("receive never throws on hostile bytes, counts every refusal, and keeps its state", () => {
    const net = cluster(1);
    const a = net.replica("a");
    a.set("vm", "host", bytes(1));
    const digest = hex(a.stateDigest());
    const framed = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc
        .tuple(fc.constantFrom(1, 2, 3, 4), fc.uint8Array({ maxLength: 80 }))
        .map(([k, b]) => Uint8Array.of(k, ...b)),
    );
    let n = 0;
    fc.assert(
      fc.property(framed, (b) => {
        a.receive("x", b);
        n++;
      }),
      { numRuns: 500 },
    );
    const s = a.stats();
    const refused =
      Object.values(s.rejected).reduce((x, y) => x + y, 0) +
      Object.values(s.antiEntropyRejected).reduce((x, y) => x + y, 0);
    expect(s.framesReceived).toBe(n);
    // Random bytes seldom make a valid frame (a bare ack with ack 0 can be); none changes the state.
    expect(refused).toBeGreaterThan(n * 0.8);
    expect(text(a.get("vm")!.host)).toBe("\u0001");
    expect(hex(a.stateDigest())).toBe(digest);
    // Caps: a frame over maxFrameBytes; senders beyond maxPeers.
    const small = new ReplicaNet({ seed: 2, options: { maxFrameBytes: 64, maxPeers: 2 } });
    const s1 = small.add("s1");
    const big = encodeSyncFrame({ kind: "delta", header: { seq: 1, ack: 0 }, payload: new Uint8Array(100) });
    s1.receive("p1", big);
    const ok = (seq: number) =>
      encodeSyncFrame({ kind: "delta", header: { seq, ack: 0 }, payload: encodeLwwDelta(new Map()) });
    s1.receive("p1", ok(1));
    s1.receive("p2", ok(1));
    s1.receive("p3", ok(1));
    expect(s1.stats().rejected.ERR_RESOURCE_LIMIT).toBe(2);
    // A frame of a peer acking a position never reached, and a stale one.
    s1.receive("p1", encodeSyncFrame({ kind: "ack", header: { seq: 5, ack: 99 } }));
    expect(s1.stats().rejected.ERR_PROTOCOL).toBe(1);
    s1.receive("p1", ok(0));
    expect(s1.stats().rejected.stale).toBe(1);
    net.close();
    small.close();
  });
});

// ---------------------------------------------------------------- convergence proof

/** The CI sample's sizes: mostly 5-15 nodes, some 20-30, one of 50. */
function sizeOf(i: number): number {
  if (i === 40) return 50;
  if (i % 8 === 0) return 20 + (i % 11);
  return 5 + (i % 11);
}

function check(r: ReplicaSimResult): void {
  const where = `seed ${r.seed} (${r.nodes} nodes; ${r.mix})\n${r.trace.slice(-20).join("\n")}`;
  expect(r.converged, `did not converge: ${where}`).toBe(true);
  expect(r.convergenceMs, `over the bound: ${where}`).toBeLessThanOrEqual(r.boundMs);
  expect(r.quiescedMs, `no quiescence (GC, roots) within 30 s: ${where}`).toBeLessThan(30_000);
}

describe("sync replica: convergence in the simulator", () => {
  it("40 seeds, 5-50 nodes, drop/dup/reorder/partitions/crashes/skew: every replica equals the model within the bound", async () => {
    const results: ReplicaSimResult[] = [];
    for (let seed = 1; seed <= 40; seed++) {
      const nodes = sizeOf(seed);
      // The 50-node run with fewer writes (150, not 400) keeps the file CI-sized; scripts/sync-sim.ts runs full ones.
      const r = await runReplicaSim({ seed, nodes, ...(nodes === 50 ? { writes: 150 } : {}) });
      check(r);
      results.push(r);
    }
    // The sample exercised what it claims to.
    const mixes = results.map((r) => r.mix).join(";");
    for (const f of ["drop", "dup", "reorder", "partition", "crash", "skew"]) expect(mixes).toContain(f);
    expect(results.some((r) => r.nodes === 50)).toBe(true);
    expect(results.reduce((s, r) => s + r.tombstonesCollected, 0)).toBeGreaterThan(0);
    expect(results.some((r) => r.convergenceMs > 0)).toBe(true);
    const conv = results.map((r) => r.convergenceMs).sort((x, y) => x - y);
    console.log(
      `ASS sync replica, 40 seeds: convergence after heal p50 ${conv[20]} ms, max ${conv.at(-1)} ms ` +
        `(bound ${convergenceBound(CLEAN).toFixed(0)}+ ms); bytes/update ${results
          .map((r) => `${r.nodes}:${r.bytesPerUpdate.toFixed(0)}`)
          .slice(0, 6)
          .join(" ")} …`,
    );
  }, 60_000);

  it("the same seed gives the same run", async () => {
    const a = await runReplicaSim({ seed: 7, nodes: 8 });
    const b = await runReplicaSim({ seed: 7, nodes: 8 });
    expect(b.traceHash).toBe(a.traceHash);
    expect({ ...b, trace: [] }).toEqual({ ...a, trace: [] });
    const c = await runReplicaSim({ seed: 8, nodes: 8 });
    expect(c.traceHash).not.toBe(a.traceHash);
  });

  it("anti-entropy alone (no delta push) converges within T × (⌈log2 n⌉ + ⌈ln n⌉ + 2) × 1.5", async () => {
    for (const [seed, n] of [
      [1, 5],
      [2, 8],
      [3, 12],
    ] as const) {
      const mix: Mix = {
        ...CLEAN,
        latencyMs: 5,
        jitterMs: 5,
        drop: 0.05,
        duplicate: 0.05,
        reorder: 0.1,
        partitions: 1,
        crashes: 1,
      };
      const r = await runReplicaSim({
        seed,
        nodes: n,
        mix,
        options: { deltaPush: false },
        limitMs: 60_000,
        quiesceLimitMs: 1,
      });
      // Push-pull epidemic: every exchange moves keys both ways with one random peer per
      // period (≤ 1.5 T with jitter); log2 n + ln n rounds spread one change to all w.h.p.
      const bound =
        1.5 * SIM_DEFAULTS.antiEntropyIntervalMs * (Math.ceil(Math.log2(n)) + Math.ceil(Math.log(n)) + 2);
      expect(r.converged, `seed ${seed}`).toBe(true);
      expect(r.convergenceMs).toBeLessThanOrEqual(bound);
      expect(r.convergenceMs).toBeGreaterThan(0);
    }
  });
});

// ---------------------------------------------------------------- internet mode

const FORGED = 0xee;

/** Rewrites z's outgoing delta and repair frames: alters another origin's envelope, forges and mislabels entries. */
function byzantineRelay(
  net: ReplicaNet,
  z: string,
  victim: string,
): (from: string, to: string, b: Uint8Array) => boolean | Uint8Array {
  const key = net.keys.get(z)!;
  let seq = 1_000_000;
  return (from, _to, b) => {
    if (from !== z) return true;
    const f = decodeSyncFrame(b);
    if (f.kind !== "delta" && f.kind !== "repair") return true;
    const list = decodeEnvelopeList(f.payload, 1 << 16, 1 << 20);
    const out: Uint8Array[] = [];
    for (const e of list) {
      if (decodeEnvelope(e).origin === z) {
        out.push(e);
        continue;
      }
      // Alter: the last byte of the payload is the last byte of a value; the origin's signature no longer holds.
      const altered = e.slice();
      altered[altered.length - 65] = FORGED;
      out.push(altered);
    }
    const ts = { wall: SIM_EPOCH_MS + net.sim.now + 1000, counter: 0, node: victim };
    const forged: LwwDelta = new Map([
      ["vm-0", { fields: new Map([["host", { ts, value: bytes(FORGED) }]]), tomb: undefined }],
    ]);
    // Forge: z signs, as itself, an entry stamped by the victim.
    out.push(
      signEnvelope(CONTEXT_DELTA, { origin: z, epoch: 0, seq: seq++, payload: encodeLwwDelta(forged) }, key),
    );
    // Mislabel: z signs with its own key an envelope that claims the victim as origin.
    out.push(
      signEnvelope(
        CONTEXT_DELTA,
        { origin: victim, epoch: 0, seq: seq++, payload: encodeLwwDelta(forged) },
        key,
      ),
    );
    return encodeSyncFrame({ ...f, payload: encodeEnvelopeList(out) });
  };
}

describe("sync replica: internet mode", () => {
  it("signed runs converge like plain ones", async () => {
    for (const seed of [1, 2, 3, 4]) check(await runReplicaSim({ seed, nodes: 6, signing: true }));
  });

  it("a byzantine relay that alters or forges another node's entries is rejected; honest replicas converge", async () => {
    const net = new ReplicaNet({
      seed: 5,
      mix: { ...CLEAN, drop: 0.05, reorder: 0.05, jitterMs: 5 },
      options: SIM_DEFAULTS,
      signing: true,
    });
    const names = ["a", "b", "c", "d", "z"];
    for (const n of names) net.add(n);
    net.filter = byzantineRelay(net, "z", "a");
    const r = net.sim.random;
    for (let i = 0; i < 60; i++) {
      const who = names[r.int(names.length)]!;
      const key = `vm-${r.int(4)}`;
      const del = r.next() < 0.15;
      const v = bytes(i, r.int(200));
      net.sim.at(r.next() * 4000, () => {
        const rep = net.replica(who);
        if (del) rep.delete(key);
        else rep.set(key, ["host", "state"][r.int(2)]!, v);
      });
    }
    const honest = ["a", "b", "c", "d"].map((n) => net.replica(n));
    const everywhere = () => converged(net, names);
    await net.run(4000);
    expect(everywhere()).toBe(false);
    await net.run(20_000, everywhere);
    expect(everywhere()).toBe(true);
    // Nothing of z's making entered an honest replica.
    for (const rep of net.replicas())
      for (const k of rep.keys())
        for (const v of Object.values(rep.get(k)!)) expect(v.includes(FORGED) && v.length === 1).toBe(false);
    for (const rep of honest)
      for (const k of rep.keys()) for (const v of Object.values(rep.get(k)!)) expect(v[1]).not.toBe(FORGED);
    expect(rejected(honest, "ERR_AUTH_FAILED")).toBeGreaterThan(0); // altered and mislabelled envelopes
    expect(rejected(honest, "origin-mismatch")).toBeGreaterThan(0); // entries stamped by another node
    const verified = honest.reduce((s, x) => s + x.stats().envelopesVerified, 0);
    const skipped = honest.reduce((s, x) => s + x.stats().envelopesSkipped, 0);
    expect(verified).toBeGreaterThan(0);
    expect(skipped).toBeGreaterThan(0);
    console.log(
      `byzantine relay: ${rejected(honest, "ERR_AUTH_FAILED")} bad signatures, ${rejected(honest, "origin-mismatch")} foreign stamps refused; ` +
        `honest replicas verified ${verified} envelopes, skipped ${skipped} dominated ones; converged at ${net.sim.now.toFixed(0)} ms`,
    );
    net.close();
  });

  it("a node whose clock runs a minute ahead cannot win until time catches up (maxAheadMs 5 s)", async () => {
    const net = new ReplicaNet({ seed: 6, options: SIM_DEFAULTS, signing: true });
    for (const n of ["a", "b", "c"]) net.add(n);
    const f = net.add("f", { offsetMs: 60_000 });
    const [a, b, c] = ["a", "b", "c"].map((n) => net.replica(n)) as [SyncReplica, SyncReplica, SyncReplica];
    net.sim.at(500, () => f.set("vm", "owner", Buffer.from("f")));
    net.sim.at(2000, () => a.set("vm", "owner", Buffer.from("a")));
    await net.run(10_000);
    for (const r of [a, b, c]) expect(text(r.get("vm")?.owner)).toBe("a");
    expect(text(f.get("vm")?.owner)).toBe("f"); // its own stamp is later than a's
    expect(a.stats().refusedEntries + b.stats().refusedEntries + c.stats().refusedEntries).toBeGreaterThan(0);
    expect(converged(net, ["a", "b", "c"])).toBe(true);
    // Still refused just before the honest clocks reach its stamp minus 5 s (0.5 + 60 − 5 = 55.5 s) …
    await net.run(55_000);
    for (const r of [a, b, c]) expect(text(r.get("vm")?.owner)).toBe("a");
    // … accepted after, and then any honest write made once the honest clocks pass its stamp beats it.
    await net.run(60_000);
    for (const r of [a, b, c]) expect(text(r.get("vm")?.owner)).toBe("f");
    net.sim.at(61_000, () => b.set("vm", "owner", Buffer.from("b")));
    await net.run(65_000);
    for (const r of [a, b, c, f]) expect(text(r.get("vm")?.owner)).toBe("b");
    expect(converged(net)).toBe(true);
    net.close();
  });
});
