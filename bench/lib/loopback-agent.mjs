// One side of one contender of the loopback transport benchmark
// (bench/transport-loopback.ts):
//   node bench/lib/loopback-agent.mjs --receiver <kind> <size> <total> [warm]
//   node bench/lib/loopback-agent.mjs --sender <kind> <size> <total> <port> [warm]
// The sender moves <warm> bytes (default 0) and then <total>, and only the <total>
// is measured: JIT tiers, socket buffer autotuning and the heap settle during the
// first (a long-lived agent has long passed them). The receiver prints "measuring"
// when its clock starts; the sender prints the CPU its process used in all, and
// the parent takes off what the sender had used when "measuring" came (a sender
// runs ahead of the receiver by its queues, so it cannot tell that moment itself).
// kind: "net" (a Node socket), "zeromq" (PUSH/PULL), "dwcp" (one TCP stream),
// "dwcp-lent" (the same, messages lent to the listener: lendMessages), "amst-N"
// (an AMST bundle of N TCP streams) or "amst-N-lent" (the same, lending); a "-mac"
// suffix turns on per-frame MACs (integrity "mac"), and a "base:" prefix runs the
// same contender on another build of DWCP (DWCP_BENCH_BASE: a checkout with dist/),
// for before/after comparisons in one run.
//
// Plain JavaScript on the compiled library (dist/), as agents run in production:
// a process started through the TypeScript loader carries the loader's heap, and
// that alone pushed a receiving process past V8's 8 MB incremental-marking
// threshold: back-to-back mark-compacts at GB/s (README, "Performance notes").
// Each process loads only its own contender's code.
import { once } from "node:events";
import { createServer, connect as netConnect } from "node:net";

const PSK = "bench-pre-shared-key-000000";

/** A DWCP node for "dwcp", "dwcp-lent", "amst-N" or "amst-N-lent" (± "-mac", ± "base:"). */
async function dwcpNode(kind, nodeId) {
  const base = kind.startsWith("base:");
  const lib = base
    ? new URL(`file://${process.env.DWCP_BENCH_BASE}/dist/index.js`).href
    : "../../dist/index.js";
  const { amst, tcp, DWCPNode } = await import(lib);
  const name = base ? kind.slice(5) : kind;
  const m = /^amst-(\d+)/.exec(name);
  const transport = m ? amst(tcp(), { streams: Number(m[1]), maxStreams: Number(m[1]) }) : tcp();
  return new DWCPNode({
    nodeId,
    transport,
    psk: PSK,
    lendMessages: name.includes("-lent"),
    ...(name.endsWith("-mac") ? { integrity: "mac" } : {}),
  });
}

async function receiver(kind, size, total, warm) {
  const warmCount = Math.ceil(warm / size);
  const count = warmCount + Math.ceil(total / size);
  let first = 0;
  let cpu0;
  let got = 0;
  let messages = 0;
  /** Bytes and messages received before timing began (the warm-up). */
  let got0 = 0;
  let messages0 = 0;
  const begin = () => {
    process.stdout.write("measuring\n");
    first = performance.now();
    cpu0 = process.cpuUsage();
    got0 = got;
    messages0 = messages;
  };
  const done = (extra = () => {}) => {
    const seconds = (performance.now() - first) / 1000;
    const cpuSeconds = cpuSince(cpu0);
    const line = { bytes: got - got0, messages: messages - messages0, seconds, cpuSeconds };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    extra();
    // Leave once the sender has had time to see its last acknowledgement.
    setTimeout(() => process.exit(0), 200);
  };
  if (kind === "net") {
    const server = createServer((sock) => {
      sock.on("data", (d) => {
        if (first === 0 && got >= warmCount * size) begin();
        got += d.length;
        if (got >= count * size) {
          // A stream has no message boundaries: the measured ones, by size.
          messages = messages0 + count - warmCount;
          done(() => {
            sock.destroy();
            server.close();
          });
        }
      });
    });
    server.listen(0, "127.0.0.1", () => console.log(`port ${server.address().port}`));
  } else if (kind === "zeromq") {
    const zmq = await import("zeromq");
    const pull = new zmq.Pull();
    await pull.bind("tcp://127.0.0.1:*");
    console.log(`port ${pull.lastEndpoint.split(":").pop()}`);
    for await (const [msg] of pull) {
      if (first === 0 && messages === warmCount) begin();
      got += msg.length;
      if (++messages === count) break;
    }
    done();
    pull.close();
  } else {
    const node = await dwcpNode(kind, "receiver");
    node.on("session", (s) => {
      s.on("message", (m) => {
        if (first === 0 && messages === warmCount) begin();
        got += m.length;
        if (++messages === count) done();
      });
    });
    const l = await node.listen("127.0.0.1:0");
    console.log(`port ${l.address.split(":").pop()}`);
  }
}

/** CPU seconds (user + system, every thread of the process) since `start`. */
function cpuSince(start) {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1e6;
}

/**
 * The sender's CPU, all of it, at the end of the process (when a contender's own
 * threads, zeromq's I/O thread, have finished sending too).
 */
function reportSenderCpu() {
  process.on("exit", () => process.stdout.write(`${JSON.stringify({ cpuSeconds: cpuSince(undefined) })}\n`));
}

async function sender(kind, size, total, port, warm) {
  const warmCount = Math.ceil(warm / size);
  const count = warmCount + Math.ceil(total / size);
  const buf = Buffer.alloc(size, 0x5a);
  if (kind === "net") {
    const sock = netConnect(port, "127.0.0.1");
    await once(sock, "connect");
    reportSenderCpu();
    sock.setNoDelay(true);
    for (let i = 0; i < count; i++) if (!sock.write(buf)) await once(sock, "drain");
    sock.end();
  } else if (kind === "zeromq") {
    const zmq = await import("zeromq");
    // Without linger, close() would drop messages still queued.
    const push = new zmq.Push({ linger: 10_000 });
    push.connect(`tcp://127.0.0.1:${port}`);
    reportSenderCpu();
    for (let i = 0; i < count; i++) await push.send(buf);
    // Let the queue flush before closing (linger).
    push.close();
  } else {
    const node = await dwcpNode(kind, "sender");
    const s = await node.connect(`127.0.0.1:${port}`);
    reportSenderCpu();
    // A counting window: Promise.race over a set of pending sends would cost O(window)
    // per message and measure the harness instead of DWCP.
    let last = Promise.resolve(0);
    let outstanding = 0;
    let wake;
    const settled = () => {
      outstanding--;
      const w = wake;
      wake = undefined;
      w?.();
    };
    for (let i = 0; i < count; i++) {
      last = s.send(buf);
      outstanding++;
      void last.then(settled);
      if (outstanding >= 1024) {
        await new Promise((r) => {
          wake = r;
        });
      }
    }
    await last;
    await s.close();
  }
}

const [mode, kind, size, total, ...rest] = process.argv.slice(2);
if (mode === "--receiver") await receiver(kind, Number(size), Number(total), Number(rest[0] ?? 0));
else if (mode === "--sender")
  await sender(kind, Number(size), Number(total), Number(rest[0]), Number(rest[1] ?? 0));
else {
  console.error("usage: loopback-agent.mjs --receiver|--sender <kind> <size> <total> [port] [warm]");
  process.exit(2);
}
