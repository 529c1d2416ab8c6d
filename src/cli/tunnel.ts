/**
 * `dwcp tunnel`: local byte streams carried over a DWCP link, as an agent
 * forwards QEMU's migration connections. Two forms:
 *
 *   dwcp tunnel <addr> <local>           connections made to <local> go to the peer
 *   dwcp tunnel --to <target> [--listen] the peer's channels go to <target>
 *
 * <local> and <target> are `unix:/path` (or a path) or `host:port`. Both run
 * until interrupted or the peer closes the link (exit 0), or the link fails (exit 1).
 */
import type { Server } from "node:net";
import type { Command } from "commander";
import {
  connectLocal,
  DWCPError,
  DWCPManager,
  describeEndpoint,
  forwardLocal,
  type LocalEndpoint,
  type PeerLink,
  type Tunnel,
  type TunnelChannelInfo,
} from "../index.js";
import { listenAddresses, parseAddress } from "./address.js";
import { type AgentCliOptions, agentOptions, printListening } from "./agent.js";
import { type ClientCliOptions, connectClient, withClientOptions } from "./client.js";
import { EXIT, usage } from "./exit.js";
import type { Output } from "./output.js";
import { output } from "./output.js";
import type { Runner } from "./run.js";
import { onSignal } from "./signals.js";

interface TunnelCliOptions extends ClientCliOptions, AgentCliOptions {
  to?: string;
  listen: string;
  listenV3?: string;
  compression?: "none" | "lz4" | "zstd";
}

/** `unix:/path`, `/path` or `host:port`. @throws a usage error */
function endpoint(text: string, what: string): LocalEndpoint {
  if (text.startsWith("unix:")) return { path: text.slice(5) };
  if (text.startsWith("/") || text.startsWith(".")) return { path: text };
  try {
    return parseAddress(text, what, { defaultHost: "127.0.0.1" });
  } catch (err) {
    throw usage(`${(err as Error).message} (or unix:/path for a unix socket)`);
  }
}

function report(t: Tunnel, out: Output): void {
  const fields = (i: TunnelChannelInfo) => ({ channel: i.id, local: i.local, label: i.label });
  t.on("open", (i) =>
    out.event("open", fields(i), `channel ${i.id} opened ${i.local ? "here" : "by the peer"}`),
  );
  t.on("end", (i, err) =>
    out.event(
      "end",
      { ...fields(i), code: err?.code ?? null, ...(err ? { message: err.message } : {}) },
      `channel ${i.id} ended${err ? `: ${err.code} ${err.message}` : ""}`,
    ),
  );
}

/** Runs until a signal or the peer's close (0), or the link's failure (1). */
async function hold(link: PeerLink, t: Tunnel, received: Promise<string>, out: Output): Promise<number> {
  const closed = new Promise<Error | undefined>((r) => link.once("close", r));
  const how = await Promise.race([received.then((s) => ({ signal: s })), closed.then((err) => ({ err }))]);
  const s = t.stats();
  const totals = {
    channels: s.channels,
    bytesOut: s.bytesOut,
    bytesIn: s.bytesIn,
    wireBytesOut: s.wireBytesOut,
    wireBytesIn: s.wireBytesIn,
  };
  t.close();
  // Interrupted, or the peer closed the link in order: done. A link that
  // failed is this command's failure.
  if ("signal" in how || how.err === undefined) {
    const why = "signal" in how ? how.signal : "the peer closed the link";
    out.result(
      { ok: true, ...totals },
      `tunnel closed (${why}): ${s.channels} channels, ${s.bytesOut} bytes out (${s.wireBytesOut} on the link), ${s.bytesIn} in`,
    );
    return EXIT.ok;
  }
  throw how.err instanceof DWCPError ? how.err : new DWCPError("ERR_CLOSED", how.err.message);
}

async function forward(address: string, local: string, o: TunnelCliOptions): Promise<number> {
  const out = output(o.json === true);
  const ep = endpoint(local, "<local>");
  const stop = onSignal();
  try {
    const { manager, link } = await connectClient(address, o);
    let server: Server | undefined;
    try {
      const t = manager.tunnel(link.peerId, o.compression ? { compression: o.compression } : {});
      report(t, out);
      server = await forwardLocal(t, ep);
      out.event(
        "forwarding",
        { local: describeEndpoint(ep), peer: link.peerId, mode: link.mode ?? null },
        `forwarding ${describeEndpoint(ep)} to ${link.peerId} (${link.mode ?? "mode not measured"})`,
      );
      return await hold(link, t, stop.received, out);
    } finally {
      server?.close();
      await manager.close();
    }
  } finally {
    stop.dispose();
  }
}

async function serve(to: string, o: TunnelCliOptions): Promise<number> {
  const out = output(o.json === true);
  const target = endpoint(to, "--to");
  const agent = agentOptions(o);
  const addresses = await listenAddresses(o);
  const manager = new DWCPManager(agent.options);
  const stop = onSignal();
  try {
    const linked = new Promise<{ link: PeerLink; t: Tunnel }>((resolve) =>
      manager.once("link", (link: PeerLink) => {
        // Attached as the link appears: the peer's first channel cannot come before it.
        const t = manager.tunnel(link.peerId, {
          connect: connectLocal(target),
          ...(o.compression ? { compression: o.compression } : {}),
        });
        report(t, out);
        resolve({ link, t });
      }),
    );
    const bound = await manager.listen(addresses);
    printListening(out, manager.nodeId, agent, bound, {
      fields: { to: describeEndpoint(target) },
      text: `; channels go to ${describeEndpoint(target)}`,
    });
    const first = await Promise.race([linked, stop.received.then((signal) => ({ signal }))]);
    if ("signal" in first) {
      out.result({ ok: true, channels: 0 }, `stopped (${first.signal}) before a peer came`);
      return EXIT.ok;
    }
    return await hold(first.link, first.t, stop.received, out);
  } finally {
    await manager.close();
    stop.dispose();
  }
}

/** Adds `tunnel` to `program`. */
export function tunnelCommand(program: Command, run: Runner): void {
  const cmd = program
    .command("tunnel")
    .argument("[addr]", "the peer's v1 address, host:port (it runs `dwcp tunnel --to …`)")
    .argument("[local]", "where local clients connect: unix:/path or host:port")
    .description(
      "carry local byte streams over a DWCP link, one channel per connection (QEMU's migration, multifd included)",
    )
    .option(
      "--to <target>",
      "take the peer's channels and connect each to <target> (unix:/path or host:port)",
    )
    .option("--listen <addr>", "with --to: v1 address, host:port or :port (all interfaces)", ":7100")
    .option("--listen-v3 <addr>", "with --to: v3 address (none: v1 only)")
    .option("--compression <codec>", "none, lz4 or zstd (default: by the path's mode)")
    .option("--json", "JSON lines: listening or forwarding, each channel, then the totals");
  // The client options include the agent's (identity, PSK, transports).
  withClientOptions(cmd);
  cmd.action((addr: string | undefined, local: string | undefined, o: TunnelCliOptions) =>
    run(o.json, async () => {
      if (o.compression !== undefined && !["none", "lz4", "zstd"].includes(o.compression))
        throw usage(`--compression must be none, lz4 or zstd, got ${JSON.stringify(o.compression)}`);
      if (o.to !== undefined) {
        if (addr !== undefined)
          throw usage("give either <addr> <local> (forward) or --to <target> (serve), not both");
        return serve(o.to, o);
      }
      if (addr === undefined || local === undefined)
        throw usage("dwcp tunnel needs <addr> <local>, or --to <target> to take the peer's channels");
      return forward(addr, local, o);
    }),
  );
}
