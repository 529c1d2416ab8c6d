// Pairs of DWCPManagers for link tests, and small waiting helpers.
import { DWCPManager, type ManagerOptions, type PeerLink } from "../../src/manager.js";
import type { SimNetwork, Simulator } from "../../src/testing/index.js";
import type { Transport } from "../../src/transport/contract.js";
import { MemoryNetwork, memory } from "../../src/transport/memory/index.js";
import { tls } from "../../src/transport/tls/index.js";
import { meshPki } from "./certs.js";
import { PSK } from "./nodes.js";

export const V3_ON = { enableV3Transport: true, v3RolloutPercentage: 100 };

const made: DWCPManager[] = [];

/**
 * A manager of simulated node `name`: its env, both generations on `net`, v3 on,
 * the path declared datacenter (the manager's own timers are what such tests
 * exercise, not detection); `o` overrides.
 */
export function simManager(
  sim: Simulator,
  net: SimNetwork,
  name: string,
  o: Partial<ManagerOptions> = {},
): DWCPManager {
  return new DWCPManager({
    nodeId: name,
    env: sim.env(name),
    v1: { transport: net.transport(name), psk: PSK },
    v3: { transport: net.transport(name), psk: PSK },
    flags: V3_ON,
    assumeMode: "datacenter",
    ...o,
  });
}

/** Closes every manager made since the last call (use in afterEach). */
export async function closeManagers(): Promise<void> {
  await Promise.all(made.splice(0).map((m) => m.close().catch(() => {})));
}

/** A manager closed by {@link closeManagers}. */
export function manager(o: ManagerOptions): DWCPManager {
  const m = new DWCPManager(o);
  made.push(m);
  return m;
}

export interface PairOptions {
  v1: (side: "a" | "b") => Transport;
  v3: (side: "a" | "b") => Transport;
  addresses: { v1: string; v3: string };
  /** Applied to both managers (and overridden per side by `a` and `b`). */
  both?: Partial<ManagerOptions>;
  a?: Partial<ManagerOptions>;
  b?: Partial<ManagerOptions>;
  /** Node options of each generation on both sides (limits, lendMessages). */
  node?: Partial<ManagerOptions["v1"]>;
}

/** Manager "node-b" listening, manager "node-a" connected to it, and both ends of their link. */
export async function managerPair(o: PairOptions): Promise<{
  a: DWCPManager;
  b: DWCPManager;
  linkA: PeerLink;
  linkB: PeerLink;
  /** Where "node-b" listens. */
  bound: Awaited<ReturnType<DWCPManager["listen"]>>;
}> {
  const make = (side: "a" | "b") =>
    manager({
      nodeId: `node-${side}`,
      v1: { transport: o.v1(side), psk: PSK, ...o.node },
      v3: { transport: o.v3(side), psk: PSK, ...o.node },
      flags: V3_ON,
      detectMode: false,
      ...o.both,
      ...o[side],
    });
  const b = make("b");
  const a = make("a");
  const bound = await b.listen(o.addresses);
  const linkBReady = new Promise<PeerLink>((r) => b.once("link", r));
  const linkA = await a.connect({ v1: bound.v1, v3: bound.v3! });
  const linkB = await linkBReady;
  // The accepting side's v3 session may land a moment after its link.
  await until(() => linkB.v3 !== undefined || !o.addresses.v3, 2000);
  return { a, b, linkA, linkB, bound };
}

/** Resolves once `cond()` holds; rejects after `ms`. */
export async function until(cond: () => boolean, ms: number, what = "condition"): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** `p`, or a rejection naming `what` after `ms`. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * `n` managers, node-0 … node-(n-1), each linked to every other over the
 * memory transport (PSK sessions, mode assumed datacenter unless `o` says
 * otherwise); closed by {@link closeManagers}.
 */
export async function mesh(n: number, o: Partial<ManagerOptions> = {}): Promise<DWCPManager[]> {
  const net = new MemoryNetwork();
  const ms = Array.from({ length: n }, (_, i) =>
    manager({
      nodeId: `node-${i}`,
      v1: { transport: memory({}, net), psk: PSK },
      v3: { transport: memory({}, net), psk: PSK },
      detectMode: false,
      assumeMode: "datacenter",
      ...o,
    }),
  );
  const bound = await Promise.all(ms.map((m, i) => m.listen({ v1: `b${i}v1:0`, v3: `b${i}v3:0` })));
  for (let i = 0; i < n; i++)
    for (let j = i + 1; j < n; j++) await ms[i]!.connect({ v1: bound[j]!.v1, v3: bound[j]!.v3! });
  await until(() => ms.every((m) => m.links.size === n - 1), 5000, "every link");
  return ms;
}

/**
 * Managers with TLS on both generations over loopback (mutual certificates
 * from one test CA naming each node id), each linked to every other; `each(id,
 * i)` adds options per node. Closed by {@link closeManagers}.
 */
export async function tlsMesh(
  ids: readonly string[],
  each: (id: string, i: number) => Partial<ManagerOptions>,
): Promise<DWCPManager[]> {
  const pki = meshPki(ids);
  const ms = ids.map((id, i) => {
    const c = { ...pki.nodes[id]!, ca: pki.ca, servername: "localhost" };
    return manager({
      nodeId: id,
      v1: { transport: tls(c) },
      v3: { transport: tls(c) },
      detectMode: false,
      ...each(id, i),
    });
  });
  const bound = await Promise.all(ms.map((m) => m.listen({ v1: "127.0.0.1:0", v3: "127.0.0.1:0" })));
  for (let i = 0; i < ms.length; i++)
    for (let j = i + 1; j < ms.length; j++) await ms[i]!.connect({ v1: bound[j]!.v1, v3: bound[j]!.v3! });
  await until(() => ms.every((m) => m.links.size === ms.length - 1), 10_000, "every link");
  return ms;
}
