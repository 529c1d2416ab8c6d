// The migration's protocol core under the deterministic simulator: a source
// whose guest keeps writing on virtual time, a link with latency and a
// bandwidth, cut at random moments (a link that dies, a destination that
// restarts). Each attempt either completes with the destination equal to the
// paused guest or fails with a code and the guest resumed; the next attempt
// resumes from the partial copy (holds). Once faults stop, one completes.
// SIM_SEEDS=n runs n seeds (default 60); SIM_SEED=s runs just seed s.
// The TypeScript codecs and hashes run here (./ts-backends.ts).
import "./ts-backends.js";
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { DWCPError, isDWCPError } from "../../src/errors.js";
import type { ChannelMessage, MigrationChannel } from "../../src/migration/channel.js";
import { MemoryImage } from "../../src/migration/memory-image.js";
import { acceptMigration } from "../../src/migration/receiver.js";
import { migrate } from "../../src/migration/sender.js";
import { Simulator } from "../../src/testing/index.js";

const PAGES = 512; // 2 MiB

/** One end of a simulated link: ordered delivery after latency + size ÷ rate, all on virtual time. */
class SimEnd extends EventEmitter implements MigrationChannel {
  peer!: SimEnd;
  closed = false;
  /** Virtual time the link is busy until (one queue per direction). */
  #busyUntil = 0;
  constructor(
    readonly sim: Simulator,
    readonly latencyMs: number,
    readonly bytesPerMs: number,
  ) {
    super();
  }
  send(data: Uint8Array): Promise<unknown> {
    if (this.closed) return Promise.reject(new DWCPError("ERR_CLOSED", "link closed"));
    const copy = new Uint8Array(data);
    const start = Math.max(this.sim.now, this.#busyUntil);
    this.#busyUntil = start + copy.length / this.bytesPerMs;
    const at = this.#busyUntil + this.latencyMs - this.sim.now;
    return new Promise((resolve, reject) => {
      this.sim.after(at, () => {
        if (this.closed || this.peer.closed) return reject(new DWCPError("ERR_CLOSED", "link closed"));
        this.peer.emit("message", { data: copy } satisfies ChannelMessage);
        resolve(undefined);
      });
    });
  }
  cut(): void {
    for (const e of [this, this.peer]) {
      if (e.closed) continue;
      e.closed = true;
      e.emit("close", new DWCPError("ERR_CLOSED", "link cut"));
    }
  }
}

function link(sim: Simulator, latencyMs: number, bytesPerMs: number): [SimEnd, SimEnd] {
  const a = new SimEnd(sim, latencyMs, bytesPerMs);
  const b = new SimEnd(sim, latencyMs, bytesPerMs);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

interface RunResult {
  seed: number;
  attempts: number;
  failures: string[];
  violations: string[];
  traceHash: string;
  completedAt: number;
}

async function run(seed: number): Promise<RunResult> {
  const sim = new Simulator({ seed, traceLines: 100 });
  const r = sim.random;
  const latencyMs = 1 + r.next() * 40;
  const bytesPerMs = 2_000 + r.next() * 60_000; // 16–500 Mbit/s
  const faultsUntil = 200 + r.next() * 3000;
  const src = new MemoryImage({ pageCount: PAGES });
  src.fillPages("mixed", seed);
  const hot = 16 + r.int(128);
  // The guest writes a few bytes of its hot set every millisecond while it runs.
  const write = () => {
    if (!src.paused) {
      const page = r.int(hot);
      src.write(page * 4096 + r.int(511) * 8, new Uint8Array([r.int(256), 1, 2, 3]));
    }
    sim.after(1, write, "guest");
  };
  sim.after(0, write, "guest");

  const violations: string[] = [];
  const failures: string[] = [];
  let holds: Uint8Array | undefined;
  let attempts = 0;
  let completedAt = -1;
  const attempt = async (): Promise<void> => {
    attempts++;
    const [a, b] = link(sim, latencyMs, bytesPerMs);
    if (sim.now < faultsUntil) sim.after(r.next() * faultsUntil, () => a.cut(), "cut");
    const incoming = acceptMigration(b, { env: sim.env("b"), timeoutMs: 5000, ...(holds ? { holds } : {}) });
    const m = migrate(a, src, { env: sim.env("a"), timeoutMs: 5000, downtimeLimitMs: 50, maxRounds: 10 });
    const [sent, got] = await Promise.allSettled([m.done, incoming.done]);
    if (sent.status === "fulfilled") {
      if (got.status !== "fulfilled") violations.push("the source completed but the destination did not");
      else if (Buffer.compare(got.value.image, src.bytes) !== 0)
        violations.push("completed with an image that differs from the paused guest");
      if (!src.paused) violations.push("completed without pausing the guest");
      completedAt = sim.now;
      sim.trace(`attempt ${attempts} completed at ${sim.now.toFixed(1)}: ${sent.value.rounds} rounds`);
      return;
    }
    const err = sent.reason;
    if (!isDWCPError(err)) violations.push(`the source failed without a code: ${err}`);
    if (src.paused) violations.push("a failed attempt left the guest paused");
    failures.push((err as DWCPError).code);
    sim.trace(`attempt ${attempts} failed at ${sim.now.toFixed(1)}: ${(err as DWCPError).code}`);
    holds = incoming.partial() ?? holds;
    if (attempts < 20) sim.after(10, () => void attempt(), "retry");
    else violations.push("20 attempts without completing");
  };
  sim.after(0, () => void attempt());
  await sim.run({ until: 120_000, stopWhen: () => completedAt >= 0 || violations.length > 0 });
  if (completedAt < 0 && violations.length === 0)
    violations.push("no attempt completed within 120 s of virtual time");
  if (violations.length > 0)
    violations.push(`failures: ${failures.join(", ")}`, ...sim.recentTrace().slice(-30));
  return { seed, attempts, failures, violations, traceHash: sim.traceHash, completedAt };
}

describe("migration under the simulator", () => {
  it("the same seed gives the same run", async () => {
    const [one, again] = [await run(7), await run(7)];
    expect(again.traceHash).toBe(one.traceHash);
    expect(again.attempts).toBe(one.attempts);
  });

  const only = process.env.SIM_SEED;
  const count = Number(process.env.SIM_SEEDS ?? 60);
  const seeds = only ? [Number(only)] : Array.from({ length: count }, (_, i) => i + 1);
  it(`${seeds.length} seeds: every attempt completes exactly or fails with a code and the guest running; one completes`, async () => {
    let resumed = 0;
    for (const seed of seeds) {
      const res = await run(seed);
      expect(
        res.violations,
        `seed ${seed} (replay: SIM_SEED=${seed} npx vitest run test/sim/migration.test.ts)`,
      ).toEqual([]);
      expect(res.completedAt).toBeGreaterThanOrEqual(0);
      for (const code of res.failures) expect(["ERR_CLOSED", "ERR_TIMEOUT"]).toContain(code);
      if (res.attempts > 1) resumed++;
    }
    // The faults were real: some seeds needed more than one attempt.
    if (!only) expect(resumed).toBeGreaterThan(seeds.length / 4);
  }, 300_000);
});

describe("timeouts count silence, not slowness", () => {
  it("a round that takes 3× the timeout to cross a slow link completes: the destination's reports keep it alive", async () => {
    const sim = new Simulator({ seed: 99 });
    const [a, b] = link(sim, 10, 1_000); // 8 Mbit/s
    const src = new MemoryImage({ pageCount: 1024 }); // 4 MiB
    src.fillPages("random", 3);
    const incoming = acceptMigration(b, { env: sim.env("b"), timeoutMs: 1500 });
    const m = migrate(a, src, { env: sim.env("a"), timeoutMs: 1500 });
    let done: unknown;
    Promise.allSettled([m.done, incoming.done]).then((r) => {
      done = r;
    });
    await sim.run({ until: 60_000, stopWhen: () => done !== undefined });
    const [sent, got] = done as PromiseSettledResult<unknown>[];
    expect(sent!.status, String((sent as PromiseRejectedResult).reason)).toBe("fulfilled");
    expect(got!.status).toBe("fulfilled");
    expect(sim.now).toBeGreaterThan(4000);
    expect(
      Buffer.compare((got as PromiseFulfilledResult<{ image: Uint8Array }>).value.image, src.bytes),
    ).toBe(0);
  });
});

describe("auto-converge (QEMU's rule) on virtual time", () => {
  it("a guest that dirties more than the link carries is throttled 20 %, then +10 % a time, until the downtime fits", async () => {
    const sim = new Simulator({ seed: 5 });
    const [a, b] = link(sim, 5, 1_000); // 8 Mbit/s
    const src = new MemoryImage({ pageCount: 1024 });
    src.fillPages("structured", 1);
    const r = sim.random;
    // Unthrottled, a whole page rewritten per ms (4 MB/s of dirt against ~1 MB/s of link).
    let credit = 0;
    const write = () => {
      if (!src.paused) {
        credit += 1 - src.throttlePercent / 100;
        for (; credit >= 1; credit--) {
          const page = r.int(512);
          src.write(
            page * 4096,
            Uint8Array.from({ length: 4096 }, () => r.int(256)),
          );
        }
      }
      sim.after(1, write, "guest");
    };
    sim.after(0, write, "guest");
    const throttles: number[] = [];
    const incoming = acceptMigration(b, { env: sim.env("b"), timeoutMs: 60_000 });
    const m = migrate(a, src, { env: sim.env("a"), timeoutMs: 60_000, downtimeLimitMs: 300, maxRounds: 30 });
    m.on("round", (s) => throttles.push(s.cpuThrottlePercentage));
    let done: PromiseSettledResult<unknown>[] | undefined;
    Promise.allSettled([m.done, incoming.done]).then((x) => {
      done = x;
    });
    await sim.run({ until: 3_600_000, stopWhen: () => done !== undefined });
    expect(done?.map((d) => d.status)).toEqual(["fulfilled", "fulfilled"]);
    const got = (done![1] as PromiseFulfilledResult<{ image: Uint8Array }>).value.image;
    expect(Buffer.compare(got, src.bytes)).toBe(0);
    // The steps: nothing until the second round in a row that dirtied more than half of what
    // the link carried, then 20, then 10 more each time it happens again.
    const steps = [...new Set(throttles.filter((t) => t > 0))];
    expect(steps[0]).toBe(20);
    expect(steps).toEqual(steps.map((_, i) => Math.min(99, 20 + 10 * i)));
    expect(steps.length).toBeGreaterThanOrEqual(2);
    expect(src.throttlePercent).toBe(throttles.at(-1));
    // It converged: the switchover came from the downtime, not the round limit.
    const stats = (done![0] as PromiseFulfilledResult<{ rounds: number; expectedDowntime: number }>).value;
    expect(stats.rounds).toBeLessThan(31);
    expect(stats.expectedDowntime).toBeLessThanOrEqual(300);
  });
});
