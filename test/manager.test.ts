// DWCPManager: generation selection, zero-loss rollback through the flags file,
// and the automatic rollback breaker.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DWCPManager, type Generation, type PeerLink } from "../src/manager.js";
import type { Mode } from "../src/mode/classifier.js";
import { MemoryNetwork, type MemoryOptions, memory } from "../src/transport/memory/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { tls } from "../src/transport/tls/index.js";
import { testPki } from "./helpers/certs.js";
import { PSK } from "./helpers/nodes.js";

const managers: DWCPManager[] = [];
afterEach(async () => {
  for (const m of managers.splice(0)) await m.close();
});

const V3_ON = { enableV3Transport: true, v3RolloutPercentage: 100 };

async function pair(opts: {
  v1: () => import("../src/transport/contract.js").Transport;
  v3: (side: "a" | "b") => import("../src/transport/contract.js").Transport;
  flagsFile?: string;
  flags?: object;
  rollback?: object;
  addresses: { v1: string; v3: string };
  /**
   * The path both sides assume (no detection). These tests switch generations on a
   * declared datacenter path, where v1 and a plain v3 may carry data; the mode rule
   * on other paths is tested in peerlink.test.ts.
   */
  assumeMode?: Mode;
}): Promise<{ a: DWCPManager; b: DWCPManager; linkA: PeerLink; linkB: PeerLink }> {
  const assumeMode = opts.assumeMode ?? "datacenter";
  const b = new DWCPManager({
    nodeId: "node-b",
    v1: { transport: opts.v1(), psk: PSK },
    v3: { transport: opts.v3("b"), psk: PSK },
    flags: V3_ON,
    detectMode: false,
    assumeMode,
  });
  const a = new DWCPManager({
    nodeId: "node-a",
    v1: { transport: opts.v1(), psk: PSK },
    v3: { transport: opts.v3("a"), psk: PSK },
    flags: opts.flags ?? V3_ON,
    ...(opts.flagsFile ? { flagsFile: opts.flagsFile } : {}),
    ...(opts.rollback ? { rollback: opts.rollback } : {}),
    detectMode: false,
    assumeMode,
  });
  managers.push(a, b);
  const bound = await b.listen(opts.addresses);
  const linkBReady = new Promise<PeerLink>((r) => b.once("link", r));
  const linkA = await a.connect({ v1: bound.v1, v3: bound.v3! });
  const linkB = await linkBReady;
  return { a, b, linkA, linkB };
}

describe("DWCPManager generation selection", () => {
  it("reports per component which generation applies and why", async () => {
    const net = new MemoryNetwork();
    const { a, linkA } = await pair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "b1:0", v3: "b3:0" },
    });
    expect(linkA.active).toBe("v3");
    const c = a.components("node-b");
    expect(c.transport).toMatchObject({ generation: "v3", implemented: true });
    expect(c.compression).toMatchObject({
      generation: "v1",
      implemented: true,
      reason: "enableV3Compression is off",
    });
    expect(c.prediction).toMatchObject({ implemented: true, generation: "v1" });
    expect(c.sync).toMatchObject({ implemented: true, generation: "v1", reason: "enableV3StateSync is off" });
    // HDE on v1: LZ4 whatever the path.
    expect(a.pagePolicy("node-b")).toEqual({ codec: 1, level: 1 });
    a.flags.update({ v3RolloutPercentage: 0 });
    expect(a.components("node-b").transport).toMatchObject({
      generation: "v1",
      reason: "not in the 0% rollout",
    });
    expect(linkA.active).toBe("v1");
    linkA.setMode("datacenter");
    a.flags.update({ v3RolloutPercentage: 100, enableV3Compression: true });
    expect(a.components("node-b").compression.reason).toBe("datacenter mode keeps this component on v1");
    expect(a.pagePolicy("node-b")).toEqual({ codec: 1, level: 1 });
    expect(a.components("node-b").transport.generation).toBe("v3");
  });

  it("on an internet or hybrid path v3 needs TLS: a plain-TCP v3 stays unused", async () => {
    const net = new MemoryNetwork();
    const { a, linkA } = await pair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "t1:0", v3: "t3:0" },
    });
    linkA.setMode("internet");
    a.flags.update({ enableV3Compression: true });
    expect(a.components("node-b").transport).toMatchObject({
      generation: "v1",
      reason: "internet mode requires TLS for v3 (v3 transport is memory)",
      // ...and v1 (memory, no encryption) may not carry it either on this path.
      refused: "internet mode never carries application data unencrypted, and v1 (memory) is not encrypted",
    });
    expect(linkA.active).toBe("v1");
    await expect(linkA.send(new Uint8Array(10))).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
  });

  it("HDE follows the mode and the compression flag: zstd (and the dictionary) only on v3 paths", async () => {
    const pki = testPki();
    const { a, linkA } = await pair({
      v1: () => tcp(),
      v3: (side) => tls(side === "a" ? { ...pki.client, ca: pki.ca } : { ...pki.server, ca: pki.ca }),
      addresses: { v1: "127.0.0.1:0", v3: "127.0.0.1:0" },
    });
    const { ZstdDictionary } = await import("../src/codec/index.js");
    const dict = new ZstdDictionary(new Uint8Array(64).fill(3));
    linkA.setMode("internet");
    expect(a.pagePolicy("node-b", dict)).toEqual({ codec: 1, level: 1 }); // flag off
    a.flags.update({ enableV3Compression: true });
    expect(a.pagePolicy("node-b", dict)).toEqual({ codec: 2, level: 9, dictionary: dict });
    linkA.setMode("hybrid");
    expect(a.pagePolicy("node-b")).toEqual({ codec: 2, level: 3 });
    linkA.setMode("datacenter");
    expect(a.pagePolicy("node-b", dict)).toEqual({ codec: 1, level: 1 });
    linkA.setMode("internet");
    a.flags.update({ forceV1: true });
    expect(a.pagePolicy("node-b", dict)).toEqual({ codec: 1, level: 1 });
  });

  it("tells the peer about each flag epoch", async () => {
    const net = new MemoryNetwork();
    const { a, linkB } = await pair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "e1:0", v3: "e3:0" },
    });
    a.flags.update({ enableV3Compression: true });
    a.flags.update({ enableV3Prediction: true });
    await new Promise((r) => setTimeout(r, 20));
    expect(linkB.peerFlagEpoch).toBe(2);
  });
});

describe("rollback with nothing lost", () => {
  it("1 GiB on v3 (TLS); forceV1 set mid-way through the watched file; every message exactly once; v1 within 100 ms", async () => {
    const pki = testPki();
    const dir = mkdtempSync(join(tmpdir(), "dwcp-rollback-"));
    const flagsFile = join(dir, "flags.json");
    writeFileSync(flagsFile, JSON.stringify(V3_ON));
    const { a, linkA, linkB } = await pair({
      v1: () => tcp(),
      v3: (side) => tls(side === "a" ? { ...pki.client, ca: pki.ca } : { ...pki.server, ca: pki.ca }),
      flagsFile,
      // This test times the kill switch: the latency breaker (tested below) must
      // not switch first on a loaded machine.
      rollback: { maxLatencyFactor: 1e9 },
      addresses: { v1: "127.0.0.1:0", v3: "127.0.0.1:0" },
    });
    expect(linkA.active).toBe("v3");
    const COUNT = 1024;
    const body = new Uint8Array(1 << 20);
    for (let i = 0; i < body.length; i += 4096) body[i] = i & 0xff;
    // Each message is `body` with its index in the first 4 bytes; the receiver
    // compares the rest byte for byte (memcmp: cheap enough in both lanes to keep
    // the check off the event loop whose timing this test measures).
    const received = new Map<number, { index: number; intact: boolean; gen: Generation; at: number }>();
    let duplicates = 0;
    linkB.on("message", (m) => {
      if (received.has(m.seq)) duplicates++;
      const d = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.length);
      received.set(m.seq, {
        index: d.length === body.length ? d.readUInt32LE(0) : -1,
        intact: d.length === body.length && d.compare(body, 4, body.length, 4, d.length) === 0,
        gen: m.generation,
        at: performance.now(),
      });
    });
    // Arrival on the peer's v1 session, before the link puts messages back in order.
    let firstV1ArrivalAt = 0;
    // (Not the session's link hello, which arrived before any of them.)
    linkB.v1!.on("message", (m) => {
      if (m.data.length >= body.length) firstV1ArrivalAt ||= performance.now();
    });
    // The moment the first message is handed to the v1 session at the sender.
    let firstV1SendAt = 0;
    const v1Session = linkA.v1!;
    const send = v1Session.send.bind(v1Session);
    v1Session.send = ((...args: Parameters<typeof send>) => {
      firstV1SendAt ||= performance.now();
      return send(...args);
    }) as typeof send;
    const expectedIndex = new Map<number, number>();
    let flagWrittenAt = 0;
    let switchedAt = 0;
    a.on("generation", (_l, g) => {
      if (g.to === "v1") switchedAt = g.at;
    });
    const t0 = performance.now();
    const inFlight = new Set<Promise<number>>();
    for (let i = 0; i < COUNT; i++) {
      // Each message differs: its index in the first bytes.
      const msg = new Uint8Array(body);
      new DataView(msg.buffer).setUint32(0, i, true);
      const p = linkA.send(msg);
      p.then((seq) => expectedIndex.set(seq, i));
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      if (inFlight.size >= 16) await Promise.race(inFlight);
      if (i === COUNT / 2) {
        flagWrittenAt = performance.now();
        writeFileSync(flagsFile, JSON.stringify({ ...V3_ON, forceV1: true }));
      }
    }
    await Promise.all(inFlight);
    const elapsed = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 50));
    expect(received.size).toBe(COUNT);
    expect(duplicates).toBe(0);
    expect(expectedIndex.size).toBe(COUNT);
    for (const [seq, i] of expectedIndex)
      expect(received.get(seq), `seq ${seq}`).toMatchObject({ index: i, intact: true });
    expect([...received.keys()].sort((x, y) => x - y)).toEqual(
      Array.from({ length: COUNT }, (_, i) => i + 1),
    );
    const firstV1 = [...received.values()].filter((r) => r.gen === "v1").sort((x, y) => x.at - y.at)[0]!;
    const onV3 = [...received.values()].filter((r) => r.gen === "v3").length;
    const switchMs = switchedAt - flagWrittenAt;
    const sendMs = firstV1SendAt - flagWrittenAt;
    const arrivalMs = firstV1ArrivalAt - flagWrittenAt;
    const inOrderMs = firstV1.at - flagWrittenAt;
    console.log(
      `rollback: ${COUNT} MiB in ${(elapsed / 1000).toFixed(2)} s; ${onV3} messages on v3, ${COUNT - onV3} on v1; ` +
        `flag file written → generation switch ${switchMs.toFixed(1)} ms → first message sent over v1 ${sendMs.toFixed(1)} ms ` +
        `→ arriving over v1 ${arrivalMs.toFixed(1)} ms ` +
        `(delivered in order, after the v3 messages still in flight, at ${inOrderMs.toFixed(1)} ms); lost 0, duplicated 0`,
    );
    expect(switchMs).toBeGreaterThanOrEqual(0);
    expect(switchMs).toBeLessThan(100);
    expect(sendMs).toBeLessThan(100);
    expect(arrivalMs).toBeGreaterThanOrEqual(sendMs);
    expect(onV3).toBeGreaterThan(0);
    expect(linkA.active).toBe("v1");
  }, 120_000);
});

describe("automatic rollback", () => {
  it("errors on v3 trip the breaker; v1 takes over without loss; v3 is retried after the cool-down", async () => {
    const net = new MemoryNetwork();
    const { a, linkA, linkB } = await pair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      rollback: { coolDownMs: 500, minSamples: 10 },
      addresses: { v1: "r1:0", v3: "r3:0" },
    });
    const states: string[] = [];
    a.on("breaker", (_l, b) => states.push(b.state));
    const got = new Set<number>();
    linkB.on("message", (m) => got.add(m.seq));
    const sends: Promise<number>[] = [];
    for (let i = 0; i < 100; i++) sends.push(linkA.send(new Uint8Array(1000)));
    // Inject the failure: the v3 connection dies with messages in flight.
    linkA.v3!.conn.abort(new Error("injected v3 failure"));
    for (let i = 0; i < 100; i++) sends.push(linkA.send(new Uint8Array(1000)));
    await Promise.all(sends);
    await new Promise((r) => setTimeout(r, 300));
    expect(got.size).toBe(200);
    expect(states[0]).toBe("open");
    expect(linkA.active).toBe("v1");
    expect(a.components("node-b").transport.reason).toMatch(/automatic rollback/);
    // After the cool-down the manager redials v3 and traffic goes back to it.
    await new Promise((r) => setTimeout(r, 900));
    expect(states).toContain("half-open");
    expect(linkA.active).toBe("v3");
    for (let i = 0; i < 40; i++) await linkA.send(new Uint8Array(1000));
    await new Promise((r) => setTimeout(r, 400));
    expect(states.at(-1)).toBe("closed");
    expect(got.size).toBe(240);
  }, 20_000);

  it("latency on v3 above 2× its baseline trips the breaker; v1 carries on", async () => {
    const net = new MemoryNetwork();
    const v3opts: MemoryOptions = { latencyMs: 0 };
    const { a, linkA, linkB } = await pair({
      v1: () => memory({}, net),
      v3: () => memory(v3opts, net),
      rollback: { coolDownMs: 60_000 },
      addresses: { v1: "l1:0", v3: "l3:0" },
    });
    v3opts.latencyMs = 2;
    const reasons: string[] = [];
    a.on("breaker", (_l, b) => reasons.push(b.reason));
    let n = 0;
    linkB.on("message", () => n++);
    for (let i = 0; i < 40; i++) await linkA.send(new Uint8Array(100));
    expect(linkA.active).toBe("v3");
    v3opts.latencyMs = 20; // the v3 path degrades
    for (let i = 0; i < 60 && linkA.active === "v3"; i++) await linkA.send(new Uint8Array(100));
    await new Promise((r) => setTimeout(r, 300));
    expect(reasons[0]).toMatch(/v3 latency .* > 2× baseline/);
    expect(linkA.active).toBe("v1");
    const before = n;
    await linkA.send(new Uint8Array(100));
    expect(n).toBe(before + 1);
  }, 20_000);
});

describe("DWCPManager and AMST", () => {
  it("sets an AMST bundle's stream count from the mode detector's measurements", async () => {
    const { amst, AmstConn } = await import("../src/transport/amst/index.js");
    const { streamTarget } = await import("../src/mode/policy.js");
    const make = () => amst(tcp(), { streams: 4 });
    const b = new DWCPManager({
      nodeId: "node-b",
      v1: { transport: make(), psk: PSK },
      v3: { transport: tcp(), psk: PSK },
      detectMode: false,
    });
    const a = new DWCPManager({
      nodeId: "node-a",
      v1: { transport: make(), psk: PSK },
      v3: { transport: tcp(), psk: PSK },
    });
    managers.push(a, b);
    const bound = await b.listen({ v1: "127.0.0.1:0", v3: "127.0.0.1:0" });
    const mode = new Promise<import("../src/mode/detector.js").ModeEvent>((r) =>
      a.once("mode", (_l, e) => r(e)),
    );
    const link = await a.connect({ v1: bound.v1, v3: bound.v3! });
    const e = await mode;
    const conn = link.v1!.conn;
    expect(conn).toBeInstanceOf(AmstConn);
    const amstConn = conn as InstanceType<typeof AmstConn>;
    const wmem = Number(
      (await import("node:fs")).readFileSync("/proc/sys/net/ipv4/tcp_wmem", "utf8").split(/\s+/)[2],
    );
    const want = streamTarget({ mode: e.mode, ...e.estimate, streamWindowBytes: wmem });
    expect(amstConn.targetStreams).toBe(want);
    expect(await amstConn.whenStreams(want, { timeoutMs: 5000 })).toBe(true);
  });
});
