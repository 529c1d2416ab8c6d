// The membership half of `npm run bench -- sync`: SWIM with Lifeguard hosted
// on DWCP links (bench/sync-agent.ts, one process per node) against Serf
// agents (Debian's `serf`, memberlist underneath), N nodes of each on
// 127.0.0.1, in the same run.
//
// Scenarios, each for both systems, alternating which system goes first:
// - kill: a fresh cluster converges, settles, and one node gets SIGKILL; the
//   detection time of an observer is the time from the kill until it reports
//   the node dead/failed (mean and max over the other nodes), R times;
// - stall: on one converged cluster, a node gets SIGSTOP for 1 s then SIGCONT,
//   R times (a different node each time); false positives are the observers
//   that declared it dead/failed, and, separately, those that suspected it.
// Dead/failed declarations and suspicions of any other node are counted as
// false positives in every scenario.
//
// How each side is observed (the same clock for both: the wall clock of this
// process when the line arrives):
// - DWCP: each agent prints every membership event the core emits as a JSON
//   line (with its own wall clock too, kept in the raw figures).
// - Serf: `serf monitor` on each agent's RPC address, parsing memberlist's and
//   serf's log lines. Chosen because serf logs `EventMemberFailed` at the
//   moment it marks the member failed, and the monitor streams it at once;
//   event handlers and the RPC event stream come after the agent's member
//   event coalescing (it holds member events until 1 s of quiet, up to 3 s),
//   and polling `serf members` every 50 ms is ±25 ms late on average and
//   would start 100 processes a second on a 2-core machine, disturbing both
//   systems. Serf logs a suspicion only on the node that raised it ("Suspect
//   X has failed, no acks received"), so suspicions are compared as raised by
//   the observer itself; DWCP also reports suspicions learned by gossip.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { resolveOptions, type SwimOptions } from "../src/sync/swim/index.js";
import type { SyncAgentConfig } from "./sync-agent.js";

const AGENT = fileURLToPath(new URL("./sync-agent.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Options of {@link runMembership}; every field is optional. */
export interface MembershipOptions {
  /** Nodes per cluster. @default 5 */
  n?: number;
  /** Kill runs per system, and stalls per system. @default 3 */
  repeats?: number;
  /** How long a stalled node stays stopped, ms. @default 1000 */
  stallMs?: number;
  /** Quiet time after a cluster converged, before a fault, ms. @default 5000 */
  settleMs?: number;
  /** How long a kill run waits for every observer to report the node dead, ms. @default 60000 */
  detectTimeoutMs?: number;
  /** How long the stall scenario watches after SIGCONT, ms. @default 10000 */
  stallWatchMs?: number;
  /** SWIM options of the DWCP agents. @default {} (SWIM_DEFAULTS) */
  dwcpOptions?: SwimOptions;
  /** First port used; DWCP takes base…base+2n, serf base+100… (bind) and base+150… (RPC). @default 17800 */
  basePort?: number;
  /** Which scenarios to run. @default ["kill", "stall"] */
  scenarios?: ("kill" | "stall")[];
  /** Progress lines. @default console.error */
  log?: (line: string) => void;
}

type System = "dwcp" | "serf";
type ObsType = "joined" | "alive" | "suspect" | "dead" | "left";

/** One membership event as an observer reported it. */
interface Obs {
  observer: string;
  type: ObsType;
  node: string;
  /** Wall clock of this process when the line arrived, ms. */
  wall: number;
  /** Whether the observer raised the suspicion itself (its own probe failed). */
  raised?: boolean;
  /** DWCP: the agent's own wall clock when the core emitted it, ms. */
  agentWall?: number;
  /** DWCP: who asserted it. */
  origin?: string;
}

/** An agent's `stats` line. */
interface AgentStats {
  host: Record<string, number>;
  swim: Record<string, number>;
}

interface Cluster {
  readonly system: System;
  readonly ids: string[];
  readonly obs: Obs[];
  /** Nodes killed in this cluster (no longer observers). */
  readonly gone: Set<string>;
  signal(id: string, sig: NodeJS.Signals): void;
  /** DWCP: each live agent's host and core counters. */
  stats(): Promise<Record<string, AgentStats>>;
  stop(): Promise<void>;
}

/** One kill run's raw figures. */
export interface KillRun {
  system: System;
  repeat: number;
  victim: string;
  /** Per observer: ms from the kill until it reported the node dead (null: not within the timeout). */
  detectMs: Record<string, number | null>;
  /** DWCP: the same from the agents' own clocks. */
  detectAgentMs?: Record<string, number | null>;
  meanMs: number | null;
  maxMs: number | null;
  /** Per observer: ms from the kill until its own probe failed and it suspected the node (if it did). */
  suspectRaisedMs: Record<string, number>;
  /** DWCP: who declared it dead first-hand (origin of the dead updates the observers took). */
  declaredBy?: string[];
  /** Dead/failed declarations and raised suspicions of other nodes during the run. */
  otherDead: number;
  otherSuspectRaised: number;
  /** DWCP: survivors' counters (links gone: `noLink` sends; probe failures, suspicions raised, deaths declared). */
  survivorCounters?: Record<string, number>;
}

/** One stall's raw figures. */
export interface StallRun {
  system: System;
  repeat: number;
  victim: string;
  stallMs: number;
  /** Observers that declared the stalled node dead/failed: the false positives. */
  falseDead: string[];
  /**
   * Observers that raised a suspicion of it themselves. Serf: every failed
   * probe logs one, even of a member already suspected; DWCP: the probe that
   * turned it from alive to suspect (a failed probe of a suspect confirms).
   */
  suspectRaised: string[];
  /**
   * Observers whose probe of it failed: Serf as `suspectRaised`; DWCP from
   * each observer's probe-failure counter over the window (the comparable figure).
   */
  probeFailed: string[];
  /** DWCP: observers that saw it suspected at all (gossip included). */
  suspectSeen?: string[];
  otherDead: number;
  otherSuspectRaised: number;
}

/** Summary of one system. */
export interface SystemSummary {
  detection: {
    /** Mean over runs of the mean over observers, ms. */
    meanMs: number | null;
    /** Mean over runs of the time until every observer reported it, ms. */
    meanAllMs: number | null;
    /** Sample standard deviation over runs of the time until every observer reported it, ms (the noise to judge a difference by). */
    sdAllMs: number | null;
    /** The longest any observer took in any run, ms. */
    maxMs: number | null;
    /** Observers that never reported it within the timeout. */
    missed: number;
  };
  stall: { falseDead: number; suspectRaised: number; probeFailed: number; suspectSeen?: number };
  /** False positives on nodes not under fault, over every scenario. */
  otherNodes: { dead: number; suspectRaised: number };
}

/** What {@link runMembership} measured. */
export interface MembershipResult {
  n: number;
  repeats: number;
  stallMs: number;
  method: string;
  options: { dwcp: Record<string, unknown>; serf: Record<string, unknown> };
  dwcp: SystemSummary;
  serf: SystemSummary;
  goals: {
    "detection time ≤ serf's": { dwcp: number | null; serf: number | null; met: boolean };
    "false positives ≤ serf's": { dwcp: number; serf: number; met: boolean };
  };
  scenarios: { kill: KillRun[]; stall: StallRun[] };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every process this module started and that has not exited, to clean up whatever happens. */
const children = new Set<ChildProcess>();

function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.once("exit", () => children.delete(c));
  return c;
}

/** Kills `c` (resuming it first, in case it is stopped) and waits for its exit. */
async function killChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return;
  const exited = new Promise<void>((r) => c.once("exit", () => r()));
  try {
    process.kill(c.pid, "SIGCONT");
    process.kill(c.pid, "SIGKILL");
  } catch {
    return;
  }
  await Promise.race([exited, sleep(3000)]);
}

function killAllNow(): void {
  for (const c of children)
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null)
      try {
        process.kill(c.pid, "SIGCONT");
        process.kill(c.pid, "SIGKILL");
      } catch {
        // already gone
      }
}

function onLines(stream: NodeJS.ReadableStream | null, fn: (line: string) => void): void {
  let buf = "";
  stream?.on("data", (d: Buffer) => {
    buf += d.toString("utf8");
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      fn(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

async function waitFor(cond: () => boolean, ms: number, what: string, check?: () => void): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    check?.();
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

/** The last state each node has in `observer`'s eyes. */
function view(c: Cluster, observer: string): Map<string, ObsType> {
  const v = new Map<string, ObsType>();
  for (const o of c.obs) {
    if (o.observer !== observer || o.node === observer) continue;
    // Serf logs a failed probe, not a state: its members stay alive until failed, and no line says a suspicion ended.
    if (c.system === "serf" && o.type === "suspect") continue;
    v.set(o.node, o.type);
  }
  return v;
}

/** Whether every live observer sees every other live node alive (no suspicion, no death). */
function converged(c: Cluster): boolean {
  const live = c.ids.filter((id) => !c.gone.has(id));
  return live.every((o) => {
    const v = view(c, o);
    return live.every((id) => id === o || v.get(id) === "joined" || v.get(id) === "alive");
  });
}

// --- DWCP ------------------------------------------------------------------

async function startDwcp(n: number, basePort: number, options: SwimOptions): Promise<Cluster> {
  const ids = Array.from({ length: n }, (_, i) => `dwcp-${i}`);
  const ports = ids.map((_, i) => basePort + 2 * i);
  const psk = randomBytes(32).toString("hex");
  const obs: Obs[] = [];
  const gone = new Set<string>();
  const procs = new Map<string, ChildProcess>();
  const ready = new Set<string>();
  const stats = new Map<string, AgentStats>();
  let error: Error | undefined;
  let stopping = false;
  ids.forEach((id, index) => {
    const cfg: SyncAgentConfig = { index, ids, ports, psk, options };
    const c = track(
      spawn(process.execPath, ["--import", "tsx", AGENT, JSON.stringify(cfg)], {
        cwd: ROOT,
        stdio: ["pipe", "pipe", "pipe"],
      }),
    );
    procs.set(id, c);
    let stderr = "";
    c.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString("utf8")).slice(-2000);
    });
    c.once("exit", (code, sig) => {
      if (!gone.has(id) && !stopping) error ??= new Error(`${id} exited (${code ?? sig}): ${stderr}`);
    });
    onLines(c.stdout, (l) => {
      if (!l.startsWith("{")) return;
      const m = JSON.parse(l) as Record<string, unknown>;
      if (m.event === "ready") ready.add(id);
      else if (m.event === "failed") error ??= new Error(`${id}: ${String(m.code)} ${String(m.message)}`);
      else if (m.event === "stats") stats.set(id, m as unknown as AgentStats);
      else if (m.event === "swim")
        obs.push({
          observer: id,
          type: m.type as ObsType,
          node: m.node as string,
          wall: Date.now(),
          agentWall: m.wall as number,
          origin: m.origin as string,
          raised: m.type === "suspect" && m.origin === id,
        });
    });
  });
  const check = () => {
    if (error) throw error;
  };
  const cluster: Cluster = {
    system: "dwcp",
    ids,
    obs,
    gone,
    signal(id, sig) {
      const pid = procs.get(id)?.pid;
      if (pid !== undefined) process.kill(pid, sig);
    },
    async stats() {
      stats.clear();
      const live = ids.filter((id) => !gone.has(id));
      for (const id of live) procs.get(id)?.stdin?.write("stats\n");
      await waitFor(() => live.every((id) => stats.has(id)), 5000, "stats", check).catch(() => {});
      return Object.fromEntries(stats);
    },
    async stop() {
      stopping = true;
      await Promise.all([...procs.values()].map(killChild));
    },
  };
  try {
    await waitFor(() => ready.size === n, 90_000, "DWCP agents linked", check);
    await waitFor(() => converged(cluster), 60_000, "DWCP membership converged", check);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

// --- Serf ------------------------------------------------------------------

const SERF_LINE = [
  { re: /serf: EventMemberJoin: (\S+)/, type: "joined" as const },
  { re: /serf: EventMemberFailed: (\S+)/, type: "dead" as const },
  { re: /serf: EventMemberLeave: (\S+)/, type: "left" as const },
  { re: /memberlist: Suspect (\S+) has failed, no acks received/, type: "suspect" as const },
];

async function startSerf(n: number, basePort: number): Promise<Cluster> {
  const ids = Array.from({ length: n }, (_, i) => `serf-${i}`);
  const bind = (i: number) => `127.0.0.1:${basePort + 100 + i}`;
  const rpc = (i: number) => `127.0.0.1:${basePort + 150 + i}`;
  const obs: Obs[] = [];
  const gone = new Set<string>();
  const agents = new Map<string, ChildProcess>();
  const monitors: ChildProcess[] = [];
  const all = () => [...agents.values(), ...monitors];
  let stopping = false;
  let error: Error | undefined;
  const cluster: Cluster = {
    system: "serf",
    ids,
    obs,
    gone,
    signal(id, sig) {
      const pid = agents.get(id)?.pid;
      if (pid !== undefined) process.kill(pid, sig);
    },
    stats: async () => ({}),
    async stop() {
      stopping = true;
      await Promise.all(all().map(killChild));
    },
  };
  const check = () => {
    if (error) throw error;
  };
  try {
    ids.forEach((id, i) => {
      // Default LAN profile; logs reach us through `serf monitor`, so the agent's own output is dropped.
      const c = track(
        spawn(
          "serf",
          ["agent", `-node=${id}`, `-bind=${bind(i)}`, `-rpc-addr=${rpc(i)}`, "-log-level=info"],
          {
            stdio: "ignore",
          },
        ),
      );
      agents.set(id, c);
      c.once("exit", (code, sig) => {
        if (!gone.has(id) && !stopping) error ??= new Error(`serf agent ${id} exited (${code ?? sig})`);
      });
    });
    // A monitor per agent, retried until the agent's RPC answers (it replays its recent log on connect).
    await Promise.all(
      ids.map(async (id, i) => {
        for (let attempt = 0; ; attempt++) {
          check();
          const m = track(
            spawn("serf", ["monitor", `-rpc-addr=${rpc(i)}`, "-log-level=info"], {
              stdio: ["ignore", "pipe", "ignore"],
            }),
          );
          let seen = false;
          onLines(m.stdout, (l) => {
            seen = true;
            for (const { re, type } of SERF_LINE) {
              const x = re.exec(l);
              if (x) {
                obs.push({ observer: id, type, node: x[1]!, wall: Date.now(), raised: type === "suspect" });
                break;
              }
            }
          });
          const exited = new Promise<boolean>((r) => m.once("exit", () => r(true)));
          const ok = await Promise.race([
            exited.then(() => false),
            waitFor(() => seen, 2000, "monitor").then(
              () => true,
              () => false,
            ),
          ]);
          if (ok) {
            monitors.push(m);
            return;
          }
          await killChild(m);
          if (attempt >= 50) throw new Error(`serf monitor of ${id} did not connect`);
          await sleep(100);
        }
      }),
    );
    for (let i = 1; i < n; i++) {
      const r = spawnSync("serf", ["join", `-rpc-addr=${rpc(i)}`, bind(0)], {
        encoding: "utf8",
        timeout: 10_000,
      });
      if (r.status !== 0) throw new Error(`serf join of ${ids[i]}: ${r.stdout}${r.stderr}`);
    }
    await waitFor(() => converged(cluster), 60_000, "serf membership converged", check);
    // Cross-check what the monitors said against the agents' own member lists.
    for (let i = 0; i < n; i++) {
      const r = spawnSync("serf", ["members", `-rpc-addr=${rpc(i)}`, "-format=json"], {
        encoding: "utf8",
        timeout: 10_000,
      });
      const members = (JSON.parse(r.stdout) as { members: { name: string; status: string }[] }).members;
      if (members.length !== n || members.some((m) => m.status !== "alive"))
        throw new Error(`serf members of ${ids[i]}: ${r.stdout}`);
    }
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

// --- scenarios -------------------------------------------------------------

function start(system: System, n: number, basePort: number, dwcpOptions: SwimOptions): Promise<Cluster> {
  return system === "dwcp" ? startDwcp(n, basePort, dwcpOptions) : startSerf(n, basePort);
}

/** Dead declarations and raised suspicions of nodes other than `victim` since `t0`. */
function others(c: Cluster, victim: string, t0: number): { otherDead: number; otherSuspectRaised: number } {
  const after = c.obs.filter((o) => o.wall >= t0 && o.node !== victim);
  return {
    otherDead: after.filter((o) => o.type === "dead").length,
    otherSuspectRaised: after.filter((o) => o.type === "suspect" && o.raised).length,
  };
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
const sd = (xs: number[]) => {
  const m = mean(xs) ?? 0;
  return Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1));
};
const r1 = (x: number | null) => (x === null ? null : Math.round(x * 10) / 10);

async function killRun(c: Cluster, repeat: number, o: Required<MembershipOptions>): Promise<KillRun> {
  await sleep(o.settleMs);
  const victim = c.ids[1 + (repeat % (c.ids.length - 1))]!;
  const observers = c.ids.filter((id) => id !== victim);
  const t0 = Date.now();
  c.gone.add(victim);
  c.signal(victim, "SIGKILL");
  const firstDead = (id: string) =>
    c.obs.find((x) => x.observer === id && x.node === victim && x.type === "dead" && x.wall >= t0);
  await waitFor(() => observers.every((id) => firstDead(id)), o.detectTimeoutMs, "detection").catch(() => {});
  const detectMs: Record<string, number | null> = {};
  const detectAgentMs: Record<string, number | null> = {};
  const suspectRaisedMs: Record<string, number> = {};
  for (const id of observers) {
    const d = firstDead(id);
    detectMs[id] = d ? d.wall - t0 : null;
    if (d?.agentWall !== undefined) detectAgentMs[id] = d.agentWall - t0;
    const s = c.obs.find(
      (x) => x.observer === id && x.node === victim && x.type === "suspect" && x.raised && x.wall >= t0,
    );
    if (s) suspectRaisedMs[id] = s.wall - t0;
  }
  const got = Object.values(detectMs).filter((x): x is number => x !== null);
  const run: KillRun = {
    system: c.system,
    repeat,
    victim,
    detectMs,
    meanMs: r1(mean(got)),
    maxMs: got.length === observers.length ? Math.max(...got) : null,
    suspectRaisedMs,
    ...others(c, victim, t0),
  };
  if (c.system === "dwcp") {
    run.detectAgentMs = detectAgentMs;
    run.declaredBy = [
      ...new Set(
        c.obs.filter((x) => x.wall >= t0 && x.node === victim && x.type === "dead").map((x) => x.origin!),
      ),
    ];
    const st = await c.stats();
    const sum: Record<string, number> = {
      noLink: 0,
      lost: 0,
      probeFailures: 0,
      suspicionsRaised: 0,
      declaredDead: 0,
    };
    for (const s of Object.values(st)) {
      const h = s.host;
      const w = s.swim;
      sum.noLink! += h.noLink!;
      sum.lost! += h.lost!;
      sum.probeFailures! += w.probeFailures!;
      sum.suspicionsRaised! += w.suspicionsRaised!;
      sum.declaredDead! += w.declaredDead!;
    }
    run.survivorCounters = sum;
  }
  return run;
}

async function stallRun(c: Cluster, repeat: number, o: Required<MembershipOptions>): Promise<StallRun> {
  await waitFor(() => converged(c), 60_000, `${c.system} membership converged again`);
  await sleep(o.settleMs);
  const victim = c.ids[1 + (repeat % (c.ids.length - 1))]!;
  const before = await c.stats();
  const t0 = Date.now();
  c.signal(victim, "SIGSTOP");
  await sleep(o.stallMs);
  c.signal(victim, "SIGCONT");
  await sleep(o.stallWatchMs);
  const after = await c.stats();
  const about = c.obs.filter((x) => x.wall >= t0 && x.node === victim && x.observer !== victim);
  const who = (f: (x: Obs) => boolean) => [...new Set(about.filter(f).map((x) => x.observer))].sort();
  const run: StallRun = {
    system: c.system,
    repeat,
    victim,
    stallMs: o.stallMs,
    falseDead: who((x) => x.type === "dead"),
    suspectRaised: who((x) => x.type === "suspect" && x.raised === true),
    probeFailed: [],
    ...others(c, victim, t0),
  };
  if (c.system === "dwcp") {
    run.suspectSeen = who((x) => x.type === "suspect");
    run.probeFailed = c.ids.filter(
      (id) =>
        id !== victim &&
        (after[id]?.swim.probeFailures ?? 0) > (before[id]?.swim.probeFailures ?? Number.POSITIVE_INFINITY),
    );
  } else run.probeFailed = run.suspectRaised;
  return run;
}

function summarize(system: System, kills: KillRun[], stalls: StallRun[]): SystemSummary {
  const k = kills.filter((r) => r.system === system);
  const s = stalls.filter((r) => r.system === system);
  const all = k.flatMap((r) => Object.values(r.detectMs));
  const got = all.filter((x): x is number => x !== null);
  const maxes = k.map((r) => r.maxMs);
  const out: SystemSummary = {
    detection: {
      meanMs: r1(mean(k.map((r) => r.meanMs).filter((x): x is number => x !== null))),
      meanAllMs: maxes.every((x) => x !== null) ? r1(mean(maxes as number[])) : null,
      sdAllMs: maxes.length > 1 && maxes.every((x) => x !== null) ? r1(sd(maxes as number[])) : null,
      maxMs: got.length && got.length === all.length ? Math.max(...got) : null,
      missed: all.length - got.length,
    },
    stall: {
      falseDead: s.reduce((a, r) => a + r.falseDead.length, 0),
      suspectRaised: s.reduce((a, r) => a + r.suspectRaised.length, 0),
      probeFailed: s.reduce((a, r) => a + r.probeFailed.length, 0),
    },
    otherNodes: {
      dead: [...k, ...s].reduce((a, r) => a + r.otherDead, 0),
      suspectRaised: [...k, ...s].reduce((a, r) => a + r.otherSuspectRaised, 0),
    },
  };
  if (system === "dwcp") out.stall.suspectSeen = s.reduce((a, r) => a + (r.suspectSeen?.length ?? 0), 0);
  return out;
}

/**
 * Runs the membership comparison: kill and stall scenarios on N-node DWCP and
 * Serf clusters on loopback. Every process it starts is killed by PID before
 * it returns or throws, and on SIGINT/SIGTERM.
 */
export async function runMembership(opts: MembershipOptions = {}): Promise<MembershipResult> {
  const o: Required<MembershipOptions> = {
    n: 5,
    repeats: 3,
    stallMs: 1000,
    settleMs: 5000,
    detectTimeoutMs: 60_000,
    stallWatchMs: 10_000,
    dwcpOptions: {},
    basePort: 17_800,
    scenarios: ["kill", "stall"],
    log: (l) => console.error(l),
    ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
  };
  if (spawnSync("serf", ["version"]).status !== 0) throw new Error("serf is not installed");
  const onSignal = (sig: NodeJS.Signals) => {
    killAllNow();
    process.exit(sig === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("exit", killAllNow);
  const kills: KillRun[] = [];
  const stalls: StallRun[] = [];
  try {
    for (let r = 0; r < (o.scenarios.includes("kill") ? o.repeats : 0); r++) {
      // Alternating which system goes first spreads any drift of the machine's load over both.
      for (const system of (r % 2 === 0 ? ["dwcp", "serf"] : ["serf", "dwcp"]) as System[]) {
        const c = await start(system, o.n, o.basePort, o.dwcpOptions);
        try {
          const run = await killRun(c, r, o);
          kills.push(run);
          o.log(
            `  kill ${system} #${r} (${run.victim}): mean ${run.meanMs} ms, all ${run.maxMs} ms; others dead ${run.otherDead}`,
          );
        } finally {
          await c.stop();
        }
      }
    }
    for (const system of (o.scenarios.includes("stall") ? ["dwcp", "serf"] : []) as System[]) {
      const c = await start(system, o.n, o.basePort, o.dwcpOptions);
      try {
        for (let r = 0; r < o.repeats; r++) {
          const run = await stallRun(c, r, o);
          stalls.push(run);
          o.log(
            `  stall ${system} #${r} (${run.victim}, ${o.stallMs} ms): dead by [${run.falseDead}], suspected by [${run.suspectRaised}], probe failed at [${run.probeFailed}]${run.suspectSeen ? `, seen suspect by [${run.suspectSeen}]` : ""}; others dead ${run.otherDead}`,
          );
        }
      } finally {
        await c.stop();
      }
    }
  } finally {
    killAllNow();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("exit", killAllNow);
  }
  const dwcp = summarize("dwcp", kills, stalls);
  const serf = summarize("serf", kills, stalls);
  const fp = (s: SystemSummary) => s.stall.falseDead + s.otherNodes.dead;
  const serfVersion = spawnSync("serf", ["version"], { encoding: "utf8" }).stdout.split("\n")[0]?.trim();
  const { sign: _s, verify: _v, ...dwcpResolved } = resolveOptions(o.dwcpOptions);
  return {
    n: o.n,
    repeats: o.repeats,
    stallMs: o.stallMs,
    method:
      "N processes per system on 127.0.0.1. DWCP: DWCPManagers (TCP, PSK sessions) in full mesh hosting SWIM over their links (request kind 200), each printing membership events; Serf: `serf agent` joined through the first agent, observed with `serf monitor` (EventMemberFailed / EventMemberJoin / memberlist's 'Suspect … no acks received'). Times are this process's wall clock at the line's arrival. Kill: fresh cluster per run, SIGKILL after settling; detection = kill → each other node reports dead/failed. Stall: SIGSTOP for stallMs then SIGCONT, watched for stallWatchMs.",
    options: {
      dwcp: { ...dwcpResolved, requestTimeoutMs: 5000, settleMs: o.settleMs, stallWatchMs: o.stallWatchMs },
      serf: {
        version: serfVersion,
        profile: "lan (agent defaults)",
        memberlistLan: {
          probeIntervalMs: 1000,
          probeTimeoutMs: 500,
          indirectChecks: 3,
          suspicionMult: 4,
          suspicionMaxTimeoutMult: 6,
          retransmitMult: 4,
          gossipIntervalMs: 200,
          gossipNodes: 3,
          awarenessMaxMultiplier: 8,
          pushPullIntervalMs: 30_000,
        },
      },
    },
    dwcp,
    serf,
    goals: {
      "detection time ≤ serf's": {
        dwcp: dwcp.detection.meanAllMs,
        serf: serf.detection.meanAllMs,
        met:
          dwcp.detection.meanAllMs !== null &&
          (serf.detection.meanAllMs === null || dwcp.detection.meanAllMs <= serf.detection.meanAllMs),
      },
      "false positives ≤ serf's": { dwcp: fp(dwcp), serf: fp(serf), met: fp(dwcp) <= fp(serf) },
    },
    scenarios: { kill: kills, stall: stalls },
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const o: MembershipOptions = {};
  if (process.env.BENCH_SYNC_N) o.n = Number(process.env.BENCH_SYNC_N);
  if (process.env.BENCH_SYNC_REPEATS) o.repeats = Number(process.env.BENCH_SYNC_REPEATS);
  if (process.env.BENCH_SYNC_SETTLE_MS) o.settleMs = Number(process.env.BENCH_SYNC_SETTLE_MS);
  if (process.env.BENCH_SYNC_SCENARIOS)
    o.scenarios = process.env.BENCH_SYNC_SCENARIOS.split(",") as ("kill" | "stall")[];
  if (process.env.BENCH_SYNC_STALL_MS) o.stallMs = Number(process.env.BENCH_SYNC_STALL_MS);
  const result = await runMembership(o);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  process.exit(0);
}
