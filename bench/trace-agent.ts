// One side of a trace recording (bench/record-traces.ts), run inside a WAN-rig namespace.
//   trace-agent.ts receiver HOST:PORT     reads everything; prints "listening"
//   trace-agent.ts sender   HOST:PORT CC  sends 64 KiB messages back to back and prints, every
//                                         SAMPLE_MS, the path's samples as JSON lines (the
//                                         predictor's Sample shape) until killed
// The sender is never short of data (8 MiB outstanding), so its goodput is what the path
// carried; a sample is a lower bound only when the event loop was saturated over its interval or
// the kernel flagged its delivery rate app-limited.
import { performance } from "node:perf_hooks";
import { DWCPNode, tcp } from "../src/index.js";

const SAMPLE_MS = Number(process.env.TRACE_SAMPLE_MS ?? 200);
const PSK = "bench-pre-shared-key-000000";
const [role, address, cc] = process.argv.slice(2);
const transport = tcp({ congestion: cc ?? "cubic" });

if (role === "receiver") {
  const node = new DWCPNode({ nodeId: "trace-rx", transport, psk: PSK });
  node.on("session", (s) => s.on("message", () => {}));
  await node.listen(address!);
  process.stdout.write("listening\n");
} else {
  const node = new DWCPNode({ nodeId: "trace-tx", transport, psk: PSK });
  const s = await node.connect(address!);
  const t0 = performance.now();
  // Bytes of messages the peer acknowledged: what the path carried to the application.
  let ackedBytes = 0;
  const acked = () => ackedBytes;
  let lastAt = 0;
  let lastAcked = acked();
  let lastRetrans = s.conn.pathInfo?.()?.totalRetrans ?? 0;
  let elu = performance.eventLoopUtilization();
  const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
  setInterval(() => {
    const at = performance.now() - t0;
    const now = acked();
    const dt = (at - lastAt) / 1000;
    const busy = performance.eventLoopUtilization(elu).utilization;
    elu = performance.eventLoopUtilization();
    const info = s.conn.pathInfo?.();
    const rttMs = info ? info.rttUs / 1000 : undefined;
    const sentSegments = info ? (now - lastAcked) / info.mss : 0;
    const retrans = info?.totalRetrans ?? 0;
    const lossRate =
      info && sentSegments > 0 ? Math.min(1, (retrans - lastRetrans) / sentSegments) : undefined;
    const common = { at: Math.round(at), ...(rttMs !== undefined ? { rttMs } : {}) };
    out({
      ...common,
      kind: "goodput",
      bps: Math.round(((now - lastAcked) * 8) / dt),
      ...(busy > 0.95 ? { lowerBound: true } : {}),
      ...(lossRate !== undefined ? { lossRate } : {}),
    });
    if (info?.deliveryRateBps !== undefined)
      out({
        ...common,
        kind: "deliveryRate",
        bps: info.deliveryRateBps,
        ...(info.deliveryRateAppLimited ? { lowerBound: true } : {}),
      });
    if (info?.bbr)
      out({
        ...common,
        kind: "bbrBw",
        bps: info.bbr.bandwidthBps,
        ...(info.bbr.inStartup ? { lowerBound: true } : {}),
      });
    lastAt = at;
    lastAcked = now;
    lastRetrans = retrans;
  }, SAMPLE_MS);
  // 64 KiB messages, 8 MiB outstanding (~13 × the path's BDP at 100 Mbit/s and 50 ms): a
  // 200 ms sample at 20 Mbit/s still counts ~8 messages, 100 Mbit/s ~38.
  const buf = new Uint8Array(64 << 10).fill(0x5a);
  const pending: Promise<unknown>[] = [];
  for (;;) {
    pending.push(
      s.send(buf).then(() => {
        ackedBytes += buf.length;
      }),
    );
    if (pending.length >= 128) await pending.shift();
  }
}
