/**
 * The benchmarks' latency percentile: nearest rank, always one of the samples,
 * whatever their order.
 */
import { describe, expect, it } from "vitest";
import { percentile } from "../bench/lib/latency.js";

describe("percentile", () => {
  it("takes the nearest rank", () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 … 1, unsorted
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(xs, 100)).toBe(100);
    expect(percentile(xs, 0.5)).toBe(1);
    // 1000 samples: p99 is the 990th smallest, so 10 samples lie above it.
    const big = Array.from({ length: 1000 }, (_, i) => (i * 7919) % 1000);
    expect(percentile(big, 99)).toBe(989);
  });

  it("gives a sample, not an interpolation, on small sets", () => {
    expect(percentile([3, 1, 2], 50)).toBe(2);
    expect(percentile([4, 1, 3, 2], 50)).toBe(2);
    expect(percentile([4, 1, 3, 2], 51)).toBe(3);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([10, 0.5, 2], 99)).toBe(10);
  });

  it("leaves its input as it was", () => {
    const xs = [3, 1, 2];
    percentile(xs, 50);
    expect(xs).toEqual([3, 1, 2]);
  });

  it("refuses no samples and a percentile outside (0, 100]", () => {
    expect(() => percentile([], 50)).toThrow(RangeError);
    expect(() => percentile([1], 0)).toThrow(RangeError);
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => percentile([1], Number.NaN)).toThrow(RangeError);
  });
});
