/**
 * `dwcp serve`: an agent that accepts peers until SIGINT or SIGTERM, prints
 * every event, receives any number of transfers (written to `--out-dir`, or
 * checked and discarded) and serves its metrics at `/metrics`.
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import { type Command, Option } from "commander";
import { DWCPManager } from "../index.js";
import { listenAddresses, parseAddress } from "./address.js";
import { type AgentCliOptions, agentOptions, printListening, withAgentOptions } from "./agent.js";
import { printManagerEvents, printTransferEnd, printTransferStart } from "./events.js";
import { EXIT, usage } from "./exit.js";
import { byteCount } from "./input.js";
import { type MetricsServer, serveMetrics } from "./metrics-http.js";
import { output } from "./output.js";
import type { Runner } from "./run.js";
import { onSignal } from "./signals.js";
import { LinkReceiver } from "./transfer/receiver.js";
import { discardSink, fileSink } from "./transfer/sink.js";

/** Largest file a receiver accepts unless told otherwise. */
export const DEFAULT_MAX_BYTES = 64 * 2 ** 30;

interface ServeOptions extends AgentCliOptions {
  listen: string;
  listenV3?: string;
  metrics?: string;
  outDir?: string;
  maxSize: number;
  json?: boolean;
}

/** Checks that `path` is a directory the user named. @throws DWCPError `ERR_INVALID_ARG` */
export function checkDir(path: string, option: string): string {
  let dir = false;
  try {
    dir = statSync(path).isDirectory();
  } catch (err) {
    throw usage(`${option} ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
  if (!dir) throw usage(`${option} ${JSON.stringify(path)} is not a directory`);
  return path;
}

/** The option every receiving command shares. */
export function maxSizeOption(): Option {
  return new Option("--max-size <bytes>", "largest file accepted (512k, 64m, 2g, …)")
    .argParser(byteCount)
    .default(DEFAULT_MAX_BYTES, "64g");
}

async function serve(o: ServeOptions): Promise<number> {
  const out = output(o.json === true);
  const agent = agentOptions(o);
  const outDir = o.outDir === undefined ? undefined : checkDir(o.outDir, "--out-dir");
  const addresses = await listenAddresses(o);
  const metricsAt =
    o.metrics === undefined
      ? undefined
      : parseAddress(o.metrics, "--metrics", { anyPort: true, defaultHost: "0.0.0.0" });
  const manager = new DWCPManager(agent.options);
  const stop = onSignal();
  let metrics: MetricsServer | undefined;
  try {
    printManagerEvents(manager, out);
    manager.on("link", (link) => {
      new LinkReceiver(link, {
        maxBytes: o.maxSize,
        open: async (header) =>
          outDir === undefined ? discardSink() : fileSink(join(outDir, header.name), false),
        started: (t) => printTransferStart(out, t),
        finished: (r) => printTransferEnd(out, r),
      });
    });
    const bound = await manager.listen(addresses);
    if (metricsAt)
      metrics = await serveMetrics(metricsAt, () => manager.metrics(), manager.metricsContentType);
    printListening(out, manager.nodeId, agent, bound, {
      fields: { metrics: metrics?.url ?? null, outDir: outDir ?? null },
      text:
        (metrics ? `, metrics ${metrics.url}` : "") +
        (outDir ? `, files to ${outDir}` : ", files checked and discarded"),
    });
    const signal = await stop.received;
    out.event("stopping", { signal }, `stopping (${signal})`);
  } finally {
    await metrics?.close();
    await manager.close();
    stop.dispose();
  }
  return EXIT.ok;
}

/** Adds `serve` to `program`. */
export function serveCommand(program: Command, run: Runner): void {
  withAgentOptions(
    program
      .command("serve")
      .description("run an agent: accept peers, receive transfers, serve /metrics, until SIGINT or SIGTERM")
      .option("--listen <addr>", "v1 address, host:port or :port (all interfaces)", ":7100")
      .option("--listen-v3 <addr>", "v3 address (none: v1 only)")
      .option("--metrics <addr>", "serve Prometheus metrics at http://addr/metrics, e.g. :9464")
      .option(
        "--out-dir <dir>",
        "write received files here under the sender's name (default: check and discard)",
      )
      .addOption(maxSizeOption())
      .option("--json", "one JSON object per event (NDJSON)"),
  ).action((o: ServeOptions) => run(o.json, () => serve(o)));
}
