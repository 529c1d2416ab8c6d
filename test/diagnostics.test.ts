// The diagnostics channels: each one, subscribed by name as an APM agent would,
// sees its event with the documented message (docs/observability.md).
import dc from "node:diagnostics_channel";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FlagStore } from "../src/flags/flags.js";
import { diagnosticsChannels } from "../src/index.js";
import { DWCPNode } from "../src/session/node.js";
import { MemoryNetwork, memory } from "../src/transport/memory/index.js";
import { tcp } from "../src/transport/tcp/index.js";
import { closeManagers, managerPair, until, V3_ON } from "./helpers/managers.js";
import { PSK } from "./helpers/nodes.js";

/** Collects what `name` publishes until the returned `stop()`. */
function listen<T>(name: string): { got: T[]; stop: () => void } {
  const got: T[] = [];
  const fn = (m: unknown) => got.push(m as T);
  dc.subscribe(name, fn);
  return { got, stop: () => dc.unsubscribe(name, fn) };
}

const subs: { stop: () => void }[] = [];
function sub<T>(name: string): T[] {
  const s = listen<T>(name);
  subs.push(s);
  return s.got;
}

afterEach(async () => {
  await closeManagers();
  for (const s of subs.splice(0)) s.stop();
});

describe("diagnostics channels", () => {
  it("the channel names are dwcp:<area>:<event>, and each is the one node:diagnostics_channel gives by name", () => {
    const names = Object.values(diagnosticsChannels).map((c) => c.name);
    expect(names).toEqual([
      "dwcp:session:open",
      "dwcp:session:close",
      "dwcp:handshake:error",
      "dwcp:mode:change",
      "dwcp:generation:switch",
      "dwcp:breaker",
      "dwcp:flags:reload",
    ]);
    for (const c of Object.values(diagnosticsChannels)) expect(dc.channel(c.name)).toBe(c);
  });

  it("dwcp:session:open and dwcp:session:close: both ends of both generations, with ids, addresses, credential, duration and what the session carried", async () => {
    const opened = sub<Record<string, unknown>>("dwcp:session:open");
    const closed = sub<Record<string, unknown>>("dwcp:session:close");
    const net = new MemoryNetwork();
    const { a, linkA, linkB } = await managerPair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "d1:0", v3: "d3:0" },
      both: { assumeMode: "datacenter" },
    });
    let got = 0;
    linkB.on("message", () => got++);
    for (let i = 0; i < 3; i++) await linkA.send(new Uint8Array(1000));
    await until(() => got === 3, 2000, "three messages");
    const mine = opened.filter((m) => m.localNodeId === "node-a" || m.localNodeId === "node-b");
    expect(mine).toHaveLength(4);
    const aV3 = mine.find((m) => m.localNodeId === "node-a" && m.version === 3)!;
    expect(aV3).toMatchObject({
      remoteNodeId: "node-b",
      role: "C",
      transport: "memory",
      remoteAddress: expect.stringMatching(/^d3:/),
      credential: expect.stringMatching(/^psk:/),
      sessionId: expect.any(Number),
    });
    expect(mine.find((m) => m.localNodeId === "node-b" && m.version === 1)).toMatchObject({
      remoteNodeId: "node-a",
      role: "S",
    });
    // Plain data only: a subscriber can log or serialize it as it is.
    expect(JSON.parse(JSON.stringify(aV3))).toEqual(aV3);

    await a.close();
    await until(
      () => closed.filter((m) => m.localNodeId === "node-a").length === 2,
      3000,
      "a's sessions closed",
    );
    const c = closed.find((m) => m.sessionId === aV3.sessionId)!;
    expect(c).toMatchObject({ remoteNodeId: "node-b", version: 3, role: "C" });
    expect(c.durationMs).toBeGreaterThanOrEqual(0);
    expect(c.error).toBeUndefined();
    const stats = c.stats as { messagesSent: number; bytesSent: number };
    expect(stats.messagesSent).toBeGreaterThanOrEqual(3); // link hello and the three messages
    expect(stats.bytesSent).toBeGreaterThan(3000);
  });

  it("dwcp:session:close carries the error of a failed session", async () => {
    const closed = sub<Record<string, unknown>>("dwcp:session:close");
    const net = new MemoryNetwork();
    const { linkA } = await managerPair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "e1:0", v3: "e3:0" },
      both: { assumeMode: "datacenter" },
    });
    // As a reset socket fails: Node's error, its code kept.
    linkA.v3!.conn.abort(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }));
    await until(
      () => closed.some((m) => m.localNodeId === "node-a" && m.version === 3),
      3000,
      "the v3 session's close",
    );
    const c = closed.find((m) => m.localNodeId === "node-a" && m.version === 3)!;
    expect(c.error).toEqual({ code: "ECONNRESET", message: "read ECONNRESET" });
  });

  it("dwcp:handshake:error: a wrong PSK (reason = its code) and a connection refused by a limit (reason limit:<name>)", async () => {
    const errors = sub<Record<string, unknown>>("dwcp:handshake:error");
    const net = new MemoryNetwork();
    const server = new DWCPNode({
      nodeId: "diag-server",
      transport: memory({}, net),
      psk: PSK,
      maxConnections: 1,
    });
    const l = await server.listen("h:0");
    const wrong = new DWCPNode({
      nodeId: "diag-wrong",
      transport: memory({}, net),
      psk: "another key of 32 bytes.........",
    });
    await expect(wrong.connect(l.address)).rejects.toMatchObject({ code: "ERR_AUTH_FAILED" });
    await until(
      () => errors.some((e) => e.localNodeId === "diag-server"),
      2000,
      "the server's handshake error",
    );
    expect(errors.find((e) => e.localNodeId === "diag-server")).toMatchObject({
      role: "S",
      transport: "memory",
      code: "ERR_AUTH_FAILED",
      reason: "ERR_AUTH_FAILED",
      message: expect.any(String),
      remoteAddress: expect.any(String),
    });
    expect(errors.find((e) => e.localNodeId === "diag-wrong")).toMatchObject({
      role: "C",
      code: "ERR_AUTH_FAILED",
    });

    const good = new DWCPNode({ nodeId: "diag-good", transport: memory({}, net), psk: PSK });
    const s = await good.connect(l.address);
    const third = new DWCPNode({ nodeId: "diag-third", transport: memory({}, net), psk: PSK });
    await expect(third.connect(l.address)).rejects.toBeTruthy();
    await until(() => errors.some((e) => e.reason === "limit:connections"), 2000, "the refusal");
    expect(errors.find((e) => e.reason === "limit:connections")).toMatchObject({
      localNodeId: "diag-server",
      role: "S",
      code: "ERR_CLOSED",
    });
    s.destroy();
    await Promise.all([server.close(), wrong.close(), good.close(), third.close()]);
  });

  it("dwcp:mode:change: the first decision on loopback, with the evidence", async () => {
    const modes = sub<Record<string, unknown>>("dwcp:mode:change");
    const { a } = await managerPair({
      v1: () => tcp(),
      v3: () => tcp(),
      addresses: { v1: "127.0.0.1:0", v3: "127.0.0.1:0" },
      both: { detectMode: true },
    });
    await until(() => modes.some((m) => m.localNodeId === "node-a"), 5000, "a's mode decision");
    const m = modes.find((x) => x.localNodeId === "node-a")!;
    expect(m).toMatchObject({
      peerId: "node-b",
      mode: "datacenter",
      estimate: { rttMs: expect.any(Number), bandwidthBps: expect.any(Number) },
      sources: { rtt: expect.any(Array), bandwidth: expect.any(Array) },
      sinceStartMs: expect.any(Number),
    });
    expect(m.previous).toBeUndefined();
    expect((m.sources as { rtt: string[] }).rtt.length).toBeGreaterThan(0);
    expect(a.links.get("node-b")?.mode).toBe("datacenter");
  });

  it("dwcp:generation:switch: the kill switch moves a link from v3 to v1, saying why", async () => {
    const switches = sub<Record<string, unknown>>("dwcp:generation:switch");
    const net = new MemoryNetwork();
    const { a, linkA } = await managerPair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "g1:0", v3: "g3:0" },
      both: { assumeMode: "datacenter" },
    });
    await until(() => linkA.active === "v3", 2000, "v3 in use");
    switches.splice(0);
    a.flags.update({ forceV1: true });
    await until(() => switches.some((s) => s.localNodeId === "node-a"), 2000, "the switch");
    expect(switches.find((s) => s.localNodeId === "node-a")).toMatchObject({
      peerId: "node-b",
      from: "v3",
      to: "v1",
      reason: expect.stringMatching(/flags|forceV1|kill/),
    });
  });

  it("dwcp:breaker: v3 failing under messages opens the transport's breaker", async () => {
    const breakers = sub<Record<string, unknown>>("dwcp:breaker");
    const net = new MemoryNetwork();
    const { linkA, linkB } = await managerPair({
      v1: () => memory({}, net),
      v3: () => memory({}, net),
      addresses: { v1: "b1:0", v3: "b3:0" },
      both: { assumeMode: "datacenter", rollback: { coolDownMs: 60_000, minSamples: 10 } },
    });
    let got = 0;
    linkB.on("message", () => got++);
    const sends: Promise<number>[] = [];
    for (let i = 0; i < 50; i++) sends.push(linkA.send(new Uint8Array(1000)));
    linkA.v3!.conn.abort(new Error("injected v3 failure"));
    await Promise.all(sends);
    await until(() => breakers.some((b) => b.localNodeId === "node-a"), 3000, "the breaker event");
    expect(breakers.find((b) => b.localNodeId === "node-a")).toMatchObject({
      peerId: "node-b",
      component: "transport",
      state: "open",
      reason: expect.any(String),
    });
    expect(got).toBe(50);
  });

  it("dwcp:flags:reload: an update (source api), a watched file (source file) and a refused file (ok false, the flags kept)", async () => {
    const reloads = sub<Record<string, unknown>>("dwcp:flags:reload");
    const store = new FlagStore(V3_ON);
    store.update({ forceV1: true });
    expect(reloads.at(-1)).toEqual({
      source: "api",
      ok: true,
      epoch: 1,
      flags: expect.objectContaining({ forceV1: true, v3RolloutPercentage: 100 }),
      changed: ["forceV1"],
    });
    const dir = mkdtempSync(join(tmpdir(), "dwcp-diag-"));
    const file = join(dir, "flags.json");
    writeFileSync(file, JSON.stringify({ enableV3Transport: true, v3RolloutPercentage: 50 }));
    store.on("error", () => {});
    store.watchFile(file, { pollIntervalMs: 20 });
    try {
      await until(() => reloads.some((r) => r.source === "file" && r.ok === true), 3000, "the file's load");
      const loaded = reloads.find((r) => r.source === "file" && r.ok === true)!;
      expect(loaded).toMatchObject({ file, epoch: 2, flags: { v3RolloutPercentage: 50, forceV1: false } });
      expect(loaded.changed).toEqual(expect.arrayContaining(["v3RolloutPercentage", "forceV1"]));
      writeFileSync(file, "{ not json");
      await until(() => reloads.some((r) => r.ok === false), 3000, "the refusal");
      expect(reloads.find((r) => r.ok === false)).toMatchObject({
        source: "file",
        file,
        epoch: 2,
        changed: [],
        flags: { v3RolloutPercentage: 50 },
        error: { code: "ERR_INVALID_FLAGS", message: expect.any(String) },
      });
    } finally {
      store.unwatch();
    }
  });
});
