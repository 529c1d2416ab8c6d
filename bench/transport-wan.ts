// `npm run bench -- transport-wan`: goodput over the WAN rig (test/rig/wan.ts):
// 100 Mbit/s bottleneck, 50 ms RTT, without and with 1 % random loss each way.
// Contenders, interleaved in the same run: iperf3 with one stream (CUBIC and
// BBR), DWCP on one TCP stream, and DWCP on AMST bundles (4 and 16 streams, CUBIC
// and BBR). Each side runs in its own process in its own namespace; goodput is
// taken at the receiver over a fixed window after slow start.
// Goals (#5): ≥ 95 % of the link without loss; with loss ≥ 5× one TCP stream.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ADDR_B, iperf3Goodput, onLines as lines, WanRig, wanRigAvailability } from "../test/rig/wan.js";
import { median, nativeInUse, round, writeResult } from "./lib/result.js";

const OMIT_S = Number(process.env.BENCH_OMIT_S ?? 3);
const MEASURE_S = Number(process.env.BENCH_MEASURE_S ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
const LINK_BPS = 100e6;
const AGENT = fileURLToPath(new URL("./wan-agent.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

const ALL_PROFILES = [
  { label: "clean", lossPct: 0 },
  { label: "loss1pct", lossPct: 1 },
] as const;
const ALL_CONTENDERS = [
  "iperf3-cubic",
  "iperf3-bbr",
  "tcp-cubic",
  "tcp-bbr",
  "amst4-cubic",
  "amst16-cubic",
  "amst4-bbr",
  "amst16-bbr",
] as const;
// BENCH_CONTENDERS=a,b,… and BENCH_PROFILES=clean|loss1pct: a shorter run for one comparison.
const only = process.env.BENCH_CONTENDERS?.split(",");
for (const c of only ?? []) {
  if (!/^(iperf3|tcp|amst\d+)-\w+$/.test(c))
    throw new Error(`BENCH_CONTENDERS: ${c} is not iperf3-<cc>, tcp-<cc> or amst<N>-<cc>`);
}
const CONTENDERS: readonly string[] = only ?? ALL_CONTENDERS;
const onlyProfiles = process.env.BENCH_PROFILES?.split(",");
const PROFILES = ALL_PROFILES.filter((p) => !onlyProfiles || onlyProfiles.includes(p.label));

/**
 * The sending namespace's TCP segment counters (every stream of a contender):
 * how much of what went out was sent again. On a lossy path a flow that fills the
 * bottleneck's queue loses more than the path's own loss, and every segment sent
 * twice is link capacity that carried no goodput.
 */
function tcpCounters(rig: WanRig): { out: number; retrans: number } {
  const text = execFileSync("ip", ["netns", "exec", rig.a, "nstat", "-az", "TcpOutSegs", "TcpRetransSegs"], {
    encoding: "utf8",
  });
  const get = (name: string) => Number(new RegExp(`${name}\\s+(\\d+)`).exec(text)?.[1] ?? Number.NaN);
  return { out: get("TcpOutSegs"), retrans: get("TcpRetransSegs") };
}

function iperf3(rig: WanRig, cc: string): number {
  return iperf3Goodput(rig, { cc, seconds: MEASURE_S, omitS: OMIT_S });
}

async function dwcp(rig: WanRig, kind: string): Promise<number> {
  const node = [process.execPath, "--import", "tsx", AGENT];
  const rx = spawn(
    "ip",
    ["netns", "exec", rig.b, ...node, "receiver", `${ADDR_B}:7500`, kind, `${OMIT_S}`, `${MEASURE_S}`],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  let tx: ChildProcess | undefined;
  try {
    const result = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${kind}: no result in time`)),
        (OMIT_S + MEASURE_S + 60) * 1000,
      );
      rx.once("exit", (c) => c !== 0 && reject(new Error(`${kind}: receiver exited ${c}`)));
      lines(rx, (l) => {
        if (l === "listening") {
          tx = spawn("ip", ["netns", "exec", rig.a, ...node, "sender", `${ADDR_B}:7500`, kind], {
            cwd: ROOT,
            stdio: ["ignore", "ignore", "inherit"],
          });
        } else {
          clearTimeout(timer);
          resolve((JSON.parse(l) as { bps: number }).bps);
        }
      });
    });
    return result;
  } finally {
    tx?.kill();
    rx.kill();
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function main(): Promise<void> {
  const avail = wanRigAvailability();
  if (!avail.ok) {
    console.error(`transport-wan needs the WAN rig: ${avail.reason}`);
    process.exit(1);
  }
  const rig = await WanRig.up({ rate: "100mbit", delayMs: 25 });
  const samples: Record<string, number[]> = {};
  const retrans: Record<string, number[]> = {};
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of PROFILES) {
        await rig.shape({ rate: "100mbit", delayMs: 25, lossPct: p.lossPct });
        for (const c of CONTENDERS) {
          const before = tcpCounters(rig);
          const bps = c.startsWith("iperf3-") ? iperf3(rig, c.slice(7)) : await dwcp(rig, c);
          const after = tcpCounters(rig);
          const key = `${p.label}/${c}`;
          const retransPct = (100 * (after.retrans - before.retrans)) / (after.out - before.out);
          samples[key] = [...(samples[key] ?? []), bps];
          retrans[key] = [...(retrans[key] ?? []), retransPct];
          console.log(
            `round ${r + 1} ${p.label.padEnd(9)} ${c.padEnd(14)} ${(bps / 1e6).toFixed(1)} Mbit/s, ${retransPct.toFixed(2)} % of segments sent again`,
          );
        }
      }
    }
  } finally {
    await rig.down();
  }
  const mbit = (k: string) => round(median(samples[k]!) / 1e6, 2);
  const best = (label: string) =>
    Math.max(...CONTENDERS.filter((c) => !c.startsWith("iperf3")).map((c) => mbit(`${label}/${c}`)));
  const table: Record<string, Record<string, number>> = {};
  const resent: Record<string, Record<string, number>> = {};
  for (const p of PROFILES) {
    table[p.label] = Object.fromEntries(CONTENDERS.map((c) => [c, mbit(`${p.label}/${c}`)]));
    resent[p.label] = Object.fromEntries(
      CONTENDERS.map((c) => [c, round(median(retrans[`${p.label}/${c}`]!), 2)]),
    );
  }
  if (only || PROFILES.length < ALL_PROFILES.length) {
    // A partial run is a look, not a result: nothing is written.
    console.log(JSON.stringify({ mbit: table, "segments sent again, %": resent }, null, 2));
    return;
  }
  const result = writeResult(
    {
      name: "transport-wan",
      unit: "Mbit/s goodput, 100 Mbit/s + 50 ms RTT, clean",
      ours: best("clean"),
      peers: {
        "link-rate": LINK_BPS / 1e6,
        "iperf3-1-stream-cubic": mbit("clean/iperf3-cubic"),
        "iperf3-1-stream-bbr": mbit("clean/iperf3-bbr"),
      },
      detail: {
        method: `${ROUNDS} round(s); ${OMIT_S} s omitted after the first byte, then ${MEASURE_S} s measured at the receiver; 1 MiB messages; AMST chunk 128 KiB`,
        loss1pct: {
          ours: best("loss1pct"),
          ratios: {
            "iperf3-1-stream-cubic": round(best("loss1pct") / mbit("loss1pct/iperf3-cubic")),
            "iperf3-1-stream-bbr": round(best("loss1pct") / mbit("loss1pct/iperf3-bbr")),
            "dwcp-1-stream-cubic": round(best("loss1pct") / mbit("loss1pct/tcp-cubic")),
          },
        },
        goals: {
          "clean: fraction of link": 0.95,
          "loss1pct: × one TCP stream": 5,
          "loss1pct: × one iperf3 BBR stream": 1,
        },
        table,
        // Per contender, % of the sending namespace's TCP segments that were retransmissions.
        retransmittedPct: resent,
      },
    },
    nativeInUse(),
  );
  console.log(JSON.stringify({ ours: result.ours, ratios: result.ratios, detail: result.detail }, null, 2));
}

await main();
