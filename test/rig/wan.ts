// WAN emulator for tests and benchmarks (this kernel has no netem):
//
//   A (198.18.1.1) ── veth ── R (router) ── veth ── B (198.18.2.1)
//
// In R each egress port is a tbf bottleneck, and every forwarded packet is held
// for the one-way delay by nfqdelay (user space, NFQUEUE), so RTT = 2 × delay and
// TCP sees the real RTT, cwnd and losses. Namespaces are named per process, the
// addresses are RFC 2544 benchmarking space, and down() removes everything,
// ending only the nfqdelay process it started. Needs root, iproute2, iptables
// (xt NFQUEUE), a C compiler and libnetfilter-queue-dev.
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const ROOT = join(HERE, "..", "..");
const BUILD = join(ROOT, "build", "rig");

export const ADDR_A = "198.18.1.1";
export const ADDR_B = "198.18.2.1";

/** ICMP round trips measured across the rig by {@link WanRig.watchRtt}. */
export interface RttRecord {
  /** One per answered echo; `atMs` from the first echo. */
  samples: { atMs: number; rttMs: number }[];
  lost: number;
}

/**
 * Whether the rig held a nominal RTT: no second-long stretch (the median of each
 * run of `window` consecutive echoes) above `limitMs`, from `fromMs` on. Single
 * late echoes are not a profile change; a sustained rise is. Echoes before
 * `fromMs` are left out: a bandwidth probe fills the bottleneck's queue there,
 * and counting that would blame the rig for the traffic of the code under test.
 */
export function heldRtt(
  rec: RttRecord,
  limitMs: number,
  { window = 5, fromMs = 0 } = {},
): { held: boolean; worstMs: number } {
  const samples = rec.samples.filter((s) => s.atMs >= fromMs);
  let worst = 0;
  for (let i = 0; i + window <= samples.length; i++) {
    const w = samples
      .slice(i, i + window)
      .map((s) => s.rttMs)
      .sort((x, y) => x - y);
    worst = Math.max(worst, w[window >> 1]!);
  }
  return { held: samples.length >= window && worst <= limitMs, worstMs: worst };
}

/** A link profile. */
export interface WanProfile {
  /** tbf rate, e.g. "100mbit"; omit for no bandwidth limit. */
  rate?: string;
  /** One-way delay added in the router, ms (RTT = 2×). 0 = no NFQUEUE at all. */
  delayMs: number;
  /** Random loss per direction, percent. */
  lossPct?: number;
  /** tbf burst; must be at least rate/HZ. @default "64kb", or "512kb" from 500 Mbit/s up */
  burst?: string;
}

function run(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** Whether the rig can run here; when not, why (for a visible skip reason). */
export function wanRigAvailability(extra: readonly (readonly [tool: string, pkg: string])[] = []): {
  ok: boolean;
  reason: string;
} {
  if (process.platform !== "linux") return { ok: false, reason: "needs Linux network namespaces" };
  if (process.getuid?.() !== 0) return { ok: false, reason: "needs root (network namespaces, tc, iptables)" };
  for (const [tool, pkg] of [
    ["ip", "iproute2"],
    ["tc", "iproute2"],
    ["iptables", "iptables"],
    ["cc", "build-essential"],
    ["ping", "iputils-ping"],
    ...extra,
  ]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0)
      return { ok: false, reason: `needs ${tool} (Debian: ${pkg})` };
  }
  if (!existsSync("/usr/include/libnetfilter_queue/libnetfilter_queue.h")) {
    return { ok: false, reason: "needs libnetfilter-queue-dev" };
  }
  const probe = `dwcpprobe${process.pid}`;
  const r = spawnSync("ip", ["netns", "add", probe]);
  spawnSync("ip", ["netns", "del", probe]);
  if (r.status !== 0) return { ok: false, reason: `cannot create a network namespace: ${r.stderr}` };
  return { ok: true, reason: "" };
}

/** Builds nfqdelay once (into build/rig). */
export function buildNfqdelay(): string {
  const bin = join(BUILD, "nfqdelay");
  const src = join(HERE, "nfqdelay.c");
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(BUILD, { recursive: true });
    run("cc", ["-O2", "-Wall", src, "-o", bin, "-lnetfilter_queue"]);
  }
  return bin;
}

let instances = 0;

/** One emulated WAN path; create with {@link WanRig.up}. */
export class WanRig {
  readonly a: string;
  readonly r: string;
  readonly b: string;
  #delay: ChildProcess | undefined;
  #profile: WanProfile;

  private constructor(profile: WanProfile) {
    const tag = `${process.pid}x${++instances}`;
    this.a = `dwcpA${tag}`;
    this.r = `dwcpR${tag}`;
    this.b = `dwcpB${tag}`;
    this.#profile = profile;
  }

  static async up(profile: WanProfile): Promise<WanRig> {
    const rig = new WanRig(profile);
    try {
      for (const n of [rig.a, rig.r, rig.b]) {
        run("ip", ["netns", "add", n]);
        run("ip", ["-n", n, "link", "set", "lo", "up"]);
      }
      run("ip", ["link", "add", "a0", "netns", rig.a, "type", "veth", "peer", "name", "ra", "netns", rig.r]);
      run("ip", ["link", "add", "b0", "netns", rig.b, "type", "veth", "peer", "name", "rb", "netns", rig.r]);
      run("ip", ["-n", rig.a, "addr", "add", `${ADDR_A}/24`, "dev", "a0"]);
      run("ip", ["-n", rig.r, "addr", "add", "198.18.1.254/24", "dev", "ra"]);
      run("ip", ["-n", rig.b, "addr", "add", `${ADDR_B}/24`, "dev", "b0"]);
      run("ip", ["-n", rig.r, "addr", "add", "198.18.2.254/24", "dev", "rb"]);
      for (const [ns, dev] of [
        [rig.a, "a0"],
        [rig.b, "b0"],
        [rig.r, "ra"],
        [rig.r, "rb"],
      ] as const) {
        run("ip", ["-n", ns, "link", "set", dev, "up"]);
      }
      run("ip", ["-n", rig.a, "route", "add", "default", "via", "198.18.1.254"]);
      run("ip", ["-n", rig.b, "route", "add", "default", "via", "198.18.2.254"]);
      run("ip", ["netns", "exec", rig.r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      await rig.shape(profile);
      return rig;
    } catch (err) {
      await rig.down();
      throw err;
    }
  }

  get profile(): WanProfile {
    return this.#profile;
  }

  /** Changes the link in place: bottleneck rate and/or delay and loss. */
  async shape(profile: WanProfile): Promise<void> {
    this.#profile = profile;
    this.setRate(profile.rate, profile.burst);
    await this.#setDelay(profile.delayMs, profile.lossPct ?? 0);
  }

  /**
   * Changes only the bottleneck's rate, in place (`tc qdisc replace`): the delay
   * emulator and the packets it holds stay, so a trace can step or ramp the rate
   * under a running transfer. `rate` undefined removes the limit.
   */
  setRate(rate: string | undefined, burst?: string): void {
    const { rate: _rate, burst: _burst, ...rest } = this.#profile;
    this.#profile = { ...rest, ...(rate ? { rate } : {}), ...(burst ? { burst } : {}) };
    for (const dev of ["ra", "rb"]) {
      if (!rate) {
        spawnSync("ip", ["netns", "exec", this.r, "tc", "qdisc", "del", "dev", dev, "root"]);
        continue;
      }
      const mbit = Number.parseFloat(rate) * (rate.endsWith("gbit") ? 1000 : 1);
      const b = burst ?? (mbit >= 500 ? "512kb" : "64kb");
      run("ip", [
        "netns",
        "exec",
        this.r,
        "tc",
        "qdisc",
        "replace",
        "dev",
        dev,
        "root",
        "tbf",
        "rate",
        rate,
        "burst",
        b,
        "latency",
        "50ms",
      ]);
    }
  }

  async #setDelay(delayMs: number, lossPct: number): Promise<void> {
    await this.#stopDelay();
    spawnSync("ip", ["netns", "exec", this.r, "iptables", "-t", "mangle", "-F", "FORWARD"]);
    if (delayMs <= 0 && lossPct <= 0) return;
    const bin = buildNfqdelay();
    this.#delay = spawn("ip", ["netns", "exec", this.r, bin, "0", `${delayMs}`, `${lossPct}`], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    // Wait until the queue is bound before steering packets into it.
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("nfqdelay did not start")), 5000);
      this.#delay!.stderr!.on("data", (d) => {
        if (String(d).includes("nfqdelay: queue")) {
          clearTimeout(t);
          resolve();
        }
      });
      this.#delay!.once("exit", (code) => reject(new Error(`nfqdelay exited with ${code}`)));
    });
    // No --queue-bypass: if the emulator dies, traffic stops instead of silently losing its delay.
    run("ip", [
      "netns",
      "exec",
      this.r,
      "iptables",
      "-t",
      "mangle",
      "-A",
      "FORWARD",
      "-j",
      "NFQUEUE",
      "--queue-num",
      "0",
    ]);
  }

  async #stopDelay(): Promise<void> {
    const p = this.#delay;
    this.#delay = undefined;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill("SIGTERM");
    await exited;
  }

  /**
   * Measures the path's RTT independently of DWCP: an ICMP echo from A to B every
   * `intervalMs`, through the same bottleneck and delay emulator. Tests use it to
   * tell a wrong decision of DWCP's from an emulator that did not hold its profile.
   */
  watchRtt(intervalMs = 200): { stop(): Promise<RttRecord> } {
    const [cmd, ...args] = this.exec(this.a, ["ping", "-n", "-i", `${intervalMs / 1000}`, ADDR_B]);
    const p = spawn(cmd!, args, { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    p.stdout!.on("data", (d) => {
      out += d;
    });
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    return {
      async stop() {
        if (p.exitCode === null) p.kill("SIGINT");
        await exited;
        const samples = [...out.matchAll(/icmp_seq=(\d+) .*time=([\d.]+) ms/g)].map((m) => ({
          atMs: (Number(m[1]) - 1) * intervalMs,
          rttMs: Number(m[2]),
        }));
        const sent = Number(/(\d+) packets transmitted/.exec(out)?.[1] ?? samples.length);
        return { samples, lost: Math.max(0, sent - samples.length) };
      },
    };
  }

  /** Command prefix that runs a program inside namespace `ns`. */
  exec(ns: string, cmd: string[]): string[] {
    return ["ip", "netns", "exec", ns, ...cmd];
  }

  /** Removes everything this rig made. */
  async down(): Promise<void> {
    await this.#stopDelay();
    for (const n of [this.a, this.r, this.b]) spawnSync("ip", ["netns", "del", n]);
  }
}

/** Calls `onLine` with each line `child` writes on stdout. */
export function onLines(child: ChildProcess, onLine: (line: string) => void): void {
  let buf = "";
  child.stdout!.on("data", (d) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

/**
 * Goodput of one iperf3 stream from A to B across the rig, bits/s (payload, at
 * the receiver), after `omitS` seconds of slow start.
 */
export function iperf3Goodput(
  rig: WanRig,
  o: { cc: string; seconds: number; omitS: number; port?: number },
): number {
  const port = `${o.port ?? 5201}`;
  const server = spawn("ip", ["netns", "exec", rig.b, "iperf3", "-s", "-1", "-B", ADDR_B, "-p", port], {
    stdio: "ignore",
  });
  try {
    execFileSync("sleep", ["0.5"]);
    const out = execFileSync(
      "ip",
      [
        "netns",
        "exec",
        rig.a,
        "iperf3",
        "-c",
        ADDR_B,
        "-p",
        port,
        "-C",
        o.cc,
        "-t",
        `${o.seconds}`,
        "-O",
        `${o.omitS}`,
        "-J",
      ],
      { encoding: "utf8" },
    );
    return (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received
      .bits_per_second;
  } finally {
    server.kill();
  }
}
