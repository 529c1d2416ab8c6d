// ACP's internet generation in the manager: four agents on TLS, each hosting a
// member, open `manager.consensus()` on the BFT replicas when selection puts
// ACP on v3 (internet paths, enableV3Consensus on), and on the v1 backend when
// it does not (datacenter paths, the flag off); the hosted member's figures are
// in the metrics.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { generateKeys, membership } from "../../../src/consensus/bft/membership.js";
import type { DWCPManager } from "../../../src/index.js";
import type { Mode } from "../../../src/mode/classifier.js";
import { closeManagers, tlsMesh } from "../../helpers/managers.js";
import { parseProm, promValue } from "../../helpers/prom.js";

const IDS = ["site-a", "site-b", "site-c", "site-d"];
const { publicKeys, privateKeys } = generateKeys(4);
const members = membership(1, publicKeys);
const dirs: string[] = [];
afterEach(closeManagers);
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Four TLS agents, linked to each other, each hosting its member (file logs); paths assumed `mode`. */
function sites(mode: Mode, flags: Record<string, unknown>): Promise<DWCPManager[]> {
  return tlsMesh(IDS, (_, i) => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-bft-mgr-"));
    dirs.push(dir);
    return {
      assumeMode: mode,
      flags: { enableV3Transport: true, v3RolloutPercentage: 100, ...flags },
      consensus: { backend: "local" },
      bft: {
        membership: members,
        nodeIds: IDS,
        replica: { id: i, privateKey: privateKeys[i]!, dir, baseTimeoutMs: 300 },
        requestTimeoutMs: 10_000,
      },
    };
  });
}

const enc = (s: string) => new TextEncoder().encode(s);

describe("ACP in the manager, internet generation", () => {
  it("on internet paths with enableV3Consensus: every agent's ACP is the BFT replicas; a compare-and-swap raced from all four has one winner everywhere; the members' figures are in the metrics", async () => {
    const ms = await sites("internet", { enableV3Consensus: true });
    for (const m of ms.slice(1)) expect(m.components("site-a").consensus.generation).toBe("v3");
    const acps = await Promise.all(ms.map((m) => m.consensus()));
    for (const c of acps) expect(c.backend.kind).toBe("bft");
    const r0 = await acps[0]!.backend.put("/region/vm-7", enc("eu"));
    const tries = await Promise.all(
      acps.map((c, i) =>
        c.backend.txn(
          [{ key: "/region/vm-7", target: "modRevision", op: "=", value: r0 }],
          [{ type: "put", key: "/region/vm-7", value: enc(IDS[i]!) }],
        ),
      ),
    );
    const winners = tries.flatMap((t, i) => (t.succeeded ? [IDS[i]!] : []));
    expect(winners).toHaveLength(1);
    for (const c of acps) {
      const kv = (await c.backend.range({ key: "/region/vm-7" })).kvs[0]!;
      expect(new TextDecoder().decode(kv.value)).toBe(winners[0]);
      expect(kv.modRevision).toBe(r0 + 1);
    }
    // Leases need a clock the members share: refused on BFT.
    await expect(acps[1]!.backend.grant(10)).rejects.toMatchObject({ code: "ERR_UNSUPPORTED" });
    const samples = parseProm(await ms[2]!.metrics());
    expect(promValue(samples, "dwcp_bft_blocks_committed_total", { node: "site-c" })).toBeGreaterThanOrEqual(
      2,
    );
    expect(promValue(samples, "dwcp_bft_evidence_total", { node: "site-c", kind: "vote" })).toBe(0);
    expect(promValue(samples, "dwcp_bft_accused_members", { node: "site-c" })).toBe(0);
    // site-a's put (and its compare-and-swap, if it won) went through ACP on the BFT backend.
    const a = parseProm(await ms[0]!.metrics());
    expect(
      promValue(a, "dwcp_consensus_commits_total", { node: "site-a", backend: "bft" }),
    ).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it("on datacenter paths, or with enableV3Consensus off, ACP stays on the v1 backend", async () => {
    for (const [mode, flags] of [
      ["datacenter", { enableV3Consensus: true }],
      ["internet", { enableV3Consensus: false }],
    ] as const) {
      const ms = await sites(mode, flags);
      const c = await ms[0]!.consensus();
      expect(c.backend.kind, `${mode} ${JSON.stringify(flags)}`).toBe("local");
      await closeManagers();
    }
  }, 60_000);
});
