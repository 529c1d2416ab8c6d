/** Units for people: sizes in binary multiples, path rates in bits per second. */

const IEC = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 → "1.50 KiB". */
export function formatBytes(n: number): string {
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < IEC.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(2)} ${IEC[i]}`;
}

/** A transfer rate: 3.2e6 bytes/s → "3.05 MiB/s". */
export function formatRate(bytesPerSecond: number): string {
  return Number.isFinite(bytesPerSecond) ? `${formatBytes(Math.round(bytesPerSecond))}/s` : "-";
}

/** A path's bandwidth: 9.5e7 → "95.0 Mbit/s". */
export function formatBits(bitsPerSecond: number): string {
  if (bitsPerSecond >= 1e9) return `${(bitsPerSecond / 1e9).toFixed(2)} Gbit/s`;
  if (bitsPerSecond >= 1e6) return `${(bitsPerSecond / 1e6).toFixed(1)} Mbit/s`;
  if (bitsPerSecond >= 1e3) return `${(bitsPerSecond / 1e3).toFixed(1)} kbit/s`;
  return `${bitsPerSecond.toFixed(0)} bit/s`;
}

/** Milliseconds with the precision a round trip needs: 0.0523 → "0.052 ms", 50.4 → "50.4 ms". */
export function formatMs(ms: number): string {
  if (ms < 1) return `${ms.toFixed(3)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(0)} ms`;
}
