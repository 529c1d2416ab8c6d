// etcd ×3 under faults, through EtcdBackend: several clients read, write and
// compare-and-set a few keys while the leader is killed (SIGKILL, then
// restarted) and the next one paused (SIGSTOP, then SIGCONT); on a cluster
// with a network namespace per member, while the leader and then a follower
// are cut off from the others (iptables). Every operation is recorded with its
// invocation and completion (a timeout or ERR_UNAVAILABLE is indeterminate),
// the history must be linearizable for a register per key, no acknowledged
// write may be missing from the store's history or from a watch that ran
// through the faults, and the time from the first fault to the first write
// acknowledged after it is reported. Skipped, with the reason, without etcd
// (or, for partitions, without namespaces).
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { afterAll, describe, expect, it } from "vitest";
import type { ConsensusBackend, WatchEvent } from "../../src/consensus/backend.js";
import { EtcdBackend } from "../../src/consensus/etcd/index.js";
import {
  checkLinearizable,
  formatJepsen,
  HistoryRecorder,
  type Value,
} from "../../src/consensus/lincheck/index.js";
import { type EtcdCluster, etcdNetnsSkipReason, etcdSkipReason, startEtcd } from "../helpers/etcd.js";

const skip = etcdSkipReason();
const netnsSkip = etcdNetnsSkipReason();
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const CLIENTS = 6;
const KEYS = ["faults/r0", "faults/r1", "faults/r2"];
/** Long enough to outlive one election (1 s here), short enough that a stopped member does not stall a client for long. */
const REQUEST_TIMEOUT_MS = 2000;

/** An acknowledged write: the value now at `key` as of `revision`. */
interface Acked {
  key: string;
  value: string;
  revision: number;
}

/** The first `n` events of a watch as batches, or a failure after `timeoutMs`. */
async function take(
  w: AsyncIterable<readonly WatchEvent[]>,
  n: number,
  timeoutMs: number,
): Promise<WatchEvent[][]> {
  const out: WatchEvent[][] = [];
  const it = w[Symbol.asyncIterator]();
  const until = performance.now() + timeoutMs;
  for (let count = 0; count < n; ) {
    const next = await Promise.race([
      it.next(),
      sleep(until - performance.now()).then(() => "late" as const),
    ]);
    if (next === "late") throw new Error(`a watch delivered ${count} of ${n} events in ${timeoutMs} ms`);
    if (next.done) break;
    out.push([...next.value]);
    count += next.value.length;
  }
  return out;
}

/** What a workload under faults saw. */
interface Outcome {
  summary: string;
  firstWriteAfterFaultMs: number | undefined;
}

/**
 * Runs the workload on `cluster` while `faults` runs (it calls `fault()` at the
 * first fault), then checks the history, the store and the watch.
 */
async function underFaults(
  cluster: EtcdCluster,
  faults: (fault: () => void) => Promise<string>,
): Promise<Outcome> {
  const backends: EtcdBackend[] = [];
  const open = (): EtcdBackend => {
    const b = new EtcdBackend({ endpoints: cluster.endpoints, requestTimeoutMs: REQUEST_TIMEOUT_MS });
    backends.push(b);
    return b;
  };
  try {
    const observer = open();
    const start = (await observer.range({ key: "faults/" })).revision;

    // A watch over every key, from before the first write, through every fault.
    const events: WatchEvent[] = [];
    const watch = observer.watch({ key: "faults/", prefix: true }, { fromRevision: start + 1 });
    const watching = (async () => {
      for await (const batch of watch) events.push(...batch);
    })();

    const rec = new HistoryRecorder();
    const acked: Acked[] = [];
    let nextProcess = 0;
    let running = true;
    let faultAt = Number.POSITIVE_INFINITY;
    let firstWriteAfterFaultMs: number | undefined;
    const counts = { ok: 0, fail: 0, info: 0 };

    async function client(db: ConsensusBackend, seed: number): Promise<void> {
      let proc = nextProcess++;
      let n = 0;
      const seen = new Map<string, Value>();
      let rnd = seed;
      const random = (m: number): number => {
        rnd = (rnd * 1103515245 + 12345) % 2 ** 31;
        return rnd % m;
      };
      while (running) {
        const key = KEYS[random(KEYS.length)]!;
        const dice = random(10);
        const t0 = performance.now();
        if (dice < 4) {
          const tok = rec.invoke(proc, { f: "read", key });
          try {
            const r = await db.range({ key });
            const v = r.kvs[0] ? dec(r.kvs[0].value) : null;
            rec.ok(tok, v);
            seen.set(key, v);
            counts.ok++;
          } catch {
            // A read changes nothing: failed, whatever the cause.
            rec.fail(tok);
            counts.fail++;
          }
        } else {
          const value = `${proc}.${n++}`;
          const from = seen.get(key);
          const cas = dice >= 7 && from !== undefined;
          const tok = rec.invoke(proc, cas ? { f: "cas", key, from, to: value } : { f: "write", key, value });
          try {
            let revision: number;
            if (cas) {
              const t = await db.txn(
                from === null
                  ? [{ key, target: "version", op: "=", value: 0 }]
                  : [{ key, target: "value", op: "=", value: enc(from) }],
                [{ type: "put", key, value: enc(value) }],
              );
              if (!t.succeeded) {
                rec.fail(tok);
                counts.fail++;
                seen.delete(key);
                continue;
              }
              revision = t.revision;
            } else {
              revision = await db.put(key, enc(value));
            }
            rec.ok(tok);
            counts.ok++;
            seen.set(key, value);
            acked.push({ key, value, revision });
            if (t0 > faultAt && firstWriteAfterFaultMs === undefined)
              firstWriteAfterFaultMs = performance.now() - faultAt;
          } catch (err) {
            // Timed out or unavailable: it may or may not have been applied.
            expect((err as { code?: string }).code).toBe("ERR_UNAVAILABLE");
            rec.info(tok);
            counts.info++;
            proc = nextProcess++;
            seen.clear();
          }
        }
        await sleep(2 + random(8));
      }
    }

    const workers = Array.from({ length: CLIENTS }, (_, i) => client(open(), 7919 * (i + 1)));

    // Leader changes as the observer's status sees them, sampled as an operator would.
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        await observer.status().catch(() => undefined);
        await sleep(250);
      }
    })();

    const done = await faults(() => {
      faultAt = performance.now();
    });
    running = false;
    await Promise.all(workers);
    sampling = false;
    await sampler;

    const history = rec.history();
    const check = checkLinearizable(history, { timeoutMs: 60_000, explain: true });
    const log = join(tmpdir(), `dwcp-etcd-faults-${process.pid}.log`);
    if (check.result !== "ok") writeFileSync(log, formatJepsen(history));
    const status = await observer.status();
    const summary =
      `${history.operations.length} operations (${counts.ok} ok, ${counts.fail} fail, ${counts.info} info), ` +
      `${acked.length} acknowledged writes; ${done}; ` +
      `first write acknowledged ${firstWriteAfterFaultMs?.toFixed(0)} ms after the first fault; ` +
      `checker: ${check.result} in ${check.elapsedMs.toFixed(0)} ms; leader changes seen: ${status.leaderChanges}`;
    console.log(summary);
    expect(check.result, `history written to ${log}`).toBe("ok");
    // The same history with one read answering a value nobody wrote is not
    // linearizable: the check above could have failed.
    const ops = history.operations;
    const read = ops.findIndex((op) => op.call.f === "read" && op.status === "ok");
    const forged = {
      ...history,
      operations: ops.map((op, i) => (i === read ? { ...op, result: "forged" } : op)),
    };
    expect(checkLinearizable(forged, { timeoutMs: 60_000 }).result).toBe("illegal");
    expect(firstWriteAfterFaultMs).toBeDefined();
    expect(counts.ok).toBeGreaterThan(100);
    expect(status.leaderChanges).toBeGreaterThanOrEqual(1);

    // Every acknowledged write is in the store's history at its revision.
    for (const a of acked) {
      const r = await observer.range({ key: a.key }, { revision: a.revision });
      expect(r.kvs[0] && [dec(r.kvs[0].value), r.kvs[0].modRevision]).toEqual([a.value, a.revision]);
    }
    // The watch saw every revision once, in order, every acknowledged write among them.
    const last = (await observer.range({ key: "faults/", prefix: true })).revision;
    while (watch.revision < last) await sleep(50);
    watch.close();
    await watching;
    const revisions = events.map((e) => e.kv.modRevision);
    expect(revisions).toEqual([...revisions].sort((x, y) => x - y));
    expect(new Set(revisions).size).toBe(revisions.length);
    const byRevision = new Map(events.map((e) => [e.kv.modRevision, e]));
    for (const a of acked) {
      const e = byRevision.get(a.revision);
      expect(e && [e.kv.key, dec(e.kv.value)]).toEqual([a.key, a.value]);
    }
    // The final value of each key is the last write the watch saw (acknowledged or not).
    for (const key of KEYS) {
      const final = (await observer.range({ key })).kvs[0];
      const lastEvent = events.filter((e) => e.kv.key === key).at(-1);
      expect(final && dec(final.value)).toBe(lastEvent && dec(lastEvent.kv.value));
    }
    return { summary, firstWriteAfterFaultMs };
  } finally {
    for (const b of backends) await b.close();
  }
}

describe.skipIf(Boolean(skip))(`etcd ×3 under faults${skip ? ` [skipped: ${skip}]` : ""}`, () => {
  let cluster: EtcdCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it("SIGKILL of the leader, then SIGSTOP of the next, under concurrent read/write/cas: linearizable, no acknowledged write lost", {
    timeout: 120_000,
  }, async () => {
    cluster = await startEtcd({ size: 3 });
    const c = cluster;
    await underFaults(c, async (fault) => {
      await sleep(2000);
      const first = await c.leader();
      fault();
      await c.kill(first, "SIGKILL");
      await sleep(3000);
      await c.restart(first);
      await sleep(2000);
      const second = await c.leader();
      await c.kill(second, "SIGSTOP");
      await sleep(4000);
      await c.kill(second, "SIGCONT");
      await sleep(2000);
      return `killed ${first.name} (leader) and restarted it, stopped ${second.name} (leader) for 4 s`;
    });
  });
});

describe.skipIf(Boolean(netnsSkip))(
  `etcd ×3 under partitions${netnsSkip ? ` [skipped: ${netnsSkip}]` : ""}`,
  () => {
    let cluster: EtcdCluster | undefined;
    let small: EtcdCluster | undefined;
    afterAll(async () => {
      await cluster?.stop();
      await small?.stop();
    });

    it("a compare-only txn on a member cut off from the quorum: etcd answers from its stale state, EtcdBackend does not", async () => {
      small = await startEtcd({ size: 3, netns: true });
      const c = small;
      const all = new EtcdBackend({ endpoints: c.endpoints });
      const leader = await c.leader();
      const cut = c.members.find((m) => m !== leader)!;
      // Writes after the cut go to the members that still form the quorum.
      const quorum = new EtcdBackend({
        endpoints: c.members.filter((m) => m !== cut).map((m) => m.endpoint),
      });
      const alone = new EtcdBackend({ endpoints: [cut.endpoint], requestTimeoutMs: 1500 });
      const raw = new Etcd3({ hosts: [cut.endpoint] });
      try {
        await all.put("stale/k", enc("old"));
        // The member has the old value before it is cut off.
        expect(dec((await alone.range({ key: "stale/k" })).kvs[0]!.value)).toBe("old");
        c.partition(cut);
        await quorum.put("stale/k", enc("new"));
        const old = [
          {
            key: Buffer.from("stale/k"),
            target: "Value" as const,
            result: "Equal" as const,
            value: Buffer.from("old"),
          },
        ];
        // etcd 3.4 counts a txn without ops as serializable and answers it locally.
        expect((await raw.kv.txn({ compare: old, success: [], failure: [] })).succeeded).toBe(true);
        // Through the backend the same txn is a linearizable read: no answer without a quorum.
        await expect(
          alone.txn([{ key: "stale/k", target: "value", op: "=", value: enc("old") }], []),
        ).rejects.toMatchObject({ code: "ERR_UNAVAILABLE" });
        c.heal(cut);
        await c.healthy();
        const after = await alone.txn([{ key: "stale/k", target: "value", op: "=", value: enc("new") }], []);
        expect(after).toMatchObject({ succeeded: true, results: [] });
      } finally {
        raw.close();
        await alone.close();
        await quorum.close();
        await all.close();
      }
    });

    it("watches on a member cut off from the quorum move to members with a leader and deliver during the partition", async () => {
      const c = small!;
      await c.healthy();
      const leader = await c.leader();
      const cut = c.members.find((m) => m !== leader)!;
      const quorum = new EtcdBackend({
        endpoints: c.members.filter((m) => m !== cut).map((m) => m.endpoint),
      });
      const b = new EtcdBackend({ endpoints: c.endpoints });
      try {
        // Each watch has its own stream on a member picked at random: with 12,
        // some are on the member that will be cut off (all but 0.8 % of runs).
        const watches = Array.from({ length: 12 }, () => b.watch({ key: "moved/", prefix: true }));
        await b.range({ key: "moved/" }); // every watch has its start
        await sleep(500); // and its stream
        c.partition(cut);
        const t0 = performance.now();
        const rev = await quorum.put("moved/k", enc("during"));
        const lags = await Promise.all(
          watches.map(async (w) => {
            const [batch] = await take(w, 1, 10_000);
            expect(batch?.[0]?.kv.modRevision).toBe(rev);
            return performance.now() - t0;
          }),
        );
        // Delivered while the member is still cut off.
        expect(cut.partitioned).toBe(true);
        console.log(
          `watches delivered during the partition after ${lags.map((l) => l.toFixed(0)).join(", ")} ms`,
        );
        for (const w of watches) w.close();
      } finally {
        c.heal(cut);
        await b.close();
        await quorum.close();
      }
    });

    it("the leader, then a follower, cut off from the others (a namespace per member, iptables drop): linearizable, no acknowledged write lost", {
      timeout: 120_000,
    }, async () => {
      cluster = await startEtcd({ size: 3, netns: true });
      const c = cluster;
      await underFaults(c, async (fault) => {
        await sleep(2000);
        const leader = await c.leader();
        fault();
        c.partition(leader);
        await sleep(4000);
        c.heal(leader);
        await c.healthy();
        await sleep(1000);
        const now = await c.leader();
        const follower = c.members.find((m) => m !== now)!;
        c.partition(follower);
        await sleep(3000);
        c.heal(follower);
        await c.healthy();
        await sleep(1000);
        return `partitioned ${leader.name} (leader) for 4 s, then ${follower.name} (follower) for 3 s`;
      });
    });
  },
);
