// Real QEMU guests for migration tests and benchmarks: the test guest from
// test/rig/qemu-guest.sh (built once, cached), its serial console read line by
// line with host timestamps, its QMP connected. Every process is ours, ended by
// its PID; every /dev/shm file and socket directory is removed after.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Qmp } from "../../src/qemu/qmp.js";
import { ROOT } from "./child.js";

/** Host clock for console lines, ms. */
const now = () => performance.now();

function findGuest(): { kernel: string; initrd: string } | string {
  try {
    execFileSync("qemu-system-x86_64", ["--version"], { stdio: "ignore" });
  } catch {
    return "qemu-system-x86_64 is not installed (Debian: qemu-system-x86; .ci/run installs it)";
  }
  try {
    const out = execFileSync(join(ROOT, "test/rig/qemu-guest.sh"), {
      encoding: "utf8",
      timeout: 600_000,
    }).trim();
    const [kernel, initrd] = out.split(/\s+/);
    if (!kernel || !initrd) return `test/rig/qemu-guest.sh printed ${JSON.stringify(out)}`;
    return { kernel, initrd };
  } catch (err) {
    return `test/rig/qemu-guest.sh failed (needs root and apt the first time): ${(err as Error).message.split("\n")[0]}`;
  }
}

let guest: ReturnType<typeof findGuest> | undefined;
/** Why QEMU tests cannot run here ("" when they can). */
export function qemuSkipReason(): string {
  guest ??= findGuest();
  return typeof guest === "string" ? guest : "";
}

/** A line of a guest's serial console, with when the host read it. */
export interface ConsoleLine {
  t: number;
  text: string;
}

export interface GuestOptions {
  /** Guest RAM, MiB. @default 256 */
  memMiB?: number;
  /** The guest's changing region, MiB. @default 32 */
  dataMiB?: number;
  /** Chunks (1 MiB) rewritten per beat. @default 1 */
  dirty?: number;
  /** Seconds between beats. @default 0.2 */
  beat?: number;
  /** Full check every N beats. @default 10 */
  verify?: number;
  /** RAM as a shared file in /dev/shm (pages mode). @default false */
  sharedMemory?: boolean;
  /** Start paused for an incoming migration (`-incoming defer`). @default false */
  incoming?: boolean;
  /** Names its files. */
  name: string;
  /** Runs QEMU under this command prefix (a rig namespace's `ip netns exec NS`). */
  prefix?: string[];
}

/** One QEMU process, its console and its QMP. */
export class Guest {
  readonly lines: ConsoleLine[] = [];
  qmp!: Qmp;
  memPath: string | undefined;
  readonly dir: string;
  /** A second QMP socket, for an agent while `qmp` stays the test's. */
  readonly agentQmpPath: string;
  readonly #proc: ChildProcess;
  readonly exited: Promise<string>;
  #waiters: (() => void)[] = [];

  constructor(proc: ChildProcess, dir: string, memPath: string | undefined) {
    this.#proc = proc;
    this.dir = dir;
    this.agentQmpPath = join(dir, "agent.qmp");
    this.memPath = memPath;
    let partial = "";
    const onData = (d: Buffer) => {
      const t = now();
      partial += d.toString("latin1");
      let nl = partial.indexOf("\n");
      while (nl >= 0) {
        const text = partial.slice(0, nl).replace(/\r$/, "");
        partial = partial.slice(nl + 1);
        this.lines.push({ t, text });
        nl = partial.indexOf("\n");
      }
      for (const w of this.#waiters.splice(0)) w();
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    this.exited = new Promise((r) => proc.once("exit", (code, sig) => r(`${code ?? sig}`)));
  }

  get pid(): number {
    return this.#proc.pid!;
  }

  /** The first console line from index `from` on that matches `re`; rejects after `ms`. */
  async waitLine(re: RegExp, ms: number, from = 0): Promise<ConsoleLine & { index: number }> {
    const deadline = now() + ms;
    for (;;) {
      for (let i = from; i < this.lines.length; i++)
        if (re.test(this.lines[i]!.text)) return { ...this.lines[i]!, index: i };
      from = this.lines.length;
      const left = deadline - now();
      if (left <= 0)
        throw new Error(`no console line matching ${re} within ${ms} ms; last lines: ${this.tail()}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, Math.min(left, 1000));
        this.#waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }

  /** Beats seen: [n, host time]. */
  beats(from = 0): { n: number; t: number; sum: string }[] {
    const out: { n: number; t: number; sum: string }[] = [];
    for (const l of this.lines.slice(from)) {
      const m = /DWCP-GUEST BEAT (\d+) (\w+)/.exec(l.text);
      if (m) out.push({ n: Number(m[1]), t: l.t, sum: m[2]! });
    }
    return out;
  }

  tail(n = 5): string {
    return JSON.stringify(this.lines.slice(-n).map((l) => l.text));
  }

  async stop(): Promise<void> {
    this.qmp?.close();
    if (this.#proc.exitCode === null && this.#proc.signalCode === null) this.#proc.kill("SIGKILL");
    await this.exited;
    if (this.memPath) rmSync(this.memPath, { force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts a test guest (or an empty QEMU waiting for one) and connects its QMP. */
export async function startGuest(o: GuestOptions): Promise<Guest> {
  const g = qemuSkipReason() ? undefined : (guest as { kernel: string; initrd: string });
  if (!g) throw new Error(qemuSkipReason());
  const mem = o.memMiB ?? 256;
  const dir = mkdtempSync(join(tmpdir(), `dwcp-qemu-${o.name}-`));
  const memPath = o.sharedMemory ? `/dev/shm/dwcp-${o.name}-${process.pid}-${Date.now()}` : undefined;
  // The backend keeps the default RAM block's name (pc.ram), so a guest on a
  // shared file and one on anonymous memory migrate to each other.
  const args = [
    "-accel",
    "tcg",
    // The Soft-RoCE guest's CPU model: no AVX, which QEMU 7.2's TCG is new at.
    "-cpu",
    "Nehalem",
    "-smp",
    "1",
    "-m",
    `${mem}`,
    ...(memPath
      ? [
          "-object",
          `memory-backend-file,id=pc.ram,size=${mem}M,mem-path=${memPath},share=on`,
          "-machine",
          "memory-backend=pc.ram",
        ]
      : []),
    "-display",
    "none",
    "-serial",
    "stdio",
    "-monitor",
    "none",
    "-no-reboot",
    "-nic",
    "none",
    "-qmp",
    `unix:${join(dir, "qmp.sock")},server=on,wait=off`,
    "-qmp",
    `unix:${join(dir, "agent.qmp")},server=on,wait=off`,
    "-kernel",
    g.kernel,
    "-initrd",
    g.initrd,
    "-append",
    `console=ttyS0 quiet dwcp.data=${o.dataMiB ?? 32} dwcp.dirty=${o.dirty ?? 1} dwcp.beat=${o.beat ?? 0.2} dwcp.verify=${o.verify ?? 10}`,
    ...(o.incoming ? ["-incoming", "defer"] : []),
  ];
  const [cmd, ...rest] = [...(o.prefix ?? []), "qemu-system-x86_64", ...args];
  const proc = spawn(cmd!, rest, { stdio: ["ignore", "pipe", "pipe"] });
  const guestProc = new Guest(proc, dir, memPath);
  // QMP's socket appears once QEMU set up; retry until it answers.
  const deadline = now() + 30_000;
  for (;;) {
    try {
      guestProc.qmp = await Qmp.connect(join(dir, "qmp.sock"), { timeoutMs: 10_000 });
      break;
    } catch (err) {
      if (now() > deadline || proc.exitCode !== null) {
        await guestProc.stop();
        throw new Error(`QEMU's QMP did not answer: ${(err as Error).message}; ${guestProc.tail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return guestProc;
}
