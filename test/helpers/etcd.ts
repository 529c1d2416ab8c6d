// Real etcd clusters for tests: 1 or 3 members, each with its own temporary
// data directory, started from the `etcd` binary (Debian's etcd-server),
// watched by PID, and stopped by PID with their directories removed, also when
// a test fails or the process exits early.
//
// By default the members listen on loopback on free ports. With `netns` each
// member runs in its own network namespace, the members reach each other
// through a bridge in a hub namespace (198.18.10.0/24, benchmarking space),
// and clients reach each member on a unix socket in its directory (a socket
// file crosses namespaces, so this process needs no interface of its own):
// `partition(member)` then drops the member's traffic to and from the others
// with iptables inside its namespace, and `heal(member)` lets it through again.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { request as tlsRequest } from "node:https";
import { type AddressInfo, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Why etcd tests cannot run here, or "" when they can. */
export function etcdSkipReason(): string {
  const r = spawnSync("etcd", ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return "needs the etcd binary (apt-get install etcd-server)";
  return "";
}

/** Why clusters with a namespace per member cannot run here, or "" when they can. */
export function etcdNetnsSkipReason(): string {
  const base = etcdSkipReason();
  if (base) return base;
  if (process.platform !== "linux") return "needs Linux network namespaces";
  if (process.getuid?.() !== 0) return "needs root (network namespaces, iptables)";
  for (const tool of ["ip", "iptables"])
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `needs ${tool}`;
  const probe = `dwcpeprobe${process.pid}`;
  const r = spawnSync("ip", ["netns", "add", probe], { encoding: "utf8" });
  spawnSync("ip", ["netns", "del", probe]);
  if (r.status !== 0) return `cannot create a network namespace: ${r.stderr.trim()}`;
  return "";
}

/** The etcd version string (`etcd --version`'s first line), for reports. */
export function etcdVersion(): string {
  return spawnSync("etcd", ["--version"], { encoding: "utf8" }).stdout.split("\n")[0] ?? "";
}

/** One member of a test cluster. */
export interface EtcdMember {
  readonly name: string;
  /** Client URL: `http://127.0.0.1:<port>`, or `unix:///<dir>/client.sock:0` with `netns`. */
  readonly endpoint: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** PID of the running process; undefined while it is down. */
  readonly pid: number | undefined;
  /** True while the process is stopped by SIGSTOP. */
  readonly paused: boolean;
  /** True while {@link EtcdCluster.partition} cuts it off from the other members. */
  readonly partitioned: boolean;
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
  /** Cuts `member` off from the other members (both directions); clients still reach it. Needs `netns`. */
  partition(member: EtcdMember): void;
  /** Ends a {@link partition}. */
  heal(member: EtcdMember): void;
  /** The member every running, unpaused, unpartitioned member follows (waits up to `timeoutMs` for them to agree). */
  leader(timeoutMs?: number): Promise<EtcdMember>;
  /** Waits until every running, unpaused member reports healthy. */
  healthy(timeoutMs?: number): Promise<void>;
  /** Kills every member by PID, waits for them, removes the data directories. */
  stop(): Promise<void>;
}

class Member implements EtcdMember {
  child: ChildProcess | undefined;
  paused = false;
  partitioned = false;
  exited: Promise<void> = Promise.resolve();
  constructor(
    readonly name: string,
    readonly endpoint: string,
    readonly peerUrl: string,
    readonly dataDir: string,
    readonly logFile: string,
    /** With `netns`: the member's namespace and its client socket. */
    readonly ns?: { name: string; socket: string },
    /** With `tls`: what this process presents to the member's client port. */
    readonly tls?: EtcdTlsFiles,
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

/** Every live member and namespace of every cluster, so an early exit still removes them. */
const live = new Set<Member>();
const liveNamespaces = new Set<string>();
process.once("exit", () => {
  for (const m of live) {
    try {
      if (m.child?.pid) process.kill(m.child.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  for (const ns of liveNamespaces) spawnSync("ip", ["netns", "del", ns]);
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

/** A JSON request to a member's HTTP gateway (over TCP, or its unix socket). */
function httpJson<T>(m: Member, path: string, body?: unknown, timeoutMs = 1000): Promise<T> {
  const target = m.ns
    ? { socketPath: m.ns.socket }
    : { host: "127.0.0.1", port: Number(new URL(m.endpoint).port) };
  const send = m.tls ? tlsRequest : request;
  const tls = m.tls ? { ca: m.tls.ca, cert: m.tls.cert, key: m.tls.key } : {};
  return new Promise<T>((resolve, reject) => {
    const req = send(
      { ...target, ...tls, path, method: body === undefined ? "GET" : "POST", timeout: timeoutMs },
      (res) => {
        let data = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          data += chunk;
        });
        res.on("end", () => {
          try {
            if (res.statusCode !== 200) throw new Error(`${m.name} ${path}: HTTP ${res.statusCode}`);
            resolve(JSON.parse(data) as T);
          } catch (err) {
            reject(err);
          }
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${m.name} ${path}: no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function isHealthy(m: Member): Promise<boolean> {
  try {
    return (await httpJson<{ health?: string }>(m, "/health")).health === "true";
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** The hub namespace, its bridge and one namespace per member, each on the bridge. */
function buildNetwork(hub: string, members: readonly Member[]): void {
  liveNamespaces.add(hub);
  run("ip", ["netns", "add", hub]);
  run("ip", ["-n", hub, "link", "set", "lo", "up"]);
  run("ip", ["-n", hub, "link", "add", "br0", "type", "bridge"]);
  run("ip", ["-n", hub, "link", "set", "br0", "up"]);
  members.forEach((m, i) => {
    const ns = m.ns!.name;
    liveNamespaces.add(ns);
    run("ip", ["netns", "add", ns]);
    run("ip", ["-n", ns, "link", "set", "lo", "up"]);
    run("ip", ["link", "add", `p${i}`, "netns", hub, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    run("ip", ["-n", hub, "link", "set", `p${i}`, "master", "br0"]);
    run("ip", ["-n", hub, "link", "set", `p${i}`, "up"]);
    run("ip", ["-n", ns, "addr", "add", `${NET}.${i + 1}/24`, "dev", "eth0"]);
    run("ip", ["-n", ns, "link", "set", "eth0", "up"]);
  });
}

/** Members' addresses with `netns` (RFC 2544 benchmarking space, inside the rig's own namespaces only). */
const NET = "198.18.10";
let clusters = 0;

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
  /** Each member in its own network namespace, so it can be partitioned (see the file's head). @default false */
  netns?: boolean;
  /**
   * Client port on TLS (loopback only): the members serve `server` and accept
   * only clients with a certificate signed by `ca` (etcd's --client-cert-auth);
   * the rig itself presents `client`. @default plain HTTP
   */
  tls?: { ca: string; server: { cert: string; key: string }; client: { cert: string; key: string } };
}

/** PEM material the rig presents to a TLS member. */
interface EtcdTlsFiles {
  ca: string;
  cert: string;
  key: string;
}

/** Starts a cluster on loopback and waits until every member is healthy. */
export async function startEtcd(options: StartEtcdOptions): Promise<EtcdCluster> {
  const { size, heartbeatMs = 100, electionMs = 1000, startTimeoutMs = 30_000, netns = false, tls } = options;
  if (tls && netns) throw new Error("tls is for loopback clusters");
  const root = mkdtempSync(join(tmpdir(), "dwcp-etcd-"));
  const ports = netns ? [] : await freePorts(size * 2);
  const token = `dwcp-${process.pid}-${root.slice(-6)}`;
  const tag = `dwcpe${process.pid}x${++clusters}`;
  const hub = `${tag}h`;
  const members = Array.from({ length: size }, (_, i) => {
    const dir = join(root, `m${i}`);
    mkdirSync(dir);
    if (netns) {
      // etcd names a unix listener "<host>:<port>" in its working directory.
      const socket = join(dir, "client.sock:0");
      return new Member(
        `m${i}`,
        `unix://${socket}`,
        `http://${NET}.${i + 1}:2380`,
        join(dir, "data"),
        join(root, `m${i}.log`),
        {
          name: `${tag}m${i}`,
          socket,
        },
      );
    }
    return new Member(
      `m${i}`,
      `${tls ? "https" : "http"}://127.0.0.1:${ports[2 * i]}`,
      `http://127.0.0.1:${ports[2 * i + 1]}`,
      join(dir, "data"),
      join(root, `m${i}.log`),
      undefined,
      tls && { ca: tls.ca, ...tls.client },
    );
  });
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(",");
  if (netns) {
    try {
      buildNetwork(hub, members);
    } catch (err) {
      removeNetwork();
      rmSync(root, { recursive: true, force: true });
      throw err;
    }
  }

  function removeNetwork(): void {
    if (!netns) return;
    for (const ns of [...members.map((m) => m.ns!.name), hub]) {
      spawnSync("ip", ["netns", "del", ns]);
      liveNamespaces.delete(ns);
    }
  }

  function launch(m: Member): void {
    const out = openSync(m.logFile, "a");
    const client = m.ns ? "unix://client.sock:0" : m.endpoint;
    const args = [
      `--name=${m.name}`,
      `--data-dir=${m.dataDir}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${m.peerUrl}`,
      `--initial-advertise-peer-urls=${m.peerUrl}`,
      `--initial-cluster=${initialCluster}`,
      "--initial-cluster-state=new",
      `--initial-cluster-token=${token}`,
      `--heartbeat-interval=${heartbeatMs}`,
      `--election-timeout=${electionMs}`,
      "--logger=zap",
      "--log-level=warn",
    ];
    if (tls) {
      const dir = join(m.dataDir, "..");
      writeFileSync(join(dir, "ca.crt"), tls.ca);
      writeFileSync(join(dir, "server.crt"), tls.server.cert);
      writeFileSync(join(dir, "server.key"), tls.server.key, { mode: 0o600 });
      args.push(
        `--trusted-ca-file=${join(dir, "ca.crt")}`,
        `--cert-file=${join(dir, "server.crt")}`,
        `--key-file=${join(dir, "server.key")}`,
        "--client-cert-auth",
      );
    }
    // `ip netns exec` execs etcd in place: the child's PID is etcd's.
    const child = m.ns
      ? spawn("ip", ["netns", "exec", m.ns.name, "etcd", ...args], {
          cwd: join(m.dataDir, ".."),
          stdio: ["ignore", out, out],
        })
      : spawn("etcd", args, { stdio: ["ignore", out, out] });
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
      const up = members.filter((m) => m.child && !m.paused && !m.partitioned);
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
      const up = members.filter((m) => m.child && !m.paused && !m.partitioned);
      const seen = await Promise.all(
        up.map(async (m) => {
          try {
            const st = await httpJson<{ header?: { member_id?: string }; leader?: string }>(
              m,
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

  function iptables(m: Member, args: string[]): void {
    if (!m.ns) throw new Error("partitions need a cluster started with netns");
    for (const chain of [
      ["INPUT", "-s"],
      ["OUTPUT", "-d"],
    ] as const)
      run("ip", [
        "netns",
        "exec",
        m.ns.name,
        "iptables",
        ...args,
        chain[0],
        chain[1],
        `${NET}.0/24`,
        "-j",
        "DROP",
      ]);
  }

  function partition(member: EtcdMember): void {
    const m = member as Member;
    if (m.partitioned) return;
    iptables(m, ["-A"]);
    m.partitioned = true;
  }

  function heal(member: EtcdMember): void {
    const m = member as Member;
    if (!m.partitioned) return;
    iptables(m, ["-D"]);
    m.partitioned = false;
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
    removeNetwork();
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
    partition,
    heal,
    leader,
    healthy,
    stop,
  };
}
