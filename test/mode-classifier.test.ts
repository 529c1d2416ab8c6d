// The classifier is pure: synthetic samples, no network.
import { describe, expect, it } from "vitest";
import { classify, DEFAULT_THRESHOLDS, ModeTracker } from "../src/index.js";
import { endsLimited, peerHolding } from "../src/mode/detector.js";

const G = 1e9;
const M = 1e6;

describe("classify", () => {
  it.each([
    [0.05, 20 * G, "datacenter"],
    [9.9, 1.01 * G, "datacenter"],
    [10, 2 * G, "hybrid"],
    [30, 5 * G, "hybrid"],
    [50, 5 * G, "hybrid"],
    [50.1, 5 * G, "internet"],
    [100, 100 * M, "internet"],
    [5, 20 * M, "internet"],
    [0.1, 999 * M, "internet"],
  ] as const)("rtt %f ms, %d bit/s → %s", (rttMs, bandwidthBps, mode) => {
    expect(classify({ rttMs, bandwidthBps }, DEFAULT_THRESHOLDS)).toBe(mode);
  });

  it("honours configurable thresholds (scaled for an emulator that carries ~100 Mbit/s)", () => {
    const t = { datacenterRttMs: 2, internetRttMs: 20, bandwidthBps: 50 * M };
    expect(classify({ rttMs: 10, bandwidthBps: 90 * M }, t)).toBe("hybrid");
    expect(classify({ rttMs: 1, bandwidthBps: 90 * M }, t)).toBe("datacenter");
    expect(classify({ rttMs: 10, bandwidthBps: 20 * M }, t)).toBe("internet");
  });

  it("never calls a path slow on a host-limited (lower-bound) bandwidth; RTT still decides", () => {
    const atLeast = { bandwidthBps: 800 * M, bandwidthAtLeast: true };
    expect(classify({ rttMs: 0.1, ...atLeast }, DEFAULT_THRESHOLDS)).toBe("datacenter");
    expect(classify({ rttMs: 30, ...atLeast }, DEFAULT_THRESHOLDS)).toBe("hybrid");
    expect(classify({ rttMs: 80, ...atLeast }, DEFAULT_THRESHOLDS)).toBe("internet");
    expect(classify({ rttMs: 0.1, bandwidthBps: 800 * M }, DEFAULT_THRESHOLDS)).toBe("internet");
  });
});

describe("ModeTracker", () => {
  it("decides at once on the first complete estimate", () => {
    const t = new ModeTracker();
    expect(t.evaluate(0)).toBeUndefined();
    t.addRtt(0.1);
    t.addBandwidth(10 * G);
    expect(t.evaluate(1)).toMatchObject({ mode: "datacenter", previous: undefined });
  });

  it("does not flap on noise around a threshold (hysteresis)", () => {
    const t = new ModeTracker({ minDwellMs: 0 });
    t.addRtt(8);
    t.addBandwidth(5 * G);
    expect(t.evaluate(0)?.mode).toBe("datacenter");
    let changes = 0;
    // RTT wandering 8–11.5 ms: crosses 10 ms but never leaves the 20 % band.
    for (let i = 1; i <= 1000; i++) {
      t.addRtt(8 + 3.5 * Math.abs(Math.sin(i)));
      if (t.evaluate(i)) changes++;
    }
    expect(changes).toBe(0);
  });

  it("changes once the new mode has held for the dwell time, and only once", () => {
    const t = new ModeTracker({ minDwellMs: 3000, smoothing: 1 });
    t.addRtt(1);
    t.addBandwidth(5 * G);
    t.evaluate(0);
    t.addRtt(80);
    t.addBandwidth(100 * M);
    const decisions = [];
    for (let now = 100; now <= 10_000; now += 100) {
      const d = t.evaluate(now);
      if (d) decisions.push(d);
    }
    expect(decisions).toHaveLength(1);
    expect(decisions[0]).toMatchObject({ mode: "internet", previous: "datacenter", at: 3100 });
  });

  it("a brief excursion shorter than the dwell time changes nothing", () => {
    const t = new ModeTracker({ minDwellMs: 1000, smoothing: 1 });
    t.addRtt(60);
    t.addBandwidth(100 * M);
    t.evaluate(0);
    t.addRtt(1);
    t.addBandwidth(10 * G);
    expect(t.evaluate(100)).toBeUndefined();
    expect(t.evaluate(900)).toBeUndefined();
    t.addRtt(60);
    t.addBandwidth(100 * M);
    expect(t.evaluate(1200)).toBeUndefined();
    expect(t.mode).toBe("internet");
  });

  it("a lower-bound sample raises the bandwidth estimate but never lowers it; a path sample replaces the bound", () => {
    const t = new ModeTracker({ smoothing: 0.5, minDwellMs: 0 });
    t.addRtt(0.2);
    t.addBandwidth(800 * M, true);
    expect(t.estimate).toEqual({ rttMs: 0.2, bandwidthBps: 800 * M, bandwidthAtLeast: true });
    expect(t.evaluate(0)?.mode).toBe("datacenter");
    t.addBandwidth(100 * M, true);
    expect(t.estimate?.bandwidthBps).toBe(800 * M);
    t.addBandwidth(1200 * M, true);
    expect(t.estimate).toMatchObject({ bandwidthBps: 1000 * M, bandwidthAtLeast: true });
    // A figure the path itself limited ends the lower bound: this path is slow.
    t.addBandwidth(100 * M);
    t.addBandwidth(100 * M);
    expect(t.estimate?.bandwidthAtLeast).toBeUndefined();
    expect(t.evaluate(1)?.mode).toBe("internet");
  });

  it("an upper-bound RTT sample (a ping that waited for a busy host) lowers the estimate but never raises it", () => {
    const t = new ModeTracker({ smoothing: 0.5, minDwellMs: 0 });
    t.addRtt(80, true); // the first sample counts whatever it is: there is nothing else
    expect(t.estimate).toBeUndefined(); // no bandwidth yet
    t.addBandwidth(5 * G);
    expect(t.estimate?.rttMs).toBe(80);
    t.addRtt(0.4, true);
    expect(t.estimate?.rttMs).toBeCloseTo(40.2);
    t.addRtt(300, true);
    expect(t.estimate?.rttMs).toBeCloseTo(40.2);
    t.addRtt(300);
    expect(t.estimate?.rttMs).toBeCloseTo(170.1);
  });

  it("smooths with an EWMA", () => {
    const t = new ModeTracker({ smoothing: 0.5 });
    t.addRtt(10);
    t.addRtt(20);
    t.addBandwidth(1);
    expect(t.estimate?.rttMs).toBe(15);
  });
});

describe("endsLimited (TCP_INFO busy / rwnd_limited / sndbuf_limited between two samples)", () => {
  const at = (busyTimeUs: number, rwndLimitedUs: number, sndbufLimitedUs: number) => ({
    busyTimeUs,
    rwndLimitedUs,
    sndbufLimitedUs,
  });
  it("a fifth or more of the busy time limited by either is a lower bound", () => {
    expect(endsLimited(at(1000, 0, 0), at(2000, 200, 0))).toBe(true);
    expect(endsLimited(at(1000, 0, 0), at(2000, 0, 200))).toBe(true);
    expect(endsLimited(at(1000, 0, 0), at(2000, 100, 100))).toBe(true);
  });
  it("counts only what happened between the samples", () => {
    // 900 µs limited long ago, 50 of 1000 since: the path, not the ends.
    expect(endsLimited(at(1000, 900, 0), at(2000, 950, 0))).toBe(false);
    expect(endsLimited(at(1000, 0, 0), at(2000, 199, 0))).toBe(false);
  });
  it("is false without counters (older kernels, no addon) or without sending", () => {
    expect(endsLimited(undefined, at(2000, 2000, 0))).toBe(false);
    expect(
      endsLimited(at(1000, 0, 0), {
        busyTimeUs: undefined,
        rwndLimitedUs: undefined,
        sndbufLimitedUs: undefined,
      }),
    ).toBe(false);
    expect(endsLimited(at(1000, 0, 0), at(1000, 0, 0))).toBe(false);
  });
});

describe("peerHolding (the peer's TCP acknowledged everything, its session has not)", () => {
  const idle = { unackedSegments: 0, notsentBytes: 0 };
  const session = (unackedBytes: number, lastDataWriteAt: number, bufferedAmount = 0) => ({
    unackedBytes,
    lastDataWriteAt,
    conn: { bufferedAmount },
  });
  it("holding: nothing in flight, unsent or queued, DWCP bytes unacknowledged for the hold time", () => {
    expect(peerHolding(idle, session(1 << 20, 100), 110, 10)).toBe(true);
  });
  it("not holding while anything is in flight, unsent or queued, or within the hold time", () => {
    expect(peerHolding({ ...idle, unackedSegments: 3 }, session(1 << 20, 100), 200, 10)).toBe(false);
    expect(peerHolding({ ...idle, notsentBytes: 1 }, session(1 << 20, 100), 200, 10)).toBe(false);
    expect(peerHolding(idle, session(1 << 20, 100, 1), 200, 10)).toBe(false);
    expect(peerHolding(idle, session(1 << 20, 100), 109, 10)).toBe(false);
    expect(peerHolding(idle, session(0, 100), 200, 10)).toBe(false);
  });
  it("not without the kernel's view (no addon, not TCP, or a kernel without notsent bytes)", () => {
    expect(peerHolding(undefined, session(1 << 20, 100), 200, 10)).toBe(false);
    expect(peerHolding({ unackedSegments: 0, notsentBytes: undefined }, session(1 << 20, 100), 200, 10)).toBe(
      false,
    );
  });
});
