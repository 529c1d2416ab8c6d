/**
 * A simulated network over the memory transport: every chunk a node sends goes
 * through {@link SimNetwork.fate}, which applies the link's latency
 * distribution, drop, duplication and reordering, and partitions; nodes crash
 * (every connection reset, new ones refused) and restart. All of it draws on
 * the simulator's seeded randomness and is written to its trace.
 *
 * Faults act on the chunks of byte streams, below the session: a dropped or
 * duplicated chunk is what a broken path or middlebox does to a stream, and
 * the layers above must notice it (checksums, message numbers) and never
 * deliver a message wrongly; they recover by replacing the session.
 */
import { DWCPError } from "../errors.js";
import type { Conn, Transport } from "../transport/contract.js";
import { type ChunkFate, MemoryNetwork, memory } from "../transport/memory/index.js";
import type { ClockSkew, Simulator } from "./simulator.js";

/** The conditions of one direction of a link. */
export interface LinkConditions {
  /** One-way delay of a chunk, ms: base plus an exponential tail of this mean. */
  latencyMs: number;
  jitterMs: number;
  /** Probability that a chunk is lost. */
  drop: number;
  /** Probability that a chunk arrives twice. */
  duplicate: number;
  /** Probability that a chunk is held back (up to 4 × jitter + 1 ms more), letting later ones pass it. */
  reorder: number;
}

/** Conditions of a fault-free link: 1 ms ± a little. */
export const CLEAN_LINK: Readonly<LinkConditions> = Object.freeze({
  latencyMs: 1,
  jitterMs: 0.2,
  drop: 0,
  duplicate: 0,
  reorder: 0,
});

/** Counters of a {@link SimNetwork}. */
export interface SimNetworkStats {
  chunks: number;
  dropped: number;
  duplicated: number;
  reordered: number;
  partitioned: number;
  crashes: number;
}

/** Addresses are `<node>:<port>`; node names contain no ":". */
function owner(address: string): string {
  const i = address.indexOf(":");
  return i < 0 ? address : address.slice(0, i);
}

/** The simulated network of one {@link Simulator} run. */
export class SimNetwork {
  readonly memory = new MemoryNetwork();
  readonly stats: SimNetworkStats = {
    chunks: 0,
    dropped: 0,
    duplicated: 0,
    reordered: 0,
    partitioned: 0,
    crashes: 0,
  };
  readonly #conditions = new Map<string, LinkConditions>();
  readonly #blocked = new Set<string>();
  readonly #down = new Set<string>();
  readonly #conns = new Map<string, Set<Conn>>();
  #default: LinkConditions;

  constructor(
    readonly sim: Simulator,
    defaults: LinkConditions = CLEAN_LINK,
  ) {
    this.#default = { ...defaults };
  }

  /** Sets the conditions from `from` to `to` (one direction); without `to`, every link's default. */
  setConditions(c: LinkConditions, from?: string, to?: string): void {
    if (from === undefined || to === undefined) this.#default = { ...c };
    else this.#conditions.set(`${from}>${to}`, { ...c });
  }

  conditions(from: string, to: string): LinkConditions {
    return this.#conditions.get(`${from}>${to}`) ?? this.#default;
  }

  /**
   * Cuts `a` from `b`: chunks from a node of `a` to one of `b` are lost, and with
   * `oneWay` unset the other way too (an asymmetric partition otherwise).
   * @returns heal, which restores the links it cut
   */
  partition(a: readonly string[], b: readonly string[], oneWay = false): () => void {
    const cut: string[] = [];
    for (const x of a)
      for (const y of b) {
        cut.push(`${x}>${y}`);
        if (!oneWay) cut.push(`${y}>${x}`);
      }
    for (const k of cut) this.#blocked.add(k);
    this.sim.trace(`partition ${a.join(",")} ${oneWay ? "->" : "<->"} ${b.join(",")}`);
    return () => {
      for (const k of cut) this.#blocked.delete(k);
      this.sim.trace(`heal ${a.join(",")} ${oneWay ? "->" : "<->"} ${b.join(",")}`);
    };
  }

  /** Whether `node` is crashed. */
  isDown(node: string): boolean {
    return this.#down.has(node);
  }

  /** Crashes `node`: every connection it has is reset; dials to and from it fail until {@link restart}. */
  crash(node: string): void {
    this.#down.add(node);
    this.stats.crashes++;
    this.sim.trace(`crash ${node}`);
    const conns = this.#conns.get(node);
    this.#conns.delete(node);
    for (const c of conns ?? []) c.abort(new DWCPError("ERR_CLOSED", `${node} crashed`));
  }

  /** Brings `node` back (its processes are the caller's to start again). */
  restart(node: string): void {
    this.#down.delete(node);
    this.sim.trace(`restart ${node}`);
  }

  /** The fate of one chunk from `from` to `to` (nodes). */
  fate(from: string, to: string, bytes: number): ChunkFate {
    const c = this.conditions(from, to);
    const r = this.sim.random;
    this.stats.chunks++;
    let delayMs = c.latencyMs + (c.jitterMs > 0 ? -Math.log(1 - r.next()) * c.jitterMs : 0);
    let what = "";
    if (this.#blocked.has(`${from}>${to}`)) {
      this.stats.partitioned++;
      this.sim.trace(`${from}>${to} ${bytes} cut`);
      return { delayMs, drop: true };
    }
    if (c.drop > 0 && r.next() < c.drop) {
      this.stats.dropped++;
      this.sim.trace(`${from}>${to} ${bytes} drop`);
      return { delayMs, drop: true };
    }
    const late = c.reorder > 0 && r.next() < c.reorder;
    if (late) {
      this.stats.reordered++;
      delayMs += r.next() * (4 * c.jitterMs + 1);
      what = " late";
    }
    const fate: ChunkFate = { delayMs, reorder: late };
    if (c.duplicate > 0 && r.next() < c.duplicate) {
      this.stats.duplicated++;
      fate.duplicateAfterMs = r.next() * (c.jitterMs + 0.1);
      what += " dup";
    }
    this.sim.trace(`${from}>${to} ${bytes} ${delayMs.toFixed(3)}${what}`);
    return fate;
  }

  /**
   * The transport of simulated node `node`: the memory transport on this
   * network, on the node's clock, every chunk through {@link fate}. Listen on
   * `<node>:<port>` addresses.
   */
  transport(node: string, skew: ClockSkew = {}): Transport {
    if (node.includes(":"))
      throw new DWCPError("ERR_INVALID_ARG", `simulated node names contain no ":" (${node})`);
    const env = this.sim.env(node, skew);
    const inner = memory(
      { env, name: `${node}:dial`, path: (from, to, bytes) => this.fate(owner(from), owner(to), bytes) },
      this.memory,
    );
    const track = (c: Conn): Conn => {
      const set = this.#conns.get(node) ?? new Set<Conn>();
      this.#conns.set(node, set);
      set.add(c);
      c.once("close", () => set.delete(c));
      return c;
    };
    return {
      name: "memory",
      dial: async (address, options) => {
        const to = owner(address);
        if (this.#down.has(node) || this.#down.has(to))
          throw new DWCPError("ERR_CONNECT", `${this.#down.has(node) ? node : to} is down`);
        // The accepted end is tracked by the listener's node (listen below).
        return track(await inner.dial(address, options));
      },
      listen: (address, onConn, options) => {
        if (owner(address) !== node)
          throw new DWCPError("ERR_BAD_ADDRESS", `${node} listens only on ${node}:<port>, not ${address}`);
        return inner.listen(
          address,
          (c) => {
            if (this.#down.has(node)) {
              c.abort(new DWCPError("ERR_CLOSED", `${node} is down`));
              return;
            }
            onConn(track(c));
          },
          options,
        );
      },
    };
  }
}
