// ACP on BFT replicas: the ConsensusBackend conformance suite (less leases,
// which it refuses) against four replicas hosted by real managers, the client
// on a member's node; and a client outside the membership with one member
// lying in every answer, or one or two silent.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BftBackend } from "../../../src/consensus/bft/backend.js";
import { type HostedReplica, hostReplica } from "../../../src/consensus/bft/host.js";
import { generateKeys, membership } from "../../../src/consensus/bft/membership.js";
import { txnReply } from "../../../src/consensus/bft/store-ops.js";
import { BFT_SUBMIT_KIND, decodeAnswer, encodeAnswer } from "../../../src/consensus/bft/submission.js";
import { memoryStorage } from "../../../src/consensus/local/memory-storage.js";
import type { DWCPManager } from "../../../src/manager.js";
import { PlacementStore, placeAndCommit } from "../../../src/placement/store.js";
import { closeManagers, mesh } from "../../helpers/managers.js";
import { conformanceSuite } from "../conformance.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const NODE_IDS = ["node-0", "node-1", "node-2", "node-3"];

let ms: DWCPManager[];
let hosts: HostedReplica[];
const backends: BftBackend[] = [];

/** Four members on managers 0-3, a fifth manager outside the membership. */
beforeAll(async () => {
  ms = await mesh(5);
  const { publicKeys, privateKeys } = generateKeys(4);
  const m = membership(1, publicKeys);
  hosts = [];
  for (let i = 0; i < 4; i++)
    hosts.push(
      await hostReplica(ms[i]!, {
        nodeIds: NODE_IDS,
        membership: m,
        id: i,
        privateKey: privateKeys[i]!,
        storage: memoryStorage(),
        baseTimeoutMs: 300,
      }),
    );
}, 30_000);

afterAll(async () => {
  for (const b of backends) await b.close();
  for (const h of hosts) h.close();
  await closeManagers();
});

function backend(
  node: DWCPManager,
  o: Partial<ConstructorParameters<typeof BftBackend>[0]> = {},
): BftBackend {
  const b = new BftBackend({
    node,
    nodeIds: NODE_IDS,
    f: 1,
    requestTimeoutMs: 10_000,
    watchPollMs: 50,
    ...o,
  });
  backends.push(b);
  return b;
}

conformanceSuite(
  "BFT, 4 replicas over manager links",
  async () => {
    // The client on member 0's node: its own replica reached without a link.
    const b = backend(ms[0]!, { hosted: { nodeId: "node-0", replica: hosts[0]! } });
    return { backend: b, elapse: async () => {}, close: () => b.close() };
  },
  { leases: false },
);

describe("ITP's optimistic commit on the BFT replicas", () => {
  it("a plan on a stale read is rejected naming the host; the fresh one commits; reads agree", async () => {
    const b = backend(ms[1]!, { hosted: { nodeId: "node-1", replica: hosts[1]! } });
    const store = new PlacementStore(b, { prefix: "/itp-on-bft/" });
    await store.putHost({ id: "h1", capacity: { cpu: 4000, memory: 8192 } });
    const vm = (id: string) => ({ id, resources: { cpu: 1000, memory: 1024 } });
    const seenByA = await store.read();
    const seenByB = await store.read();
    expect(
      await store.commit({ placements: [{ vm: "a", host: "h1" }], vms: [vm("a")] }, seenByA),
    ).toMatchObject({
      committed: true,
    });
    expect(
      await store.commit({ placements: [{ vm: "b", host: "h1" }], vms: [vm("b")] }, seenByB),
    ).toMatchObject({
      committed: false,
      stale: ["h1"],
    });
    const out = await placeAndCommit(store, [vm("b")], (state, vms) => ({
      placements: vms.map((v) => ({ vm: v.id, host: state.hosts[0]!.id })),
      unplaced: [],
    }));
    expect(out.placements).toEqual([{ vm: "b", host: "h1" }]);
    expect((await store.read()).allocations.map((a) => a.vm).sort()).toEqual(["a", "b"]);
  }, 30_000);
});

describe("ACP on BFT with a byzantine member", () => {
  it("one member answering every client a forged reply: the client takes the f + 1 that agree, and every member holds the committed write", async () => {
    // Member 3's node answers every submission itself, with a well-formed lie: a put that
    // succeeded at revision 42, at a height and state hash of its choosing.
    hosts[3]!.close();
    const off = ms[3]!.handle(BFT_SUBMIT_KIND, () =>
      encodeAnswer(
        {
          height: 999_999,
          view: 1,
          digest: new Uint8Array(32).fill(7),
          parent: new Uint8Array(32),
          commands: [],
          results: [],
          qc: { view: 0, digest: new Uint8Array(32), signatures: [] },
          stateHash: new Uint8Array(32).fill(9),
        } as never,
        txnReply({ succeeded: true, revision: 42, results: [{ type: "put" }] }),
      ),
    );
    try {
      const b = backend(ms[4]!, { clientId: "outsider" });
      const r = await b.txn(
        [{ key: "byz/k", target: "version", op: "=", value: 0 }],
        [{ type: "put", key: "byz/k", value: enc("honest") }],
      );
      expect(r.succeeded).toBe(true);
      expect(r.revision).not.toBe(42);
      const got = await b.range({ key: "byz/k" });
      expect(got.kvs.map((kv) => dec(kv.value))).toEqual(["honest"]);
      expect(got.kvs[0]!.modRevision).toBe(r.revision);
    } finally {
      off();
    }
  }, 30_000);

  it("one member silent (its replica closed): calls still commit; two silent: ERR_UNAVAILABLE, never a made-up answer", async () => {
    const b = backend(ms[4]!, { clientId: "quorum", requestTimeoutMs: 3000 });
    hosts[3]!.close();
    const r = await b.put("silent/a", enc("1"));
    expect((await b.range({ key: "silent/a" })).kvs[0]!.modRevision).toBe(r);
    hosts[2]!.close();
    await expect(b.put("silent/b", enc("2"))).rejects.toMatchObject({ code: "ERR_UNAVAILABLE" });
  }, 60_000);
});

describe("BFT store ops: hostile bytes", () => {
  it("an answer that is no reply is refused with ERR_BAD_FRAME", () => {
    expect(() => decodeAnswer(new Uint8Array(10))).toThrow(
      expect.objectContaining({ code: "ERR_BAD_FRAME" }),
    );
  });
});
