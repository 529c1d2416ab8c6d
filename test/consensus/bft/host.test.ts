// BFT replicas hosted by real managers: every message a control request on the
// link to its member's node (memory transport, PSK sessions), the sender taken
// from the link's authenticated node id.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { submitCommand } from "../../../src/consensus/bft/client.js";
import { BFT_MESSAGE_KIND, type HostedReplica, hostReplica } from "../../../src/consensus/bft/host.js";
import { generateKeys, membership } from "../../../src/consensus/bft/membership.js";
import type { Committed } from "../../../src/consensus/bft/replica.js";
import { putOp, readOp } from "../../../src/consensus/bft/state-machine.js";
import { fileStorage } from "../../../src/consensus/local/file-storage.js";
import { closeManagers, mesh, until } from "../../helpers/managers.js";

const dirs: string[] = [];
const stores: ReturnType<typeof fileStorage>[] = [];
afterEach(async () => {
  await closeManagers();
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A fresh directory's file storage (fsynced logs, as a replica deployed would use). */
function disk(): ReturnType<typeof fileStorage> {
  const d = mkdtempSync(join(tmpdir(), "dwcp-bft-"));
  dirs.push(d);
  const s = fileStorage(d);
  stores.push(s);
  return s;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("BFT replicas over DWCP links", () => {
  it("4 managers: 40 commands from two clients commit in the same order everywhere, with equal state hashes", async () => {
    const n = 4;
    const ms = await mesh(n);
    const { publicKeys, privateKeys } = generateKeys(n);
    const m = membership(1, publicKeys);
    const nodeIds = ms.map((_, i) => `node-${i}`);
    const commits: Committed[][] = ms.map(() => []);
    const hosts: HostedReplica[] = [];
    for (let i = 0; i < n; i++) {
      const h = await hostReplica(ms[i]!, {
        nodeIds,
        membership: m,
        id: i,
        privateKey: privateKeys[i]!,
        storage: disk(),
        baseTimeoutMs: 500,
      });
      h.replica.onCommit((c) => commits[i]!.push(c));
      hosts.push(h);
    }
    try {
      for (let k = 1; k <= 20; k++)
        for (const client of ["c1", "c2"])
          for (const h of hosts)
            h.replica.submit({
              client,
              seq: k,
              op: putOp(`${client}/${k}`, new TextEncoder().encode(`v${k}`)),
            });
      const applied = (cs: Committed[]) => cs.reduce((s, c) => s + c.commands.length, 0);
      await until(
        () => commits.every((cs) => applied(cs) === 40),
        20_000,
        "40 commands committed everywhere",
      );
      const chain = (cs: Committed[]) => cs.map((c) => `${c.height}:${hex(c.digest)}:${hex(c.stateHash)}`);
      const heights = Math.min(...commits.map((cs) => cs.length));
      for (let i = 1; i < n; i++)
        expect(chain(commits[i]!).slice(0, heights)).toEqual(chain(commits[0]!).slice(0, heights));
      for (const h of hosts) {
        expect(h.stats.refused).toBe(0);
        expect(h.stats.sent).toBeGreaterThan(0);
      }
    } finally {
      for (const h of hosts) h.close();
    }
  }, 30_000);

  it("a client node outside the membership: each command answered by f + 1 members alike; again after its commit, the same answer; with f members gone it still commits, with f + 1 ERR_UNAVAILABLE", async () => {
    const ms = await mesh(5);
    const { publicKeys, privateKeys } = generateKeys(4);
    const m = membership(1, publicKeys);
    const nodeIds = ["node-0", "node-1", "node-2", "node-3"];
    const hosts: HostedReplica[] = [];
    for (let i = 0; i < 4; i++)
      hosts.push(
        await hostReplica(ms[i]!, {
          nodeIds,
          membership: m,
          id: i,
          privateKey: privateKeys[i]!,
          storage: disk(),
          baseTimeoutMs: 300,
        }),
      );
    const client = ms[4]!;
    const put = (seq: number) => ({ client: "c", seq, op: putOp(`k${seq}`, new Uint8Array([seq])) });
    try {
      let last = 0;
      const answers = [];
      for (let seq = 1; seq <= 10; seq++) {
        const r = await submitCommand(client, nodeIds, m.f, put(seq), { timeout: 10_000 });
        expect(r.height).toBeGreaterThan(last);
        last = r.height;
        answers.push(r);
      }
      const again = await submitCommand(client, nodeIds, m.f, put(5), { timeout: 10_000 });
      expect(again).toEqual(answers[4]);
      // Reads commit too, and return the value where they commit.
      const read = (seq: number, key: string) =>
        submitCommand(client, nodeIds, m.f, { client: "r", seq, op: readOp(key) }, { timeout: 10_000 });
      expect((await read(1, "k7")).result).toEqual(new Uint8Array([7]));
      expect((await read(2, "nothing")).result).toBeNull();
      expect(answers[0]!.result).toBeUndefined();
      // f = 1 member gone: the other three still commit and answer.
      hosts[3]!.close();
      const r = await submitCommand(client, nodeIds, m.f, put(11), { timeout: 10_000 });
      expect(r.height).toBeGreaterThan(last);
      // A second one gone: no quorum, and the client learns it once two members refused.
      hosts[2]!.close();
      await expect(submitCommand(client, nodeIds, m.f, put(12), { timeout: 2000 })).rejects.toMatchObject({
        code: "ERR_UNAVAILABLE",
      });
      expect(hosts[0]!.stats.answered).toBeGreaterThanOrEqual(11);
    } finally {
      for (const h of hosts) h.close();
    }
  }, 30_000);

  it("a node outside the membership is refused (ERR_REMOTE, ERR_AUTH_FAILED there) and counted; a second host on a node is ERR_INVALID_ARG", async () => {
    const ms = await mesh(5);
    const { publicKeys, privateKeys } = generateKeys(4);
    const m = membership(1, publicKeys);
    const nodeIds = ["node-0", "node-1", "node-2", "node-3"];
    const h = await hostReplica(ms[0]!, {
      nodeIds,
      membership: m,
      id: 0,
      privateKey: privateKeys[0]!,
      storage: disk(),
    });
    try {
      // node-4 is linked to node-0 but is no member.
      const err = await ms[4]!.links
        .get("node-0")!
        .request(BFT_MESSAGE_KIND, new Uint8Array(200))
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "ERR_REMOTE", cause: { code: "ERR_AUTH_FAILED" } });
      expect(h.stats.refused).toBe(1);
      await expect(
        hostReplica(ms[0]!, {
          nodeIds,
          membership: m,
          id: 0,
          privateKey: privateKeys[0]!,
          storage: disk(),
        }),
      ).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
      await expect(
        hostReplica(ms[1]!, {
          nodeIds: ["node-0", "node-0", "node-2", "node-3"],
          membership: m,
          id: 1,
          privateKey: privateKeys[1]!,
          storage: disk(),
        }),
      ).rejects.toMatchObject({ code: "ERR_INVALID_ARG" });
      // A member's garbage reaches the replica, which counts it and answers nothing worse.
      await ms[1]!.links.get("node-0")!.request(BFT_MESSAGE_KIND, new Uint8Array(10));
      expect(Object.values(h.replica.stats().rejected).reduce((s, x) => s + x, 0)).toBe(1);
    } finally {
      h.close();
    }
  });
});
