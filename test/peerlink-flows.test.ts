// Flows on a link: deficit round robin by weight while the link is full, order
// kept within a flow, PBA's allocation of the forecast across the active flows.
import { afterEach, describe, expect, it } from "vitest";
import { FlowQueues } from "../src/manager/flows.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { closeManagers, managerPair, until } from "./helpers/managers.js";

afterEach(closeManagers);

describe("FlowQueues", () => {
  const msg = (flow: string, charge: number, n: number) => ({ flow, charge, settled: false, n });

  it("serves backlogged flows in proportion to their weights, and keeps each flow's order", () => {
    const q = new FlowQueues<ReturnType<typeof msg>>(() => 0);
    q.configure("a", { weight: 4 });
    q.configure("b", { weight: 2 });
    q.configure("c", { weight: 1 });
    for (let i = 0; i < 3000; i++)
      for (const f of ["a", "b", "c"]) q.push(msg(f, 10_000 + (i % 7) * 3000, i));
    const bytes: Record<string, number> = { a: 0, b: 0, c: 0 };
    const last: Record<string, number> = { a: -1, b: -1, c: -1 };
    // ~30 rounds of deficit round robin (a round: 64 KiB × each weight × its class's).
    for (let served = 0; served < 30_000_000; ) {
      const m = q.shift()!;
      expect(m.n).toBe(last[m.flow]! + 1);
      last[m.flow] = m.n;
      bytes[m.flow]! += m.charge;
      served += m.charge;
    }
    const total = bytes.a! + bytes.b! + bytes.c!;
    expect(bytes.a! / total).toBeCloseTo(4 / 7, 1);
    expect(bytes.b! / total).toBeCloseTo(2 / 7, 1);
    expect(bytes.c! / total).toBeCloseTo(1 / 7, 1);
    expect(Math.abs(bytes.a! / total - 4 / 7)).toBeLessThan(0.01);
  });

  it("a flow with nothing queued takes no share and saves no credit; the others split what is there", () => {
    const q = new FlowQueues<ReturnType<typeof msg>>(() => 0);
    q.configure("a", { weight: 4 });
    q.configure("b", { weight: 1 });
    const K = 64 << 10;
    for (let i = 0; i < 100; i++) q.push(msg("b", K, i));
    for (let i = 0; i < 50; i++) expect(q.shift()!.flow).toBe("b");
    // a arrives after an idle spell: its share is its weight's from now on (4/5), not a burst.
    for (let i = 0; i < 100; i++) q.push(msg("a", K, i));
    const next = Array.from({ length: 50 }, () => q.shift()!.flow);
    const a = next.filter((f) => f === "a").length;
    expect(a / 50).toBeGreaterThan(0.72);
    expect(a / 50).toBeLessThan(0.88);
    expect(q.length).toBe(100);
  });

  it("a message withdrawn while queued is served at once and charged nothing", () => {
    const q = new FlowQueues<{ flow: string; charge: number; settled: boolean }>(() => 0);
    q.push({ flow: "a", charge: 100, settled: true });
    q.push({ flow: "b", charge: 100, settled: false });
    expect(q.shift()!.settled).toBe(true);
    expect(q.shift()!.flow).toBe("b");
    expect(q.shift()).toBeUndefined();
    expect(q.length).toBe(0);
  });
});

describe("PeerLink flows", () => {
  it("three backlogged flows weighted 4:2:1 arrive in those shares; each flow's messages in order; flows() allocates the forecast 4:2:1", async () => {
    const net = new MemoryNetwork();
    const { linkA, linkB } = await managerPair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "f1:0", v3: "f3:0" },
      // A small window: what is in it drains in order, the queue behind it by weight.
      both: { assumeMode: "datacenter", link: { windowBytes: 1 << 20 } },
    });
    linkA.setFlow("a", { weight: 4 });
    linkA.setFlow("b", { weight: 2 });
    linkA.setFlow("c", { weight: 1 });
    const order: string[] = [];
    const last: Record<string, number> = { a: -1, b: -1, c: -1 };
    let outOfOrder = 0;
    linkB.on("message", (m) => {
      const f = String.fromCharCode(m.data[0]!);
      const n = new DataView(m.data.buffer, m.data.byteOffset).getUint32(1, true);
      if (n !== last[f]! + 1) outOfOrder++;
      last[f] = n;
      order.push(f);
    });
    const sends: Promise<number>[] = [];
    const N = 600;
    for (let i = 0; i < N; i++)
      for (const f of ["a", "b", "c"]) {
        const d = new Uint8Array(32 << 10);
        d[0] = f.charCodeAt(0);
        new DataView(d.buffer).setUint32(1, i, true);
        sends.push(linkA.send(d, { flow: f }));
      }
    await Promise.all(sends);
    await until(() => order.length === 3 * N, 5000, "every message");
    expect(outOfOrder).toBe(0);
    // While all three were backlogged (past the first window's worth, before a's 600
    // were all through): 4:2:1.
    const window = order.slice(100, 900);
    const share = (f: string) => window.filter((x) => x === f).length / window.length;
    expect(share("a")).toBeGreaterThan((4 / 7) * 0.9);
    expect(share("a")).toBeLessThan((4 / 7) * 1.1);
    expect(share("b")).toBeGreaterThan((2 / 7) * 0.9);
    expect(share("b")).toBeLessThan((2 / 7) * 1.1);
    expect(share("c")).toBeGreaterThan((1 / 7) * 0.9);
    expect(share("c")).toBeLessThan((1 / 7) * 1.1);

    // PBA's allocation: a forecast of 70 Mbit/s shared by weight among the active flows.
    for (let i = 0; i < 10; i++)
      linkA.observe({ at: performance.now(), bps: 70e6, kind: "goodput", rttMs: 10 });
    const flows = Object.fromEntries(linkA.flows().map((f) => [f.id, f]));
    const cap = linkA.forecast()!.horizons["1s"].bps;
    expect(flows.a!.allocatedBps! / cap).toBeCloseTo(4 / 7, 5);
    expect(flows.b!.allocatedBps! / cap).toBeCloseTo(2 / 7, 5);
    expect(flows.c!.allocatedBps! / cap).toBeCloseTo(1 / 7, 5);
    expect(flows.a!.bytesSent).toBe(N * (32 << 10));
    expect(flows.a!.messagesSent).toBe(N);
  });

  it("the window: a flow alone gets all of it; while another flow is in use, what keeps the path busy (2 MiB here)", async () => {
    const net = new MemoryNetwork();
    const { linkA, linkB } = await managerPair({
      // Acks take 200 ms to come back: what the window admitted is what it holds meanwhile.
      v1: () => memory({ latencyMs: 100 }, net),
      v3: () => memory({ latencyMs: 100 }, net),
      addresses: { v1: "w1:0", v3: "w3:0" },
      both: { assumeMode: "datacenter", link: { windowBytes: 8 << 20 } },
    });
    linkB.on("message", () => {});
    linkA.setFlow("bulk");
    linkA.setFlow("idle");
    // A forecast whose bandwidth-delay product is small: the several-flows limit is its 2 MiB floor.
    for (let i = 0; i < 10; i++)
      linkA.observe({ at: performance.now(), bps: 70e6, kind: "goodput", rttMs: 10 });
    const K = 64 << 10;
    // What the window did not take waits in the link's queue until acks come back.
    const burst = (flow: string, n: number) =>
      Array.from({ length: n }, () => linkA.send(new Uint8Array(K), { flow }));
    const settle = () => new Promise((r) => setTimeout(r, 50));
    const waiting = () => linkA.flows().reduce((n, f) => n + f.queuedBytes, 0);
    const alone = burst("bulk", 96); // 6 MiB
    await settle();
    expect(linkA.queuedBytes).toBe(6 << 20);
    expect(waiting()).toBe(0);
    await Promise.all(alone);
    const other = burst("idle", 1);
    const shared = burst("bulk", 96);
    await settle();
    expect(waiting()).toBeGreaterThan(3 << 20);
    expect(waiting()).toBeLessThan(5 << 20);
    await Promise.all([...other, ...shared]);
  });

  it("a flow with a demand is paced to it; an unpaced flow beside it is not held back; closing settles what still waits", async () => {
    const net = new MemoryNetwork();
    const { linkA, linkB } = await managerPair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "p1:0", v3: "p3:0" },
      both: { assumeMode: "datacenter" },
    });
    linkB.on("message", () => {});
    linkA.setFlow("slow", { demandBps: 16e6 }); // 2 MB/s
    const K = 64 << 10;
    const t0 = performance.now();
    const slow = Promise.all(
      Array.from({ length: 48 }, () => linkA.send(new Uint8Array(K), { flow: "slow" })),
    );
    const fast = Promise.all(
      Array.from({ length: 320 }, () => linkA.send(new Uint8Array(K), { flow: "fast" })),
    );
    await fast;
    const fastMs = performance.now() - t0;
    await slow;
    const slowMs = performance.now() - t0;
    // 3 MiB at 2 MB/s after a 100 KB bucket: ~1.52 s.
    const expected = ((48 * K - 100_000) / 2e6) * 1000;
    console.log(
      `paced flow: ${slowMs.toFixed(0)} ms (expected ~${expected.toFixed(0)}); unpaced 20 MiB: ${fastMs.toFixed(0)} ms`,
    );
    expect(slowMs).toBeGreaterThan(expected * 0.9);
    expect(slowMs).toBeLessThan(expected * 1.4);
    expect(fastMs).toBeLessThan(expected * 0.5);
    // Paced messages still queued when the link closes are rejected, not left pending.
    const waiting = Array.from({ length: 40 }, () =>
      linkA.send(new Uint8Array(K), { flow: "slow" }).then(
        () => "sent",
        (e: { code?: string }) => e.code,
      ),
    );
    await linkA.close({ signal: AbortSignal.timeout(100) }).catch(() => {});
    const outcomes = await Promise.all(waiting);
    expect(outcomes.filter((o) => o !== "sent").length).toBeGreaterThan(0);
    for (const o of outcomes) expect(["sent", "ERR_CLOSED", "ERR_ABORTED", "ERR_TIMEOUT"]).toContain(o);
  });

  it("bad flow settings are refused with ERR_INVALID_ARG", async () => {
    const net = new MemoryNetwork();
    const { linkA } = await managerPair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "g1:0", v3: "g3:0" },
      both: { assumeMode: "datacenter" },
    });
    expect(() => linkA.setFlow("", {})).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG" }));
    expect(() => linkA.setFlow("x", { weight: 0 })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
    expect(() => linkA.setFlow("x", { demandBps: -1 })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
    await expect(linkA.send(new Uint8Array(1), { flow: "" })).rejects.toMatchObject({
      code: "ERR_INVALID_ARG",
    });
  });
});
