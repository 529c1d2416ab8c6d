// `npm run bench -- transport-loopback` (1 MiB messages) and `-- transport-small`
// (4 KiB messages): agent↔agent throughput on loopback, DWCP on one TCP stream
// and on AMST bundles of 2 and 4 streams, against, in the same rounds:
//   iperf3 (single stream, -l = message size), a plain Node `net` socket
//   (writes of the message size, with backpressure), and zeromq PUSH/PULL.
// Each side of each contender runs in its own process. Throughput is measured at
// the receiver, from its first byte to its last; for DWCP the sender also waits
// for the acknowledgement of the last message.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, connect as netConnect } from "node:net";
import { fileURLToPath } from "node:url";
import { DWCPNode } from "../src/index.js";
import { median, round, writeResult } from "./lib/result.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SMALL = process.env.BENCH_TRANSPORT === "small";
const SIZE = SMALL
  ? { label: "4KiB", bytes: 4096, total: 256 << 20 }
  : { label: "1MiB", bytes: 1 << 20, total: 1 << 30 };
const PSK = "bench-pre-shared-key-000000";

interface Measure {
  bytes: number;
  messages: number;
  seconds: number;
}

// ------------------------------------------------------------------ children

/** "dwcp": one TCP stream; "amst-N": an AMST bundle of N TCP streams. */
async function dwcpTransport(kind: string) {
  const { amst, tcp } = await import("../src/index.js");
  const m = /^amst-(\d+)$/.exec(kind);
  return m ? amst(tcp(), { streams: Number(m[1]), maxStreams: Number(m[1]) }) : tcp();
}

async function receiver(kind: string, size: number, total: number): Promise<void> {
  const count = Math.ceil(total / size);
  let first = 0;
  let got = 0;
  let messages = 0;
  const done = (extra: () => void = () => {}) => {
    const seconds = (performance.now() - first) / 1000;
    process.stdout.write(`${JSON.stringify({ bytes: got, messages, seconds })}\n`);
    extra();
    // Leave once the sender has had time to see its last acknowledgement.
    setTimeout(() => process.exit(0), 200);
  };
  if (kind === "net") {
    const server = createServer((sock) => {
      sock.on("data", (d: Buffer) => {
        if (first === 0) first = performance.now();
        got += d.length;
        if (got >= count * size) {
          messages = count;
          done(() => {
            sock.destroy();
            server.close();
          });
        }
      });
    });
    server.listen(0, "127.0.0.1", () => console.log(`port ${(server.address() as { port: number }).port}`));
  } else if (kind === "zeromq") {
    const zmq = await import("zeromq");
    const pull = new zmq.Pull();
    await pull.bind("tcp://127.0.0.1:*");
    console.log(`port ${pull.lastEndpoint!.split(":").pop()}`);
    for await (const [msg] of pull) {
      if (first === 0) first = performance.now();
      got += msg!.length;
      if (++messages === count) break;
    }
    done();
    pull.close();
  } else {
    const node = new DWCPNode({ nodeId: "receiver", transport: await dwcpTransport(kind), psk: PSK });
    node.on("session", (s) => {
      s.on("message", (m) => {
        if (first === 0) first = performance.now();
        got += m.length;
        if (++messages === count) done();
      });
    });
    const l = await node.listen("127.0.0.1:0");
    console.log(`port ${l.address.split(":").pop()}`);
  }
}

async function sender(kind: string, size: number, total: number, port: number): Promise<void> {
  const count = Math.ceil(total / size);
  const buf = Buffer.alloc(size, 0x5a);
  if (kind === "net") {
    const sock = netConnect(port, "127.0.0.1");
    await once(sock, "connect");
    sock.setNoDelay(true);
    for (let i = 0; i < count; i++) if (!sock.write(buf)) await once(sock, "drain");
    sock.end();
  } else if (kind === "zeromq") {
    const zmq = await import("zeromq");
    // Without linger, close() would drop messages still queued.
    const push = new zmq.Push({ linger: 10_000 });
    push.connect(`tcp://127.0.0.1:${port}`);
    for (let i = 0; i < count; i++) await push.send(buf);
    // Let the queue flush before closing (linger).
    push.close();
  } else {
    const node = new DWCPNode({ nodeId: "sender", transport: await dwcpTransport(kind), psk: PSK });
    const s = await node.connect(`127.0.0.1:${port}`);
    // A counting window: Promise.race over a set of pending sends would cost O(window)
    // per message and measure the harness instead of DWCP.
    let last: Promise<number> = Promise.resolve(0);
    let outstanding = 0;
    let wake: (() => void) | undefined;
    const done = () => {
      outstanding--;
      const w = wake;
      wake = undefined;
      w?.();
    };
    for (let i = 0; i < count; i++) {
      last = s.send(buf);
      outstanding++;
      void last.then(done);
      if (outstanding >= 1024) {
        await new Promise<void>((r) => {
          wake = r;
        });
      }
    }
    await last;
    await s.close();
  }
}

// ------------------------------------------------------------------ parent

function start(args: string[]): ChildProcess {
  const self = fileURLToPath(import.meta.url);
  return spawn(process.execPath, ["--import", "tsx", self, ...args], {
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

async function runPair(kind: string, size: number, total: number): Promise<Measure> {
  const rx = start(["--receiver", kind, `${size}`, `${total}`]);
  const next = lineReader(rx);
  let tx: ChildProcess | undefined;
  try {
    const port = Number(/port (\d+)/.exec(await next(30_000))![1]);
    tx = start(["--sender", kind, `${size}`, `${total}`, `${port}`]);
    // A contender that stalls must not hang the whole run.
    const result = await next(120_000);
    if (tx.exitCode === null) await once(tx, "exit");
    return JSON.parse(result) as Measure;
  } finally {
    tx?.kill();
    rx.kill();
  }
}

function iperf3(size: number, total: number): Measure {
  const port = 5299 + Math.floor(Math.random() * 500);
  const server = spawn("iperf3", ["-s", "-1", "-B", "127.0.0.1", "-p", `${port}`], { stdio: "ignore" });
  try {
    execFileSync("sleep", ["0.3"]);
    const out = execFileSync(
      "iperf3",
      ["-c", "127.0.0.1", "-p", `${port}`, "-n", `${total}`, "-l", `${size}`, "-J"],
      { encoding: "utf8" },
    );
    const j = JSON.parse(out) as { end: { sum_received: { bytes: number; seconds: number } } };
    return {
      bytes: j.end.sum_received.bytes,
      messages: Math.ceil(total / size),
      seconds: j.end.sum_received.seconds,
    };
  } finally {
    server.kill();
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
  const contenders = ["dwcp", "amst-2", "amst-4", "iperf3", "net", "zeromq"] as const;
  const samples: Record<string, { gbps: number[]; msgps: number[] }> = {};
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of contenders) {
      const s = SIZE;
      const m = c === "iperf3" ? iperf3(s.bytes, s.total) : await runPair(c, s.bytes, s.total);
      samples[c] ??= { gbps: [], msgps: [] };
      samples[c]!.gbps.push(m.bytes / m.seconds / 1e9);
      samples[c]!.msgps.push(m.messages / m.seconds);
      console.log(
        `round ${r + 1} ${`${c}@${s.label}`.padEnd(16)} ${(m.bytes / m.seconds / 1e9).toFixed(3)} GB/s ${Math.round(m.messages / m.seconds)} msg/s`,
      );
    }
  }
  // 1 MiB: bytes per second; 4 KiB: messages per second.
  const value = (k: string) =>
    SMALL ? Math.round(median(samples[k]!.msgps)) : round(median(samples[k]!.gbps), 3);
  const ours = Math.max(value("dwcp"), value("amst-2"), value("amst-4"));
  const result = writeResult(
    {
      name: SMALL ? "transport-small" : "transport-loopback",
      unit: SMALL ? "messages/s (4 KiB messages)" : "GB/s (1 MiB messages)",
      ours,
      peers: {
        "iperf3-1-stream": value("iperf3"),
        "node-net": value("net"),
        "zeromq-push-pull": value("zeromq"),
      },
      detail: {
        method: `${ROUNDS} interleaved rounds; each side in its own process; receiver-side timing; GB = 1e9 bytes; "ours" is the best DWCP configuration`,
        dwcp: {
          "tcp-1-stream": value("dwcp"),
          "amst-2-streams": value("amst-2"),
          "amst-4-streams": value("amst-4"),
        },
        goals: SMALL ? { "zeromq-push-pull": 2 } : { "iperf3-1-stream": 0.95, "zeromq-push-pull": 1.1 },
        samples,
      },
    },
    (await import("./lib/result.js")).nativeInUse(),
  );
  console.log(
    JSON.stringify(
      { ours: result.ours, peers: result.peers, ratios: result.ratios, dwcp: result.detail?.dwcp },
      null,
      2,
    ),
  );
}

const [mode, kind, size, total, port] = process.argv.slice(2);
if (mode === "--receiver") await receiver(kind!, Number(size), Number(total));
else if (mode === "--sender") await sender(kind!, Number(size), Number(total), Number(port));
else await main();
