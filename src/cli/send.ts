/**
 * `dwcp send <addr> <file|->`: sends one file (or standard input) to a peer
 * running `serve` or `recv`, and exits 0 only when the receiver confirmed
 * exactly the bytes and SHA-256 sent.
 */
import { open } from "node:fs/promises";
import { basename } from "node:path";
import type { Command } from "commander";
import { type ClientCliOptions, connectClient, withClientOptions } from "./client.js";
import { EXIT, usage } from "./exit.js";
import { formatBytes, formatRate } from "./format.js";
import { output } from "./output.js";
import { progress } from "./progress.js";
import type { Runner } from "./run.js";
import { badName, CHUNK_BYTES } from "./transfer/protocol.js";
import { sendTransfer } from "./transfer/sender.js";

interface SendOptions extends ClientCliOptions {
  name?: string;
  progress: boolean;
}

/** The bytes to send, their name and size (null: unknown). */
async function openSource(
  file: string,
  name: string | undefined,
): Promise<{ source: AsyncIterable<Uint8Array>; name: string; size: number | null; close(): Promise<void> }> {
  if (file === "-")
    return { source: process.stdin, name: name ?? "stdin", size: null, close: async () => {} };
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(file, "r");
  } catch (err) {
    throw usage(`cannot read ${JSON.stringify(file)}: ${(err as Error).message}`);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw usage(`${JSON.stringify(file)} is not a regular file`);
  }
  return {
    source: fh.createReadStream({ highWaterMark: CHUNK_BYTES, autoClose: false }),
    name: name ?? basename(file),
    size: st.size,
    close: () => fh.close(),
  };
}

async function send(address: string, file: string, o: SendOptions): Promise<number> {
  const json = o.json === true;
  const out = output(json);
  if (o.name !== undefined) {
    const why = badName(o.name);
    if (why) throw usage(`--name: ${why}`);
  }
  const src = await openSource(file, o.name);
  try {
    const why = badName(src.name);
    if (why) throw usage(`${why}: give --name`);
    const client = await connectClient(address, o);
    const { manager, link } = client;
    try {
      const bar = progress(o.progress && !json && process.stderr.isTTY === true, "sent", src.size);
      let report: Awaited<ReturnType<typeof sendTransfer>>;
      try {
        report = await sendTransfer(
          link,
          src.source,
          { name: src.name, size: src.size },
          {
            progress: (bytes) => bar.update(bytes),
            resultTimeoutMs: o.timeout * 1000,
          },
        );
      } finally {
        bar.stop();
      }
      const stats = link.stats;
      out.result(
        {
          ok: true,
          peer: report.peer,
          name: report.name,
          size: report.size,
          bytes: report.bytes,
          sha256: report.sha256,
          messages: report.messages,
          linkBytes: report.linkBytes,
          seconds: report.seconds,
          mode: link.mode ?? null,
          generations: { v1: stats.v1, v3: stats.v3 },
          resent: stats.resent,
        },
        `sent ${JSON.stringify(report.name)} to ${report.peer}: ${report.bytes} bytes (${formatBytes(report.bytes)}) ` +
          `in ${report.seconds.toFixed(2)} s (${formatRate(report.bytes / report.seconds)}), ` +
          `confirmed by the receiver: sha256 ${report.sha256}`,
      );
      return EXIT.ok;
    } finally {
      await manager.close();
    }
  } finally {
    await src.close();
  }
}

/** Adds `send` to `program`. */
export function sendCommand(program: Command, run: Runner): void {
  withClientOptions(
    program
      .command("send")
      .argument("<addr>", "the receiver's v1 address, host:port")
      .argument("<file>", "the file to send, or - for standard input")
      .description(
        "send a file to `dwcp serve` or `dwcp recv`; exit 0 only once the receiver confirmed every byte",
      )
      .option("--name <name>", "the name the receiver is given (default: the file's name; stdin for -)")
      .option("--no-progress", "no progress bar")
      .option("--json", "the result as one JSON object"),
  ).action((addr: string, file: string, o: SendOptions) => run(o.json, () => send(addr, file, o)));
}
