// ASS in the manager: `manager.sync()` is the strong map in ACP on datacenter
// paths (the default), and the eventual map — signed deltas over the links,
// peers found by SWIM — where selection puts ASS on v3 (internet paths,
// enableV3StateSync). A write on one agent reaches the others; the figures are
// in the metrics; v3 without keys is refused.
import { generateKeyPairSync } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import type { SyncSigningKeys } from "../../src/sync/cluster-map.js";
import { memory } from "../../src/transport/memory/index.js";
import { closeManagers, manager, tlsMesh } from "../helpers/managers.js";
import { PSK } from "../helpers/nodes.js";
import { parseProm, promValue } from "../helpers/prom.js";

afterEach(closeManagers);
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);

const IDS = ["dc-a", "dc-b", "dc-c"];
const pairs = IDS.map(() => generateKeyPairSync("ed25519"));
const keys = (i: number): SyncSigningKeys => ({
  privateKey: pairs[i]!.privateKey,
  publicKeys: Object.fromEntries(IDS.map((id, j) => [id, pairs[j]!.publicKey])),
});
/** SWIM and pushes faster than the defaults, so the test fits its budget. */
const FAST = {
  swim: { probeIntervalMs: 200, probeTimeoutMs: 100, gossipIntervalMs: 50 },
  replica: { pushIntervalMs: 50, antiEntropyIntervalMs: 300 },
};

describe("ASS in the manager", () => {
  it("by default: the strong map in ACP, a write visible at once", async () => {
    const m = manager({
      nodeId: "solo",
      v1: { transport: memory(), psk: PSK },
      v3: { transport: memory(), psk: PSK },
      detectMode: false,
    });
    const map = await m.sync();
    expect(map.mode).toBe("strong");
    expect(await m.sync()).toBe(map);
    await map.setFields("vm-1", { host: enc("h1"), state: enc("running") });
    expect(dec((await map.get("vm-1"))?.host)).toBe("h1");
    expect(await map.keys()).toEqual(["vm-1"]);
  });

  it("on internet paths with enableV3StateSync: the eventual map; writes on each agent reach every other; SWIM knows them all; the figures are in the metrics", async () => {
    const ms = await tlsMesh(IDS, (_, i) => ({
      assumeMode: "internet",
      flags: { enableV3Transport: true, enableV3StateSync: true, v3RolloutPercentage: 100 },
      sync: { signing: keys(i), ...FAST },
    }));
    const maps = await Promise.all(ms.map((m) => m.sync()));
    for (const map of maps) expect(map.mode).toBe("eventual");
    await maps[0]!.set("vm-7", "host", enc("dc-a/h3"));
    await maps[1]!.set("vm-7", "owner", enc("team-b"));
    await maps[2]!.setFields("vm-8", { host: enc("dc-c/h1") });
    const agree = async () => {
      for (const map of maps) {
        const r = await map.get("vm-7");
        if (dec(r?.host) !== "dc-a/h3" || dec(r?.owner) !== "team-b") return false;
        if (dec((await map.get("vm-8"))?.host) !== "dc-c/h1") return false;
      }
      return true;
    };
    let ok = false;
    for (let i = 0; i < 100 && !ok; i++) {
      ok = await agree();
      if (!ok) await new Promise((r) => setTimeout(r, 100));
    }
    expect(ok).toBe(true);
    const samples = parseProm(await ms[1]!.metrics());
    expect(promValue(samples, "dwcp_swim_members", { node: "dc-b" })).toBe(2);
    expect(promValue(samples, "dwcp_sync_updates_total", { node: "dc-b" })).toBe(1);
    expect(promValue(samples, "dwcp_sync_bytes_sent_total", { node: "dc-b" })).toBeGreaterThan(0);
    expect(promValue(samples, "dwcp_sync_refused_entries_total", { node: "dc-b" })).toBe(0);
    expect(promValue(samples, "dwcp_swim_false_suspicions_total", { node: "dc-b" })).toBe(0);
  }, 60_000);

  it("on internet paths without keys: refused (nothing unsigned crosses the internet); on datacenter paths the strong map", async () => {
    const ms = await tlsMesh(["x-a", "x-b"], () => ({
      assumeMode: "internet",
      flags: { enableV3Transport: true, enableV3StateSync: true, v3RolloutPercentage: 100 },
    }));
    await expect(ms[0]!.sync()).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
    await closeManagers();
    const dc = await tlsMesh(["y-a", "y-b"], () => ({
      assumeMode: "datacenter",
      flags: { enableV3Transport: true, enableV3StateSync: true, v3RolloutPercentage: 100 },
    }));
    expect((await dc[0]!.sync()).mode).toBe("strong");
  }, 60_000);
});
