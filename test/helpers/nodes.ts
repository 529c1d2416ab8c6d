// Builds pairs of DWCP nodes and connected sessions for tests, and tears them down.
import { DWCPNode, type NodeOptions } from "../../src/session/node.js";
import type { Session } from "../../src/session/session.js";
import type { Listener } from "../../src/transport/contract.js";
import { MemoryNetwork, memory } from "../../src/transport/memory/index.js";

export const PSK = "test-pre-shared-key-0123456789";

export interface Pair {
  server: DWCPNode;
  client: DWCPNode;
  listener: Listener;
  /** Client side of the session. */
  a: Session;
  /** Server side of the session. */
  b: Session;
}

const open: (() => Promise<void>)[] = [];

/** Closes everything made since the last call (use in afterEach). */
export async function closeAll(): Promise<void> {
  for (const f of open.splice(0).reverse()) await f().catch(() => {});
}

/** Overrides of the defaults; `undefined` removes a default (e.g. `psk: undefined` for TLS). */
export type Overrides = { [K in keyof NodeOptions]?: NodeOptions[K] | undefined };

function options(nodeId: string, transport: NodeOptions["transport"], o: Overrides): NodeOptions {
  const merged: Record<string, unknown> = { nodeId, transport, psk: PSK, ...o };
  for (const k of Object.keys(merged)) if (merged[k] === undefined) delete merged[k];
  return merged as unknown as NodeOptions;
}

/** Two nodes on a fresh memory network (PSK auth) unless options say otherwise. */
export async function sessionPair(
  serverOpts: Overrides = {},
  clientOpts: Overrides = {},
  listenAddress = "server:0",
): Promise<Pair> {
  const transport = serverOpts.transport ?? memory({}, new MemoryNetwork());
  const server = new DWCPNode(options("server", transport, serverOpts));
  const client = new DWCPNode(options("client", clientOpts.transport ?? transport, clientOpts));
  const accepted = new Promise<Session>((resolve, reject) => {
    server.once("session", resolve);
    server.once("handshakeError", reject);
  });
  const listener = await server.listen(listenAddress);
  open.push(async () => {
    await client.close({ timeoutMs: 1000 });
    await server.close({ timeoutMs: 1000 });
    await listener.close();
  });
  const a = await client.connect(listener.address);
  const b = await accepted;
  return { server, client, listener, a, b };
}
