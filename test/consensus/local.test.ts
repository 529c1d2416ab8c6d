// The local backend: the conformance suite on each storage it runs on, then
// what is its own (recovery, snapshots, bounded history, durability before
// acknowledgement, limits).

import { spawnSync } from "node:child_process";
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { frameRecord, parseLog } from "../../src/consensus/local/file-storage.js";
import {
  fileStorage,
  LocalBackend,
  type LocalBackendOptions,
  memoryStorage,
} from "../../src/consensus/local/index.js";
import { SimDisks, Simulator } from "../../src/testing/index.js";
import { crashingStorage } from "../helpers/crashing-storage.js";
import { type ConformanceTarget, conformanceSuite } from "./conformance.js";
import { FakeTime } from "./fake-time.js";

async function localTarget(
  options: (time: FakeTime) => LocalBackendOptions,
  cleanup = () => {},
): Promise<ConformanceTarget> {
  const time = new FakeTime();
  const backend = new LocalBackend({ env: time.sim.env("local"), ...options(time) });
  return {
    backend,
    elapse: (s) => time.elapse(s),
    close: async () => {
      await backend.close();
      await time.stop();
      cleanup();
    },
  };
}

conformanceSuite("local, in-memory storage", () => localTarget(() => ({ storage: memoryStorage() })));

conformanceSuite("local, files", () => {
  const dir = mkdtempSync(join(tmpdir(), "dwcp-acp-"));
  return localTarget(
    () => ({ dir }),
    () => rmSync(dir, { recursive: true, force: true }),
  );
});

conformanceSuite("local, simulated disk", () =>
  localTarget((time) => ({ storage: new SimDisks(time.sim, 0).storage("n") })),
);

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

describe("LocalBackend", () => {
  const opened: LocalBackend[] = [];
  const times: FakeTime[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    for (const b of opened.splice(0)) await b.close();
    for (const t of times.splice(0)) await t.stop();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const time = () => {
    const t = new FakeTime();
    times.push(t);
    return t;
  };
  const open = (options: LocalBackendOptions = {}) => {
    const b = new LocalBackend(options);
    opened.push(b);
    return b;
  };
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), "dwcp-acp-"));
    dirs.push(d);
    return d;
  };

  it("an empty store is at revision 1 with nothing compacted", async () => {
    expect(await open().status()).toEqual({ revision: 1, compactRevision: 0, leaderChanges: 0 });
  });

  for (const where of ["memory", "files"] as const) {
    it(`reopened (${where}), it has every key, its history, its compaction and its leases, whose TTL starts afresh`, async () => {
      const t = time();
      const env = t.sim.env("n");
      const storage = where === "memory" ? memoryStorage() : undefined;
      const dir = where === "files" ? tempDir() : undefined;
      const options = { env, ...(storage ? { storage } : { dir: dir! }) };
      const a = open(options);
      const r1 = await a.put("k", enc("1"));
      const r2 = await a.put("k", enc("2"));
      await a.put("gone", enc("x"));
      await a.delete({ key: "gone" });
      const lease = await a.grant(10);
      await a.put("leased", enc("l"), { lease: lease.id });
      const revoked = await a.grant(10);
      await a.revoke(revoked.id);
      await a.compact(r1);
      await t.elapse(6);
      const before = await a.status();
      await a.close();

      const b = open(options);
      expect(await b.status()).toEqual(before);
      expect((await b.range({ key: "k" })).kvs[0]).toMatchObject({
        createRevision: r1,
        modRevision: r2,
        version: 2,
      });
      expect(dec((await b.range({ key: "k" }, { revision: r1 })).kvs[0]!.value)).toBe("1");
      await expect(b.range({ key: "k" }, { revision: r1 - 1 })).rejects.toMatchObject({
        code: "ERR_COMPACTED",
      });
      expect((await b.range({ key: "gone" })).count).toBe(0);
      const w = b.watch({ key: "", prefix: true }, { fromRevision: r2 });
      const it = w[Symbol.asyncIterator]();
      expect((await it.next()).value).toMatchObject([{ type: "put", kv: { key: "k", modRevision: r2 } }]);
      w.close();
      expect(await b.timeToLive(lease.id)).toBe(10);
      expect(await b.timeToLive(revoked.id)).toBe(-1);
      expect((await b.grant(5)).id).toBeGreaterThan(revoked.id);
      await t.elapse(11);
      expect((await b.range({ key: "leased" })).count).toBe(0);
    });
  }

  it("a log that outgrows its state is rewritten as one snapshot, and recovers to the same state and history", async () => {
    const inner = memoryStorage();
    let rewrites = 0;
    const storage = {
      ...inner,
      replace: (name: string, records: readonly Uint8Array[]) => {
        rewrites++;
        return inner.replace(name, records);
      },
    };
    const a = open({ storage, snapshotBytes: 2048, historyRevisions: 50 });
    for (let i = 0; i < 400; i++) await a.put(`k${i % 7}`, enc(`value ${i}`.padEnd(100, ".")));
    // Rewritten now and then, each rewrite paid for by as many bytes of appends: not at every write.
    expect(rewrites).toBeGreaterThan(1);
    expect(rewrites).toBeLessThan(40);
    const lease = await a.grant(60);
    await a.put("leased", enc("l"), { lease: lease.id });
    const records = storage.read("acp");
    // One snapshot and what came after it, not 400 records.
    expect(records.length).toBeLessThan(100);
    expect(records[0]![0]).toBe(5);
    const before = await a.status();
    const list = await a.range({ key: "", prefix: true });
    const old = await a.range({ key: "", prefix: true }, { revision: before.revision - 30 });
    await a.close();
    const b = open({ storage, historyRevisions: 50 });
    expect(await b.status()).toEqual(before);
    expect(await b.range({ key: "", prefix: true })).toEqual(list);
    expect(await b.range({ key: "", prefix: true }, { revision: before.revision - 30 })).toEqual(old);
    expect((await b.range({ key: "leased" })).kvs[0]!.lease).toBe(lease.id);
  });

  it("history is bounded: older reads fail with ERR_COMPACTED, and a watch that falls behind fails instead of buffering", async () => {
    const db = open({ historyRevisions: 3 });
    const r1 = await db.put("a", enc("1"));
    const w = db.watch({ key: "a" }, { fromRevision: r1 });
    const it = w[Symbol.asyncIterator]();
    expect((await it.next()).value).toHaveLength(1);
    for (let i = 0; i < 10; i++) await db.put("a", enc(`${i}`));
    const st = await db.status();
    expect(st.compactRevision).toBe(st.revision - 3);
    await expect(db.range({ key: "a" }, { revision: r1 })).rejects.toMatchObject({ code: "ERR_COMPACTED" });
    expect((await db.range({ key: "a" }, { revision: st.revision - 3 })).count).toBe(1);
    await expect(it.next()).rejects.toMatchObject({ code: "ERR_COMPACTED" });
  });

  it("refuses keys, values and transactions over etcd's limits, keys that are not UTF-8, and future revisions", async () => {
    const db = open({ maxValueBytes: 16 });
    const code = { code: "ERR_INVALID_ARG" };
    await expect(db.put("k".repeat(1537), enc("v"))).rejects.toMatchObject(code);
    await expect(db.put("k".repeat(1536), enc("v"))).resolves.toBe(2);
    await expect(db.put("k", new Uint8Array(17))).rejects.toMatchObject(code);
    await expect(db.put("bad\uD800", enc("v"))).rejects.toMatchObject(code);
    const many = Array.from({ length: 129 }, (_, i) => ({
      type: "put" as const,
      key: `k${i}`,
      value: enc("v"),
    }));
    await expect(db.txn([], many)).rejects.toMatchObject(code);
    await expect(db.txn([], many.slice(0, 128))).resolves.toMatchObject({ succeeded: true });
    await expect(db.range({ key: "k" }, { revision: 99 })).rejects.toMatchObject(code);
    await expect(db.range({ key: "" })).rejects.toMatchObject(code);
    await expect(db.compact(99)).rejects.toMatchObject(code);
    await expect(db.put("k", "v" as unknown as Uint8Array)).rejects.toMatchObject(code);
    expect((await db.status()).revision).toBe(3);
  });

  it("orders keys by their UTF-8 bytes, as etcd does", async () => {
    const db = open();
    for (const k of ["p/\u{10000}", "p/\uFFFF", "p/z", "p/\u00e9"]) await db.put(k, enc(k));
    expect((await db.range({ key: "p/", prefix: true })).kvs.map((kv) => kv.key)).toEqual([
      "p/z",
      "p/\u00e9",
      "p/\uFFFF",
      "p/\u{10000}",
    ]);
  });

  it("releases nothing before its sync: no result, read or watch event shows an unsynced write; concurrent writes share a sync", async () => {
    const inner = memoryStorage();
    let syncs = 0;
    let release!: () => void;
    let gate = new Promise<void>((r) => {
      release = r;
    });
    const storage = {
      ...inner,
      sync: async (name: string) => {
        syncs++;
        await gate;
        return inner.sync(name);
      },
    };
    const db = open({ storage });
    const w = db.watch({ key: "", prefix: true });
    const it = w[Symbol.asyncIterator]();
    const event = it.next();
    const puts = Array.from({ length: 50 }, (_, i) => db.put(`k${i}`, enc("v")));
    const read = db.range({ key: "k0" });
    let settled = 0;
    for (const p of [...puts, read, event]) void p.then(() => settled++);
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(0);
    expect(syncs).toBe(1);
    release();
    expect(await Promise.all(puts)).toEqual(Array.from({ length: 50 }, (_, i) => i + 2));
    expect((await read).kvs).toHaveLength(1);
    expect((await event).value).toHaveLength(1);
    expect(syncs).toBe(1);
    gate = Promise.resolve();
  });

  it("a failed sync stops the store: the write waiting on it, later calls and watches fail with the storage's error", async () => {
    const inner = memoryStorage();
    let fail = false;
    const storage = {
      ...inner,
      sync: async (name: string) => {
        if (fail)
          throw Object.assign(new Error("EIO: i/o error, fdatasync"), { errno: -5, syscall: "fdatasync" });
        return inner.sync(name);
      },
    };
    const db = open({ storage });
    await db.put("a", enc("1"));
    const it = db.watch({ key: "", prefix: true })[Symbol.asyncIterator]();
    const next = it.next();
    fail = true;
    await expect(db.put("a", enc("2"))).rejects.toMatchObject({ code: "ERR_SYSCALL", syscall: "fdatasync" });
    await expect(db.range({ key: "a" })).rejects.toMatchObject({ code: "ERR_SYSCALL" });
    await expect(next).rejects.toMatchObject({ code: "ERR_SYSCALL" });
  });

  it("simulated crashes lose only unsynced writes: every acknowledged one is there after restart (30 seeds)", async () => {
    let lostSome = 0;
    let acknowledged = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const sim = new Simulator({ seed });
      const disks = new SimDisks(sim, 1);
      let crashed = false;
      // The crashed process is gone: its store may not touch the disk again.
      const disk = crashingStorage(disks, "n");
      const storage = disk.storage;
      const db = new LocalBackend({ env: sim.env("n"), storage, snapshotBytes: 512 });
      const acked: { k: string; v: string; rev: number }[] = [];
      let issued = 0;
      for (let i = 0; i < 60; i++) {
        sim.at(sim.random.next() * 50, () => {
          if (crashed) return;
          const k = `k${sim.random.int(5)}`;
          const v = `${seed}.${i}`;
          issued++;
          void db.put(k, enc(v)).then((rev) => {
            if (!crashed) acked.push({ k, v, rev });
          });
        });
      }
      sim.at(5 + sim.random.next() * 45, () => {
        crashed = true;
        disk.crash();
      });
      await sim.run({ until: 100 });
      const back = new LocalBackend({ env: sim.env("n"), storage: disks.storage("n") });
      const st = await back.status();
      if (st.revision - 1 < issued) lostSome++;
      for (const a of acked) {
        const kv = (await back.range({ key: a.k }, { revision: a.rev })).kvs[0];
        expect(kv && { v: dec(kv.value), rev: kv.modRevision }, `seed ${seed}`).toEqual({
          v: a.v,
          rev: a.rev,
        });
      }
      acknowledged += acked.length;
      await back.close();
    }
    expect(acknowledged).toBeGreaterThan(300);
    // The crashes fell among writes: in some seeds, writes in flight were lost.
    expect(lostSome).toBeGreaterThan(0);
  });
});

describe("SimDisks.replace", () => {
  it("a crash before the replace lands keeps the old log; after, the new one; never a mix", async () => {
    for (const crashAt of [0.5, 1.5]) {
      const sim = new Simulator({ seed: 7 });
      const disks = new SimDisks(sim, 1);
      const s = disks.storage("n");
      s.append("log", enc("old1"));
      s.append("log", enc("old2"));
      void s.sync("log");
      await sim.run();
      s.append("log", enc("unsynced"));
      const replaced = s.replace("log", [enc("snap")]);
      sim.at(sim.now + crashAt, () => disks.crash("n"));
      await sim.run();
      await replaced;
      expect(disks.storage("n").read("log").map(dec), `crash after ${crashAt} ms`).toEqual(
        crashAt < 1 ? ["old1", "old2"] : ["snap"],
      );
    }
  });
});

describe("fileStorage", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const filled = async () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-fs-"));
    dirs.push(dir);
    const s = fileStorage(dir);
    for (const r of ["one", "two", "three"]) s.append("log", enc(r));
    await s.sync("log");
    await s.close();
    return { dir, file: join(dir, "log.log") };
  };
  const records = async (dir: string) => {
    const s = fileStorage(dir);
    try {
      return s.read("log").map(dec);
    } finally {
      await s.close();
    }
  };

  it("reads back what was synced, and a replace atomically swaps the whole log", async () => {
    const { dir } = await filled();
    expect(await records(dir)).toEqual(["one", "two", "three"]);
    const s = fileStorage(dir);
    await s.replace("log", [enc("snap")]);
    s.append("log", enc("after"));
    await s.sync("log");
    await s.close();
    expect(await records(dir)).toEqual(["snap", "after"]);
  });

  it("a torn last record (cut short, or zero-filled) ends the log and is truncated away", async () => {
    const { dir, file } = await filled();
    const size = statSync(file).size;
    appendFileSync(file, frameRecord(enc("four")).subarray(0, 7));
    expect(await records(dir)).toEqual(["one", "two", "three"]);
    expect(statSync(file).size).toBe(size);
    appendFileSync(file, new Uint8Array(64));
    expect(await records(dir)).toEqual(["one", "two", "three"]);
    const torn = frameRecord(enc("four"));
    torn[torn.length - 1]! ^= 0xff;
    appendFileSync(file, torn);
    expect(await records(dir)).toEqual(["one", "two", "three"]);
    expect(statSync(file).size).toBe(size);
  });

  it("a damaged record with good ones after it is an error, not a silent loss", async () => {
    const { dir, file } = await filled();
    const bytes = readFileSync(file);
    bytes[9]! ^= 0x01;
    writeFileSync(file, bytes);
    await expect(records(dir)).rejects.toMatchObject({ code: "ERR_CHECKSUM" });
    expect(() => parseLog(bytes)).toThrow(expect.objectContaining({ code: "ERR_CHECKSUM" }));
  });

  it("refuses log names that are not plain file names", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-fs-"));
    dirs.push(dir);
    const s = fileStorage(dir);
    expect(() => s.read("../escape")).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG" }));
    await s.close();
  });

  it("locks its directory: a second store there is ERR_LOCKED until the first closes; a dead holder's lock is taken over", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-fs-"));
    dirs.push(dir);
    const a = new LocalBackend({ dir });
    await a.put("k", enc("1"));
    expect(() => new LocalBackend({ dir })).toThrow(expect.objectContaining({ code: "ERR_LOCKED" }));
    expect(readFileSync(join(dir, "LOCK"), "utf8").trim()).toBe(String(process.pid));
    await a.close();
    // A crashed holder leaves its lock behind, naming a process that is gone.
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
      encoding: "utf8",
    }).stdout;
    writeFileSync(join(dir, "LOCK"), `${dead}\n`);
    const b = new LocalBackend({ dir });
    expect((await b.range({ key: "k" })).count).toBe(1);
    await b.close();
    expect(existsSync(join(dir, "LOCK"))).toBe(false);
  });

  it("a backend reopened on a log with a torn last record drops it, and the writes after it survive the next restart", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-fs-"));
    dirs.push(dir);
    const a = new LocalBackend({ dir });
    const r = await a.put("k", enc("1"));
    await a.close();
    appendFileSync(join(dir, "acp.log"), frameRecord(enc("a record the crash cut")).subarray(0, 12));
    const b = new LocalBackend({ dir });
    expect((await b.status()).revision).toBe(r);
    expect(await b.put("k", enc("2"))).toBe(r + 1);
    await b.close();
    const c = new LocalBackend({ dir });
    expect((await c.range({ key: "k" })).kvs[0]).toMatchObject({ version: 2, modRevision: r + 1 });
    await c.close();
  });

  it("a backend on a damaged log refuses to open rather than serve a partial state", async () => {
    const dir = mkdtempSync(join(tmpdir(), "dwcp-fs-"));
    dirs.push(dir);
    const s = fileStorage(dir);
    s.append("acp", enc("not a record"));
    await s.sync("acp");
    await s.close();
    expect(() => new LocalBackend({ dir })).toThrow(expect.objectContaining({ code: "ERR_BAD_FRAME" }));
  });
});
