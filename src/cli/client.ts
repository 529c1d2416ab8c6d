/**
 * The dialling side of `probe` and `send`: an agent of its own that connects to
 * a peer's v1 address (and v3, when given) and waits for the first mode decision.
 */
import { hostname } from "node:os";
import type { Command } from "commander";
import { DWCPManager, type ModeEvent, type PeerLink } from "../index.js";
import { resolveAddress } from "./address.js";
import { type Agent, type AgentCliOptions, agentOptions, withAgentOptions } from "./agent.js";
import { printWarning } from "./output.js";

/** Options of the dialling commands. */
export interface ClientCliOptions extends AgentCliOptions {
  v3?: string;
  json?: boolean;
}

/** Adds the dialling options to `cmd`. */
export function withClientOptions(cmd: Command): Command {
  return withAgentOptions(cmd.option("--v3 <addr>", "the peer's v3 address (none: v1 only)"));
}

/** A connected client agent. */
export interface Client {
  manager: DWCPManager;
  link: PeerLink;
  agent: Agent;
  /** The addresses dialled, resolved. */
  addresses: { v1: string; v3: string | undefined };
  /** Dialling, both handshakes and the first mode decision, ms. */
  connectMs: number;
  /** Every mode decision so far, the first one first. */
  modes: ModeEvent[];
}

/**
 * Connects to `address`. The caller closes `client.manager`; when connecting
 * fails, it is closed here. Errors that do not stop the link (a v3 dial that
 * failed: the link goes on with v1) are printed as warnings.
 * @throws DWCPError `ERR_BAD_ADDRESS`, `ERR_INVALID_ARG`, and what {@link DWCPManager.connect} throws
 */
export async function connectClient(address: string, o: ClientCliOptions): Promise<Client> {
  const agent = agentOptions(o, `${hostname()}-${process.pid}`);
  const v1 = await resolveAddress(address, "address");
  const v3 = o.v3 === undefined ? undefined : await resolveAddress(o.v3, "--v3");
  const manager = new DWCPManager(agent.options);
  const modes: ModeEvent[] = [];
  manager.on("mode", (_link, e) => modes.push(e));
  manager.on("error", (err) => printWarning(err, o.json === true));
  const t0 = performance.now();
  try {
    const link = await manager.connect({ v1, ...(v3 ? { v3 } : {}) });
    return { manager, link, agent, addresses: { v1, v3 }, connectMs: performance.now() - t0, modes };
  } catch (err) {
    await manager.close();
    throw err;
  }
}
