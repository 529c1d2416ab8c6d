// manager.metrics(): Prometheus text whose figures match what the links did.

import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { encodePages, encodePagesAsync, PageCodec } from "../src/codec/public.js";
import { DWCPManager } from "../src/manager.js";
import { amst } from "../src/transport/amst/index.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { closeManagers, manager, managerPair, until, V3_ON } from "./helpers/managers.js";
import { PSK } from "./helpers/nodes.js";
import { parseProm, promValue } from "./helpers/prom.js";

afterEach(closeManagers);

const scrape = async (m: DWCPManager) => parseProm(await m.metrics());

describe("manager.metrics()", () => {
  it("counts per peer and generation the messages and bytes the peer acknowledged and delivered, with their send latency", async () => {
    const net = new MemoryNetwork();
    const { a, b, linkA, linkB } = await managerPair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "m1:0", v3: "m3:0" },
      both: { assumeMode: "datacenter" },
    });
    let got = 0;
    linkB.on("message", () => got++);
    const sizes = Array.from({ length: 40 }, (_, i) => 100 + i * 37);
    for (const n of sizes.slice(0, 20)) await linkA.send(new Uint8Array(n));
    a.flags.update({ forceV1: true });
    for (const n of sizes.slice(20)) await linkA.send(new Uint8Array(n));
    await until(() => got === 40, 2000, "40 messages");
    const sum = (xs: number[]) => xs.reduce((s, x) => s + x, 0);

    const sa = await scrape(a);
    const peerB = { node: "node-a", peer: "node-b" };
    expect(promValue(sa, "dwcp_messages_sent_total", { ...peerB, generation: "v3" })).toBe(20);
    expect(promValue(sa, "dwcp_bytes_sent_total", { ...peerB, generation: "v3" })).toBe(
      sum(sizes.slice(0, 20)),
    );
    expect(promValue(sa, "dwcp_messages_sent_total", { ...peerB, generation: "v1" })).toBe(20);
    expect(promValue(sa, "dwcp_bytes_sent_total", { ...peerB, generation: "v1" })).toBe(sum(sizes.slice(20)));
    expect(promValue(sa, "dwcp_send_latency_seconds_count", { ...peerB, generation: "v3" })).toBe(20);
    expect(
      promValue(sa, "dwcp_send_latency_seconds_bucket", { ...peerB, generation: "v1", le: "+Inf" }),
    ).toBe(20);
    expect(promValue(sa, "dwcp_send_latency_seconds_sum", { ...peerB, generation: "v1" })).toBeGreaterThan(0);
    // Buckets are cumulative.
    const buckets = sa
      .filter((s) => s.name === "dwcp_send_latency_seconds_bucket" && s.labels.generation === "v1")
      .map((s) => s.value);
    expect(buckets).toEqual([...buckets].sort((x, y) => x - y));
    expect(promValue(sa, "dwcp_generation_switches_total", { ...peerB, from: "v3", to: "v1" })).toBe(1);
    expect(promValue(sa, "dwcp_generation_active", { ...peerB, generation: "v1" })).toBe(1);
    expect(promValue(sa, "dwcp_generation_active", { ...peerB, generation: "v3" })).toBe(0);
    expect(promValue(sa, "dwcp_flags_epoch", { node: "node-a" })).toBe(1);
    expect(promValue(sa, "dwcp_peers", { node: "node-a" })).toBe(1);
    expect(promValue(sa, "dwcp_breaker_state", { ...peerB, component: "transport", state: "closed" })).toBe(
      1,
    );

    const sb = await scrape(b);
    const peerA = { node: "node-b", peer: "node-a" };
    expect(promValue(sb, "dwcp_messages_received_total", { ...peerA, generation: "v3" })).toBe(20);
    expect(promValue(sb, "dwcp_bytes_received_total", { ...peerA, generation: "v3" })).toBe(
      sum(sizes.slice(0, 20)),
    );
    expect(promValue(sb, "dwcp_messages_received_total", { ...peerA, generation: "v1" })).toBe(20);
    expect(promValue(sb, "dwcp_bytes_received_total", { ...peerA, generation: "v1" })).toBe(
      sum(sizes.slice(20)),
    );
    expect(promValue(sb, "dwcp_messages_sent_total", { ...peerA, generation: "v1" })).toBe(0);
    expect(a.metricsContentType).toMatch(/^text\/plain/);
  });

  it("counters outlive the link: a peer that reconnects keeps counting up", async () => {
    const net = new MemoryNetwork();
    const b = manager({
      nodeId: "node-b",
      v1: { transport: memory({}, net), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      assumeMode: "datacenter",
      flags: V3_ON,
    });
    const bound = await b.listen({ v1: "r1:0", v3: "r3:0" });
    let got = 0;
    b.on("link", (l) => l.on("message", () => got++));
    const dialOnce = async (n: number) => {
      const a = new DWCPManager({
        nodeId: "node-a",
        v1: { transport: memory({}, net), psk: PSK },
        v3: { transport: memory({}, net), psk: PSK },
        assumeMode: "datacenter",
        flags: V3_ON,
      });
      const link = await a.connect({ v1: bound.v1, v3: bound.v3! });
      const until0 = got;
      for (let i = 0; i < n; i++) await link.send(new Uint8Array(10));
      await until(() => got === until0 + n, 2000, "the messages delivered");
      await a.close();
      await until(() => b.links.get("node-a") === undefined, 3000, "b's link to end");
    };
    await dialOnce(5);
    const first = promValue(await scrape(b), "dwcp_messages_received_total", {
      peer: "node-a",
      generation: "v3",
    });
    expect(first).toBe(5);
    await dialOnce(7);
    const s = await scrape(b);
    expect(promValue(s, "dwcp_messages_received_total", { peer: "node-a", generation: "v3" })).toBe(12);
    expect(promValue(s, "dwcp_peers", { node: "node-b" })).toBe(0);
  });

  it("the breaker's trip, the failed session's code and the latency histogram after v3 fails under messages", async () => {
    const net = new MemoryNetwork();
    const { a, linkA } = await managerPair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "t1:0", v3: "t3:0" },
      both: { assumeMode: "datacenter", rollback: { coolDownMs: 60_000, minSamples: 10 } },
    });
    const sends: Promise<number>[] = [];
    for (let i = 0; i < 50; i++) sends.push(linkA.send(new Uint8Array(1000)));
    linkA.v3!.conn.abort(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }));
    await Promise.all(sends);
    await until(() => a.breakers("node-b").transport?.state === "open", 3000, "the breaker to open");
    const s = await scrape(a);
    const peerB = { node: "node-a", peer: "node-b" };
    expect(promValue(s, "dwcp_breaker_trips_total", { ...peerB, component: "transport" })).toBe(1);
    expect(promValue(s, "dwcp_breaker_state", { ...peerB, component: "transport", state: "open" })).toBe(1);
    expect(
      promValue(s, "dwcp_session_errors_total", { ...peerB, generation: "v3", code: "ECONNRESET" }),
    ).toBe(1);
    // Every message was acknowledged once, on one generation or the other.
    const sent =
      promValue(s, "dwcp_messages_sent_total", { ...peerB, generation: "v1" })! +
      promValue(s, "dwcp_messages_sent_total", { ...peerB, generation: "v3" })!;
    expect(sent).toBe(50);
  });

  it("the mode, its changes and the path's RTT and bandwidth, from the detector on loopback", async () => {
    const { a } = await managerPair({
      v1: () => tcp(),
      v3: () => tcp(),
      addresses: { v1: "127.0.0.1:0", v3: "127.0.0.1:0" },
      both: { detectMode: true },
    });
    const s = await scrape(a);
    const peerB = { node: "node-a", peer: "node-b" };
    expect(promValue(s, "dwcp_mode", { ...peerB, mode: "datacenter" })).toBe(1);
    expect(promValue(s, "dwcp_mode", { ...peerB, mode: "internet" })).toBe(0);
    expect(promValue(s, "dwcp_mode_changes_total", peerB)).toBe(1);
    const rtt = promValue(s, "dwcp_rtt_seconds", peerB)!;
    expect(rtt).toBeGreaterThan(0);
    expect(rtt).toBeLessThan(0.002);
    expect(promValue(s, "dwcp_bandwidth_bits_per_second", peerB)).toBeGreaterThan(1e6);
  });

  it("AMST streams and their recoveries, per generation", async () => {
    const { a } = await managerPair({
      v1: () => amst(tcp(), { streams: 4 }),
      v3: () => tcp(),
      addresses: { v1: "127.0.0.1:0", v3: "127.0.0.1:0" },
      both: { assumeMode: "datacenter" },
    });
    const s = await scrape(a);
    const peerB = { node: "node-a", peer: "node-b", generation: "v1" };
    expect(promValue(s, "dwcp_amst_streams", peerB)).toBe(4);
    expect(promValue(s, "dwcp_amst_streams_opened_total", peerB)).toBeGreaterThanOrEqual(4);
    expect(promValue(s, "dwcp_amst_streams_lost_total", peerB)).toBe(0);
    expect(promValue(s, "dwcp_amst_segments_resent_total", peerB)).toBe(0);
    // v3 is plain TCP here: no AMST series for it.
    expect(promValue(s, "dwcp_amst_streams", { ...peerB, generation: "v3" })).toBeUndefined();
  });

  it("handshake refusals by generation and reason", async () => {
    const net = new MemoryNetwork();
    const b = manager({
      nodeId: "node-b",
      v1: { transport: memory({}, net), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      assumeMode: "datacenter",
    });
    const bound = await b.listen({ v1: "h1:0" });
    const a = manager({
      nodeId: "node-a",
      v1: { transport: memory({}, net), psk: "another key of 32 bytes........." },
      v3: { transport: memory({}, net), psk: PSK },
    });
    await expect(a.connect({ v1: bound.v1 })).rejects.toMatchObject({ code: "ERR_AUTH_FAILED" });
    await until(() => b.v1.metrics().handshakes.failed === 1, 2000, "the refusal counted");
    const s = await scrape(b);
    expect(
      promValue(s, "dwcp_handshake_refusals_total", {
        node: "node-b",
        generation: "v1",
        reason: "ERR_AUTH_FAILED",
      }),
    ).toBe(1);
    expect(
      promValue(await scrape(a), "dwcp_handshake_refusals_total", {
        node: "node-a",
        generation: "v1",
        reason: "ERR_AUTH_FAILED",
      }),
    ).toBe(1);
  });

  it("HDE pages and bytes by kind, on the encoder in use (TypeScript, and native where the addon is loaded)", async () => {
    const m = manager({
      nodeId: "hde",
      v1: { transport: memory({}, new MemoryNetwork()), psk: PSK },
      v3: { transport: memory({}, new MemoryNetwork()), psk: PSK },
    });
    const page = 4096;
    const pages = (s: Awaited<ReturnType<typeof scrape>>, kind: string, what = "dwcp_hde_pages_total") =>
      promValue(s, what, { kind }) ?? 0;
    // 16 pages: 4 zero, 4 copies of one page (1 full + 3 duplicates), 8 random.
    const image = new Uint8Array(16 * page);
    for (let i = 4; i < 8; i++) image.fill(7, i * page, (i + 1) * page);
    for (let i = 8 * page; i < image.length; i++) image[i] = (i * 2654435761) >>> 24;
    const check = async (encoder: string, encode: () => Promise<Uint8Array>) => {
      const before = await scrape(m);
      const frame = await encode();
      const after = await scrape(m);
      const delta = (kind: string, what = "dwcp_hde_pages_total") =>
        pages(after, kind, what) - pages(before, kind, what);
      expect({ encoder, zero: delta("zero"), duplicate: delta("duplicate"), full: delta("full") }).toEqual({
        encoder,
        zero: 4,
        duplicate: 3,
        full: 9,
      });
      expect(delta("full", "dwcp_hde_bytes_in_total")).toBe(9 * page);
      expect(delta("full", "dwcp_hde_bytes_out_total")).toBe(9 * page);
      expect(delta("duplicate", "dwcp_hde_bytes_out_total")).toBe(12);
      expect(delta("zero", "dwcp_hde_bytes_out_total")).toBe(0);
      const total = (s: typeof after, n: string) => promValue(s, n) ?? 0;
      expect(total(after, "dwcp_hde_frames_total") - total(before, "dwcp_hde_frames_total")).toBe(1);
      expect(total(after, "dwcp_hde_frame_bytes_total") - total(before, "dwcp_hde_frame_bytes_total")).toBe(
        frame.length,
      );
    };
    const o = { imageId: 9, version: 1, pageSize: page, policy: { codec: PageCodec.LZ4, level: 1 } };
    await check("encodePages (TypeScript)", async () => encodePages(image, o).frame);
    // With the addon, the native encoder counts through its stats slots.
    await check("encodePagesAsync", () => encodePagesAsync(image, o));
  });

  it("managers sharing the agent's registry report side by side under their node ids", async () => {
    const registry = new Registry();
    const net = new MemoryNetwork();
    const x = manager({
      nodeId: "x",
      v1: { transport: memory({}, net), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      registry,
      flags: { forceV1: true },
    });
    manager({
      nodeId: "y",
      v1: { transport: memory({}, net), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      registry,
    });
    expect(x.registry).toBe(registry);
    const s = parseProm(await registry.metrics());
    expect(promValue(s, "dwcp_flags_epoch", { node: "x" })).toBe(0);
    expect(promValue(s, "dwcp_flags_epoch", { node: "y" })).toBe(0);
    expect(promValue(s, "dwcp_peers", { node: "y" })).toBe(0);
    await x.close();
    const after = parseProm(await registry.metrics());
    expect(promValue(after, "dwcp_peers", { node: "x" })).toBeUndefined();
    expect(promValue(after, "dwcp_peers", { node: "y" })).toBe(0);
  });
});
