/**
 * `dwcp recv`: listens, takes one transfer, and exits: 0 when it arrived whole
 * and matched the sender's length and SHA-256, 1 otherwise.
 */
import { dirname, join } from "node:path";
import type { Command } from "commander";
import { DWCPError, DWCPManager } from "../index.js";
import { listenAddresses } from "./address.js";
import { type AgentCliOptions, agentOptions, printListening, withAgentOptions } from "./agent.js";
import { printManagerEvents, printTransferEnd, printTransferStart } from "./events.js";
import { EXIT, knownCode } from "./exit.js";
import { output, printError } from "./output.js";
import { type Progress, progress } from "./progress.js";
import type { Runner } from "./run.js";
import { checkDir, maxSizeOption } from "./serve.js";
import { onSignal } from "./signals.js";
import { LinkReceiver, type TransferReport } from "./transfer/receiver.js";
import { fileSink, type Sink, stdoutSink } from "./transfer/sink.js";

interface RecvOptions extends AgentCliOptions {
  listen: string;
  listenV3?: string;
  outDir: string;
  maxSize: number;
  json?: boolean;
  progress: boolean;
}

async function recv(dest: string | undefined, o: RecvOptions): Promise<number> {
  const toStdout = dest === "-";
  const json = o.json === true;
  const out = output(json, toStdout);
  const agent = agentOptions(o);
  const outDir = dest === undefined ? checkDir(o.outDir, "--out-dir") : undefined;
  if (dest !== undefined && !toStdout) checkDir(dirname(dest), "the destination's directory");
  const addresses = await listenAddresses(o);
  const manager = new DWCPManager(agent.options);
  const stop = onSignal();
  const showBar = o.progress && !json && process.stderr.isTTY === true;
  try {
    // Only what matters for one transfer: links and why they fail.
    if (json) printManagerEvents(manager, out);
    let owner: LinkReceiver | undefined;
    let bar: Progress | undefined;
    const done = new Promise<TransferReport>((resolve) => {
      manager.on("link", (link) => {
        const receiver: LinkReceiver = new LinkReceiver(link, {
          maxBytes: o.maxSize,
          open: async (header): Promise<Sink> => {
            if (owner !== undefined && owner !== receiver)
              throw new DWCPError("ERR_UNSUPPORTED", "this receiver takes one transfer, and has one");
            owner = receiver;
            if (toStdout) return stdoutSink();
            return fileSink(outDir === undefined ? dest! : join(outDir, header.name), outDir === undefined);
          },
          started: (t) => {
            if (json) printTransferStart(out, t);
            bar = progress(showBar, "received", t.size);
          },
          progress: (bytes) => bar?.update(bytes),
          finished: (r) => {
            if (owner !== receiver) return;
            bar?.stop();
            resolve(r);
          },
        });
      });
    });
    const bound = await manager.listen(addresses);
    printListening(out, manager.nodeId, agent, bound);
    const r = await Promise.race([
      done,
      stop.received.then((signal): never => {
        bar?.stop();
        // Closing the manager ends the link, and the receiver removes what it wrote.
        throw new DWCPError("ERR_ABORTED", `interrupted by ${signal} before a transfer completed`);
      }),
    ]);
    if (json || r.ok) printTransferEnd(out, r);
    else printError(new DWCPError(knownCode(r.code), r.message), false);
    return r.ok ? EXIT.ok : EXIT.failure;
  } finally {
    await manager.close();
    stop.dispose();
  }
}

/** Adds `recv` to `program`. */
export function recvCommand(program: Command, run: Runner): void {
  withAgentOptions(
    program
      .command("recv")
      .argument("[file]", "where to write (- for standard output; default: the sender's name in --out-dir)")
      .description("listen, receive one transfer, and exit (0 when it arrived whole and verified)")
      .option("--listen <addr>", "v1 address, host:port or :port (all interfaces)", ":7100")
      .option("--listen-v3 <addr>", "v3 address (none: v1 only)")
      .option("--out-dir <dir>", "where the sender's name is written when no file is given", ".")
      .addOption(maxSizeOption())
      .option("--no-progress", "no progress bar")
      .option("--json", "JSON lines: listening, then the transfer's result"),
  ).action((file: string | undefined, o: RecvOptions) => run(o.json, () => recv(file, o)));
}
