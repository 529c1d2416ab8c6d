/**
 * `dwcp probe <addr>`: DWCP's own view of a path, as iperf3's client gives its
 * own: the RTT and bandwidth the mode detector measured, where each figure came
 * from, the mode it decided and the rule that decided it, the generation the
 * transport takes, and (with `--time`) the RTT each second after that.
 */
import type { Command } from "commander";
import {
  DEFAULT_THRESHOLDS,
  type Mode,
  type ModeEvent,
  type ModeThresholds,
  type PathEstimate,
  PathProber,
} from "../index.js";
import { type ClientCliOptions, connectClient, withClientOptions } from "./client.js";
import { describeError, EXIT } from "./exit.js";
import { formatBits, formatMs } from "./format.js";
import { secondsOrZero } from "./input.js";
import { output } from "./output.js";
import type { Runner } from "./run.js";

interface ProbeOptions extends ClientCliOptions {
  time: number;
}

/**
 * The rule that put `e` in `mode` (the classifier's, with its thresholds), in words.
 * A first decision follows the rule exactly; later ones also passed hysteresis.
 */
export function explain(mode: Mode, e: PathEstimate, t: ModeThresholds = DEFAULT_THRESHOLDS): string[] {
  const rtt = `RTT ${formatMs(e.rttMs)}`;
  const line = formatBits(t.bandwidthBps);
  const bw = e.bandwidthAtLeast
    ? `bandwidth ≥ ${formatBits(e.bandwidthBps)} (a lower bound: the hosts, not the path, limited it)`
    : `bandwidth ${formatBits(e.bandwidthBps)}`;
  const slow = !e.bandwidthAtLeast && e.bandwidthBps < t.bandwidthBps;
  switch (mode) {
    case "internet": {
      const why: string[] = [];
      if (e.rttMs > t.internetRttMs) why.push(`${rtt} > ${t.internetRttMs} ms`);
      if (slow) why.push(`${bw} < ${line}`);
      return why.length > 0 ? why : [`${rtt} and ${bw}: within the internet band's hysteresis`];
    }
    case "datacenter":
      return [
        `${rtt} < ${t.datacenterRttMs} ms`,
        e.bandwidthAtLeast ? `${bw}, not below ${line}` : `${bw} > ${line}`,
      ];
    case "hybrid":
      return [`${rtt} from ${t.datacenterRttMs} to ${t.internetRttMs} ms`, `${bw}, not below ${line}`];
  }
}

function modeFields(e: ModeEvent) {
  return {
    mode: e.mode,
    previous: e.previous ?? null,
    rttMs: e.estimate.rttMs,
    bandwidthBps: e.estimate.bandwidthBps,
    bandwidthAtLeast: e.estimate.bandwidthAtLeast === true,
    decidedInMs: e.sinceStartMs,
    sources: e.sources,
    because: explain(e.mode, e.estimate),
  };
}

async function probe(address: string, o: ProbeOptions): Promise<number> {
  const json = o.json === true;
  const out = output(json);
  const client = await connectClient(address, o);
  const { manager, link, agent } = client;
  try {
    const first = client.modes[0];
    const transport = manager.components(link.peerId).transport;
    const kernel = link.v1?.conn.pathInfo?.();
    const t = DEFAULT_THRESHOLDS;
    const lines: string[] = [
      `Connecting to ${client.addresses.v1} (v1, ${agent.transports.v1})` +
        (client.addresses.v3 ? ` and ${client.addresses.v3} (v3, ${agent.transports.v3})` : "") +
        ` as ${manager.nodeId}`,
      `Connected to ${link.peerId} in ${client.connectMs.toFixed(0)} ms (handshakes and the first mode decision)`,
      `  sessions       v1: ${link.v1 ? `protocol version ${link.v1.version}` : "none"}; v3: ${link.v3 ? `protocol version ${link.v3.version}` : "none"}`,
    ];
    if (first) {
      const e = first.estimate;
      lines.push(
        "",
        "Path, as DWCP measured it",
        `  RTT            ${formatMs(e.rttMs).padEnd(16)} from ${first.sources.rtt.join("; ") || "-"}`,
        `  bandwidth      ${`${e.bandwidthAtLeast ? "≥ " : ""}${formatBits(e.bandwidthBps)}`.padEnd(16)} from ${first.sources.bandwidth.join("; ") || "-"}`,
        `  decided in     ${first.sinceStartMs.toFixed(0)} ms`,
        "",
        `Mode: ${first.mode}`,
        ...explain(first.mode, e).map((w) => `  because ${w}`),
        `  (datacenter: RTT < ${t.datacenterRttMs} ms and > ${formatBits(t.bandwidthBps)}; internet: RTT > ${t.internetRttMs} ms or < ${formatBits(t.bandwidthBps)}; hybrid: between)`,
      );
    } else {
      lines.push("", `Mode: not measured (${link.mode ?? "counts as internet"})`);
    }
    lines.push(`Transport: ${transport.generation} (${transport.reason})`);
    if (kernel) {
      lines.push(
        `Kernel (TCP_INFO): ${kernel.congestion}, RTT ${formatMs(kernel.rttUs / 1000)}` +
          (kernel.minRttUs !== undefined ? `, min RTT ${formatMs(kernel.minRttUs / 1000)}` : "") +
          (kernel.deliveryRateBps !== undefined
            ? `, delivery rate ${formatBits(kernel.deliveryRateBps)}`
            : "") +
          `, ${kernel.totalRetrans} retransmitted`,
      );
    }
    // Intervals after the decision: the RTT of a ping each second, and any mode change.
    const intervals: { fromS: number; toS: number; rttMs: number | null; mode: string; error?: string }[] =
      [];
    if (o.time > 0 && link.v1) {
      if (!json) lines.push("", "[ interval ]   RTT          mode");
      if (!json) out.result({}, lines.join("\n"));
      const prober = PathProber.of(link.v1);
      const start = performance.now();
      for (let i = 0; (performance.now() - start) / 1000 < o.time; i++) {
        const from = (performance.now() - start) / 1000;
        let rttMs: number | null = null;
        let error: string | undefined;
        try {
          rttMs = await prober.ping({ timeoutMs: 5000 });
        } catch (err) {
          const d = describeError(err);
          error = `${d.code}: ${d.message}`;
        }
        const next = start + (i + 1) * 1000;
        const wait = next - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const row = {
          fromS: from,
          toS: (performance.now() - start) / 1000,
          rttMs,
          mode: link.mode ?? "internet",
          ...(error ? { error } : {}),
        };
        intervals.push(row);
        if (!json)
          out.result(
            {},
            `[${row.fromS.toFixed(1).padStart(4)}-${row.toS.toFixed(1).padStart(4)} s]  ${(rttMs === null ? (error ?? "-") : formatMs(rttMs)).padEnd(12)} ${row.mode}`,
          );
      }
    } else if (!json) {
      out.result({}, lines.join("\n"));
    }
    if (json) {
      out.result(
        {
          peer: link.peerId,
          nodeId: manager.nodeId,
          addresses: client.addresses,
          transports: agent.transports,
          connectMs: client.connectMs,
          sessions: { v1: link.v1?.version ?? null, v3: link.v3?.version ?? null },
          mode: link.mode ?? null,
          decision: first ? modeFields(first) : null,
          changes: client.modes.slice(1).map(modeFields),
          thresholds: {
            datacenterRttMs: t.datacenterRttMs,
            internetRttMs: t.internetRttMs,
            bandwidthBps: t.bandwidthBps,
          },
          transport,
          kernel: kernel ?? null,
          intervals,
        },
        "",
      );
    }
    return EXIT.ok;
  } finally {
    await manager.close();
  }
}

/** Adds `probe` to `program`. */
export function probeCommand(program: Command, run: Runner): void {
  withClientOptions(
    program
      .command("probe")
      .argument("<addr>", "the peer's v1 address, host:port")
      .description("measure a path as DWCP does: RTT, bandwidth, the mode decision and why")
      .option("-t, --time <seconds>", "after the decision, ping each second for this long", secondsOrZero, 0)
      .option("--json", "the result as one JSON object"),
  ).action((addr: string, o: ProbeOptions) => run(o.json, () => probe(addr, o)));
}
