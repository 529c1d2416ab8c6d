/**
 * `dwcp migrate <addr> <image>` and `dwcp accept [file]`: a live migration
 * between two agents from the shell. The image is a file (a QEMU
 * `memory-backend-file`, a disk image) whose changes are found by hashing, or
 * `guest:<size>`, a simulated guest that keeps dirtying its memory. The
 * receiving side writes the image once every page is checked.
 */
import { writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import {
  DWCPError,
  DWCPManager,
  FileImage,
  type IncomingMigration,
  type MigratedImage,
  type MigrationStats,
  type PageSource,
  SimulatedGuest,
  toQueryMigrate,
} from "../index.js";
import { listenAddresses } from "./address.js";
import { type AgentCliOptions, agentOptions, printListening, withAgentOptions } from "./agent.js";
import { type ClientCliOptions, connectClient, withClientOptions } from "./client.js";
import { printManagerEvents } from "./events.js";
import { EXIT, usage } from "./exit.js";
import { byteCount } from "./input.js";
import { migrationLines, roundLine } from "./migration-report.js";
import { output } from "./output.js";
import { progress } from "./progress.js";
import type { Runner } from "./run.js";
import { checkDir, maxSizeOption } from "./serve.js";
import { onSignal } from "./signals.js";

interface MigrateCliOptions extends ClientCliOptions {
  pageSize: number;
  downtimeLimit: number;
  verifySource?: boolean;
  hde: boolean;
  progress: boolean;
}

interface AcceptCliOptions extends AgentCliOptions {
  listen: string;
  listenV3?: string;
  maxSize: number;
  json?: boolean;
}

/** A simulated guest's working set and how fast it dirties it, as `dwcp migrate guest:<size>` runs it. */
const GUEST_HOT_SHARE = 8;
const GUEST_DIRTY_BYTES_PER_SECOND = 32 << 20;

function milliseconds(value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0 || n > 3_600_000)
    throw new InvalidArgumentError("expected a number of milliseconds, more than 0 and at most 3600000");
  return n;
}

/** The page source `image` names, and how to let it go. */
async function openSource(
  image: string,
  pageSize: number,
): Promise<{ source: PageSource; close(): Promise<void>; what: string }> {
  const g = /^guest:(.+)$/.exec(image);
  if (g) {
    let bytes: number;
    try {
      bytes = byteCount(g[1]!);
    } catch {
      throw usage(`guest:<size> needs a size such as 256m, got ${JSON.stringify(g[1])}`);
    }
    const guest = await SimulatedGuest.start({
      bytes,
      pageSize,
      hotBytes: Math.max(pageSize, Math.floor(bytes / GUEST_HOT_SHARE)),
      dirtyBytesPerSecond: GUEST_DIRTY_BYTES_PER_SECOND,
    });
    return { source: guest, close: () => guest.close(), what: `a simulated guest of ${bytes} bytes` };
  }
  let file: FileImage;
  try {
    file = await FileImage.open(image, { pageSize });
  } catch (err) {
    // A file that cannot be opened or paged is the user's input, not a failure of the migration.
    throw usage(`cannot migrate ${JSON.stringify(image)}: ${(err as Error).message}`);
  }
  return { source: file, close: () => file.close(), what: JSON.stringify(image) };
}

async function migrateCommandRun(address: string, image: string, o: MigrateCliOptions): Promise<number> {
  const json = o.json === true;
  const out = output(json);
  const src = await openSource(image, o.pageSize);
  const stop = onSignal();
  try {
    const client = await connectClient(address, o);
    const { manager, link } = client;
    try {
      const cancel = new AbortController();
      void stop.received.then(() => cancel.abort());
      const policy = manager.pagePolicy(link.peerId);
      const m = manager.migrate(link.peerId, src.source, {
        downtimeLimitMs: o.downtimeLimit,
        verifySource: o.verifySource === true,
        hde: o.hde,
        signal: cancel.signal,
      });
      const total = src.source.pageCount * src.source.pageSize;
      const bar = progress(o.progress && !json && process.stderr.isTTY === true, "migrated", total);
      m.on("progress", (s: MigrationStats) => bar.update(Math.min(total, s.pages * src.source.pageSize)));
      m.on("round", (s: MigrationStats) =>
        out.event("round", { rounds: s.rounds, ...toQueryMigrate(s) }, `round ${s.rounds}: ${roundLine(s)}`),
      );
      let st: MigrationStats;
      try {
        st = await m.done;
      } finally {
        bar.stop();
      }
      const lines = migrationLines(st, policy.codec);
      out.result(
        { ok: true, peer: link.peerId, mode: link.mode ?? null, ...toQueryMigrate(st), hde: st.hde },
        `migrated ${src.what} to ${link.peerId} (${link.mode} mode)\n` +
          lines.map(([k, v]) => `  ${k.padEnd(20)} ${v}`).join("\n"),
      );
      return EXIT.ok;
    } finally {
      await manager.close();
    }
  } finally {
    stop.dispose();
    await src.close();
  }
}

async function accept(dest: string | undefined, o: AcceptCliOptions): Promise<number> {
  const json = o.json === true;
  const out = output(json);
  if (dest !== undefined) checkDir(dirname(dest), "the destination's directory");
  const agent = agentOptions(o);
  const addresses = await listenAddresses(o);
  const manager = new DWCPManager(agent.options);
  const stop = onSignal();
  const cancel = new AbortController();
  void stop.received.then(() => cancel.abort());
  try {
    if (json) printManagerEvents(manager, out);
    const incoming = new Promise<{ peer: string; m: IncomingMigration }>((resolve) => {
      manager.once("link", (link) =>
        resolve({
          peer: link.peerId,
          m: manager.acceptMigration(link.peerId, { maxImageBytes: o.maxSize, signal: cancel.signal }),
        }),
      );
    });
    const bound = await manager.listen(addresses);
    printListening(out, manager.nodeId, agent, bound);
    const { peer, m } = await Promise.race([
      incoming,
      stop.received.then((signal): never => {
        throw new DWCPError("ERR_ABORTED", `interrupted by ${signal} before a migration came`);
      }),
    ]);
    m.on("offer", (offer) =>
      out.event(
        "offer",
        { peer, ...offer },
        `${peer} offers ${offer.pageCount} pages of ${offer.pageSize} bytes`,
      ),
    );
    const got: MigratedImage = await m.done;
    if (dest !== undefined) await writeFile(dest, got.image);
    out.result(
      {
        ok: true,
        peer,
        bytes: got.image.length,
        rounds: got.rounds,
        frames: got.frames,
        frameBytes: got.frameBytes,
        file: dest ?? null,
      },
      `accepted ${got.image.length} bytes from ${peer} in ${got.rounds} rounds (${got.frames} frames, ` +
        `${got.frameBytes} frame bytes), every page checked${dest === undefined ? "" : `; written to ${dest}`}`,
    );
    return EXIT.ok;
  } finally {
    await manager.close();
    stop.dispose();
  }
}

/** Adds `migrate` and `accept` to `program`. */
export function migrationCommands(program: Command, run: Runner): void {
  withClientOptions(
    program
      .command("migrate")
      .argument("<addr>", "the destination's v1 address, host:port (it runs `dwcp accept`)")
      .argument(
        "<image>",
        "the image: a file (changes found by hashing), or guest:<size> for a simulated guest",
      )
      .description(
        "live-migrate an image to a peer: pre-copy rounds, then stop and copy; exit 0 once every page is checked there",
      )
      .addOption(new Option("--page-size <bytes>", "page size").argParser(byteCount).default(4096))
      .addOption(
        new Option("--downtime-limit <ms>", "the downtime switchover aims for")
          .argParser(milliseconds)
          .default(300),
      )
      .option(
        "--verify-source",
        "hash the whole paused image before switchover and send whatever the dirty log missed",
      )
      .option("--no-hde", "plain pre-copy: whole dirty pages, no deltas or copies (for comparison)")
      .option("--no-progress", "no progress bar")
      .option("--json", "JSON lines: each round, then the result"),
  ).action((addr: string, image: string, o: MigrateCliOptions) =>
    run(o.json, () => migrateCommandRun(addr, image, o)),
  );
  withAgentOptions(
    program
      .command("accept")
      .argument("[file]", "where to write the image once complete (default: nowhere)")
      .description("listen, take one live migration, check every page, and exit (0 when complete)")
      .option("--listen <addr>", "v1 address, host:port or :port (all interfaces)", ":7100")
      .option("--listen-v3 <addr>", "v3 address (none: v1 only)")
      .addOption(maxSizeOption().default(8 * 2 ** 30, "8g"))
      .option("--json", "JSON lines: listening, the offer, then the result"),
  ).action((file: string | undefined, o: AcceptCliOptions) => run(o.json, () => accept(file, o)));
}
