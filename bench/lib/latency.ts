// Latency percentiles for benchmarks that time every operation.

/**
 * The `p`-th percentile (0 < p ≤ 100) of `samples` by the nearest-rank rule:
 * the smallest sample with at least p % of the samples at or below it. It is
 * always one of the samples, so a p99 of a few hundred operations is a time
 * some operation actually took, not an interpolation.
 */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) throw new RangeError("percentile of no samples");
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is not in (0, 100]`);
  const sorted = Float64Array.from(samples).sort();
  return sorted[Math.ceil((p / 100) * sorted.length) - 1]!;
}
