// One side of a transport-wan measurement, run inside a rig namespace.
//   wan-agent.ts receiver HOST:PORT KIND OMIT_S MEASURE_S   prints {"bps":…} and exits
//   wan-agent.ts sender   HOST:PORT KIND                    sends 1 MiB messages until killed
// KIND: "tcp-<cc>" (one stream) or "amst<N>-<cc>" (a bundle of N streams).
import { amst, DWCPNode, tcp } from "../src/index.js";

const PSK = "bench-pre-shared-key-000000";
const [role, address, kind, omitS, measureS] = process.argv.slice(2);
const m = /^(tcp|amst(\d+))-(\w+)$/.exec(kind ?? "");
if (!m) throw new Error(`bad kind ${kind}`);
const inner = tcp({ congestion: m[3]! });
const transport = m[2]
  ? amst(inner, { streams: Number(m[2]), maxStreams: Number(m[2]), chunkBytes: 128 * 1024 })
  : inner;

if (role === "receiver") {
  const node = new DWCPNode({ nodeId: "wan-rx", transport, psk: PSK });
  let bytes = 0;
  let started = false;
  node.on("session", (s) => {
    s.on("message", (msg) => {
      bytes += msg.length;
      if (started) return;
      started = true;
      // Skip slow start, then measure a fixed window of steady state.
      setTimeout(() => {
        const b0 = bytes;
        const t0 = performance.now();
        setTimeout(() => {
          const seconds = (performance.now() - t0) / 1000;
          process.stdout.write(`${JSON.stringify({ bps: ((bytes - b0) * 8) / seconds, seconds })}\n`);
          process.exit(0);
        }, Number(measureS) * 1000);
      }, Number(omitS) * 1000);
    });
  });
  await node.listen(address!);
  process.stdout.write("listening\n");
} else {
  const node = new DWCPNode({ nodeId: "wan-tx", transport, psk: PSK });
  const s = await node.connect(address!);
  const buf = new Uint8Array(1 << 20).fill(0x5a);
  const pending: Promise<number>[] = [];
  for (;;) {
    pending.push(s.send(buf));
    if (pending.length >= 32) await pending.shift();
  }
}
