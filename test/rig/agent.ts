// A DWCP agent for rig tests, run inside a network namespace.
//   agent.ts server HOST:PORT
//   agent.ts client HOST:PORT DURATION_MS [THRESHOLDS_JSON] [TRAFFIC]
// The client prints one JSON line per mode event and a final summary.

import { ModeDetector } from "../../src/mode/detector.js";
import { DWCPNode } from "../../src/session/node.js";
import { tcp } from "../../src/transport/tcp/index.js";

const PSK = "rig-pre-shared-key-0123456789";
const [role, address, durationMs, thresholdsJson, traffic] = process.argv.slice(2);
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

if (role === "server") {
  const node = new DWCPNode({ nodeId: "rig-server", transport: tcp(), psk: PSK });
  node.on("session", (s) => s.on("message", () => {}));
  const l = await node.listen(address!);
  out({ event: "listening", address: l.address });
} else {
  const node = new DWCPNode({ nodeId: "rig-client", transport: tcp(), psk: PSK });
  const t0 = performance.now();
  const session = await node.connect(address!);
  const detector = new ModeDetector(session, {
    thresholds: thresholdsJson ? JSON.parse(thresholdsJson) : {},
    sampleIntervalMs: 250,
  });
  let events = 0;
  detector.on("mode", (e) => {
    events++;
    out({
      event: "mode",
      mode: e.mode,
      previous: e.previous,
      sinceStartMs: e.sinceStartMs,
      estimate: e.estimate,
      sources: e.sources,
    });
  });
  const connectMs = performance.now() - t0;
  // The smoothed estimate every 250 ms, [ms since start, RTT ms, Mbit/s]: what a
  // failing test prints beside the rig's own measurement.
  const trace: number[][] = [];
  const tracer = setInterval(() => {
    const e = detector.tracker.estimate;
    if (e)
      trace.push([
        Math.round(performance.now() - t0),
        +e.rttMs.toFixed(2),
        +(e.bandwidthBps / 1e6).toFixed(1),
      ]);
  }, 250);
  await detector.start();
  let sending = traffic === "traffic";
  const pump = (async () => {
    const chunk = new Uint8Array(256 * 1024);
    while (sending) await session.send(chunk);
  })();
  await new Promise((r) => setTimeout(r, Number(durationMs)));
  sending = false;
  await pump;
  detector.stop();
  clearInterval(tracer);
  out({ event: "done", events, connectMs, final: detector.mode, estimate: detector.tracker.estimate, trace });
  await session.close();
  process.exit(0);
}
