// The autotuner's arithmetic: how many streams a path needs, by the streams'
// congestion control. Loss-based ones (CUBIC, Reno) are held to the Mathis rate
// under random loss, so a lossy long path asks for many streams; BBR is not, and
// more BBR streams than the window needs only overfill the bottleneck's queue.
import { describe, expect, it } from "vitest";
import { perStreamBps, streamCount } from "../src/transport/amst/tune.js";

const lossyWan = { rttMs: 50, bandwidthBps: 100e6, lossRate: 0.01, streams: { min: 1, max: 64 } };

describe("AMST stream count", () => {
  it("under 1 % loss on 50 ms, a loss-based control needs the Mathis count of streams", () => {
    // 1448 B × 8 / 50 ms × 1.22 / √0.01 = 2.83 Mbit/s a stream: 36 streams for 100 Mbit/s.
    expect(perStreamBps({ ...lossyWan, congestion: "cubic" })).toBeCloseTo(2.826e6, -3);
    expect(streamCount({ ...lossyWan, congestion: "cubic" })).toBe(36);
    // Unknown congestion control (no addon to ask the kernel): the loss-based model.
    expect(streamCount(lossyWan)).toBe(36);
  });

  it("BBR is not held down by random loss: the window alone sets the count", () => {
    expect(streamCount({ ...lossyWan, congestion: "bbr" })).toBe(1);
    expect(streamCount({ ...lossyWan, congestion: "bbr", bandwidthBps: 10e9 })).toBe(
      streamCount({ ...lossyWan, lossRate: 0, bandwidthBps: 10e9 }),
    );
  });

  it("BBR past its loss tolerance is counted like a loss-based control", () => {
    const heavy = { ...lossyWan, lossRate: 0.2 };
    expect(streamCount({ ...heavy, congestion: "bbr" })).toBe(streamCount({ ...heavy, congestion: "cubic" }));
  });

  it("stays within the bounds the caller allows", () => {
    expect(streamCount({ ...lossyWan, congestion: "cubic", streams: { min: 4, max: 16 } })).toBe(16);
    expect(streamCount({ ...lossyWan, congestion: "bbr", streams: { min: 4, max: 16 } })).toBe(4);
  });
});
