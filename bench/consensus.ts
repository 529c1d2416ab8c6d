// `npm run bench -- consensus`: ACP's transaction commit latency and
// throughput on every backend, beside the same operations sent with the
// `etcd3` client directly, in one run.
//
// Contenders, each once per round, the order rotated every round:
//   local        LocalBackend on a file log in a temporary directory (every
//                commit's record fdatasync'd before it is acknowledged)
//   dwcp-etcd1   EtcdBackend on a 1-member etcd
//   raw-etcd1    the `etcd3` client's own API on that member (default options)
//   dwcp-etcd3   EtcdBackend on a 3-member etcd
//   raw-etcd3    the `etcd3` client's own API on that cluster
// Both clusters come from the test rig (loopback, temporary data directories,
// etcd's default heartbeat and election timeout) and run for the whole
// benchmark; each contender writes its own keys.
//
// One slot of a contender: SEQ compare-and-swap transactions one at a time
// (compare the key's mod revision with the one last written, put on success;
// each must succeed), then CONCURRENCY of them in flight for CONC_MS (each
// worker on its own keys, so none fails), then PUTS plain puts one at a time.
// p50 and p99 are over every round's sequential samples together; throughput
// is committed transactions per second over every round's loaded phase, next
// to this process's CPU time per transaction then (the client's cost on etcd;
// everything for local). Ratios are of those pooled figures; their spread
// between rounds is kept too. One unrecorded slot per contender warms up first.
// Every contender runs in this process, one at a time.
//
// BENCH_ROUNDS (default 10), BENCH_CONSENSUS_SEQ (200), _CONC_MS (1000),
// _CONCURRENCY (16) and _PUTS (100) size the run.
//
// Goals: through DWCP at most 10 % over raw `etcd3` (p50 and p99
// ratios ≤ 1.10, throughput ratio ≥ 0.90), on etcd ×1 and ×3; etcd ×3 p50
// under 10 ms.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { EtcdBackend } from "../src/consensus/etcd/index.js";
import { LocalBackend } from "../src/consensus/local/index.js";
import { etcdSkipReason, etcdVersion, startEtcd } from "../test/helpers/etcd.js";
import { percentile } from "./lib/latency.js";
import { median, nativeInUse, round, writeResult } from "./lib/result.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const SEQ = Number(process.env.BENCH_CONSENSUS_SEQ ?? 200);
const PUTS = Number(process.env.BENCH_CONSENSUS_PUTS ?? 100);
const CONCURRENCY = Number(process.env.BENCH_CONSENSUS_CONCURRENCY ?? 16);
const CONC_MS = Number(process.env.BENCH_CONSENSUS_CONC_MS ?? 1000);
const KEYS = 64;
const VALUE_BYTES = 64;

/** One contender: the benchmark's operations on one client. */
interface Contender {
  readonly name: string;
  /** Puts `value` at `key` if its mod revision is `modRevision` (0: absent); the new revision, or undefined when the compare failed. */
  cas(key: string, modRevision: number, value: Uint8Array): Promise<number | undefined>;
  put(key: string, value: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

function dwcp(name: string, backend: LocalBackend | EtcdBackend): Contender {
  return {
    name,
    async cas(key, modRevision, value) {
      const r = await backend.txn(
        [{ key, target: "modRevision", op: "=", value: modRevision }],
        [{ type: "put", key, value }],
      );
      return r.succeeded ? r.revision : undefined;
    },
    async put(key, value) {
      await backend.put(key, value);
    },
    close: () => backend.close(),
  };
}

function raw(name: string, endpoints: readonly string[]): Contender {
  const client = new Etcd3({ hosts: [...endpoints] });
  return {
    name,
    async cas(key, modRevision, value) {
      const r = await client
        .if(key, "Mod", "==", modRevision)
        .then(client.put(key).value(value as Buffer))
        .commit();
      return r.succeeded ? Number(r.header.revision) : undefined;
    },
    async put(key, value) {
      await client.put(key).value(value as Buffer);
    },
    close: async () => client.close(),
  };
}

interface Slot {
  seq: number[];
  loaded: number[];
  loadedOps: number;
  loadedMs: number;
  /** This process's CPU time during the loaded phase (µs): the client's cost, or all of it for local. */
  loadedCpuUs: number;
  puts: number[];
}

/** Each contender's keys and the mod revision it last wrote to each (0: not yet written). */
const written = new Map<string, Map<string, number>>();

async function slot(c: Contender, seq: number, concMs: number, puts: number): Promise<Slot> {
  let revs = written.get(c.name);
  if (!revs) {
    revs = new Map(Array.from({ length: KEYS }, (_, i) => [`bench/${c.name}/k${i}`, 0]));
    written.set(c.name, revs);
  }
  const keys = [...revs.keys()];
  const value = Buffer.alloc(VALUE_BYTES, 0x5a);
  const cas = async (key: string): Promise<number> => {
    const t0 = performance.now();
    const rev = await c.cas(key, revs.get(key)!, value);
    const ms = performance.now() - t0;
    if (rev === undefined) throw new Error(`${c.name}: the compare on ${key} failed; nothing else writes it`);
    revs.set(key, rev);
    return ms;
  };
  const out: Slot = { seq: [], loaded: [], loadedOps: 0, loadedMs: 0, loadedCpuUs: 0, puts: [] };
  for (let i = 0; i < seq; i++) out.seq.push(await cas(keys[i % KEYS]!));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + concMs;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      const mine = keys.filter((_, i) => i % CONCURRENCY === w);
      for (let i = 0; performance.now() < end; i++) out.loaded.push(await cas(mine[i % mine.length]!));
    }),
  );
  out.loadedMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  out.loadedCpuUs = cpu.user + cpu.system;
  out.loadedOps = out.loaded.length;
  for (let i = 0; i < puts; i++) {
    const t = performance.now();
    await c.put(`bench/${c.name}/p${i % KEYS}`, value);
    out.puts.push(performance.now() - t);
  }
  return out;
}

/** Busy and total jiffies of the whole machine (/proc/stat), to say how loaded it was. */
function cpuTimes(): { busy: number; total: number } | undefined {
  try {
    const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - f[3]! - (f[4] ?? 0), total };
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const skip = etcdSkipReason();
  if (skip) {
    console.error(`consensus: ${skip}`);
    process.exit(1);
  }
  for (const [k, v] of Object.entries({ ROUNDS, SEQ, PUTS, CONCURRENCY, CONC_MS }))
    if (!Number.isSafeInteger(v) || v < 1) {
      console.error(`consensus: ${k} must be a positive integer, not ${v}`);
      process.exit(2);
    }
  const started = performance.now();
  const load0 = loadavg().map((x) => round(x, 2));
  const dir = mkdtempSync(join(tmpdir(), "dwcp-bench-acp-"));
  const contenders: Contender[] = [];
  const clusters = [startEtcd({ size: 1 }), startEtcd({ size: 3 })] as const;
  const teardown = async (): Promise<void> => {
    await Promise.allSettled(contenders.map((c) => c.close()));
    // A cluster still starting is waited for, then stopped: its directory goes too.
    const started = await Promise.allSettled(clusters);
    await Promise.allSettled(started.map((s) => (s.status === "fulfilled" ? s.value.stop() : undefined)));
    rmSync(dir, { recursive: true, force: true });
  };
  // Interrupted, it still stops the clusters by PID and removes their directories.
  for (const sig of ["SIGINT", "SIGTERM"] as const)
    process.once(sig, () => {
      console.error(`consensus: ${sig}, stopping the etcd clusters`);
      void teardown().finally(() => process.exit(sig === "SIGINT" ? 130 : 143));
    });

  try {
    const [one, three] = await Promise.all(clusters);
    contenders.push(
      dwcp("local", new LocalBackend({ dir })),
      dwcp("dwcp-etcd1", new EtcdBackend({ endpoints: one.endpoints })),
      raw("raw-etcd1", one.endpoints),
      dwcp("dwcp-etcd3", new EtcdBackend({ endpoints: three.endpoints })),
      raw("raw-etcd3", three.endpoints),
    );
    for (const c of contenders) await slot(c, 50, 300, 20);

    const cpu0 = cpuTimes();
    const slots = new Map<string, Slot[]>(contenders.map((c) => [c.name, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < contenders.length; i++) {
        const c = contenders[(i + r) % contenders.length]!;
        slots.get(c.name)!.push(await slot(c, SEQ, CONC_MS, PUTS));
      }
      console.log(`consensus: round ${r + 1}/${ROUNDS} done`);
    }
    const cpu1 = cpuTimes();

    const ms = (x: number): number => round(x, 3);
    const figures: Record<string, Record<string, number>> = {};
    for (const [name, ss] of slots) {
      const seq = ss.flatMap((s) => s.seq);
      const loaded = ss.flatMap((s) => s.loaded);
      const puts = ss.flatMap((s) => s.puts);
      const ops = ss.reduce((a, s) => a + s.loadedOps, 0);
      const time = ss.reduce((a, s) => a + s.loadedMs, 0);
      const cpuUs = ss.reduce((a, s) => a + s.loadedCpuUs, 0);
      figures[name] = {
        txnP50Ms: ms(percentile(seq, 50)),
        txnP99Ms: ms(percentile(seq, 99)),
        txnPerS: round(ops / (time / 1000), 1),
        loadedP50Ms: ms(percentile(loaded, 50)),
        loadedP99Ms: ms(percentile(loaded, 99)),
        processCpuUsPerTxn: round(cpuUs / ops, 1),
        putP50Ms: ms(percentile(puts, 50)),
        putP99Ms: ms(percentile(puts, 99)),
      };
    }
    const f = (n: string): Record<string, number> => figures[n]!;
    const overhead: Record<string, number> = {};
    const roundRatios: Record<string, Record<string, number>> = {};
    const perSec = (s: Slot): number => s.loadedOps / (s.loadedMs / 1000);
    for (const size of ["1", "3"]) {
      const d = f(`dwcp-etcd${size}`);
      const w = f(`raw-etcd${size}`);
      overhead[`etcd ×${size} txn p50 (dwcp ÷ raw)`] = round(d.txnP50Ms! / w.txnP50Ms!);
      overhead[`etcd ×${size} txn p99 (dwcp ÷ raw)`] = round(d.txnP99Ms! / w.txnP99Ms!);
      overhead[`etcd ×${size} txn/s (dwcp ÷ raw)`] = round(d.txnPerS! / w.txnPerS!);
      overhead[`etcd ×${size} client CPU per txn (dwcp ÷ raw)`] = round(
        d.processCpuUsPerTxn! / w.processCpuUsPerTxn!,
      );
      overhead[`etcd ×${size} put p50 (dwcp ÷ raw)`] = round(d.putP50Ms! / w.putP50Ms!);
      // The spread of the ratios between rounds says how far one pooled figure can be trusted.
      const ours = slots.get(`dwcp-etcd${size}`)!;
      const peer = slots.get(`raw-etcd${size}`)!;
      for (const [what, of] of [
        ["txn p50", (s: Slot) => percentile(s.seq, 50)],
        ["txn/s", perSec],
      ] as const) {
        const per = ours.map((s, r) => of(s) / of(peer[r]!));
        roundRatios[`etcd ×${size} ${what} (dwcp ÷ raw)`] = {
          min: round(Math.min(...per)),
          median: round(median(per)),
          max: round(Math.max(...per)),
        };
      }
    }
    const within = (size: string): boolean =>
      overhead[`etcd ×${size} txn p50 (dwcp ÷ raw)`]! <= 1.1 &&
      overhead[`etcd ×${size} txn p99 (dwcp ÷ raw)`]! <= 1.1 &&
      overhead[`etcd ×${size} txn/s (dwcp ÷ raw)`]! >= 0.9;
    const busy =
      cpu0 && cpu1 ? round((100 * (cpu1.busy - cpu0.busy)) / (cpu1.total - cpu0.total), 1) : undefined;
    const elapsedS = round((performance.now() - started) / 1000, 1);
    const result = writeResult(
      {
        name: "consensus",
        unit: "ms, txn commit p50 through DWCP on etcd ×3 (lower is better)",
        ours: f("dwcp-etcd3").txnP50Ms!,
        peers: { "raw etcd3 client, etcd ×3": f("raw-etcd3").txnP50Ms! },
        detail: {
          method:
            `one process, ${ROUNDS} rounds, each contender once per round in rotated order, after one unrecorded warm-up slot each; ` +
            `per slot: ${SEQ} sequential compare-and-swap txns (compare mod revision, put on success), ` +
            `${CONCURRENCY} in flight for ${CONC_MS} ms, ${PUTS} sequential puts; ` +
            `${KEYS} keys per contender, ${VALUE_BYTES}-byte values; percentiles nearest-rank over all rounds' samples. ` +
            `${etcdVersion()}, rig defaults (heartbeat 100 ms, election 1000 ms), both clusters up throughout; ` +
            "raw: new Etcd3({hosts}) and its if/then/commit and put builders; neither asks for a put's previous value. " +
            `Load average ${load0.join(" / ")} at the start; machine CPU busy ${busy ?? "unknown"} % during the rounds; whole benchmark ${elapsedS} s`,
          goals: { "raw etcd3 client, etcd ×3": 1.1 },
          "goal: etcd ×1 overhead ≤ 10 %": within("1"),
          "goal: etcd ×3 overhead ≤ 10 %": within("3"),
          "goal: etcd ×3 p50 < 10 ms": f("dwcp-etcd3").txnP50Ms! < 10,
          overhead,
          ...Object.fromEntries(Object.entries(roundRatios).map(([k, v]) => [`per round: ${k}`, v])),
          ...figures,
          rounds: Object.fromEntries(
            [...slots].map(([n, ss]) => [
              n,
              ss.map((s) => ({
                txnP50Ms: ms(percentile(s.seq, 50)),
                txnPerS: round(perSec(s), 1),
                putP50Ms: ms(percentile(s.puts, 50)),
              })),
            ]),
          ),
        },
      },
      nativeInUse(),
    );
    console.log(JSON.stringify({ ours: result.ours, ratios: result.ratios, overhead, figures }, null, 2));
  } finally {
    await teardown();
  }
}

await main();
