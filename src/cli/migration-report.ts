/**
 * A migration's figures as the CLI prints them: QEMU's `query-migrate` terms,
 * then what each HDE technique did. Shared by `dwcp migrate` and the demo.
 */
import type { MigrationStats } from "../index.js";
import { formatBits, formatBytes, formatRate } from "./format.js";

const CODECS = ["none", "LZ4", "zstd"];

/** The lines of a finished migration's report, as (label, value) pairs. */
export function migrationLines(st: MigrationStats, codec: number): [string, string][] {
  const h = st.hde;
  return [
    ["status", st.status],
    ["total-time", `${st.totalTime.toFixed(0)} ms (setup ${st.setupTime.toFixed(1)} ms)`],
    ["downtime", st.downtime === undefined ? "-" : `${st.downtime.toFixed(1)} ms`],
    [
      "transferred",
      `${formatBytes(st.transferred)} of a ${formatBytes(st.total)} image (${((100 * st.transferred) / st.total).toFixed(1)} %)`,
    ],
    [
      "throughput",
      `${formatRate((st.total * 1000) / st.totalTime)} of guest memory moved, ${formatRate((st.transferred * 1000) / st.totalTime)} sent`,
    ],
    ["rounds", `${st.rounds} (dirty syncs ${st.dirtySyncCount}, throttle ${st.cpuThrottlePercentage} %)`],
    [
      "rate",
      `${formatBits(st.mbps * 1e6)} last round; switchover planned at ${formatBits(st.rateBps ?? 0)} (${st.rateSource ?? "-"})`,
    ],
    ["zero", `${h.zero.pages} pages, ${formatBytes(h.zero.bytes)}: not sent`],
    ["same as held", `${h.same.pages} pages, ${formatBytes(h.same.bytes)}: not sent`],
    [
      "duplicate in frame",
      `${h.duplicate.pages} pages, ${formatBytes(h.duplicate.bytes)}: a 4-byte reference`,
    ],
    ["copy of held page", `${h.copy.pages} pages, ${formatBytes(h.copy.bytes)}: an 8-byte copy order`],
    [
      "delta",
      `${h.delta.pages} pages, ${formatBytes(h.delta.bytes)}: ${formatBytes(h.delta.deltaBytes)} of XOR before compression`,
    ],
    [
      "whole",
      `${h.full.pages} pages, ${formatBytes(h.full.bytes)}: compressed (${CODECS[codec] ?? codec}` +
        `${st.dictionaryBytes > 0 ? `, a ${formatBytes(st.dictionaryBytes)} dictionary` : ""})`,
    ],
  ];
}

/** One line per round while a migration runs. */
export function roundLine(st: MigrationStats): string {
  return (
    `${formatBytes(st.transferred)} sent; ${formatBytes(st.remaining)} dirty, ` +
    `expected downtime ${st.expectedDowntime === undefined ? "-" : `${st.expectedDowntime.toFixed(0)} ms`}`
  );
}
