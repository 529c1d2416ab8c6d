// ASS in strong mode: the map over ACP. Concurrent writers of one record's
// fields all survive; changes reach every follower; and under simulated
// crashes of the store no acknowledged write is lost (every one is in the
// store after the restart, at the revision it was acknowledged with, and the
// last acknowledged value of each field is what the map reads — unless a write
// whose outcome was unknown came after it).

import { afterEach, describe, expect, it } from "vitest";
import { LocalBackend, memoryStorage } from "../../src/consensus/index.js";
import { decodeRecord, encodeRecord, StrongMap } from "../../src/sync/strong-map.js";
import { SimDisks, Simulator } from "../../src/testing/index.js";
import { crashingStorage } from "../helpers/crashing-storage.js";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);
const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

describe("StrongMap", () => {
  it("writers racing on different fields of one record all survive; a delete removes it; followers see every change", async () => {
    const db = new LocalBackend({ storage: memoryStorage() });
    const a = new StrongMap(db);
    const b = new StrongMap(db);
    open.push(a, b, db);
    const seen: string[] = [];
    b.onChange((k) => seen.push(k));
    await new Promise((r) => setTimeout(r, 20));
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).set("vm-1", `f${i}`, enc(`v${i}`))),
    );
    const rec = await a.get("vm-1");
    expect(Object.keys(rec!).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `f${i}`).sort());
    expect(dec(rec!.f7)).toBe("v7");
    await a.setFields("vm-2", { host: enc("h1"), state: enc("running") });
    expect(await b.keys()).toEqual(["vm-1", "vm-2"]);
    await b.delete("vm-1");
    expect(await a.get("vm-1")).toBeUndefined();
    for (let i = 0; i < 100 && seen.length < 22; i++) await new Promise((r) => setTimeout(r, 10));
    expect(seen.filter((k) => k === "vm-1")).toHaveLength(21);
    expect(seen.filter((k) => k === "vm-2")).toHaveLength(1);
  });

  it("a record's encoding is canonical and hostile bytes are ERR_BAD_FRAME", () => {
    // A field may be called anything, "__proto__" included: it stays a field.
    const proto = "__proto__";
    const r = Object.fromEntries([
      ["b", enc("2")],
      ["a", enc("1")],
      [proto, enc("p")],
    ]);
    const bytes = encodeRecord(r);
    expect(encodeRecord(decodeRecord(bytes))).toEqual(bytes);
    expect(dec(decodeRecord(bytes)[proto])).toBe("p");
    expect(Object.keys(decodeRecord(bytes)).sort()).toEqual([proto, "a", "b"].sort());
    for (const bad of [
      new Uint8Array([0xff, 0xff]),
      bytes.subarray(0, bytes.length - 1),
      new Uint8Array([0, 1, 0]),
    ])
      expect(() => decodeRecord(bad)).toThrow(expect.objectContaining({ code: "ERR_BAD_FRAME" }));
  });

  it("simulated crashes of the store lose no acknowledged write (40 seeds)", async () => {
    let acknowledged = 0;
    let unknown = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const sim = new Simulator({ seed });
      const disks = new SimDisks(sim, 1);
      let crashed = false;
      // The crashed process is gone: its store may not touch the disk again.
      const disk = crashingStorage(disks, "acp");
      const storage = disk.storage;
      const db = new LocalBackend({ env: sim.env("acp"), storage, snapshotBytes: 1024 });
      const writers = [0, 1, 2].map(() => new StrongMap(db, { env: sim.env("acp") }));
      // Per field: the acknowledged writes (value, revision) and the values whose outcome is unknown.
      const acked = new Map<string, { v: string; rev: number }[]>();
      const pending = new Map<string, Set<string>>();
      for (let i = 0; i < 80; i++) {
        sim.at(sim.random.next() * 60, () => {
          if (crashed) return;
          const key = `vm-${sim.random.int(3)}`;
          const field = `f${sim.random.int(3)}`;
          const v = `${seed}.${i}`;
          const id = `${key}/${field}`;
          if (!pending.has(id)) pending.set(id, new Set());
          pending.get(id)!.add(v);
          void writers[i % 3]!.set(key, field, enc(v)).then(
            (rev) => {
              if (crashed) return;
              pending.get(id)!.delete(v);
              if (!acked.has(id)) acked.set(id, []);
              acked.get(id)!.push({ v, rev });
            },
            () => {},
          );
        });
      }
      sim.at(10 + sim.random.next() * 50, () => {
        crashed = true;
        disk.crash();
      });
      await sim.run({ until: 200 });
      const back = new LocalBackend({ env: sim.env("acp"), storage: disks.storage("acp") });
      const map = new StrongMap(back);
      for (const [id, writes] of acked) {
        const [key, field] = id.split("/") as [string, string];
        // Each acknowledged write is in the store at its revision.
        for (const w of writes) {
          const kv = (await back.range({ key: `/dwcp/sync/${key}` }, { revision: w.rev })).kvs[0];
          expect(dec(kv && decodeRecord(kv.value)[field]), `seed ${seed} ${id}`).toBe(w.v);
        }
        // The field now holds the last acknowledged value, or one whose outcome was unknown.
        const last = writes.reduce((x, y) => (y.rev > x.rev ? y : x));
        const now = dec((await map.get(key))?.[field]);
        expect(now === last.v || pending.get(id)!.has(now!), `seed ${seed} ${id}: ${now} vs ${last.v}`).toBe(
          true,
        );
        acknowledged += writes.length;
      }
      for (const p of pending.values()) unknown += p.size;
      map.close();
      await back.close();
    }
    expect(acknowledged).toBeGreaterThan(500);
    // The crashes fell among writes: some outcomes were unknown to their writers.
    expect(unknown).toBeGreaterThan(0);
  });
});
