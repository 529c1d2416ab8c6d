// CircuitBreaker on its own, on a clock the test moves: closed → open on the
// error rate or on latency, open → half-open after the cool-down (with fresh
// counts and baseline), half-open → closed once healthy, and the thresholds
// the manager's rollback policy is made of.
import { describe, expect, it } from "vitest";
import type { Clock } from "../src/env/index.js";
import {
  BASELINE_SAMPLES,
  CircuitBreaker,
  DEFAULT_BREAKER,
  JUDGED_SAMPLES,
  MAX_SAMPLES,
} from "../src/manager/breaker.js";
import { DEFAULT_ROLLBACK } from "../src/manager.js";

/** A clock only the test moves. */
function testClock(): Clock & { t: number } {
  const c = {
    t: 1000,
    now: () => c.t,
    wall: () => c.t,
    setTimeout: () => {
      throw new Error("the breaker sets no timers");
    },
    clearTimeout: () => {},
    setImmediate: () => {
      throw new Error("the breaker defers nothing");
    },
  };
  return c;
}

const IN_USE = { inUse: true, connected: true };

function calls(b: CircuitBreaker, n: number, failures = 0): void {
  for (let i = 0; i < n; i++) b.recordCall();
  for (let i = 0; i < failures; i++) b.recordFailure();
}

function latencies(b: CircuitBreaker, ms: number, n: number): void {
  for (let i = 0; i < n; i++) b.recordLatency(ms);
}

describe("CircuitBreaker thresholds", () => {
  it("are the rollback policy's: 1 % errors after 50 calls, 2× latency and ≥ 1 ms more, 30 s cool-down", () => {
    expect(DEFAULT_BREAKER).toEqual({
      maxErrorRate: 0.01,
      maxLatencyFactor: 2,
      minLatencyIncreaseMs: 1,
      minSamples: 50,
      coolDownMs: 30_000,
    });
    const { latencySampleMaxBytes, ...breakerPart } = DEFAULT_ROLLBACK;
    expect(breakerPart).toEqual(DEFAULT_BREAKER);
    expect(latencySampleMaxBytes).toBe(64 * 1024);
    expect([BASELINE_SAMPLES, JUDGED_SAMPLES, MAX_SAMPLES]).toEqual([16, 32, 256]);
  });
});

describe("closed → open on the error rate", () => {
  it("opens above 1 % once 50 calls were seen, naming the rate", () => {
    const b = new CircuitBreaker({}, testClock());
    calls(b, 50, 1);
    expect(b.evaluate(IN_USE)).toEqual({ state: "open", reason: "v3 error rate 2.00% > 1%" });
    expect(b.state).toBe("open");
  });

  it("stays closed at exactly 1 %, and below 50 calls while the generation is still connected", () => {
    const atLimit = new CircuitBreaker({}, testClock());
    calls(atLimit, 100, 1);
    expect(atLimit.evaluate(IN_USE)).toBeUndefined();
    const few = new CircuitBreaker({}, testClock());
    calls(few, 49, 10);
    expect(few.evaluate(IN_USE)).toBeUndefined();
    expect(few.state).toBe("closed");
  });

  it("judges failures before 50 calls once the generation has no way to the peer, in use or not", () => {
    const b = new CircuitBreaker({}, testClock());
    calls(b, 10, 1);
    expect(b.evaluate({ inUse: false, connected: false })?.state).toBe("open");
  });

  it("judges nothing while the generation carries nothing and nothing failed", () => {
    const b = new CircuitBreaker({}, testClock());
    latencies(b, 1, BASELINE_SAMPLES);
    latencies(b, 50, JUDGED_SAMPLES);
    expect(b.evaluate({ inUse: false, connected: true })).toBeUndefined();
    expect(b.snapshot().baselineMs).toBe(0);
    // In use, the same samples trip it.
    expect(b.evaluate(IN_USE)?.state).toBe("open");
  });

  it("takes its thresholds from the policy given", () => {
    const b = new CircuitBreaker({ maxErrorRate: 0.2, minSamples: 5 }, testClock(), "v3 compression");
    calls(b, 10, 2);
    expect(b.evaluate(IN_USE)).toBeUndefined();
    b.recordFailure();
    expect(b.evaluate(IN_USE)).toEqual({ state: "open", reason: "v3 compression error rate 30.00% > 20%" });
  });
});

describe("closed → open on latency", () => {
  it("opens when the recent median exceeds 2× the baseline and by more than 1 ms", () => {
    const b = new CircuitBreaker({}, testClock());
    latencies(b, 1, BASELINE_SAMPLES);
    expect(b.evaluate(IN_USE)).toBeUndefined();
    expect(b.snapshot().baselineMs).toBe(1);
    latencies(b, 2.5, BASELINE_SAMPLES);
    expect(b.evaluate(IN_USE)).toEqual({
      state: "open",
      reason: "v3 latency 2.50 ms > 2× baseline 1.00 ms",
    });
  });

  it("a sub-millisecond latency that doubles is noise: more than 2× but less than 1 ms more stays closed", () => {
    const b = new CircuitBreaker({}, testClock());
    latencies(b, 0.2, BASELINE_SAMPLES);
    latencies(b, 1.1, 100);
    expect(b.evaluate(IN_USE)).toBeUndefined();
    expect(b.snapshot()).toMatchObject({ baselineMs: 0.2, recentMs: 1.1 });
  });

  it("needs 32 samples: 31 at ten times the baseline do not trip it", () => {
    const b = new CircuitBreaker({}, testClock());
    latencies(b, 1, BASELINE_SAMPLES);
    latencies(b, 10, JUDGED_SAMPLES - BASELINE_SAMPLES - 1);
    expect(b.evaluate(IN_USE)).toBeUndefined();
    b.recordLatency(10);
    expect(b.evaluate(IN_USE)?.state).toBe("open");
  });

  it("keeps the last 256 samples", () => {
    const b = new CircuitBreaker({}, testClock());
    latencies(b, 1, MAX_SAMPLES + 10);
    expect(b.snapshot().samples).toBe(MAX_SAMPLES);
  });
});

describe("open → half-open → closed", () => {
  it("stays open for the cool-down, then goes half-open with fresh counts and baseline", () => {
    const clock = testClock();
    const b = new CircuitBreaker({ coolDownMs: 500 }, clock);
    latencies(b, 1, BASELINE_SAMPLES);
    b.evaluate(IN_USE);
    latencies(b, 5, BASELINE_SAMPLES);
    calls(b, 60, 3);
    expect(b.evaluate(IN_USE)?.state).toBe("open");
    expect(b.snapshot().retryAt).toBe(1500);
    clock.t = 1499;
    expect(b.evaluate(IN_USE)).toBeUndefined();
    expect(b.state).toBe("open");
    clock.t = 1500;
    expect(b.evaluate(IN_USE)).toEqual({ state: "half-open", reason: "cool-down over: retrying v3" });
    expect(b.snapshot()).toEqual({
      state: "half-open",
      calls: 0,
      failures: 0,
      samples: 0,
      baselineMs: 0,
      recentMs: 0,
      retryAt: 0,
    });
  });

  it("half-open closes once the generation carried 32 samples in use without tripping", () => {
    const clock = testClock();
    const b = new CircuitBreaker({ coolDownMs: 10 }, clock);
    calls(b, 50, 5);
    b.evaluate(IN_USE);
    clock.t += 10;
    b.evaluate(IN_USE);
    expect(b.state).toBe("half-open");
    latencies(b, 3, JUDGED_SAMPLES - 1);
    calls(b, 31);
    expect(b.evaluate(IN_USE)).toBeUndefined();
    b.recordLatency(3);
    // Not carrying traffic: nothing to judge it healthy by.
    expect(b.evaluate({ inUse: false, connected: true })).toBeUndefined();
    expect(b.evaluate(IN_USE)).toEqual({ state: "closed", reason: "v3 healthy again" });
    // The new baseline is the generation's latency after it came back (3 ms), not the old one.
    expect(b.snapshot().baselineMs).toBe(3);
  });

  it("half-open opens again on failures, for another cool-down", () => {
    const clock = testClock();
    const b = new CircuitBreaker({ coolDownMs: 10 }, clock);
    calls(b, 50, 5);
    b.evaluate(IN_USE);
    clock.t += 10;
    b.evaluate(IN_USE);
    calls(b, 5, 1);
    expect(b.evaluate({ inUse: true, connected: false })?.state).toBe("open");
    expect(b.snapshot().retryAt).toBe(clock.t + 10);
  });
});
