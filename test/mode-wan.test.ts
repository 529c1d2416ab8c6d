// Mode detection under real (emulated) network conditions: loopback, and the WAN
// rig (namespaces + tbf + NFQUEUE delay). Goals: datacenter decided within 1 s,
// internet within 2 s, no mode change while conditions hold, exactly one change
// when the link changes mid-session.
import { describe, expect, it } from "vitest";
import { nodeEnv } from "../src/env/index.js";
import { DEFAULT_THRESHOLDS, type ModeThresholds } from "../src/mode/classifier.js";
import { ModeDetector, type ModeEvent } from "../src/mode/detector.js";
import { PathProber } from "../src/path/prober.js";
import { tcp } from "../src/transport/tcp/index.js";
import { native } from "./helpers/native.js";
import { closeAll, sessionPair } from "./helpers/nodes.js";
import { type AgentLine, runAgents } from "./rig/run-agents.js";
import { heldRtt, type RttRecord, type WanProfile, WanRig, wanRigAvailability } from "./rig/wan.js";

const STEADY_MS = Number(process.env.DWCP_STEADY_MS ?? 8000);
const rig = wanRigAvailability();
const rigWhy = rig.ok ? "" : ` [skipped: WAN rig unavailable: ${rig.reason}]`;

// The emulator carries about 1 Gbit/s at most on this kind of machine, so the
// hybrid profile uses thresholds scaled down by 20 (RFC: configurable thresholds).
const SCALED = { datacenterRttMs: 2, internetRttMs: 20, bandwidthBps: 50e6 };

const PROFILES: {
  name: string;
  profile: WanProfile;
  thresholds?: Partial<ModeThresholds>;
  expect: string;
  withinMs: number;
}[] = [
  { name: "veth, no shaping", profile: { delayMs: 0 }, expect: "datacenter", withinMs: 1000 },
  {
    name: "100 Mbit/s + 50 ms RTT",
    profile: { rate: "100mbit", delayMs: 25 },
    expect: "internet",
    withinMs: 2000,
  },
  {
    name: "20 Mbit/s + 5 ms RTT",
    profile: { rate: "20mbit", delayMs: 2.5 },
    expect: "internet",
    withinMs: 2000,
  },
  {
    name: "hybrid: 200 Mbit/s + 10 ms RTT (thresholds ÷20)",
    profile: { rate: "200mbit", delayMs: 5 },
    thresholds: SCALED,
    expect: "hybrid",
    withinMs: 2000,
  },
];

describe("mode detection on loopback", () => {
  it(
    `decides datacenter within 1 s and holds it for ${STEADY_MS / 1000} s`,
    async () => {
      const { a } = await sessionPair({ transport: tcp() }, {}, "127.0.0.1:0");
      const d = new ModeDetector(a, { sampleIntervalMs: 250 });
      const events: string[] = [];
      d.on("mode", (e) => events.push(e.mode));
      const first = await d.start();
      expect(first.mode).toBe("datacenter");
      expect(first.sinceStartMs).toBeLessThan(1000);
      await new Promise((r) => setTimeout(r, STEADY_MS));
      d.stop();
      expect(events).toEqual(["datacenter"]);
      await closeAll();
    },
    STEADY_MS + 20_000,
  );
});

describe("mode detection: RTT samples", () => {
  it("a ping held up by a paused event loop is not a longer path; every ping longer is", async () => {
    const { a } = await sessionPair({ transport: tcp() }, {}, "127.0.0.1:0");
    // Every third ping reports 60 ms more, as when either end's loop stalls through
    // it; from `shifted` on, every ping carries 30 ms more, as on a longer path.
    let n = 0;
    let shifted = false;
    const prober = PathProber.of(a);
    const sample = prober.rttSample.bind(prober);
    prober.rttSample = async (o) => {
      const r = await sample(o);
      return { ...r, rttMs: r.rttMs + (shifted ? 30 : ++n % 3 === 0 ? 60 : 0) };
    };
    const d = new ModeDetector(a, { sampleIntervalMs: 50, thresholds: { minDwellMs: 1000 } });
    const events: string[] = [];
    d.on("mode", (e) => events.push(e.mode));
    await d.start();
    await new Promise((r) => setTimeout(r, 3000));
    expect(n).toBeGreaterThan(30);
    expect(events).toEqual(["datacenter"]);
    shifted = true;
    await new Promise((r) => setTimeout(r, 2500));
    d.stop();
    expect(events).toEqual(["datacenter", "hybrid"]);
    await closeAll();
  });
});

describe("mode detection: busy hosts", () => {
  it("pings that waited for a saturated event loop, here or at the peer, never raise the RTT; a longer path still does", async () => {
    const { a } = await sessionPair({ transport: tcp() }, {}, "127.0.0.1:0");
    const prober = PathProber.of(a);
    const sample = prober.rttSample.bind(prober);
    // Phase 2: the peer says its loop was saturated, and every ping carries 60 ms
    // more; phase 3: the same 30 ms more from an idle peer, as on a longer path.
    let phase = 1;
    prober.rttSample = async (o) => {
      const r = await sample(o);
      if (phase === 2) return { ...r, rttMs: r.rttMs + 60, peerBusy: 0.97 };
      if (phase === 3) return { ...r, rttMs: r.rttMs + 30, peerBusy: 0 };
      return r;
    };
    const d = new ModeDetector(a, { sampleIntervalMs: 50, thresholds: { minDwellMs: 1000 } });
    const events: string[] = [];
    d.on("mode", (e) => events.push(e.mode));
    await d.start();
    // Phase 1: this loop saturated for 2.5 s, 80 ms of work per turn: every pong
    // waits its turn (as behind a migration's encoders on a TypeScript-only node).
    const until = performance.now() + 2500;
    let spins = 0;
    await new Promise<void>((done) => {
      const spin = () => {
        const end = performance.now() + 80;
        while (performance.now() < end) spins++;
        if (performance.now() < until) setImmediate(spin);
        else done();
      };
      spin();
    });
    expect(spins).toBeGreaterThan(0);
    expect(d.sources.rtt).toContain("ping/pong (host-limited: never raises the estimate)");
    phase = 2;
    await new Promise((r) => setTimeout(r, 2000));
    expect(events).toEqual(["datacenter"]);
    expect(d.tracker.estimate!.rttMs).toBeLessThan(DEFAULT_THRESHOLDS.datacenterRttMs);
    phase = 3;
    await new Promise((r) => setTimeout(r, 2500));
    d.stop();
    expect(events).toEqual(["datacenter", "hybrid"]);
    await closeAll();
  });
});

describe("mode detection: a starved process", () => {
  it("pings taken while this process's timers ran late (the CPU was not given to it) never raise the RTT", async () => {
    const { a } = await sessionPair({ transport: tcp() }, {}, "127.0.0.1:0");
    const prober = PathProber.of(a);
    const sample = prober.rttSample.bind(prober);
    // After the first decision: every ping 15 ms longer while the detector's
    // timers fire 20 ms late, as for a process that waits for a CPU; then on
    // time and 30 ms longer, as on a longer path.
    let phase: "first" | "starved" | "longer" = "first";
    prober.rttSample = async (o) => {
      const r = await sample(o);
      return { ...r, rttMs: r.rttMs + (phase === "starved" ? 15 : phase === "longer" ? 30 : 0) };
    };
    const clock = {
      ...nodeEnv.clock,
      setTimeout: (fn: () => void, ms: number) =>
        nodeEnv.clock.setTimeout(fn, ms + (phase === "starved" ? 20 : 0)),
    };
    const d = new ModeDetector(a, {
      sampleIntervalMs: 50,
      thresholds: { minDwellMs: 1000 },
      env: { clock, random: nodeEnv.random },
    });
    const events: string[] = [];
    d.on("mode", (e) => events.push(e.mode));
    await d.start();
    phase = "starved";
    await new Promise((r) => setTimeout(r, 2500));
    expect(events).toEqual(["datacenter"]);
    expect(d.sources.rtt).toContain("ping/pong (host-limited: never raises the estimate)");
    phase = "longer";
    await new Promise((r) => setTimeout(r, 2500));
    d.stop();
    expect(events).toEqual(["datacenter", "hybrid"]);
    await closeAll();
  });
});

describe("mode detection: the probe budget", () => {
  it("a round sized from one bunched sample ends within the probe's time budget", async () => {
    const { a } = await sessionPair({ transport: tcp() }, {}, "127.0.0.1:0");
    // A 20 Mbit/s path, stood in for by the probe itself (a round's sending lasts
    // its bytes at that rate, or until its sendMs, as PathProber.probe's does; a
    // session test shows the real one keeps that bound). The second round reports
    // 1 Tbit/s, as when the receiver read its two frames late and saw them
    // together: sized from it alone, the next round would take 25 s.
    const rounds: { bytes: number; sendMs: number | undefined; ms: number }[] = [];
    PathProber.of(a).probe = async (bytes, o = {}) => {
      const ms = Math.min(((bytes * 8) / 20e6) * 1000, o.sendMs ?? Number.POSITIVE_INFINITY);
      rounds.push({ bytes, sendMs: o.sendMs, ms });
      await new Promise((r) => setTimeout(r, ms));
      const sent = Math.min(bytes, Math.round((20e6 / 8) * (ms / 1000)));
      return {
        bps: rounds.length === 2 ? 1e12 : 20e6,
        bytes: sent,
        durationUs: ms * 1000,
        senderBusy: 0,
        receiverBusy: 0,
      };
    };
    const d = new ModeDetector(a, { probe: { maxMs: 1500 } });
    const t0 = performance.now();
    const first = await d.start();
    d.stop();
    expect(rounds.length).toBeGreaterThanOrEqual(3);
    for (const r of rounds) expect(r.sendMs).toBeLessThanOrEqual(1500);
    // Node's timers may fire up to a millisecond before their nominal time.
    expect(rounds.reduce((t, r) => t + r.ms, 0)).toBeLessThanOrEqual(1500 + 2 * rounds.length);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(first.mode).toBe("internet");
    await closeAll();
  });
});

describe("mode detection: a slowly reading receiver", () => {
  // Loopback carries GB/s, but the receiving application takes 1 MiB every 25 ms
  // (~335 Mbit/s, a third of the bandwidth line): its session stops reading at its
  // queue limit and the sender's goodput is the application's pace; pings wait
  // behind the unread data. Counted as the path's bandwidth and RTT, that turned
  // loopback into "internet" within the dwell time.
  // On every transport and without the addon, the receiver's Pong says its session
  // stopped reading; with the addon the kernel says so too, for peers that do not.
  const heldWhy = "the peer's session not reading";
  for (const [name, outstanding, why] of [
    // The window closes: the kernel's rwnd_limited says the ends held the data back.
    ["64 sends outstanding", 64, "rwnd/sndbuf-limited"],
    // One message in flight, each send awaited: no window fills, but the peer's TCP
    // has acknowledged everything and its session has not.
    ["one send at a time", 1, "the peer holding delivered data"],
  ] as const) {
    it(`${name}: not a slow path (${heldWhy}${native ? `; ${why}` : ""})`, async () => {
      const { a, b } = await sessionPair({ transport: tcp() }, {}, "127.0.0.1:0");
      const d = new ModeDetector(a, { sampleIntervalMs: 100, thresholds: { minDwellMs: 1000 } });
      const events: ModeEvent[] = [];
      d.on("mode", (e) => events.push(e));
      await d.start();
      let stop = false;
      let consumed = 0;
      const reader = (async () => {
        for await (const m of b) {
          consumed += m.length;
          if (stop) break;
          await new Promise((r) => setTimeout(r, 25));
        }
      })();
      const chunk = new Uint8Array(1 << 20);
      const writer = (async () => {
        const pending: Promise<unknown>[] = [];
        while (!stop) {
          pending.push(a.send(chunk).catch(() => undefined));
          if (pending.length >= outstanding) await pending.shift();
        }
      })();
      await new Promise((r) => setTimeout(r, 4000));
      d.stop();
      stop = true;
      const estimate = d.tracker.estimate!;
      const sources = d.sources;
      await closeAll();
      await Promise.allSettled([reader, writer]);
      const seen = JSON.stringify({ modes: events.map((e) => e.mode), estimate, sources });
      // The receiver really was the limit: about 40 MB/s over 4 s, not GB/s.
      expect(consumed).toBeGreaterThan(64 << 20);
      expect(consumed).toBeLessThan(400 << 20);
      expect(
        events.map((e) => e.mode),
        seen,
      ).toEqual(["datacenter"]);
      // Never called slow: either still a lower bound or a figure above the line (BBR's
      // estimate from intervals when the window was open).
      expect(
        estimate.bandwidthAtLeast === true || estimate.bandwidthBps > DEFAULT_THRESHOLDS.bandwidthBps,
        seen,
      ).toBe(true);
      expect(estimate.rttMs, seen).toBeLessThan(DEFAULT_THRESHOLDS.datacenterRttMs);
      const notCounted = sources.rtt.filter((src) => src.startsWith("ping/pong (not counted while"));
      expect(
        notCounted.some((src) => src.includes(heldWhy)),
        seen,
      ).toBe(true);
      if (native)
        expect(
          notCounted.some((src) => src.includes(why)),
          seen,
        ).toBe(true);
    });
  }
});

describe(`mode detection under the WAN rig${rigWhy}`, () => {
  for (const p of PROFILES) {
    it.skipIf(!rig.ok)(
      `${p.name} → ${p.expect} within ${p.withinMs} ms, no change for ${STEADY_MS / 1000} s`,
      async (ctx) => {
        // The delay emulator is a program on this machine. A run that fails is DWCP's
        // failure unless the rig's own RTT, measured beside DWCP with ICMP echoes, left
        // the expected mode's region for a second or more (then the expected answer was
        // no longer right): such a run is repeated, and after three the test says so
        // and skips. Added delay never makes an internet path anything else.
        const nominal = 2 * p.profile.delayMs;
        const t = { ...DEFAULT_THRESHOLDS, ...p.thresholds };
        const limitMs =
          p.expect === "datacenter"
            ? t.datacenterRttMs
            : p.expect === "hybrid"
              ? t.internetRttMs
              : Number.POSITIVE_INFINITY;
        const drifted: string[] = [];
        for (let attempt = 1; attempt <= 3; attempt++) {
          const wan = await WanRig.up(p.profile);
          let lines: AgentLine[];
          let rec: RttRecord;
          try {
            const watch = wan.watchRtt();
            try {
              lines = await runAgents(wan, {
                durationMs: STEADY_MS,
                ...(p.thresholds ? { thresholds: p.thresholds } : {}),
              });
            } finally {
              rec = await watch.stop();
            }
          } finally {
            await wan.down();
          }
          const modes = lines.filter((l) => l.event === "mode");
          const ok =
            modes.length === 1 &&
            modes[0]!.mode === p.expect &&
            (modes[0]!.sinceStartMs as number) < p.withinMs;
          if (ok) return;
          // From 4 s on: agents started, the detector's probe (≤ 1.5 s) done.
          const rig = heldRtt(rec, limitMs, { fromMs: 4000 });
          const icmp = rec.samples.map((x) => Math.round(x.rttMs)).join(",");
          const dwcp = JSON.stringify(lines.find((l) => l.event === "done")?.trace ?? []);
          const story = `modes ${JSON.stringify(modes.map((m) => [m.mode, Math.round(m.sinceStartMs as number), m.estimate]))}; ICMP RTT ms every 200 ms (${rec.lost} lost): ${icmp}; DWCP estimate [ms, RTT ms, Mbit/s]: ${dwcp}`;
          // The right mode, once, but late: the detector's rounds take the path's RTT, so a
          // rig whose RTT left the profile (a 1 s median above twice its nominal + 2 ms) while
          // the decision was due explains the delay. Such a run is repeated too.
          const during = heldRtt(
            { ...rec, samples: rec.samples.filter((x) => x.atMs < p.withinMs + 1000) },
            2 * nominal + 2,
          );
          if (modes.length === 1 && modes[0]!.mode === p.expect && !during.held) {
            drifted.push(
              `attempt ${attempt}: decided late while the rig's RTT reached a 1 s median of ${during.worstMs} ms (${nominal} ms nominal)`,
            );
            console.log(
              `rig did not hold the profile while the mode was decided, run again: ${drifted.at(-1)}; ${story}`,
            );
            continue;
          }
          if (rig.held) {
            expect.fail(
              `the rig stayed in the ${p.expect} region (${nominal} ms nominal RTT; worst 1 s median ${rig.worstMs} ms ≤ ${limitMs} ms) but ${story}`,
            );
          }
          drifted.push(`attempt ${attempt}: worst 1 s median ${rig.worstMs} ms > ${limitMs} ms`);
          console.log(`rig did not hold the profile, run again: ${drifted.at(-1)}; ${story}`);
        }
        ctx.skip(
          `the WAN rig could not keep ${nominal} ms RTT below ${limitMs} ms here (${drifted.join("; ")})`,
        );
      },
      3 * (STEADY_MS + 30_000),
    );
  }

  it.skipIf(!rig.ok)(
    "a link that changes mid-session gives exactly one mode event",
    async () => {
      const wan = await WanRig.up({ delayMs: 0 });
      try {
        const seen: AgentLine[] = [];
        let changed = false;
        const lines = await runAgents(wan, {
          durationMs: 9000,
          onLine: (l) => {
            seen.push(l);
            if (l.event === "mode" && !changed) {
              changed = true;
              // Datacenter established: now make it an internet path.
              setTimeout(() => void wan.shape({ rate: "100mbit", delayMs: 30 }), 1000);
            }
          },
        });
        const modes = lines.filter((l) => l.event === "mode").map((l) => `${l.previous ?? "-"}→${l.mode}`);
        expect(modes).toEqual(["-→datacenter", "datacenter→internet"]);
      } finally {
        await wan.down();
      }
    },
    40_000,
  );
});
