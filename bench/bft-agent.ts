// One process of `npm run bench -- bft` (bench/bft.ts):
//   bft-agent.ts CONFIG INDEX          replica INDEX of the membership
//   bft-agent.ts CONFIG client         the client: latency, then throughput
// CONFIG is the run's JSON file (node ids, addresses, keys, PKI, options). Every
// process is a DWCPManager with TLS on both generations, linked to every other;
// replicas host a BFT replica (fsynced file logs in the run's directory), the
// client submits commands to all of them and takes f + 1 matching answers.
// JSON lines on stdout: `ready`, then for the client `result`; `failed` on error.
import { createPrivateKey, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { submitCommand } from "../src/consensus/bft/client.js";
import { hostReplica } from "../src/consensus/bft/host.js";
import { membership } from "../src/consensus/bft/membership.js";
import { putOp, readOp } from "../src/consensus/bft/state-machine.js";
import { checkLinearizable, HistoryRecorder } from "../src/consensus/lincheck/index.js";
import { fileStorage } from "../src/consensus/local/file-storage.js";
import { DWCPManager, tls } from "../src/index.js";
import { failed, say } from "./lib/deployed.js";

/** The run's configuration, written by bench/bft.ts. */
export interface BftRunConfig {
  dir: string;
  /** Replica node ids, in member order, then the client's. */
  nodeIds: string[];
  /** Listening address per node id: host:port of v1 (v3 on port + 1). */
  hosts: Record<string, string>;
  publicKeys: string[];
  ca: string;
  certs: Record<string, { cert: string; key: string }>;
  baseTimeoutMs: number;
  /** The member whose request round trip is the RTT the latency is counted in. */
  rttMember: number;
  latencyCommands: number;
  throughputClients: number;
  throughputMs: number;
}

/** A private request kind (PROTOCOL §8.1: 1000–1999) the replicas answer empty, to time one round trip. */
const ECHO_KIND = 1500;

const [configPath, role] = process.argv.slice(2);
const cfg = JSON.parse(readFileSync(configPath!, "utf8")) as BftRunConfig;
const n = cfg.publicKeys.length;
const replicaIds = cfg.nodeIds.slice(0, n);
const self = role === "client" ? cfg.nodeIds[n]! : replicaIds[Number(role)]!;
const m = membership(
  1,
  cfg.publicKeys.map((k) => createPublicKey(k)),
);

function manager(): DWCPManager {
  const c = { ...cfg.certs[self]!, ca: cfg.ca, servername: "localhost" };
  return new DWCPManager({
    nodeId: self,
    v1: { transport: tls(c) },
    v3: { transport: tls(c) },
    flags: { enableV3Transport: true, v3RolloutPercentage: 100 },
  });
}

const addr = (id: string, gen: "v1" | "v3") => {
  const [h, p] = cfg.hosts[id]!.split(":");
  return `${h}:${Number(p) + (gen === "v3" ? 1 : 0)}`;
};

/** Connects to `id`, retrying while it is not listening yet. */
async function connect(mgr: DWCPManager, id: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await mgr.connect({ v1: addr(id, "v1"), v3: addr(id, "v3") });
      return;
    } catch (err) {
      if (i >= 200) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

async function replica(index: number): Promise<void> {
  const mgr = manager();
  await mgr.listen({ v1: addr(self, "v1"), v3: addr(self, "v3") });
  // Each replica dials the ones after it; the client dials every replica.
  for (const id of replicaIds.slice(index + 1)) await connect(mgr, id);
  await waitFor(
    () => replicaIds.every((id) => id === self || mgr.links.has(id)),
    30_000,
    "links to every member",
  );
  const storage = fileStorage(join(cfg.dir, `store-${index}`));
  const key = createPrivateKey(readFileSync(join(cfg.dir, `member-${index}.key`), "utf8"));
  const host = await hostReplica(mgr, {
    nodeIds: replicaIds,
    membership: m,
    id: index,
    privateKey: key,
    storage,
    baseTimeoutMs: cfg.baseTimeoutMs,
  });
  // The client's round-trip yardstick: a request answered at once.
  mgr.handle(ECHO_KIND, () => undefined);
  say({ event: "ready" });
  // Runs until the benchmark closes stdin.
  await new Promise<void>((r) => createInterface({ input: process.stdin }).once("close", () => r()));
  say({
    event: "stats",
    host: host.stats,
    replica: host.replica.stats(),
    height: host.replica.committedHeight,
  });
  host.close();
  await storage.close();
  await mgr.close();
}

async function client(): Promise<void> {
  const mgr = manager();
  for (const id of replicaIds) await connect(mgr, id);
  say({ event: "ready" });
  const submit = (client: string, seq: number) =>
    submitCommand(mgr, replicaIds, m.f, {
      client,
      seq,
      op: putOp(`${client}/${seq % 64}`, new Uint8Array(64)),
    });
  // Warm-up, then one command at a time.
  let seq = 0;
  for (let i = 0; i < 20; i++) await submit("lat", ++seq);
  const latencies: number[] = [];
  for (let i = 0; i < cfg.latencyCommands; i++) {
    const t = performance.now();
    await submit("lat", ++seq);
    latencies.push(performance.now() - t);
  }
  // One round trip to the member the run names (on the rig, one at the other site).
  const yardstick = mgr.links.get(replicaIds[cfg.rttMember]!)!;
  const rtts: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    await yardstick.request(ECHO_KIND, new Uint8Array(0));
    rtts.push(performance.now() - t);
  }
  // Throughput: clients each submitting one command at a time, for a fixed time.
  let committed = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: cfg.throughputClients }, async (_, c) => {
      let s = 0;
      while (performance.now() - t0 < cfg.throughputMs) {
        await submit(`tput-${c}`, ++s);
        committed++;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  // A register history for the linearizability checker: processes reading and
  // writing a few keys at random, each command through consensus.
  const rec = new HistoryRecorder();
  let nextProcess = 0;
  const t1 = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async (_, w) => {
      let proc = nextProcess++;
      let s = 0;
      const id = () => `hist-${proc}`;
      for (let i = 0; performance.now() - t1 < cfg.throughputMs; i++) {
        const key = `r${(w + i) % 3}`;
        const write = Math.random() < 0.5;
        const value = `${proc}.${i}`;
        const token = rec.invoke(proc, write ? { f: "write", value, key } : { f: "read", key });
        try {
          const op = write ? putOp(key, new TextEncoder().encode(value)) : readOp(key);
          const r = await submitCommand(mgr, replicaIds, m.f, { client: id(), seq: ++s, op });
          if (write) rec.ok(token);
          else rec.ok(token, r.result ? new TextDecoder().decode(r.result) : null);
        } catch {
          // Unknown whether it committed: the process ends, a new one takes over.
          rec.info(token);
          proc = nextProcess++;
          s = 0;
        }
      }
    }),
  );
  const history = rec.history();
  const verdict = checkLinearizable(history);
  say({
    event: "result",
    latencyMs: { p50: pct(latencies, 50), p99: pct(latencies, 99), samples: latencies.length },
    answerRttMs: { p50: pct(rtts, 50) },
    throughput: { commandsPerSecond: committed / seconds, clients: cfg.throughputClients, seconds },
    lincheck: { operations: history.operations.length, result: verdict.result, ms: verdict.elapsedMs },
  });
  await mgr.close();
}

try {
  if (role === "client") await client();
  else await replica(Number(role));
  process.exit(0);
} catch (err) {
  failed(err);
}
