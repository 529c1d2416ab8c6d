// The consensus conformance suite: every ConsensusBackend must pass the same
// tests, which assert etcd's behaviour as the contract (src/consensus/backend.ts)
// states it. Each test works under its own key prefix and reasons about
// revisions relative to what it wrote, so the suite also runs against a
// long-lived etcd cluster that other tests share.
import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type {
  Compare,
  ConsensusBackend,
  KeyValue,
  TxnOp,
  Watch,
  WatchEvent,
} from "../../src/consensus/backend.js";

/** A backend under test, and how to let its lease time pass. */
export interface ConformanceTarget {
  backend: ConsensusBackend;
  /** Lets `seconds` of lease time pass (a fake clock advances; a real cluster is waited for). */
  elapse(seconds: number): Promise<void>;
  /** Releases the target; called after every test, also after a test closed the backend itself. */
  close(): Promise<void>;
}

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

/** How long (real time) a watch may take to deliver what is already written. */
const DELIVERY_MS = 10_000;

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ code });
}

/** Reads batches from a running iteration until `count` events came (or the watch ended). */
async function take(it: AsyncIterator<readonly WatchEvent[]>, count: number): Promise<WatchEvent[][]> {
  const batches: WatchEvent[][] = [];
  let n = 0;
  while (n < count) {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`watch delivered ${n} of ${count} events in ${DELIVERY_MS} ms`)),
        DELIVERY_MS,
      );
    });
    try {
      const r = await Promise.race([it.next(), late]);
      if (r.done) break;
      batches.push([...r.value]);
      n += r.value.length;
    } finally {
      clearTimeout(timer);
    }
  }
  return batches;
}

/** The keys and values of `kvs`, for compact comparisons. */
const pairs = (kvs: readonly KeyValue[]): [string, string][] => kvs.map((kv) => [kv.key, dec(kv.value)]);

/**
 * Runs the suite against one backend; `open` gives a fresh target for each
 * test. A backend without leases (BFT: its replicas share no clock) runs,
 * instead of the lease tests, one that holds it to refusing every lease call
 * with `ERR_UNSUPPORTED`.
 */
export function conformanceSuite(
  name: string,
  open: () => Promise<ConformanceTarget>,
  options: { leases?: boolean } = {},
): void {
  const hasLeases = options.leases ?? true;
  describe(`consensus conformance: ${name}`, () => {
    let target: ConformanceTarget;
    let db: ConsensusBackend;
    /** This test's key prefix. */
    let p: string;
    const watches: Watch[] = [];
    const leases: number[] = [];

    beforeEach(async () => {
      target = await open();
      db = target.backend;
      p = `conformance/${randomUUID().slice(0, 8)}/`;
    });
    afterEach(async () => {
      for (const w of watches.splice(0)) w.close();
      // Leases left behind would expire during a later test and move the revision under it.
      for (const id of leases.splice(0)) await db.revoke(id).catch(() => {});
      await target.close();
    });

    const grant = async (ttl: number) => {
      const lease = await db.grant(ttl);
      leases.push(lease.id);
      return lease;
    };
    const watch = (...args: Parameters<ConsensusBackend["watch"]>) => {
      const w = db.watch(...args);
      watches.push(w);
      return w;
    };
    const now = async () => (await db.range({ key: `${p}\u0000none` })).revision;

    it("every write adds one to the revision; reads, no-op deletes and failed compares do not", async () => {
      const r0 = await now();
      expect(r0).toBeGreaterThanOrEqual(1);
      expect(await db.put(`${p}a`, enc("1"))).toBe(r0 + 1);
      expect(await db.put(`${p}a`, enc("2"))).toBe(r0 + 2);
      expect((await db.range({ key: `${p}a` })).revision).toBe(r0 + 2);
      expect(await db.delete({ key: `${p}absent` })).toBe(0);
      const failed = await db.txn(
        [{ key: `${p}a`, target: "version", op: "=", value: 99 }],
        [],
        [{ type: "range", key: `${p}a` }],
      );
      expect(failed.succeeded).toBe(false);
      expect(failed.revision).toBe(r0 + 2);
      const two = await db.txn(
        [],
        [
          { type: "put", key: `${p}b`, value: enc("b") },
          { type: "put", key: `${p}c`, value: enc("c") },
        ],
      );
      expect(two.revision).toBe(r0 + 3);
      expect(await db.delete({ key: `${p}a` })).toBe(1);
      expect(await now()).toBe(r0 + 4);
      const st = await db.status();
      expect(st.revision).toBeGreaterThanOrEqual(r0 + 4);
    });

    it("create revision, mod revision and version follow a key across updates, delete and re-creation", async () => {
      const k = `${p}k`;
      const r1 = await db.put(k, enc("one"));
      const r2 = await db.put(k, enc("two"));
      let kv = (await db.range({ key: k })).kvs[0]!;
      expect(kv).toMatchObject({ key: k, createRevision: r1, modRevision: r2, version: 2, lease: 0 });
      expect(dec(kv.value)).toBe("two");
      await db.delete({ key: k });
      expect((await db.range({ key: k })).kvs).toEqual([]);
      const r4 = await db.put(k, enc("three"));
      kv = (await db.range({ key: k })).kvs[0]!;
      expect(kv).toMatchObject({ createRevision: r4, modRevision: r4, version: 1 });
      expect(r4).toBe(r2 + 2);
    });

    it("compares read version, create and mod revision, lease and value with every operator", async () => {
      const k = `${p}k`;
      const r1 = await db.put(k, enc("m"));
      const r2 = await db.put(k, enc("n"));
      const holds = async (c: Compare) => (await db.txn([c], [])).succeeded;
      const num = (
        target: "version" | "createRevision" | "modRevision" | "lease",
        op: Compare["op"],
        value: number,
      ) => holds({ key: k, target, op, value });
      expect(await num("version", "=", 2)).toBe(true);
      expect(await num("version", "!=", 2)).toBe(false);
      expect(await num("version", "<", 3)).toBe(true);
      expect(await num("version", ">", 1)).toBe(true);
      expect(await num("version", ">", 2)).toBe(false);
      expect(await num("createRevision", "=", r1)).toBe(true);
      expect(await num("createRevision", "<", r2)).toBe(true);
      expect(await num("modRevision", "=", r2)).toBe(true);
      expect(await num("modRevision", "=", r1)).toBe(false);
      expect(await num("modRevision", ">", r1)).toBe(true);
      expect(await num("lease", "=", 0)).toBe(true);
      const val = (op: Compare["op"], v: string) => holds({ key: k, target: "value", op, value: enc(v) });
      expect(await val("=", "n")).toBe(true);
      expect(await val("!=", "n")).toBe(false);
      expect(await val("<", "o")).toBe(true);
      expect(await val("<", "n")).toBe(false);
      expect(await val(">", "m")).toBe(true);
      expect(await val(">", "nn")).toBe(false);
      expect(await val("<", "nn")).toBe(true);

      // An absent key has version, revisions and lease 0, and a value compare on it is always false.
      const absent = `${p}absent`;
      for (const target of ["version", "createRevision", "modRevision", "lease"] as const) {
        expect(await holds({ key: absent, target, op: "=", value: 0 }), target).toBe(true);
        expect(await holds({ key: absent, target, op: ">", value: 0 }), target).toBe(false);
      }
      for (const op of ["=", "!=", "<", ">"] as const) {
        expect(await holds({ key: absent, target: "value", op, value: enc("") }), op).toBe(false);
        expect(await holds({ key: absent, target: "value", op, value: enc("x") }), op).toBe(false);
      }
      // Every compare must hold.
      expect(
        (
          await db.txn(
            [
              { key: k, target: "version", op: "=", value: 2 },
              { key: absent, target: "version", op: "=", value: 1 },
            ],
            [],
          )
        ).succeeded,
      ).toBe(false);
    });

    it("a transaction runs its success or failure branch atomically and reports each op's result", async () => {
      const a = `${p}a`;
      const ok = await db.txn(
        [{ key: a, target: "version", op: "=", value: 0 }],
        [
          { type: "put", key: a, value: enc("A") },
          { type: "put", key: `${p}b`, value: enc("B") },
          { type: "range", key: p, prefix: true },
        ],
        [{ type: "put", key: `${p}failed`, value: enc("x") }],
      );
      expect(ok.succeeded).toBe(true);
      expect(ok.results.map((r) => r.type)).toEqual(["put", "put", "range"]);
      const seen = ok.results[2] as { kvs: readonly KeyValue[]; count: number };
      // A range inside the transaction sees the writes made before it in the same transaction.
      expect(pairs(seen.kvs)).toEqual([
        [a, "A"],
        [`${p}b`, "B"],
      ]);
      expect(seen.count).toBe(2);
      expect(seen.kvs[0]!.modRevision).toBe(ok.revision);

      const again = await db.txn(
        [{ key: a, target: "version", op: "=", value: 0 }],
        [{ type: "put", key: `${p}success`, value: enc("x") }],
        [
          { type: "delete", key: `${p}b` },
          { type: "range", key: a },
          { type: "put", key: a, value: enc("A2"), prevKv: true },
          { type: "put", key: `${p}c`, value: enc("C"), prevKv: true },
        ],
      );
      expect(again.succeeded).toBe(false);
      expect(again.revision).toBe(ok.revision + 1);
      expect(again.results[0]).toMatchObject({ type: "delete", deleted: 1 });
      expect(pairs((again.results[1] as { kvs: readonly KeyValue[] }).kvs)).toEqual([[a, "A"]]);
      // Asked for, the previous value is the one replaced; a key that did not exist has none.
      const put = again.results[2]!;
      expect(put.type === "put" && put.prev && dec(put.prev.value)).toBe("A");
      expect(put.type === "put" && put.prev?.version).toBe(1);
      expect(again.results[3]).toEqual({ type: "put" });
      expect(pairs((await db.range({ key: p, prefix: true })).kvs)).toEqual([
        [a, "A2"],
        [`${p}c`, "C"],
      ]);
      const kv = (await db.range({ key: a })).kvs[0]!;
      expect(kv).toMatchObject({ version: 2, modRevision: again.revision, createRevision: ok.revision });
      // Not asked for, it is not read.
      expect((await db.txn([], [{ type: "put", key: a, value: enc("A3") }])).results).toEqual([
        { type: "put" },
      ]);
    });

    it("a transaction that writes one key twice is refused (ERR_INVALID_ARG), in either branch, and changes nothing", async () => {
      const r0 = await now();
      const k = `${p}k`;
      const twice: TxnOp[] = [
        { type: "put", key: k, value: enc("1") },
        { type: "put", key: k, value: enc("2") },
      ];
      await rejectsWith(db.txn([], twice), "ERR_INVALID_ARG");
      await rejectsWith(
        db.txn([], [{ type: "put", key: `${p}x`, value: enc("1") }], twice),
        "ERR_INVALID_ARG",
      );
      await rejectsWith(
        db.txn(
          [],
          [
            { type: "delete", key: k },
            { type: "put", key: k, value: enc("1") },
          ],
        ),
        "ERR_INVALID_ARG",
      );
      await rejectsWith(
        db.txn(
          [],
          [
            { type: "put", key: `${p}in/k`, value: enc("1") },
            { type: "delete", key: `${p}in/`, prefix: true },
          ],
        ),
        "ERR_INVALID_ARG",
      );
      expect(await now()).toBe(r0);
      expect((await db.range({ key: p, prefix: true })).count).toBe(0);
    });

    it("a malformed request is refused with ERR_INVALID_ARG", async () => {
      await rejectsWith(db.put("", enc("x")), "ERR_INVALID_ARG");
    });

    it("prefix ranges and deletes, in key order, with limit, more, count and countOnly", async () => {
      for (const k of ["c", "a", "b", "d/1", "d/2"]) await db.put(`${p}${k}`, enc(k));
      await db.put(`${p.slice(0, -1)}-outside`, enc("no"));
      const all = await db.range({ key: p, prefix: true });
      expect(all.kvs.map((kv) => kv.key)).toEqual(["a", "b", "c", "d/1", "d/2"].map((k) => `${p}${k}`));
      expect(all).toMatchObject({ count: 5, more: false });
      const two = await db.range({ key: p, prefix: true }, { limit: 2 });
      expect(two.kvs.map((kv) => kv.key)).toEqual([`${p}a`, `${p}b`]);
      expect(two).toMatchObject({ count: 5, more: true });
      const five = await db.range({ key: p, prefix: true }, { limit: 5 });
      expect(five).toMatchObject({ count: 5, more: false });
      expect(five.kvs).toHaveLength(5);
      const counted = await db.range({ key: p, prefix: true }, { countOnly: true });
      expect(counted.kvs).toEqual([]);
      expect(counted.count).toBe(5);
      const single = await db.range({ key: `${p}a` });
      expect(single).toMatchObject({ count: 1, more: false });
      expect(await db.delete({ key: `${p}d/`, prefix: true })).toBe(2);
      expect(pairs((await db.range({ key: p, prefix: true })).kvs).map(([k]) => k)).toEqual(
        ["a", "b", "c"].map((k) => `${p}${k}`),
      );
      const r = await now();
      expect(await db.delete({ key: p, prefix: true })).toBe(3);
      expect(await now()).toBe(r + 1);
      expect((await db.range({ key: `${p.slice(0, -1)}-outside` })).count).toBe(1);
      await db.delete({ key: `${p.slice(0, -1)}-outside` });
    });

    it("reads at an old revision see the store as it was; compaction makes older ones ERR_COMPACTED", async () => {
      const k = `${p}k`;
      const r1 = await db.put(k, enc("v1"));
      const r2 = await db.put(k, enc("v2"));
      await db.put(`${p}other`, enc("o"));
      const r3 = await db.txn([], [{ type: "delete", key: k }]).then((r) => r.revision);
      expect(pairs((await db.range({ key: k }, { revision: r1 })).kvs)).toEqual([[k, "v1"]]);
      expect((await db.range({ key: k }, { revision: r2 })).kvs[0]).toMatchObject({
        version: 2,
        modRevision: r2,
      });
      expect((await db.range({ key: k }, { revision: r3 })).kvs).toEqual([]);
      expect((await db.range({ key: p, prefix: true }, { revision: r1 })).count).toBe(1);
      expect((await db.range({ key: p, prefix: true }, { revision: r3 })).count).toBe(1);

      await db.compact(r2);
      await rejectsWith(db.range({ key: k }, { revision: r1 }), "ERR_COMPACTED");
      // The compacted revision itself is kept: it is where a re-list starts.
      expect(pairs((await db.range({ key: k }, { revision: r2 })).kvs)).toEqual([[k, "v2"]]);
      expect((await db.range({ key: k }, { revision: r3 })).kvs).toEqual([]);
      await rejectsWith(db.compact(r2), "ERR_COMPACTED");
      await rejectsWith(db.compact(r1), "ERR_COMPACTED");
    });

    it("a watch from a past revision delivers every change after it in revision order, one revision a batch", async () => {
      const r1 = await db.put(`${p}a`, enc("1"));
      await db.put(`${p.slice(0, -1)}-outside`, enc("no"));
      const r2 = await db.put(`${p}b`, enc("2"));
      const r3 = (
        await db.txn(
          [],
          [
            { type: "put", key: `${p}a`, value: enc("3") },
            { type: "put", key: `${p}c`, value: enc("4") },
          ],
        )
      ).revision;
      const r4 = (await db.txn([], [{ type: "delete", key: `${p}b` }])).revision;
      await db.delete({ key: `${p.slice(0, -1)}-outside` });

      const w = watch({ key: p, prefix: true }, { fromRevision: r1 });
      expect(w.revision).toBe(r1 - 1);
      const batches = await take(w[Symbol.asyncIterator](), 5);
      for (const b of batches) expect(new Set(b.map((e) => e.kv.modRevision)).size).toBe(1);
      const events = batches.flat();
      expect(events.map((e) => [e.type, e.kv.key, e.kv.modRevision])).toEqual([
        ["put", `${p}a`, r1],
        ["put", `${p}b`, r2],
        ["put", `${p}a`, r3],
        ["put", `${p}c`, r3],
        ["delete", `${p}b`, r4],
      ]);
      expect(events[2]!.kv).toMatchObject({ version: 2, createRevision: r1 });
      expect(dec(events[3]!.kv.value)).toBe("4");
      expect(events[4]!.kv.value).toHaveLength(0);
      expect(w.revision).toBe(r4);

      // A single-key watch sees that key only.
      const one = watch({ key: `${p}a` }, { fromRevision: r1 });
      const mine = (await take(one[Symbol.asyncIterator](), 2)).flat();
      expect(mine.map((e) => e.kv.modRevision)).toEqual([r1, r3]);
    });

    it("a watch started now delivers only what happens next, as it happens", async () => {
      await db.put(`${p}before`, enc("old"));
      const w = watch({ key: p, prefix: true });
      const it = w[Symbol.asyncIterator]();
      const next = take(it, 2);
      const r1 = await db.put(`${p}x`, enc("1"));
      const r2 = await db.put(`${p}y`, enc("2"));
      const got = (await next).flat();
      expect(got.map((e) => [e.kv.key, e.kv.modRevision])).toEqual([
        [`${p}x`, r1],
        [`${p}y`, r2],
      ]);
      // From a revision still to come: it waits for it.
      const later = watch({ key: p, prefix: true }, { fromRevision: r2 + 2 });
      const pending = take(later[Symbol.asyncIterator](), 1);
      await db.put(`${p}skipped`, enc("s"));
      const r4 = await db.put(`${p}z`, enc("z"));
      expect((await pending).flat().map((e) => e.kv.modRevision)).toEqual([r4]);
    });

    it("a watch whose start is compacted fails with ERR_COMPACTED; re-listing and watching from the read's revision resumes", async () => {
      const r1 = await db.put(`${p}a`, enc("1"));
      await db.put(`${p}a`, enc("2"));
      const r3 = await db.put(`${p}b`, enc("3"));
      await db.compact(r3);
      const w = watch({ key: p, prefix: true }, { fromRevision: r1 });
      await rejectsWith(take(w[Symbol.asyncIterator](), 1), "ERR_COMPACTED");

      const list = await db.range({ key: p, prefix: true });
      expect(pairs(list.kvs)).toEqual([
        [`${p}a`, "2"],
        [`${p}b`, "3"],
      ]);
      const resumed = watch({ key: p, prefix: true }, { fromRevision: list.revision + 1 });
      const it = resumed[Symbol.asyncIterator]();
      const next = take(it, 1);
      const r4 = await db.put(`${p}c`, enc("4"));
      expect((await next).flat().map((e) => [e.kv.key, e.kv.modRevision])).toEqual([[`${p}c`, r4]]);
    });

    it("closing a watch ends its iteration", async () => {
      const w = watch({ key: p, prefix: true });
      const done = (async () => {
        const got: WatchEvent[] = [];
        for await (const b of w) got.push(...b);
        return got;
      })();
      const r = await db.put(`${p}a`, enc("1"));
      // Wait until the put is delivered, then close.
      for (let i = 0; i < 1000 && w.revision < r; i++) await new Promise((res) => setTimeout(res, 10));
      expect(w.revision).toBe(r);
      w.close();
      const got = await done;
      expect(got.map((e) => e.kv.modRevision)).toEqual([r]);
    });

    if (hasLeases) {
      it("a lease's keys go at one revision when it is revoked; a revoked lease is gone", async () => {
        const lease = await grant(30);
        expect(lease.ttl).toBe(30);
        const ttl = await db.timeToLive(lease.id);
        expect(ttl).toBeGreaterThan(25);
        expect(ttl).toBeLessThanOrEqual(30);
        const r1 = await db.put(`${p}a`, enc("a"), { lease: lease.id });
        await db.put(`${p}b`, enc("b"), { lease: lease.id });
        await db.put(`${p}kept`, enc("c"), { lease: lease.id });
        // A put without the lease detaches the key from it.
        await db.put(`${p}kept`, enc("c2"));
        expect((await db.range({ key: `${p}a` })).kvs[0]!.lease).toBe(lease.id);
        expect((await db.range({ key: `${p}kept` })).kvs[0]!.lease).toBe(0);
        expect(
          (await db.txn([{ key: `${p}a`, target: "lease", op: "=", value: lease.id }], [])).succeeded,
        ).toBe(true);

        const w = watch({ key: p, prefix: true }, { fromRevision: r1 + 4 });
        const r = await now();
        await db.revoke(lease.id);
        expect(await now()).toBe(r + 1);
        const batches = await take(w[Symbol.asyncIterator](), 2);
        expect(batches).toHaveLength(1);
        expect(batches[0]!.map((e) => [e.type, e.kv.key, e.kv.modRevision])).toEqual([
          ["delete", `${p}a`, r + 1],
          ["delete", `${p}b`, r + 1],
        ]);
        expect(pairs((await db.range({ key: p, prefix: true })).kvs)).toEqual([[`${p}kept`, "c2"]]);
        expect(await db.timeToLive(lease.id)).toBe(-1);
        await rejectsWith(db.keepAlive(lease.id), "ERR_LEASE_NOT_FOUND");
        await rejectsWith(db.revoke(lease.id), "ERR_LEASE_NOT_FOUND");
        await rejectsWith(db.put(`${p}late`, enc("x"), { lease: lease.id }), "ERR_LEASE_NOT_FOUND");
        expect((await db.range({ key: `${p}late` })).count).toBe(0);
      });

      it("a lease that is never renewed expires, deleting its keys at one revision", async () => {
        const lease = await grant(3);
        const r1 = await db.put(`${p}a`, enc("a"), { lease: lease.id });
        await db.put(`${p}b`, enc("b"), { lease: lease.id });
        const w = watch({ key: p, prefix: true }, { fromRevision: r1 + 2 });
        const it = w[Symbol.asyncIterator]();
        await target.elapse(lease.ttl + 1);
        // etcd checks for expired leases on its own schedule: allow it a few seconds more.
        for (let i = 0; i < 20 && (await db.range({ key: p, prefix: true })).count > 0; i++)
          await target.elapse(0.5);
        expect((await db.range({ key: p, prefix: true })).count).toBe(0);
        const batches = await take(it, 2);
        expect(batches).toHaveLength(1);
        expect(batches[0]!.map((e) => [e.type, e.kv.key])).toEqual([
          ["delete", `${p}a`],
          ["delete", `${p}b`],
        ]);
        expect(await db.timeToLive(lease.id)).toBe(-1);
        await rejectsWith(db.keepAlive(lease.id), "ERR_LEASE_NOT_FOUND");
      });

      it("keepAlive renews a lease for its full TTL", async () => {
        const lease = await grant(4);
        await db.put(`${p}a`, enc("a"), { lease: lease.id });
        await target.elapse(3);
        expect(await db.keepAlive(lease.id)).toBe(4);
        expect(await db.timeToLive(lease.id)).toBeGreaterThanOrEqual(3);
        await target.elapse(2);
        // 5 s after the grant of 4 s, 2 s after the renewal: still alive.
        expect((await db.range({ key: `${p}a` })).count).toBe(1);
        const left = await db.timeToLive(lease.id);
        expect(left).toBeGreaterThanOrEqual(1);
        expect(left).toBeLessThanOrEqual(2);
      });

      it("an unknown lease: keepAlive and revoke fail with ERR_LEASE_NOT_FOUND, timeToLive is -1", async () => {
        const bogus = 0x7fff_1234_5678;
        await rejectsWith(db.keepAlive(bogus), "ERR_LEASE_NOT_FOUND");
        await rejectsWith(db.revoke(bogus), "ERR_LEASE_NOT_FOUND");
        expect(await db.timeToLive(bogus)).toBe(-1);
        await rejectsWith(db.put(`${p}a`, enc("a"), { lease: bogus }), "ERR_LEASE_NOT_FOUND");
      });
    } else {
      it("has no leases: every lease call and a put with a lease fail with ERR_UNSUPPORTED, and change nothing", async () => {
        const r = await now();
        await rejectsWith(db.grant(30), "ERR_UNSUPPORTED");
        await rejectsWith(db.keepAlive(1), "ERR_UNSUPPORTED");
        await rejectsWith(db.revoke(1), "ERR_UNSUPPORTED");
        await rejectsWith(db.timeToLive(1), "ERR_UNSUPPORTED");
        await rejectsWith(db.put(`${p}a`, enc("a"), { lease: 1 }), "ERR_UNSUPPORTED");
        await rejectsWith(
          db.txn([], [{ type: "put", key: `${p}a`, value: enc("a"), lease: 1 }]),
          "ERR_UNSUPPORTED",
        );
        expect(await now()).toBe(r);
        expect((await db.range({ key: `${p}a` })).count).toBe(0);
      });
    }

    it("concurrent compare-and-swaps on one key: exactly one wins", async () => {
      const k = `${p}k`;
      const r0 = await db.put(k, enc("start"));
      const tries = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          db.txn(
            [{ key: k, target: "modRevision", op: "=", value: r0 }],
            [{ type: "put", key: k, value: enc(`w${i}`) }],
            [{ type: "range", key: k }],
          ),
        ),
      );
      const winners = tries.flatMap((t, i) => (t.succeeded ? [i] : []));
      expect(winners).toHaveLength(1);
      const won = tries[winners[0]!]!;
      expect(won.revision).toBe(r0 + 1);
      const kv = (await db.range({ key: k })).kvs[0]!;
      expect(dec(kv.value)).toBe(`w${winners[0]}`);
      expect(kv).toMatchObject({ version: 2, modRevision: r0 + 1 });
      for (const t of tries) if (!t.succeeded) expect(t.revision).toBeGreaterThanOrEqual(r0 + 1);
    });

    it("after close every call fails with ERR_CLOSED and watches end", async () => {
      await db.put(`${p}a`, enc("1"));
      const w = watch({ key: p, prefix: true });
      const ended = (async () => {
        for await (const _ of w);
      })();
      await db.close();
      await ended;
      await rejectsWith(db.put(`${p}a`, enc("2")), "ERR_CLOSED");
      await rejectsWith(db.range({ key: `${p}a` }), "ERR_CLOSED");
      await rejectsWith(db.txn([], []), "ERR_CLOSED");
      await rejectsWith(db.delete({ key: `${p}a` }), "ERR_CLOSED");
      await rejectsWith(db.grant(10), "ERR_CLOSED");
      await rejectsWith(db.keepAlive(1), "ERR_CLOSED");
      await rejectsWith(db.revoke(1), "ERR_CLOSED");
      await rejectsWith(db.timeToLive(1), "ERR_CLOSED");
      await rejectsWith(db.compact(1), "ERR_CLOSED");
      await rejectsWith(db.status(), "ERR_CLOSED");
      // A watch asked for after close fails when it is read (or at once).
      await rejectsWith(
        (async () => {
          for await (const _ of db.watch({ key: p, prefix: true }));
        })(),
        "ERR_CLOSED",
      );
      await db.close();
    });
  });
}
