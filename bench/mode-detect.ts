// `npm run bench -- mode-detect`: time to the right mode decision, and mode
// changes during 60 s of steady conditions, on loopback and under the WAN rig.
// Goals: datacenter ≤ 1 s, internet ≤ 2 s, 0 changes. There is no peer program
// for this; the goals are the reference. Needs root (the rig); the loopback
// profile runs anywhere.
import { DWCPNode, ModeDetector, tcp } from "../src/index.js";
import { runAgents } from "../test/rig/run-agents.js";
import { type WanProfile, WanRig, wanRigAvailability } from "../test/rig/wan.js";
import { nativeInUse, round, writeResult } from "./lib/result.js";

const STEADY_MS = Number(process.env.BENCH_STEADY_MS ?? 60_000);
const SCALED = { datacenterRttMs: 2, internetRttMs: 20, bandwidthBps: 50e6 };
/** How often the timeline records the detector's smoothed estimate (as the rig agent does). */
const TRACE_MS = 250;

interface Row {
  profile: string;
  expected: string;
  decided: string;
  decisionMs: number;
  goalMs: number;
  changesDuringSteady: number;
  estimate: unknown;
  /** Every mode event, the first decision included, in ms since the detector started. */
  events: { atMs: number; mode: string }[];
  /** The smoothed estimate every TRACE_MS: [ms since the detector started, RTT ms, Mbit/s]. */
  trace: number[][];
}

async function loopback(): Promise<Row> {
  const psk = "bench-pre-shared-key-000000";
  const server = new DWCPNode({ nodeId: "s", transport: tcp(), psk });
  const l = await server.listen("127.0.0.1:0");
  const client = new DWCPNode({ nodeId: "c", transport: tcp(), psk });
  const s = await client.connect(l.address);
  const d = new ModeDetector(s, { sampleIntervalMs: 250 });
  const events: Row["events"] = [];
  d.on("mode", (e) => events.push({ atMs: round(e.sinceStartMs, 1), mode: e.mode }));
  const trace: number[][] = [];
  const t0 = performance.now();
  const tracer = setInterval(() => {
    const e = d.tracker.estimate;
    if (e)
      trace.push([Math.round(performance.now() - t0), round(e.rttMs, 3), round(e.bandwidthBps / 1e6, 1)]);
  }, TRACE_MS);
  const first = await d.start();
  await new Promise((r) => setTimeout(r, STEADY_MS));
  d.stop();
  clearInterval(tracer);
  await s.close();
  await l.close();
  return {
    profile: "loopback",
    expected: "datacenter",
    decided: first.mode,
    decisionMs: round(first.sinceStartMs, 1),
    goalMs: 1000,
    changesDuringSteady: events.length - 1,
    estimate: first.estimate,
    events,
    trace,
  };
}

async function underRig(
  name: string,
  profile: WanProfile,
  expected: string,
  goalMs: number,
  thresholds?: object,
): Promise<Row> {
  const wan = await WanRig.up(profile);
  try {
    const lines = await runAgents(wan, { durationMs: STEADY_MS, ...(thresholds ? { thresholds } : {}) });
    const modes = lines.filter((l) => l.event === "mode");
    // The agent times its trace from before it connects; its detector starts
    // connectMs later, the origin of sinceStartMs.
    const done = lines.find((l) => l.event === "done");
    const connectMs = Number(done?.connectMs ?? 0);
    const trace = Array.isArray(done?.trace)
      ? (done.trace as number[][]).map(([ms, rtt, mbps]) => [Math.round(Number(ms) - connectMs), rtt!, mbps!])
      : [];
    return {
      profile: name,
      expected,
      decided: String(modes[0]?.mode),
      decisionMs: round(Number(modes[0]?.sinceStartMs), 1),
      goalMs,
      changesDuringSteady: modes.length - 1,
      estimate: modes[0]?.estimate,
      events: modes.map((m) => ({ atMs: round(Number(m.sinceStartMs), 1), mode: String(m.mode) })),
      trace,
    };
  } finally {
    await wan.down();
  }
}

const rows: Row[] = [await loopback()];
const rig = wanRigAvailability();
if (rig.ok) {
  rows.push(await underRig("veth, no shaping", { delayMs: 0 }, "datacenter", 1000));
  rows.push(await underRig("100 Mbit/s + 50 ms RTT", { rate: "100mbit", delayMs: 25 }, "internet", 2000));
  rows.push(await underRig("20 Mbit/s + 5 ms RTT", { rate: "20mbit", delayMs: 2.5 }, "internet", 2000));
  rows.push(
    await underRig(
      "200 Mbit/s + 10 ms RTT, thresholds ÷20",
      { rate: "200mbit", delayMs: 5 },
      "hybrid",
      2000,
      SCALED,
    ),
  );
} else {
  console.warn(`WAN rig profiles skipped: ${rig.reason}`);
}
for (const r of rows) {
  console.log(
    `${r.profile.padEnd(40)} ${r.decided.padEnd(10)} (want ${r.expected}) in ${r.decisionMs} ms (goal ${r.goalMs}), ${r.changesDuringSteady} changes in ${STEADY_MS / 1000} s`,
  );
}
const worst = Math.max(...rows.map((r) => r.decisionMs / r.goalMs));
writeResult(
  {
    name: "mode-detect",
    unit: "worst time-to-decision as a fraction of its goal (≤ 1 meets every goal)",
    ours: round(worst, 3),
    peers: {},
    detail: {
      steadySeconds: STEADY_MS / 1000,
      allCorrect: rows.every((r) => r.decided === r.expected),
      totalChangesDuringSteady: rows.reduce((a, r) => a + r.changesDuringSteady, 0),
      rigSkipped: rig.ok ? undefined : rig.reason,
      rows,
    },
  },
  nativeInUse(),
);
process.exit(0);
