// EtcdBackend against real etcd clusters started by the rig: the calls one by
// one against a single member (txn compares and ops, reads at a revision,
// watches with their batches, resume, compaction and back-pressure, leases,
// errors), then the shared conformance suite on one member and on three.
// Skipped, with the reason, where the etcd binary is missing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WatchEvent } from "../../src/consensus/backend.js";
import { EtcdBackend } from "../../src/consensus/etcd/index.js";
import type { EtcdWatch } from "../../src/consensus/etcd/watch.js";
import { nodeEnv } from "../../src/env/index.js";
import { testPki } from "../helpers/certs.js";
import { type EtcdCluster, etcdSkipReason, etcdVersion, startEtcd } from "../helpers/etcd.js";
import { type ConformanceTarget, conformanceSuite } from "./conformance.js";
import { electionSuite } from "./election-suite.js";

const skip = etcdSkipReason();
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "resolved";
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

/** Takes batches from a watch until `n` events have come (or the time runs out). */
async function take(
  w: AsyncIterable<readonly WatchEvent[]>,
  n: number,
  timeoutMs = 10_000,
): Promise<WatchEvent[][]> {
  const out: WatchEvent[][] = [];
  let count = 0;
  const it = w[Symbol.asyncIterator]();
  const until = Date.now() + timeoutMs;
  while (count < n) {
    const next = await Promise.race([it.next(), sleep(until - Date.now()).then(() => "timeout" as const)]);
    if (next === "timeout") throw new Error(`watch gave ${count} of ${n} events within ${timeoutMs} ms`);
    if (next.done) break;
    out.push([...next.value]);
    count += next.value.length;
  }
  return out;
}

describe.skipIf(Boolean(skip))(`EtcdBackend on one etcd member${skip ? ` [skipped: ${skip}]` : ""}`, () => {
  let cluster: EtcdCluster;
  let b: EtcdBackend;
  beforeAll(async () => {
    cluster = await startEtcd({ size: 1 });
    b = new EtcdBackend({ endpoints: cluster.endpoints, requestTimeoutMs: 3000 });
  });
  afterAll(async () => {
    await b?.close();
    await cluster?.stop();
  });

  it(`runs ${etcdVersion()}; status names the leader and the store's revision`, async () => {
    const st = await b.status();
    expect(st.leader).toMatch(/^[0-9a-f]+$/);
    expect(st.revision).toBeGreaterThanOrEqual(1);
    expect(st.leaderChanges).toBe(0);
  });

  it("txn: every compare target, both branches, each op's result, one revision per write", async () => {
    const r1 = await b.put("t/a", enc("1"));
    const t = await b.txn(
      [
        { key: "t/a", target: "version", op: "=", value: 1 },
        { key: "t/a", target: "createRevision", op: "=", value: r1 },
        { key: "t/a", target: "modRevision", op: "<", value: r1 + 1 },
        { key: "t/a", target: "value", op: "=", value: enc("1") },
        { key: "t/a", target: "lease", op: "=", value: 0 },
        { key: "t/none", target: "version", op: "=", value: 0 },
      ],
      [
        { type: "put", key: "t/a", value: enc("2"), prevKv: true },
        { type: "put", key: "t/b", value: enc("x") },
        { type: "range", key: "t/", prefix: true },
      ],
      [{ type: "range", key: "t/a" }],
    );
    expect(t.succeeded).toBe(true);
    expect(t.revision).toBe(r1 + 1);
    expect(t.results).toHaveLength(3);
    const [p1, p2, rg] = t.results;
    expect(p1?.type === "put" && p1.prev && dec(p1.prev.value)).toBe("1");
    expect(p2).toEqual({ type: "put" });
    expect(rg?.type === "range" && rg.kvs.map((kv) => [kv.key, dec(kv.value), kv.version])).toEqual([
      ["t/a", "2", 2],
      ["t/b", "x", 1],
    ]);
    // A failed compare runs the failure branch; reads only, so no new revision.
    const f = await b.txn(
      [{ key: "t/none", target: "value", op: "!=", value: enc("anything") }],
      [{ type: "delete", key: "t/a" }],
      [{ type: "range", key: "t/a", countOnly: true }],
    );
    expect(f.succeeded).toBe(false);
    expect(f.revision).toBe(t.revision);
    expect(f.results).toEqual([{ type: "range", kvs: [], count: 1, more: false }]);
    const d = await b.txn([], [{ type: "delete", key: "t/", prefix: true }]);
    expect(d.results).toEqual([{ type: "delete", deleted: 2 }]);
    expect(d.revision).toBe(t.revision + 1);
    // A key that is deleted and put again starts a new life.
    await b.put("t/a", enc("3"));
    const again = await b.range({ key: "t/a" });
    expect(again.kvs[0]).toMatchObject({
      version: 1,
      createRevision: again.revision,
      modRevision: again.revision,
    });
  });

  it("range: prefix, limit and more, count only, at a past revision, serializable", async () => {
    for (const k of ["r/1", "r/2", "r/3"]) await b.put(k, enc(k));
    const all = await b.range({ key: "r/", prefix: true });
    expect(all.kvs.map((kv) => kv.key)).toEqual(["r/1", "r/2", "r/3"]);
    const two = await b.range({ key: "r/", prefix: true }, { limit: 2 });
    expect([two.kvs.length, two.count, two.more]).toEqual([2, 3, true]);
    const n = await b.range({ key: "r/", prefix: true }, { countOnly: true });
    expect([n.kvs.length, n.count]).toEqual([0, 3]);
    const before = all.revision;
    await b.put("r/1", enc("new"));
    const past = await b.range({ key: "r/1" }, { revision: before });
    expect(dec(past.kvs[0]!.value)).toBe("r/1");
    const ser = await b.range({ key: "r/1" }, { serializable: true });
    expect(dec(ser.kvs[0]!.value)).toBe("new");
    expect(await code(b.range({ key: "r/1" }, { revision: ser.revision + 1000 }))).toBe("ERR_INVALID_ARG");
  });

  it("watch: one batch per revision, deletes with their revision, from a past revision, close ends it", async () => {
    const w = b.watch({ key: "w/", prefix: true });
    const r1 = await b.put("w/a", enc("1"));
    await b.txn(
      [],
      [
        { type: "put", key: "w/b", value: enc("2") },
        { type: "put", key: "w/c", value: enc("3") },
      ],
    );
    await b.delete({ key: "w/a" });
    await b.put("other", enc("not watched"));
    const got = await take(w, 4);
    expect(got.map((batch) => batch.map((e) => [e.type, e.kv.key, e.kv.modRevision]))).toEqual([
      [["put", "w/a", r1]],
      [
        ["put", "w/b", r1 + 1],
        ["put", "w/c", r1 + 1],
      ],
      [["delete", "w/a", r1 + 2]],
    ]);
    expect(got[2]![0]!.kv).toMatchObject({ value: new Uint8Array(0), version: 0, createRevision: 0 });
    expect(w.revision).toBe(r1 + 2);
    // The same history again, from its first revision.
    const replay = b.watch({ key: "w/", prefix: true }, { fromRevision: r1 + 1 });
    expect(replay.revision).toBe(r1);
    const again = await take(replay, 3);
    expect(again.flat().map((e) => e.kv.modRevision)).toEqual([r1 + 1, r1 + 1, r1 + 2]);
    replay.close();
    w.close();
    const after = await w[Symbol.asyncIterator]().next();
    expect(after.done).toBe(true);
  });

  it("watch: ERR_COMPACTED with the compact revision when its start is compacted; reads there too", async () => {
    const r = await b.put("c/a", enc("1"));
    await b.put("c/a", enc("2"));
    const now = await b.put("c/a", enc("3"));
    await b.compact(now);
    expect((await b.status()).compactRevision).toBe(now);
    expect(await code(b.range({ key: "c/a" }, { revision: r }))).toBe("ERR_COMPACTED");
    const w = b.watch({ key: "c/", prefix: true }, { fromRevision: r });
    let failure: unknown;
    try {
      for await (const _ of w) throw new Error("an event from compacted history");
    } catch (err) {
      failure = err;
    }
    expect(failure).toMatchObject({ code: "ERR_COMPACTED", compactRevision: now });
    expect(await code(b.compact(now - 1))).toBe("ERR_COMPACTED");
  });

  it("watch: a slow consumer pauses the stream (the buffer stays bounded), then gets every revision", async () => {
    const bound = 16;
    const slow = new EtcdBackend({ endpoints: cluster.endpoints, watchBufferEvents: bound });
    try {
      const w = slow.watch({ key: "s/", prefix: true });
      await slow.range({ key: "s/" }); // waits until the watch has its start
      const writes = 400;
      let first = 0;
      for (let i = 0; i < writes; i++) {
        const rev = await b.put(`s/${i % 7}`, enc(String(i)));
        if (i === 0) first = rev;
      }
      await sleep(300);
      // Read the queue's size: etcd holds what the paused stream has not taken.
      const buffered = (w as EtcdWatch).buffered;
      console.log(`slow consumer: ${buffered} events buffered of ${writes} written (pause above ${bound})`);
      expect(buffered).toBeGreaterThan(0);
      expect(buffered).toBeLessThanOrEqual(2 * bound);
      const got = (await take(w, writes)).flat();
      expect(got.map((e) => e.kv.modRevision)).toEqual(Array.from({ length: writes }, (_, i) => first + i));
      expect(got.map((e) => dec(e.kv.value))).toEqual(Array.from({ length: writes }, (_, i) => String(i)));
      w.close();
    } finally {
      await slow.close();
    }
  });

  it("watch: catching up on revisions too large for one gRPC message (etcd fragments them)", async () => {
    // Five values of 1.2 MB: one response of this history exceeds gRPC's 4 MiB.
    const big = new Uint8Array(1_200_000).fill(7);
    const revs: number[] = [];
    for (let i = 0; i < 5; i++) revs.push(await b.put(`big/${i}`, big));
    const w = b.watch({ key: "big/", prefix: true }, { fromRevision: revs[0]! });
    const got = (await take(w, 5)).flat();
    expect(got.map((e) => [e.kv.modRevision, e.kv.value.length])).toEqual(revs.map((r) => [r, big.length]));
    w.close();
    await b.delete({ key: "big/", prefix: true });
  });

  it("leases: grant (raised to etcd's minimum TTL), keys bound, keep-alive, revoke, expiry", async () => {
    const l = await b.grant(1);
    expect(l.ttl).toBeGreaterThanOrEqual(1);
    expect(await b.timeToLive(l.id)).toBeGreaterThanOrEqual(0);
    await b.put("l/a", enc("1"), { lease: l.id });
    await b.put("l/b", enc("2"), { lease: l.id });
    expect((await b.range({ key: "l/a" })).kvs[0]?.lease).toBe(l.id);
    expect(
      (await b.txn([{ key: "l/a", target: "lease", op: "=", value: l.id }], [{ type: "range", key: "l/b" }]))
        .succeeded,
    ).toBe(true);
    const w = b.watch({ key: "l/", prefix: true });
    await b.range({ key: "l/a" }); // the watch has started
    expect(await b.keepAlive(l.id)).toBe(l.ttl);
    await b.revoke(l.id);
    const [batch] = await take(w, 2);
    expect(batch?.map((e) => [e.type, e.kv.key])).toEqual([
      ["delete", "l/a"],
      ["delete", "l/b"],
    ]);
    w.close();
    expect(await b.timeToLive(l.id)).toBe(-1);
    expect(await code(b.revoke(l.id))).toBe("ERR_LEASE_NOT_FOUND");
    expect(await code(b.keepAlive(l.id))).toBe("ERR_LEASE_NOT_FOUND");
    expect(await code(b.put("l/c", enc("x"), { lease: l.id }))).toBe("ERR_LEASE_NOT_FOUND");
    // An unrenewed lease expires on its own and takes its key.
    const short = await b.grant(1);
    await b.put("l/e", enc("1"), { lease: short.id });
    await sleep(short.ttl * 1000 + 1500);
    expect(await b.timeToLive(short.id)).toBe(-1);
    expect((await b.range({ key: "l/e" })).count).toBe(0);
  });

  it("refuses malformed requests with ERR_INVALID_ARG before or at etcd", async () => {
    const bad: (() => Promise<unknown>)[] = [
      () => b.put("", enc("x")),
      () => b.put("k", "text" as unknown as Uint8Array),
      () => b.range({ key: "k" }, { limit: -1 }),
      () => b.range({ key: 5 as unknown as string }),
      () => b.txn([{ key: "k", target: "size" as "version", op: "=", value: 1 }], []),
      () => b.txn([{ key: "k", target: "version", op: "~" as "=", value: 1 }], []),
      () => b.txn([], [{ type: "nope" } as unknown as { type: "delete"; key: string }]),
      () =>
        b.txn(
          [],
          [
            { type: "put", key: "dup", value: enc("1") },
            { type: "put", key: "dup", value: enc("2") },
          ],
        ),
      () => b.grant(0),
      () => b.compact(0),
      () => b.put("k", enc("x"), { lease: -3 }),
    ];
    for (const call of bad) expect(await code(call())).toBe("ERR_INVALID_ARG");
    expect(() => b.watch({ key: "k" }, { fromRevision: 0 })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG" }),
    );
  });

  it("a stopped member: calls end with ERR_UNAVAILABLE within the timeout; a watch resumes after a restart with nothing lost or repeated", async () => {
    const quick = new EtcdBackend({ endpoints: cluster.endpoints, requestTimeoutMs: 800 });
    const [m] = cluster.members;
    try {
      const w = b.watch({ key: "x/", prefix: true });
      const first = await b.put("x/0", enc("0"));
      await cluster.kill(m!, "SIGSTOP");
      const t0 = Date.now();
      expect(await code(quick.put("x/1", enc("1")))).toBe("ERR_UNAVAILABLE");
      // Bounded by the request timeout (800 ms), with room for a loaded machine.
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(await code(quick.range({ key: "x/1" }))).toBe("ERR_UNAVAILABLE");
      await cluster.kill(m!, "SIGCONT");
      await cluster.kill(m!, "SIGKILL");
      expect(await code(quick.put("x/1", enc("1")))).toBe("ERR_UNAVAILABLE");
      await cluster.restart(m!);
      // Acknowledged writes by revision. A write that ended ERR_UNAVAILABLE
      // may still have been applied (the stopped member applies it when it
      // runs again), so the watch may show more, never fewer.
      const acked = new Map<number, string>([[first, "x/0"]]);
      for (let i = 1; i <= 5; i++) {
        for (;;) {
          try {
            acked.set(await b.put(`x/${i}`, enc(String(i))), `x/${i}`);
            break;
          } catch (err) {
            if ((err as { code?: string }).code !== "ERR_UNAVAILABLE") throw err;
            await sleep(100);
          }
        }
      }
      const last = Math.max(...acked.keys());
      const got: WatchEvent[] = [];
      const it = w[Symbol.asyncIterator]();
      while (w.revision < last) {
        const next = await it.next();
        if (next.done) break;
        got.push(...next.value);
      }
      const revisions = got.map((e) => e.kv.modRevision);
      expect(revisions).toEqual([...new Set(revisions)].sort((x, y) => x - y));
      for (const [rev, key] of acked) expect(got.find((e) => e.kv.modRevision === rev)?.kv.key).toBe(key);
      expect(w.revision).toBe(last);
      w.close();
    } finally {
      await quick.close();
    }
  });

  it("after close: every call rejects with ERR_CLOSED and watches end", async () => {
    const c = new EtcdBackend({ endpoints: cluster.endpoints });
    const w = c.watch({ key: "z/", prefix: true });
    await c.range({ key: "z" });
    await c.close();
    expect((await w[Symbol.asyncIterator]().next()).done).toBe(true);
    expect(await code(c.put("z", enc("1")))).toBe("ERR_CLOSED");
    expect(await code(c.status())).toBe("ERR_CLOSED");
    expect(() => c.watch({ key: "z" })).toThrow(expect.objectContaining({ code: "ERR_CLOSED" }));
  });
});

describe.skipIf(Boolean(skip))(`EtcdBackend over TLS${skip ? ` [skipped: ${skip}]` : ""}`, () => {
  let cluster: EtcdCluster | undefined;
  const opened: EtcdBackend[] = [];
  afterAll(async () => {
    for (const b of opened) await b.close();
    await cluster?.stop();
  });
  const open = (tls?: ConstructorParameters<typeof EtcdBackend>[0]["tls"]): EtcdBackend => {
    const b = new EtcdBackend({
      endpoints: cluster!.endpoints,
      requestTimeoutMs: 1500,
      ...(tls ? { tls } : {}),
    });
    opened.push(b);
    return b;
  };

  it("with the CA and a client certificate: calls and watches work; without them the member refuses (ERR_UNAVAILABLE)", async () => {
    const pki = testPki();
    cluster = await startEtcd({ size: 1, tls: pki });
    expect(cluster.endpoints[0]).toMatch(/^https:/);
    const b = open({ ca: enc(pki.ca), cert: enc(pki.client.cert), key: enc(pki.client.key) });
    const w = b.watch({ key: "tls/", prefix: true });
    const rev = await b.put("tls/a", enc("secret"));
    expect(dec((await b.range({ key: "tls/a" })).kvs[0]!.value)).toBe("secret");
    expect((await take(w, 1)).flat().map((e) => e.kv.modRevision)).toEqual([rev]);
    w.close();
    // No client certificate: the member's --client-cert-auth refuses the handshake.
    expect(await code(open({ ca: enc(pki.ca) }).range({ key: "tls/a" }))).toBe("ERR_UNAVAILABLE");
    // The system's CAs do not know the test CA.
    expect(await code(open().range({ key: "tls/a" }))).toBe("ERR_UNAVAILABLE");
  });
});

/** The conformance suite on a cluster of `size`, started once for the file; each test opens its own client. */
function conformanceOnEtcd(size: 1 | 3): void {
  let cluster: Promise<EtcdCluster> | undefined;
  afterAll(async () => {
    await (await cluster?.catch(() => undefined))?.stop();
  });
  conformanceSuite(`etcd ×${size}`, async (): Promise<ConformanceTarget> => {
    // A longer election timeout than etcd's 1 s: a machine busy with other
    // tests must not cost a spurious election (and a failed write) mid-test.
    cluster ??= startEtcd({ size, electionMs: 2500 });
    const backend = new EtcdBackend({ endpoints: (await cluster).endpoints });
    return {
      backend,
      // etcd's leases run on its own clock: only waiting lets their time pass.
      elapse: (seconds) => sleep(seconds * 1000),
      close: () => backend.close(),
    };
  });
}

describe.skipIf(Boolean(skip))(`EtcdBackend conformance${skip ? ` [skipped: ${skip}]` : ""}`, () => {
  conformanceOnEtcd(1);
  conformanceOnEtcd(3);
});

describe.skipIf(Boolean(skip))(`leases and elections on etcd ×1${skip ? ` [skipped: ${skip}]` : ""}`, () => {
  // etcd's default election timeout (1 s): its shortest lease is then 1.5 s,
  // below the suite's 2 s ones.
  let cluster: Promise<EtcdCluster> | undefined;
  afterAll(async () => {
    await (await cluster?.catch(() => undefined))?.stop();
  });
  electionSuite("etcd ×1", async () => {
    cluster ??= startEtcd({ size: 1 });
    const backend = new EtcdBackend({ endpoints: (await cluster).endpoints });
    return {
      backend,
      env: nodeEnv,
      elapse: (seconds) => sleep(seconds * 1000),
      close: () => backend.close(),
    };
  });
});
