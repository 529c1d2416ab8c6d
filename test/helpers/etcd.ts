// Real etcd clusters for tests: 1 or 3 members on loopback, each on free
// ports with its own temporary data directory, started from the `etcd` binary
// (Debian's etcd-server), watched by PID, and stopped by PID with their
// directories removed, also when a test fails or the process exits early.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { type AddressInfo, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Why etcd tests cannot run here, or "" when they can. */
export function etcdSkipReason(): string {
  const r = spawnSync("etcd", ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return "needs the etcd binary (apt-get install etcd-server)";
  return "";
}

/** The etcd version string (`etcd --version`'s first line), for reports. */
export function etcdVersion(): string {
  return spawnSync("etcd", ["--version"], { encoding: "utf8" }).stdout.split("\n")[0] ?? "";
}

/** One member of a test cluster. */
export interface EtcdMember {
  readonly name: string;
  /** Client URL: `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** PID of the running process; undefined while it is down. */
  readonly pid: number | undefined;
  /** True while the process is stopped by SIGSTOP. */
  readonly paused: boolean;
  /** The member's log (etcd writes it to stderr). */
  log(): string;
}

export interface EtcdCluster {
  readonly members: readonly EtcdMember[];
  /** Every member's client URL. */
  readonly endpoints: readonly string[];
  /**
   * Sends `signal` to a member. SIGKILL (or SIGTERM) waits until it has exited;
   * SIGSTOP and SIGCONT pause and resume it.
   */
  kill(member: EtcdMember, signal: "SIGKILL" | "SIGTERM" | "SIGSTOP" | "SIGCONT"): Promise<void>;
  /** Starts a member that was killed again, on its ports and data, and waits until it is healthy. */
  restart(member: EtcdMember): Promise<void>;
  /** The member every running, unpaused member follows (waits up to `timeoutMs` for them to agree). */
  leader(timeoutMs?: number): Promise<EtcdMember>;
  /** Waits until every running, unpaused member reports healthy. */
  healthy(timeoutMs?: number): Promise<void>;
  /** Kills every member by PID, waits for them, removes the data directories. */
  stop(): Promise<void>;
}

class Member implements EtcdMember {
  child: ChildProcess | undefined;
  paused = false;
  exited: Promise<void> = Promise.resolve();
  constructor(
    readonly name: string,
    readonly endpoint: string,
    readonly peerUrl: string,
    readonly dataDir: string,
    readonly logFile: string,
  ) {}
  get pid(): number | undefined {
    return this.child?.pid;
  }
  log(): string {
    try {
      return readFileSync(this.logFile, "utf8");
    } catch {
      return "";
    }
  }
}

/** Every live member of every cluster, so an early exit still kills them. */
const live = new Set<Member>();
process.once("exit", () => {
  for (const m of live) {
    try {
      if (m.child?.pid) process.kill(m.child.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
});

async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Server>((resolve, reject) => {
          const s = createServer();
          s.once("error", reject);
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function post<T>(endpoint: string, path: string, body: unknown, timeoutMs = 1000): Promise<T> {
  const res = await fetch(`${endpoint}${path}`, {
    method: "POST",
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok) throw new Error(`${endpoint}${path}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

async function isHealthy(m: Member): Promise<boolean> {
  try {
    const res = await fetch(`${m.endpoint}/health`, { signal: AbortSignal.timeout(1000) });
    const body = (await res.json()) as { health?: string };
    return res.ok && body.health === "true";
  } catch {
    return false;
  }
}

/** Options of {@link startEtcd}. */
export interface StartEtcdOptions {
  /** Members: 1 or 3. */
  size: 1 | 3;
  /** etcd's --heartbeat-interval, ms. @default 100 (etcd's default) */
  heartbeatMs?: number;
  /** etcd's --election-timeout, ms. @default 1000 (etcd's default) */
  electionMs?: number;
  /** How long to wait for the cluster to become healthy. @default 30000 */
  startTimeoutMs?: number;
}

/** Starts a cluster on loopback and waits until every member is healthy. */
export async function startEtcd(options: StartEtcdOptions): Promise<EtcdCluster> {
  const { size, heartbeatMs = 100, electionMs = 1000, startTimeoutMs = 30_000 } = options;
  const root = mkdtempSync(join(tmpdir(), "dwcp-etcd-"));
  const ports = await freePorts(size * 2);
  const token = `dwcp-${process.pid}-${root.slice(-6)}`;
  const members = Array.from({ length: size }, (_, i) => {
    const dir = join(root, `m${i}`);
    return new Member(
      `m${i}`,
      `http://127.0.0.1:${ports[2 * i]}`,
      `http://127.0.0.1:${ports[2 * i + 1]}`,
      dir,
      join(root, `m${i}.log`),
    );
  });
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(",");

  function launch(m: Member): void {
    const out = openSync(m.logFile, "a");
    const child = spawn(
      "etcd",
      [
        `--name=${m.name}`,
        `--data-dir=${m.dataDir}`,
        `--listen-client-urls=${m.endpoint}`,
        `--advertise-client-urls=${m.endpoint}`,
        `--listen-peer-urls=${m.peerUrl}`,
        `--initial-advertise-peer-urls=${m.peerUrl}`,
        `--initial-cluster=${initialCluster}`,
        "--initial-cluster-state=new",
        `--initial-cluster-token=${token}`,
        `--heartbeat-interval=${heartbeatMs}`,
        `--election-timeout=${electionMs}`,
        "--logger=zap",
        "--log-level=warn",
      ],
      { stdio: ["ignore", out, out] },
    );
    closeSync(out);
    m.child = child;
    m.paused = false;
    m.exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.once("exit", () => {
      if (m.child === child) m.child = undefined;
      live.delete(m);
    });
    live.add(m);
  }

  async function healthy(timeoutMs = startTimeoutMs): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const up = members.filter((m) => m.child && !m.paused);
      const dead = members.filter((m) => m.child && m.child.exitCode !== null);
      if (dead.length > 0) throw new Error(`etcd ${dead[0]!.name} exited:\n${dead[0]!.log().slice(-2000)}`);
      const ok = await Promise.all(up.map(isHealthy));
      if (ok.every(Boolean)) return;
      if (Date.now() > until)
        throw new Error(
          `etcd not healthy within ${timeoutMs} ms: ${up
            .filter((_, i) => !ok[i])
            .map((m) => `${m.name}\n${m.log().slice(-1500)}`)
            .join("\n")}`,
        );
      await sleep(100);
    }
  }

  async function kill(
    member: EtcdMember,
    signal: "SIGKILL" | "SIGTERM" | "SIGSTOP" | "SIGCONT",
  ): Promise<void> {
    const m = member as Member;
    if (!m.child?.pid) throw new Error(`etcd ${m.name} is not running`);
    if (signal === "SIGKILL" || signal === "SIGTERM") {
      // A stopped process does not act on SIGTERM until it runs again.
      if (m.paused && signal === "SIGTERM") process.kill(m.child.pid, "SIGCONT");
      process.kill(m.child.pid, signal);
      await m.exited;
      m.paused = false;
      return;
    }
    process.kill(m.child.pid, signal);
    m.paused = signal === "SIGSTOP";
  }

  async function restart(member: EtcdMember): Promise<void> {
    const m = member as Member;
    if (m.child) throw new Error(`etcd ${m.name} is still running`);
    launch(m);
    const until = Date.now() + startTimeoutMs;
    while (!(await isHealthy(m))) {
      if (m.child === undefined)
        throw new Error(`etcd ${m.name} exited on restart:\n${m.log().slice(-2000)}`);
      if (Date.now() > until)
        throw new Error(`etcd ${m.name} not healthy after restart:\n${m.log().slice(-2000)}`);
      await sleep(100);
    }
  }

  async function leader(timeoutMs = 10_000): Promise<EtcdMember> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const up = members.filter((m) => m.child && !m.paused);
      const seen = await Promise.all(
        up.map(async (m) => {
          try {
            const st = await post<{ header?: { member_id?: string }; leader?: string }>(
              m.endpoint,
              "/v3/maintenance/status",
              {},
            );
            return { m, id: st.header?.member_id, leader: st.leader };
          } catch {
            return undefined;
          }
        }),
      );
      const ids = seen.filter((s) => s !== undefined);
      const leaders = new Set(ids.map((s) => s.leader));
      if (ids.length === up.length && leaders.size === 1) {
        const lead = ids.find((s) => s.id === [...leaders][0]);
        if (lead) return lead.m;
      }
      if (Date.now() > until) throw new Error("no etcd leader that every running member follows");
      await sleep(100);
    }
  }

  async function stop(): Promise<void> {
    await Promise.all(
      members.map(async (m) => {
        const pid = m.child?.pid;
        if (pid === undefined) return;
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Already gone.
        }
        await m.exited;
      }),
    );
    rmSync(root, { recursive: true, force: true });
  }

  for (const m of members) launch(m);
  try {
    await healthy();
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    members,
    endpoints: members.map((m) => m.endpoint),
    kill,
    restart,
    leader,
    healthy,
    stop,
  };
}
