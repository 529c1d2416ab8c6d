/**
 * A transfer's progress on stderr: a bar with rate and ETA when the size is
 * known, bytes and rate when it is not (standard input). Only on a terminal and
 * without `--json`; elsewhere the command prints one summary line at the end.
 */
import { SingleBar } from "cli-progress";
import { formatBytes, formatRate } from "./format.js";

/** Seconds of history behind the rate shown. */
const RATE_WINDOW_MS = 2000;

/** A progress display. */
export interface Progress {
  /** `bytes` done so far (cumulative). */
  update(bytes: number): void;
  /** Ends the display, leaving its last state on screen. */
  stop(): void;
}

const NONE: Progress = { update() {}, stop() {} };

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "-";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * A progress bar for `label` (`sent`, `received`) of `total` bytes (null: unknown),
 * or nothing when `enabled` is false.
 */
export function progress(enabled: boolean, label: string, total: number | null): Progress {
  if (!enabled) return NONE;
  const known = total !== null && total > 0;
  const bar = new SingleBar({
    stream: process.stderr,
    hideCursor: true,
    clearOnComplete: false,
    barsize: 28,
    format: known
      ? `${label} {bar} {percentage}% | {done} / {size} | {rate} | ETA {remaining}`
      : `${label} {done} | {rate} | {elapsed}`,
  });
  const samples: { at: number; bytes: number }[] = [];
  const start = performance.now();
  const payload = (bytes: number) => {
    const now = performance.now();
    samples.push({ at: now, bytes });
    while (samples.length > 2 && now - samples[0]!.at > RATE_WINDOW_MS) samples.shift();
    const first = samples[0]!;
    const rate = now > first.at ? ((bytes - first.bytes) * 1000) / (now - first.at) : Number.NaN;
    return {
      done: formatBytes(bytes),
      size: known ? formatBytes(total) : "",
      rate: formatRate(rate),
      remaining: known && rate > 0 ? formatEta((total - bytes) / rate) : "-",
      elapsed: formatEta((now - start) / 1000),
    };
  };
  bar.start(known ? total : 1, 0, payload(0));
  return {
    update(bytes) {
      bar.update(known ? bytes : 0, payload(bytes));
    },
    stop() {
      bar.stop();
    },
  };
}
