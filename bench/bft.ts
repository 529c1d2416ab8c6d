// `npm run bench -- bft`: ACP's byzantine-tolerant replicas (two-chain HotStuff,
// Ed25519) as separate processes linked by DWCP sessions on TLS
// (bench/bft-agent.ts), on loopback and, where the WAN rig is available, across
// its two sites (replicas alternating between the namespaces, 50 ms RTT between
// them; the client in the first).
//
// Per configuration (n = 4 and n = 7): a client process submits commands to every
// replica and takes f + 1 matching answers (submitCommand). Commit latency is
// over BENCH_BFT_LATENCY (200) commands sent one at a time; "in RTTs" divides it
// by the median round trip of an empty request to one replica (on the rig, one
// at the other site). Throughput: BENCH_BFT_CLIENTS (16) clients
// each submitting one command at a time for BENCH_BFT_MS (3000) ms. Then 8
// processes read and write three registers through consensus for as long, and
// the ACP linearizability checker judges the recorded history. Every
// replica logs to fsynced files. No BFT engine exists for Node to race (see
// the issue): the figures stand alone.
//
// Goals (issue #22): p50 < 20 ms on loopback with 4 replicas; ≤ 4 RTT under the rig.
import { type ChildProcess, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { meshPki } from "../test/helpers/certs.js";
import { ADDR_A, ADDR_B, onLines, WanRig, wanRigAvailability } from "../test/rig/wan.js";
import type { BftRunConfig } from "./bft-agent.js";
import { nativeInUse, round, writeResult } from "./lib/result.js";

const LATENCY = Number(process.env.BENCH_BFT_LATENCY ?? 200);
const CLIENTS = Number(process.env.BENCH_BFT_CLIENTS ?? 16);
const TPUT_MS = Number(process.env.BENCH_BFT_MS ?? 3000);
const AGENT = fileURLToPath(new URL("./bft-agent.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

interface Outcome {
  config: string;
  n: number;
  p50Ms: number;
  p99Ms: number;
  rttMs: number;
  p50Rtts: number;
  commandsPerSecond: number;
  /** The checker's verdict on the register history the client recorded, and its size. */
  lincheck: string;
}

async function runConfig(n: number, wan: WanRig | undefined): Promise<Outcome> {
  const dir = mkdtempSync(join(tmpdir(), "dwcp-bench-bft-"));
  const children: ChildProcess[] = [];
  try {
    const replicaIds = Array.from({ length: n }, (_, i) => `replica-${i}`);
    const nodeIds = [...replicaIds, "bft-client"];
    const pki = meshPki(nodeIds);
    const publicKeys: string[] = [];
    replicaIds.forEach((_, i) => {
      const { publicKey, privateKey } = generateKeyPairSync("ed25519");
      publicKeys.push(publicKey.export({ type: "spki", format: "pem" }).toString());
      writeFileSync(join(dir, `member-${i}.key`), privateKey.export({ type: "pkcs8", format: "pem" }));
    });
    // On the rig, replicas alternate between the sites; on loopback all on 127.0.0.1.
    const site = (i: number) => (wan ? (i % 2 === 0 ? "a" : "b") : undefined);
    const hosts: Record<string, string> = {};
    replicaIds.forEach((id, i) => {
      hosts[id] = `${wan ? (site(i) === "a" ? ADDR_A : ADDR_B) : "127.0.0.1"}:${7700 + 2 * i}`;
    });
    const cfg: BftRunConfig = {
      dir,
      nodeIds,
      hosts,
      publicKeys,
      ca: pki.ca,
      certs: pki.nodes,
      baseTimeoutMs: wan ? 1000 : 500,
      // On the rig, replica 1 is at the other site from the client.
      rttMember: wan ? 1 : 0,
      latencyCommands: LATENCY,
      throughputClients: CLIENTS,
      throughputMs: TPUT_MS,
    };
    const cfgPath = join(dir, "config.json");
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const start = (role: string, ns: "a" | "b" | undefined) => {
      const cmd = [process.execPath, "--import", "tsx", AGENT, cfgPath, role];
      const [c, ...args] = wan && ns ? wan.exec(ns === "a" ? wan.a : wan.b, cmd) : cmd;
      const child = spawn(c!, args, { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
      children.push(child);
      const lines: Record<string, unknown>[] = [];
      onLines(child, (l) => {
        if (l.startsWith("{")) lines.push(JSON.parse(l));
      });
      const next = async (event: string, ms: number) => {
        const end = Date.now() + ms;
        for (;;) {
          const f = lines.find((x) => x.event === event || x.event === "failed");
          if (f?.event === "failed") throw new Error(`${role}: ${String(f.code)} ${String(f.message)}`);
          if (f) return f;
          if (child.exitCode !== null) throw new Error(`${role} exited ${child.exitCode}`);
          if (Date.now() > end) throw new Error(`${role}: no ${event} within ${ms} ms`);
          await new Promise((r) => setTimeout(r, 50));
        }
      };
      return next;
    };
    const replicas = replicaIds.map((_, i) => start(String(i), site(i)));
    await Promise.all(replicas.map((next) => next("ready", 60_000)));
    const client = start("client", wan ? "a" : undefined);
    await client("ready", 60_000);
    const r = (await client("result", 300_000)) as {
      latencyMs: { p50: number; p99: number };
      answerRttMs: { p50: number };
      throughput: { commandsPerSecond: number };
      lincheck: { operations: number; result: string };
    };
    const config = `${wan ? "rig (2 sites, 50 ms RTT)" : "loopback"}, n = ${n}`;
    const out: Outcome = {
      config,
      n,
      p50Ms: round(r.latencyMs.p50),
      p99Ms: round(r.latencyMs.p99),
      rttMs: round(r.answerRttMs.p50),
      p50Rtts: round(r.latencyMs.p50 / r.answerRttMs.p50, 2),
      commandsPerSecond: round(r.throughput.commandsPerSecond, 1),
      lincheck: `${r.lincheck.result} (${r.lincheck.operations} operations)`,
    };
    console.log(
      `  ${config}: commit p50 ${out.p50Ms} ms (${out.p50Rtts} RTT of ${out.rttMs} ms), p99 ${out.p99Ms} ms; ${out.commandsPerSecond} commands/s with ${CLIENTS} clients; history ${out.lincheck}`,
    );
    return out;
  } finally {
    for (const c of children) c.stdin?.end();
    await new Promise((r) => setTimeout(r, 500));
    for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  }
}

const outcomes: Outcome[] = [];
for (const n of [4, 7]) outcomes.push(await runConfig(n, undefined));
const rig = wanRigAvailability();
if (rig.ok) {
  const wan = await WanRig.up({ delayMs: 25 });
  const stop = () => {
    void wan.down().finally(() => process.exit(130));
  };
  process.once("SIGINT", stop);
  try {
    for (const n of [4, 7]) outcomes.push(await runConfig(n, wan));
  } finally {
    process.off("SIGINT", stop);
    await wan.down();
  }
} else console.log(`  WAN rig unavailable (${rig.reason}): loopback only`);

const loop4 = outcomes.find((o) => o.n === 4 && o.config.startsWith("loopback"))!;
const rig4 = outcomes.filter((o) => o.config.startsWith("rig"));
writeResult(
  {
    name: "bft",
    unit: "ms, commit p50 of one command with 4 replicas on loopback (lower is better)",
    ours: loop4.p50Ms,
    peers: {},
    detail: {
      method: `replicas and one client as separate processes, DWCP sessions on TLS, every replica's logs fsynced; latency over ${LATENCY} commands one at a time, RTT = the median round trip of an empty request to one replica (on the rig, at the other site), throughput with ${CLIENTS} clients for ${TPUT_MS} ms`,
      outcomes,
      "goal: p50 < 20 ms, loopback, n = 4": { p50Ms: loop4.p50Ms, met: loop4.p50Ms < 20 },
      "goal: every client history linearizable": {
        runs: outcomes.map((o) => ({ config: o.config, lincheck: o.lincheck })),
        met: outcomes.every((o) => o.lincheck.startsWith("ok")),
      },
      "goal: p50 ≤ 4 RTT under the rig": rig.ok
        ? {
            runs: rig4.map((o) => ({ config: o.config, p50Rtts: o.p50Rtts })),
            met: rig4.every((o) => o.p50Rtts <= 4),
          }
        : { skipped: rig.reason },
    },
  },
  nativeInUse(),
);
