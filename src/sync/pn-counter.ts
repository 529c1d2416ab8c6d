/**
 * The PN-counter of ASS: each node counts its own increments and decrements in
 * two grow-only entries, and the value is the sum of increments minus the sum
 * of decrements. The join is the per-node maximum, so it is a delta-state CRDT
 * whose delta for a local change is that node's new entry alone.
 *
 * @packageDocumentation
 */
import type { Reader, Writer } from "../consensus/bft/codec.js";
import { DWCPError, invalidArg } from "../errors.js";
import { checkNodeId, compareUtf8, decodeWith, encodeWith, NodeTable, NodeTableReader } from "./hlc.js";

/** A delta, or a whole state: per node, its total of increments (`p`) and of decrements (`n`). */
export interface PnDelta {
  readonly p: ReadonlyMap<string, number>;
  readonly n: ReadonlyMap<string, number>;
}

/** Size limits of a counter and of the deltas it decodes. */
export interface PnLimits {
  /** Distinct nodes in the counter or in one encoding. @default 4096 */
  maxNodes: number;
  /** Bytes of one encoded delta. @default 1 MiB */
  maxDeltaBytes: number;
}

/** The limits used when none are given. */
export const DEFAULT_PN_LIMITS: Readonly<PnLimits> = Object.freeze({
  maxNodes: 4096,
  maxDeltaBytes: 1024 * 1024,
});

const VERSION = 1;

/** A replica of a PN-counter. */
export class PnCounter {
  /** This replica's node id (the entry it changes). */
  readonly node: string;
  /** The limits in force. */
  readonly limits: Readonly<PnLimits>;
  readonly #p = new Map<string, number>();
  readonly #n = new Map<string, number>();

  constructor(node: string, limits: Partial<PnLimits> = {}) {
    this.node = checkNodeId(node);
    this.limits = Object.freeze({ ...DEFAULT_PN_LIMITS, ...limits });
  }

  #bump(side: Map<string, number>, by: number, name: "p" | "n"): PnDelta {
    if (!Number.isSafeInteger(by) || by < 1) throw invalidArg("by", "a positive safe integer", by);
    const next = (side.get(this.node) ?? 0) + by;
    // Entries travel as integers below 2^53; past that the count would round.
    if (!Number.isSafeInteger(next))
      throw new DWCPError("ERR_RESOURCE_LIMIT", "counter entry would pass 2^53 - 1");
    side.set(this.node, next);
    const entry = new Map([[this.node, next]]);
    return name === "p" ? { p: entry, n: new Map() } : { p: new Map(), n: entry };
  }

  /** Adds `by` (a positive integer, default 1); returns the delta to ship. */
  increment(by = 1): PnDelta {
    return this.#bump(this.#p, by, "p");
  }

  /** Subtracts `by` (a positive integer, default 1); returns the delta to ship. */
  decrement(by = 1): PnDelta {
    return this.#bump(this.#n, by, "n");
  }

  /** The count: increments minus decrements over every node (a bigint, so no sum ever rounds). */
  value(): bigint {
    let v = 0n;
    for (const x of this.#p.values()) v += BigInt(x);
    for (const x of this.#n.values()) v -= BigInt(x);
    return v;
  }

  /** The whole state, as a delta. */
  state(): PnDelta {
    return { p: new Map(this.#p), n: new Map(this.#n) };
  }

  /**
   * Joins a delta (or a whole state) in: the per-node maximum of each side.
   * @throws DWCPError `ERR_RESOURCE_LIMIT` when it would name more than `maxNodes` nodes (nothing changes)
   */
  merge(delta: PnDelta): { changed: boolean } {
    const nodes = new Set([...this.#p.keys(), ...this.#n.keys(), ...delta.p.keys(), ...delta.n.keys()]);
    if (nodes.size > this.limits.maxNodes)
      throw new DWCPError("ERR_RESOURCE_LIMIT", `counter would name over ${this.limits.maxNodes} nodes`);
    let changed = false;
    for (const [side, theirs] of [
      [this.#p, delta.p],
      [this.#n, delta.n],
    ] as const) {
      for (const [node, v] of theirs) {
        if (v > (side.get(node) ?? 0)) {
          side.set(node, v);
          changed = true;
        }
      }
    }
    return { changed };
  }
}

/** Writes one side's non-zero entries in node order. */
function writeSide(w: Writer, table: NodeTable, side: ReadonlyMap<string, number>): void {
  const nodes = [...side.keys()].filter((k) => side.get(k)! > 0).sort(compareUtf8);
  w.u16(nodes.length);
  for (const node of nodes) w.u16(table.indexOf(node)).u64(side.get(node)!);
}

/**
 * Encodes a delta or state canonically: version byte, node-id table, then the
 * increments and the decrements, each as a 2-byte count of (node index 2,
 * total 8) in node order. Zero entries are left out.
 */
export function encodePnDelta(delta: PnDelta): Uint8Array {
  const nodes: string[] = [];
  for (const side of [delta.p, delta.n]) for (const [node, v] of side) if (v > 0) nodes.push(node);
  const table = new NodeTable(nodes);
  return encodeWith((w) => {
    w.u8(VERSION);
    table.write(w);
    writeSide(w, table, delta.p);
    writeSide(w, table, delta.n);
  });
}

/**
 * Decodes {@link encodePnDelta}'s bytes from a peer, strictly and within
 * `limits`: over a limit is `ERR_RESOURCE_LIMIT`; malformed or non-canonical
 * input (nodes out of order or repeated, an unused node id, a zero total, trailing bytes) is
 * `ERR_PROTOCOL`.
 */
export function decodePnDelta(bytes: Uint8Array, limits: Partial<PnLimits> = {}): PnDelta {
  const lim = { ...DEFAULT_PN_LIMITS, ...limits };
  return decodeWith(bytes, lim.maxDeltaBytes, "pn delta", (r: Reader) => {
    const version = r.u8("version");
    if (version !== VERSION) throw new DWCPError("ERR_PROTOCOL", `pn delta version ${version} unknown`);
    const nodes = NodeTableReader.read(r, lim.maxNodes);
    const side = (): Map<string, number> => {
      const n = r.u16("entry count");
      if (n > lim.maxNodes) throw new DWCPError("ERR_RESOURCE_LIMIT", `${n} entries exceed ${lim.maxNodes}`);
      const out = new Map<string, number>();
      let prev: string | undefined;
      for (let i = 0; i < n; i++) {
        const node = nodes.node(r);
        if (prev !== undefined && compareUtf8(prev, node) >= 0)
          throw new DWCPError("ERR_PROTOCOL", "counter entries out of order or repeated");
        prev = node;
        const v = r.u64("counter total");
        if (v === 0) throw new DWCPError("ERR_PROTOCOL", "zero counter entry");
        out.set(node, v);
      }
      return out;
    };
    const p = side();
    const n = side();
    nodes.checkAllUsed();
    return { p, n };
  });
}
