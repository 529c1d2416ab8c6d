// `npm run bench -- transport-loopback` (1 MiB messages) and `-- transport-small`
// (4 KiB messages): agent↔agent throughput on loopback, DWCP on one TCP stream
// and on AMST bundles of 2 and 4 streams, against, in the same rounds:
//   iperf3 (single stream, -l = message size), a plain Node `net` socket
//   (writes of the message size, with backpressure), and zeromq PUSH/PULL.
// With 1 MiB messages also a C reference (bench/c/frames_ref.c, needs cc and
// libisal-dev): DWCP's frames and CRC-32C both ways with no JavaScript and no
// session protocol, the ceiling of a native data plane on this machine.
// Every run times 4 GiB (1M messages of 4 KiB) after a warm-up of 1 GiB that is
// not timed (iperf3: its first second, -O 1): a JavaScript agent ran its first
// half GiB at ~2/3 of its later rate (JIT tiers), and agents are long-lived. Each
// side of each contender runs in its own process (bench/lib/loopback-agent.mjs:
// plain JavaScript on the compiled library, rebuilt first, each process loading
// only its own contender). Throughput is measured at the receiver, from the end
// of the warm-up to its last byte; for DWCP the sender also waits for the
// acknowledgement of the last message.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SMALL = process.env.BENCH_TRANSPORT === "small";
const SIZE = SMALL
  ? { label: "4KiB", bytes: 4096, total: 4 * 2 ** 30, warm: 2 ** 30 }
  : { label: "1MiB", bytes: 1 << 20, total: 4 * 2 ** 30, warm: 2 ** 30 };

interface Measure {
  bytes: number;
  messages: number;
  seconds: number;
  /** CPU seconds (user + system, all threads) of the sending and receiving process during the transfer. */
  txCpu: number;
  rxCpu: number;
}

/** An agent's result line: the receiver's measure, the sender's CPU. */
interface AgentLine {
  bytes: number;
  messages: number;
  seconds: number;
  cpuSeconds: number;
}

// ------------------------------------------------------------------ parent

const AGENT = fileURLToPath(new URL("./lib/loopback-agent.mjs", import.meta.url));

function start(args: string[]): ChildProcess {
  return spawn(process.execPath, [AGENT, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
}

/** Reads a child's stdout line by line; the returned function rejects on exit or timeout. */
function lineReader(child: ChildProcess): (timeoutMs: number) => Promise<string> {
  const lines: string[] = [];
  const waiters: ((l: string | null) => void)[] = [];
  let buf = "";
  let exited = false;
  child.stdout!.on("data", (d) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  child.on("exit", () => {
    exited = true;
    for (const w of waiters.splice(0)) w(null);
  });
  return (timeoutMs) =>
    new Promise<string>((resolve, reject) => {
      const ready = lines.shift();
      if (ready !== undefined) return resolve(ready);
      if (exited) return reject(new Error("child exited"));
      const timer = setTimeout(() => reject(new Error(`no output from child in ${timeoutMs} ms`)), timeoutMs);
      waiters.push((l) => {
        clearTimeout(timer);
        if (l === null) reject(new Error("child exited"));
        else resolve(l);
      });
    });
}

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));

/** CPU seconds (user + system, every thread) a running process has used so far. */
function processCpu(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which is in parentheses and may hold spaces.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime (fields 14 and 15)
}

/**
 * The receiver's result line and the sender's CPU line (read from `tx`, just
 * started) as one measure: the sender's CPU from the receiver's "measuring"
 * (the end of the warm-up) to its exit.
 */
async function measure(next: (timeoutMs: number) => Promise<string>, tx: ChildProcess): Promise<Measure> {
  const nextTx = lineReader(tx);
  // A contender that stalls must not hang the whole run.
  const mark = await next(120_000);
  if (mark !== "measuring") throw new Error(`receiver said ${JSON.stringify(mark)}, not "measuring"`);
  const txCpu0 = processCpu(tx.pid!);
  const r = JSON.parse(await next(120_000)) as AgentLine;
  const t = JSON.parse(await nextTx(30_000)) as Pick<AgentLine, "cpuSeconds">;
  if (tx.exitCode === null) await once(tx, "exit");
  return {
    bytes: r.bytes,
    messages: r.messages,
    seconds: r.seconds,
    txCpu: t.cpuSeconds - txCpu0,
    rxCpu: r.cpuSeconds,
  };
}

async function runPair(kind: string, size: number, total: number, warm: number): Promise<Measure> {
  const rx = start(["--receiver", kind, `${size}`, `${total}`, `${warm}`]);
  const next = lineReader(rx);
  let tx: ChildProcess | undefined;
  try {
    const port = Number(/port (\d+)/.exec(await next(30_000))![1]);
    tx = start(["--sender", kind, `${size}`, `${total}`, `${port}`, `${warm}`]);
    return await measure(next, tx);
  } finally {
    tx?.kill();
    rx.kill();
  }
}

/** iperf3 has no warm-up by bytes: it omits its first second (`-O 1`; `-n` counts after it). */
function iperf3(size: number, total: number): Measure {
  const port = 5299 + Math.floor(Math.random() * 500);
  const server = spawn("iperf3", ["-s", "-1", "-B", "127.0.0.1", "-p", `${port}`], { stdio: "ignore" });
  try {
    execFileSync("sleep", ["0.3"]);
    const out = execFileSync(
      "iperf3",
      ["-c", "127.0.0.1", "-p", `${port}`, "-n", `${total}`, "-l", `${size}`, "-O", "1", "-J"],
      { encoding: "utf8" },
    );
    const j = JSON.parse(out) as {
      end: {
        sum_received: { bytes: number; seconds: number };
        sum_sent: { seconds: number };
        // Percent of one core over the test: host = the client (sender), remote = the server.
        cpu_utilization_percent: { host_total: number; remote_total: number };
      };
    };
    const cpu = j.end.cpu_utilization_percent;
    return {
      bytes: j.end.sum_received.bytes,
      messages: Math.ceil(total / size),
      seconds: j.end.sum_received.seconds,
      txCpu: (cpu.host_total / 100) * j.end.sum_sent.seconds,
      rxCpu: (cpu.remote_total / 100) * j.end.sum_received.seconds,
    };
  } finally {
    server.kill();
  }
}

/** Builds the C reference; undefined (with the reason printed) when it cannot be built. */
function buildFramesRef(workDir: string): string | undefined {
  mkdirSync(workDir, { recursive: true });
  const bin = join(workDir, "frames_ref");
  const src = fileURLToPath(new URL("./c/frames_ref.c", import.meta.url));
  try {
    execFileSync("cc", ["-O3", "-march=native", src, "-o", bin, "-lisal"], { stdio: "pipe" });
    return bin;
  } catch (err) {
    console.error(
      `c-frames reference skipped: cannot build it (cc and libisal-dev needed): ${(err as Error).message.split("\n")[0]}`,
    );
    return undefined;
  }
}

async function framesRef(bin: string, size: number, total: number, warm: number): Promise<Measure> {
  const rx = spawn(bin, ["rx", `${size}`, `${total}`, `${warm}`], { stdio: ["ignore", "pipe", "inherit"] });
  const next = lineReader(rx);
  let tx: ChildProcess | undefined;
  try {
    const port = Number(/port (\d+)/.exec(await next(10_000))![1]);
    tx = spawn(bin, ["tx", `${size}`, `${total}`, `${port}`, `${warm}`], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const m = await measure(next, tx);
    if (tx.exitCode !== 0) throw new Error(`frames_ref tx exited with ${tx.exitCode}`);
    return m;
  } finally {
    tx?.kill();
    rx.kill();
  }
}

function haveIperf3(): boolean {
  try {
    execFileSync("iperf3", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  if (!haveIperf3()) {
    console.error("iperf3 is required (Debian: apt-get install iperf3)");
    process.exit(1);
  }
  const { median, nativeInUse, round, WORK_DIR, writeResult } = await import("./lib/result.js");
  // The agents run the compiled library: compile the sources being measured.
  execFileSync(
    process.execPath,
    [
      fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url)),
      "-p",
      "tsconfig.build.json",
    ],
    { stdio: "inherit" },
  );
  const ref = SMALL ? undefined : buildFramesRef(WORK_DIR);
  // DWCP_BENCH_BASE (a checkout of another commit, built): the same sessions on
  // that build, interleaved with this one's, for before/after ratios in one run.
  const base = process.env.DWCP_BENCH_BASE;
  if (base) execFileSync("npm", ["run", "build:ts"], { cwd: base, stdio: "inherit" });
  const all = [
    "dwcp",
    "dwcp-lent",
    "dwcp-mac",
    "dwcp-lent-mac",
    ...(base ? ["base:dwcp", "base:dwcp-lent"] : []),
    "amst-2",
    "amst-4",
    "amst-2-lent",
    "amst-4-lent",
    "iperf3",
    "net",
    "zeromq",
    ...(ref ? ["c-frames"] : []),
  ];
  // BENCH_CONTENDERS=a,b,…: only these (a shorter run for one comparison).
  const only = process.env.BENCH_CONTENDERS?.split(",");
  const contenders = only ? all.filter((c) => only.includes(c)) : all;
  // CPU per GB moved, each side: what a transfer costs whatever the speed. On a
  // host whose cores are all busy, cores ÷ (sender + receiver) is the rate no
  // scheduling can beat.
  const samples: Record<
    string,
    { gbps: number[]; msgps: number[]; txCpuPerGB: number[]; rxCpuPerGB: number[] }
  > = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of contenders) {
      const s = SIZE;
      const m =
        c === "iperf3"
          ? iperf3(s.bytes, s.total)
          : c === "c-frames"
            ? await framesRef(ref!, s.bytes, s.total, s.warm)
            : await runPair(c, s.bytes, s.total, s.warm);
      samples[c] ??= { gbps: [], msgps: [], txCpuPerGB: [], rxCpuPerGB: [] };
      const x = samples[c]!;
      x.gbps.push(m.bytes / m.seconds / 1e9);
      x.msgps.push(m.messages / m.seconds);
      x.txCpuPerGB.push(m.txCpu / (m.bytes / 1e9));
      x.rxCpuPerGB.push(m.rxCpu / (m.bytes / 1e9));
      console.log(
        `round ${r + 1} ${`${c}@${s.label}`.padEnd(16)} ${(m.bytes / m.seconds / 1e9).toFixed(3)} GB/s ${Math.round(m.messages / m.seconds)} msg/s` +
          `  CPU s/GB sender ${x.txCpuPerGB.at(-1)!.toFixed(3)} receiver ${x.rxCpuPerGB.at(-1)!.toFixed(3)}`,
      );
    }
  }
  // 1 MiB: bytes per second; 4 KiB: messages per second.
  const value = (k: string) =>
    SMALL ? Math.round(median(samples[k]!.msgps)) : round(median(samples[k]!.gbps), 3);
  const has = (k: string) => samples[k] !== undefined;
  const measured = (k: string) => (has(k) ? value(k) : undefined);
  const ours = Math.max(
    ...contenders.filter((c) => /^(dwcp|amst)/.test(c) && !c.endsWith("-mac")).map(value),
  );
  const ratio = (a: string, b: string) => (has(a) && has(b) ? round(value(a) / value(b), 3) : undefined);
  const cores = availableParallelism();
  const cpu = Object.fromEntries(
    contenders.map((c) => {
      const tx = median(samples[c]!.txCpuPerGB);
      const rx = median(samples[c]!.rxCpuPerGB);
      return [
        c,
        {
          senderCpuSecondsPerGB: round(tx, 3),
          receiverCpuSecondsPerGB: round(rx, 3),
          [`boundGBps${cores}Cores`]: round(cores / (tx + rx), 2),
        },
      ];
    }),
  );
  const result = writeResult(
    {
      name: SMALL ? "transport-small" : "transport-loopback",
      unit: SMALL ? "messages/s (4 KiB messages)" : "GB/s (1 MiB messages)",
      ours,
      peers: Object.fromEntries(
        Object.entries({
          "iperf3-1-stream": measured("iperf3"),
          "node-net": measured("net"),
          "zeromq-push-pull": measured("zeromq"),
          "c-frames-crc32c-reference": measured("c-frames"),
          "base-tcp-1-stream": measured("base:dwcp"),
          "base-tcp-1-stream-lent": measured("base:dwcp-lent"),
        }).filter(([, v]) => v !== undefined),
      ) as Record<string, number>,
      detail: {
        method: `${ROUNDS} interleaved rounds per contender, each timing 4 GiB after an untimed warm-up of 1 GiB (iperf3: its first second, -O 1); each side in its own process; receiver-side timing; GB = 1e9 bytes; "ours" is the best DWCP configuration; "lent": the receiver sets lendMessages (each message valid during its listener call, the socket read into reused buffers)`,
        dwcp: {
          "tcp-1-stream": measured("dwcp"),
          "tcp-1-stream-lent": measured("dwcp-lent"),
          "tcp-1-stream-mac": measured("dwcp-mac"),
          "tcp-1-stream-lent-mac": measured("dwcp-lent-mac"),
          "amst-2-streams": measured("amst-2"),
          "amst-4-streams": measured("amst-4"),
          "amst-2-streams-lent": measured("amst-2-lent"),
          "amst-4-streams-lent": measured("amst-4-lent"),
        },
        // This build against DWCP_BENCH_BASE's, same session, same rounds.
        ...(base
          ? {
              baseline: {
                build: base,
                "tcp-1-stream": ratio("dwcp", "base:dwcp"),
                "tcp-1-stream-lent": ratio("dwcp-lent", "base:dwcp-lent"),
              },
            }
          : {}),
        // Per-frame MACs (integrity "mac") against CRC-only frames, same rounds.
        integrity: {
          "mac-vs-crc": ratio("dwcp-mac", "dwcp"),
          "mac-vs-crc-lent": ratio("dwcp-lent-mac", "dwcp-lent"),
        },
        goals: SMALL ? { "zeromq-push-pull": 2 } : { "iperf3-1-stream": 0.95, "zeromq-push-pull": 1.1 },
        cpu,
        samples,
      },
    },
    nativeInUse(),
  );
  console.log(
    JSON.stringify(
      { ours: result.ours, peers: result.peers, ratios: result.ratios, dwcp: result.detail?.dwcp, cpu },
      null,
      2,
    ),
  );
}

await main();
