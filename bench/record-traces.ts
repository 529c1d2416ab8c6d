// `npm run traces`: records the bandwidth traces of bench/traces/ under the WAN rig
// (test/rig/wan.ts; root, namespaces, tbf, the NFQUEUE delay program): a DWCP session
// moves bulk data from namespace A to B over a 50 ms RTT path while the bottleneck
// changes as each trace's schedule says, and the sender's samples (goodput, the
// kernel's delivery rate and BBR bandwidth, RTT, loss) are saved with the schedule.
// `npm run bench -- predict` scores the estimators on them.
//   TRACES=steps,onoff npm run traces     (default: every trace)
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Sample, writeTrace } from "../src/prediction/index.js";
import { ADDR_B, onLines as lines, WanRig, wanRigAvailability } from "../test/rig/wan.js";

const AGENT = fileURLToPath(new URL("./trace-agent.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const OUT = join(ROOT, "bench", "traces");
const ONE_WAY_MS = 25;

/** A change of the path at `atS` seconds: the bottleneck's rate, or cross traffic on or off. */
type Step = { atS: number; rateMbit?: number; cross?: boolean };

interface TraceSpec {
  name: string;
  cc: string;
  what: string;
  durationS: number;
  steps: Step[];
}

const ramp: Step[] = [];
for (let i = 0; i <= 8; i++) ramp.push({ atS: i * 3, rateMbit: 20 + i * 10 });
for (let i = 1; i <= 8; i++) ramp.push({ atS: 24 + i * 3, rateMbit: 100 - i * 10 });

const STEPS: Step[] = [
  { atS: 0, rateMbit: 100 },
  { atS: 8, rateMbit: 40 },
  { atS: 16, rateMbit: 80 },
  { atS: 24, rateMbit: 20 },
  { atS: 32, rateMbit: 100 },
];

const TRACES: TraceSpec[] = [
  {
    name: "steady",
    cc: "cubic",
    what: "100 Mbit/s throughout",
    durationS: 40,
    steps: [{ atS: 0, rateMbit: 100 }],
  },
  {
    name: "steps",
    cc: "cubic",
    what: "100 → 40 → 80 → 20 → 100 Mbit/s, 8 s each",
    durationS: 40,
    steps: STEPS,
  },
  {
    name: "ramp",
    cc: "cubic",
    what: "20 → 100 Mbit/s in 10 Mbit/s steps every 3 s, then back down to 20",
    durationS: 51,
    steps: ramp,
  },
  {
    name: "onoff",
    cc: "cubic",
    what: "100 Mbit/s; a competing iperf3 flow (CUBIC) on for 5 s, off for 5 s",
    durationS: 40,
    steps: [
      { atS: 0, rateMbit: 100 },
      ...[5, 15, 25].flatMap((s) => [
        { atS: s, cross: true },
        { atS: s + 5, cross: false },
      ]),
    ],
  },
  {
    name: "steps-bbr",
    cc: "bbr",
    what: "as steps, the sender on BBR (the kernel's BBR bandwidth recorded too)",
    durationS: 40,
    steps: STEPS,
  },
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function record(rig: WanRig, spec: TraceSpec): Promise<void> {
  rig.setRate(`${spec.steps[0]?.rateMbit ?? 100}mbit`);
  const node = [process.execPath, "--import", "tsx", AGENT];
  const [rCmd, ...rArgs] = rig.exec(rig.b, [...node, "receiver", `${ADDR_B}:7500`]);
  const receiver = spawn(rCmd!, rArgs, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  const children: ChildProcess[] = [receiver];
  const crossServer = spawn("ip", ["netns", "exec", rig.b, "iperf3", "-s", "-B", ADDR_B, "-p", "5301"], {
    stdio: "ignore",
  });
  children.push(crossServer);
  let cross: ChildProcess | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      lines(receiver, (l) => l === "listening" && resolve());
      receiver.once("exit", (c) => reject(new Error(`receiver exited ${c}`)));
    });
    const [sCmd, ...sArgs] = rig.exec(rig.a, [...node, "sender", `${ADDR_B}:7500`, spec.cc]);
    const sender = spawn(sCmd!, sArgs, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
    children.push(sender);
    const samples: Sample[] = [];
    let t0: number | undefined;
    lines(sender, (l) => {
      const s = JSON.parse(l) as Sample;
      t0 ??= performance.now() - s.at;
      samples.push(s);
    });
    while (t0 === undefined) await sleep(20);
    const applied: { at: number; rateMbit?: number; cross?: boolean }[] = [];
    for (const step of spec.steps) {
      const wait = t0 + step.atS * 1000 - performance.now();
      if (wait > 0) await sleep(wait);
      if (step.rateMbit !== undefined) rig.setRate(`${step.rateMbit}mbit`);
      if (step.cross === true && !cross) {
        const [cCmd, ...cArgs] = rig.exec(rig.a, [
          "iperf3",
          "-c",
          ADDR_B,
          "-p",
          "5301",
          "-t",
          "600",
          "-C",
          "cubic",
        ]);
        cross = spawn(cCmd!, cArgs, { stdio: "ignore" });
        children.push(cross);
      } else if (step.cross === false && cross) {
        cross.kill("SIGTERM");
        cross = undefined;
      }
      applied.push({ at: Math.round(performance.now() - t0), ...step });
    }
    const end = t0 + spec.durationS * 1000 - performance.now();
    if (end > 0) await sleep(end);
    const file = join(OUT, `${spec.name}.json`);
    writeTrace(file, {
      name: spec.name,
      source: "recorded",
      description:
        `WAN rig: ${spec.what}; ${2 * ONE_WAY_MS} ms RTT; one DWCP session (tcp, ${spec.cc}) sending 64 KiB ` +
        "messages back to back; samples every 200 ms",
      meta: {
        schedule: applied,
        rttMs: 2 * ONE_WAY_MS,
        congestion: spec.cc,
        recordedAt: new Date().toISOString(),
      },
      samples,
    });
    const goodput = samples.filter((s) => s.kind === "goodput");
    console.log(
      `${spec.name}: ${samples.length} samples (${goodput.length} goodput) over ${spec.durationS} s -> ${file}`,
    );
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
    await sleep(300);
  }
}

const avail = wanRigAvailability();
if (!avail.ok) {
  console.error(`WAN rig unavailable: ${avail.reason}`);
  process.exit(2);
}
const wanted = process.env.TRACES?.split(",");
mkdirSync(OUT, { recursive: true });
const rig = await WanRig.up({ rate: "100mbit", delayMs: ONE_WAY_MS });
try {
  for (const spec of TRACES) if (!wanted || wanted.includes(spec.name)) await record(rig, spec);
} finally {
  await rig.down();
}
