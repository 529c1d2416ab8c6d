// One DWCP process of the membership half of `npm run bench -- sync`
// (bench/sync-membership.ts):
//   sync-agent.ts CONFIG_JSON
// A DWCPManager (TCP on 127.0.0.1, PSK sessions, datacenter mode assumed)
// linked to every other agent, hosting SWIM over its links (hostSwim) with the
// options the config gives (the defaults unless it says otherwise). Once linked
// to every other agent it joins through the first one.
// JSON lines on stdout: `ready` (linked to all), then `swim` for every
// membership event with the wall clock of the moment the core emitted it;
// `stats` when asked by a `stats` line on stdin; it closes when stdin closes.
// `failed` on error.
import { createInterface } from "node:readline";
import { DWCPManager, tcp } from "../src/index.js";
import { hostSwim, type SwimOptions } from "../src/sync/swim/index.js";
import { failed, say } from "./lib/deployed.js";

/** One agent's configuration, written by bench/sync-membership.ts. */
export interface SyncAgentConfig {
  /** This agent's index in `ids`. */
  index: number;
  /** Every agent's node id (= SWIM member id). */
  ids: string[];
  /** Each agent's v1 port on 127.0.0.1; v3 is the next one. */
  ports: number[];
  /** The run's pre-shared key. */
  psk: string;
  /** SWIM options (empty: the defaults). */
  options: SwimOptions;
  requestTimeoutMs?: number | undefined;
}

const cfg = JSON.parse(process.argv[2]!) as SyncAgentConfig;
const self = cfg.ids[cfg.index]!;
const addr = (i: number, gen: "v1" | "v3") => `127.0.0.1:${cfg.ports[i]! + (gen === "v3" ? 1 : 0)}`;

async function main(): Promise<void> {
  const mgr = new DWCPManager({
    nodeId: self,
    v1: { transport: tcp(), psk: cfg.psk },
    v3: { transport: tcp(), psk: cfg.psk },
    detectMode: false,
    assumeMode: "datacenter",
  });
  // Hosted before the links exist, so no peer's first message finds no handler.
  const host = hostSwim(mgr, {
    id: self,
    options: cfg.options,
    ...(cfg.requestTimeoutMs !== undefined && { requestTimeoutMs: cfg.requestTimeoutMs }),
  });
  host.swim.onEvent((e) =>
    say({
      event: "swim",
      type: e.type,
      node: e.node,
      origin: e.origin,
      incarnation: e.incarnation,
      wall: Date.now(),
    }),
  );
  await mgr.listen({ v1: addr(cfg.index, "v1"), v3: addr(cfg.index, "v3") });
  // Each agent dials the ones after it, retrying while they are not listening yet.
  for (let j = cfg.index + 1; j < cfg.ids.length; j++) {
    for (let attempt = 0; ; attempt++) {
      try {
        await mgr.connect({ v1: addr(j, "v1"), v3: addr(j, "v3") });
        break;
      } catch (err) {
        if (attempt >= 300) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  const end = Date.now() + 60_000;
  while (!cfg.ids.every((id) => id === self || mgr.links.get(id)?.state === "open")) {
    if (Date.now() > end) throw new Error("links to every agent: not within 60 s");
    await new Promise((r) => setTimeout(r, 20));
  }
  say({ event: "ready", wall: Date.now() });
  if (cfg.index > 0) host.swim.join([cfg.ids[0]!]);
  const input = createInterface({ input: process.stdin });
  input.on("line", (l) => {
    if (l.trim() === "stats") say({ event: "stats", host: { ...host.stats }, swim: host.swim.stats() });
  });
  await new Promise<void>((r) => input.once("close", () => r()));
  host.close();
  await mgr.close();
}

try {
  await main();
  process.exit(0);
} catch (err) {
  failed(err);
}
