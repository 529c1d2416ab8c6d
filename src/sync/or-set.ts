/**
 * The add-wins observed-remove set of ASS (for set-valued metadata: tags,
 * attached volumes), as a delta-state CRDT with dots (Almeida, Shoker,
 * Baquero). Every add is tagged with a fresh dot `(node, counter)`; a remove
 * deletes the dots it has seen. A causal context records every dot a replica
 * has seen, so a join can tell "removed here" from "not yet seen here": an
 * add concurrent with a remove survives (add wins).
 *
 * The causal context is a version vector (every counter 1..n of a node) plus
 * a cloud of dots beyond it, kept compact, so equal states encode alike.
 *
 * @packageDocumentation
 */
import type { Reader } from "../consensus/bft/codec.js";
import { DWCPError, invalidArg } from "../errors.js";
import {
  checkNodeId,
  compareUtf8,
  decodeWith,
  encodeWith,
  NodeTable,
  NodeTableReader,
  readStr8,
} from "./hlc.js";

/** One add event: the node that made it and that node's counter. */
export interface Dot {
  readonly node: string;
  /** 1, 2, 3… per node. */
  readonly counter: number;
}

/** A causal context: the dots a replica (or a delta) has seen. */
export interface CausalContext {
  /** Node → n: every dot (node, 1..n) is seen. */
  readonly vv: ReadonlyMap<string, number>;
  /** Dots seen beyond the vector, none of which could join it. */
  readonly cloud: readonly Dot[];
}

/** A delta, or a whole state: live elements with their dots, and the dots seen. */
export interface OrSetDelta {
  readonly entries: ReadonlyMap<string, readonly Dot[]>;
  readonly context: CausalContext;
}

/** Size limits of a set and of the deltas it decodes. */
export interface OrSetLimits {
  /** Elements held. @default 100_000 */
  maxElements: number;
  /** Dots of one element (concurrent adds of it). @default 1024 */
  maxDotsPerElement: number;
  /** Dots in a causal context's cloud. @default 100_000 */
  maxCloud: number;
  /** Distinct node ids in one encoding, or in one context. @default 4096 */
  maxNodes: number;
  /** Bytes of one encoded delta. @default 16 MiB */
  maxDeltaBytes: number;
}

/** The limits used when none are given. */
export const DEFAULT_OR_SET_LIMITS: Readonly<OrSetLimits> = Object.freeze({
  maxElements: 100_000,
  maxDotsPerElement: 1024,
  maxCloud: 100_000,
  maxNodes: 4096,
  maxDeltaBytes: 16 * 1024 * 1024,
});

const VERSION = 1;
const encoder = new TextEncoder();

/** A dot as a map key: the counter's digits end at the first colon, so any node id is safe. */
function dotKey(d: Dot): string {
  return `${d.counter}:${d.node}`;
}

function compareDots(a: Dot, b: Dot): number {
  return compareUtf8(a.node, b.node) || a.counter - b.counter;
}

/** A mutable causal context. */
class Context {
  readonly vv = new Map<string, number>();
  readonly cloud = new Map<string, Set<number>>();

  contains(d: Dot): boolean {
    return d.counter <= (this.vv.get(d.node) ?? 0) || (this.cloud.get(d.node)?.has(d.counter) ?? false);
  }

  /** Adds a dot; false when it was already seen. */
  add(d: Dot): boolean {
    if (this.contains(d)) return false;
    let s = this.cloud.get(d.node);
    if (!s) {
      s = new Set();
      this.cloud.set(d.node, s);
    }
    s.add(d.counter);
    this.#compact(d.node);
    return true;
  }

  /** Joins another context in; true when anything was new. */
  join(o: CausalContext): boolean {
    let changed = false;
    for (const [node, n] of o.vv) {
      if (n > (this.vv.get(node) ?? 0)) {
        this.vv.set(node, n);
        changed = true;
        this.#compact(node);
      }
    }
    for (const d of o.cloud) if (this.add(d)) changed = true;
    return changed;
  }

  /** Moves the node's cloud dots into the vector where contiguous, and drops those below it. */
  #compact(node: string): void {
    const s = this.cloud.get(node);
    if (!s) return;
    let n = this.vv.get(node) ?? 0;
    while (s.has(n + 1)) {
      s.delete(n + 1);
      n++;
    }
    if (n > 0) this.vv.set(node, n);
    for (const c of s) if (c <= n) s.delete(c);
    if (s.size === 0) this.cloud.delete(node);
  }

  /** The highest counter of `node` seen. */
  max(node: string): number {
    let n = this.vv.get(node) ?? 0;
    for (const c of this.cloud.get(node) ?? []) if (c > n) n = c;
    return n;
  }

  get nodes(): number {
    return new Set([...this.vv.keys(), ...this.cloud.keys()]).size;
  }

  get cloudSize(): number {
    let n = 0;
    for (const s of this.cloud.values()) n += s.size;
    return n;
  }

  snapshot(): CausalContext {
    const cloud: Dot[] = [];
    for (const [node, s] of this.cloud) for (const counter of s) cloud.push({ node, counter });
    return { vv: new Map(this.vv), cloud };
  }
}

/** A context holding exactly `dots`, compacted. */
function contextOf(dots: Iterable<Dot>): CausalContext {
  const c = new Context();
  for (const d of dots) c.add(d);
  return c.snapshot();
}

/** A replica of an add-wins OR-set of strings. */
export class OrSet {
  /** This replica's node id (the node of its dots). */
  readonly node: string;
  /** The limits in force. */
  readonly limits: Readonly<OrSetLimits>;
  readonly #entries = new Map<string, Map<string, Dot>>();
  readonly #cc = new Context();

  constructor(node: string, limits: Partial<OrSetLimits> = {}) {
    this.node = checkNodeId(node);
    this.limits = Object.freeze({ ...DEFAULT_OR_SET_LIMITS, ...limits });
  }

  /** Adds `element`; returns the delta to ship. */
  add(element: string): OrSetDelta {
    if (typeof element !== "string" || encoder.encode(element).length > 255)
      throw invalidArg("element", "a string of ≤ 255 UTF-8 bytes", element);
    const old = this.#entries.get(element);
    if (!old && this.#entries.size >= this.limits.maxElements)
      throw new DWCPError(
        "ERR_RESOURCE_LIMIT",
        `the set holds its limit of ${this.limits.maxElements} elements`,
      );
    const counter = this.#cc.max(this.node) + 1;
    if (!Number.isSafeInteger(counter)) throw new DWCPError("ERR_RESOURCE_LIMIT", "dot counter exhausted");
    const dot: Dot = { node: this.node, counter };
    // An add replaces the dots this replica saw for the element: the delta's
    // context covers them, so receivers drop them too.
    const seen = [...(old?.values() ?? []), dot];
    this.#cc.add(dot);
    this.#entries.set(element, new Map([[dotKey(dot), dot]]));
    return { entries: new Map([[element, [dot]]]), context: contextOf(seen) };
  }

  /** Removes `element` (the adds this replica has seen); returns the delta to ship (empty when absent). */
  remove(element: string): OrSetDelta {
    const old = this.#entries.get(element);
    this.#entries.delete(element);
    return { entries: new Map(), context: contextOf(old?.values() ?? []) };
  }

  /** True when `element` is in the set. */
  has(element: string): boolean {
    return this.#entries.has(element);
  }

  /** The elements, in UTF-8 byte order. */
  values(): string[] {
    return [...this.#entries.keys()].sort(compareUtf8);
  }

  /** Number of elements. */
  get size(): number {
    return this.#entries.size;
  }

  /** The whole state, as a delta. */
  state(): OrSetDelta {
    const entries = new Map<string, Dot[]>();
    for (const [e, dots] of this.#entries) entries.set(e, [...dots.values()]);
    return { entries, context: this.#cc.snapshot() };
  }

  /**
   * Joins a delta (or a whole state) in. A dot survives when both sides have
   * it, or one side has it and the other has not seen it; so a remove
   * elsewhere deletes only the adds it had seen. Costs one pass over this
   * replica's elements (sets of metadata are small).
   *
   * @throws DWCPError `ERR_RESOURCE_LIMIT` when the result would exceed a limit (nothing changes)
   */
  merge(delta: OrSetDelta): { changed: boolean } {
    const next = new Map<string, Map<string, Dot>>();
    const cloud = new Set(delta.context.cloud.map(dotKey));
    const seenThere = (d: Dot): boolean =>
      d.counter <= (delta.context.vv.get(d.node) ?? 0) || cloud.has(dotKey(d));
    let changed = false;
    for (const [e, dots] of this.#entries) {
      const theirs = delta.entries.get(e);
      const keep = new Map<string, Dot>();
      const theirKeys = new Set(theirs?.map(dotKey));
      for (const [k, d] of dots) {
        if (theirKeys.has(k) || !seenThere(d)) keep.set(k, d);
        else changed = true;
      }
      for (const d of theirs ?? []) {
        const k = dotKey(d);
        if (!keep.has(k) && !dots.has(k) && !this.#cc.contains(d)) {
          keep.set(k, d);
          changed = true;
        }
      }
      if (keep.size > 0) next.set(e, keep);
    }
    for (const [e, theirs] of delta.entries) {
      if (this.#entries.has(e)) continue;
      const keep = new Map<string, Dot>();
      for (const d of theirs) if (!this.#cc.contains(d)) keep.set(dotKey(d), d);
      if (keep.size > 0) {
        next.set(e, keep);
        changed = true;
      }
    }
    if (next.size > this.limits.maxElements)
      throw new DWCPError("ERR_RESOURCE_LIMIT", `merge would exceed ${this.limits.maxElements} elements`);
    for (const dots of next.values())
      if (dots.size > this.limits.maxDotsPerElement)
        throw new DWCPError(
          "ERR_RESOURCE_LIMIT",
          `an element would have over ${this.limits.maxDotsPerElement} dots`,
        );
    const trial = new Context();
    trial.join(this.#cc.snapshot());
    trial.join(delta.context);
    if (trial.nodes > this.limits.maxNodes || trial.cloudSize > this.limits.maxCloud)
      throw new DWCPError("ERR_RESOURCE_LIMIT", "merge would exceed the causal context's limits");
    if (this.#cc.join(delta.context)) changed = true;
    this.#entries.clear();
    for (const [e, dots] of next) this.#entries.set(e, dots);
    return { changed };
  }
}

/**
 * Encodes a delta or state canonically: version byte, node-id table, the
 * vector (2-byte count; node index 2, counter 8, in node order), the cloud
 * (4-byte count; node index, counter, in dot order), the elements (4-byte
 * count; per element in byte order its name, 2-byte dot count and dots).
 * The context is compacted first, so equal sets give equal bytes.
 */
export function encodeOrSetDelta(delta: OrSetDelta): Uint8Array {
  const ctx = new Context();
  ctx.join(delta.context);
  const c = ctx.snapshot();
  const vvNodes = [...c.vv.keys()].sort(compareUtf8);
  const cloud = [...c.cloud].sort(compareDots);
  const elements = [...delta.entries.keys()].sort(compareUtf8);
  const nodes = [...vvNodes, ...cloud.map((d) => d.node)];
  for (const dots of delta.entries.values()) for (const d of dots) nodes.push(d.node);
  const table = new NodeTable(nodes);
  return encodeWith((w) => {
    w.u8(VERSION);
    table.write(w);
    w.u16(vvNodes.length);
    for (const n of vvNodes) w.u16(table.indexOf(n)).u64(c.vv.get(n)!);
    w.u32(cloud.length);
    for (const d of cloud) w.u16(table.indexOf(d.node)).u64(d.counter);
    w.u32(elements.length);
    for (const e of elements) {
      const dots = [...delta.entries.get(e)!].sort(compareDots);
      w.str8(e).u16(dots.length);
      for (const d of dots) w.u16(table.indexOf(d.node)).u64(d.counter);
    }
  });
}

/**
 * Decodes {@link encodeOrSetDelta}'s bytes from a peer, strictly and within
 * `limits`: over a limit is `ERR_RESOURCE_LIMIT`; malformed or non-canonical
 * input (out of order or repeated items, an unused node id, a context that is not compact, a dot
 * outside the context or on two elements, an element without dots, trailing
 * bytes) is `ERR_PROTOCOL`.
 */
export function decodeOrSetDelta(bytes: Uint8Array, limits: Partial<OrSetLimits> = {}): OrSetDelta {
  const lim = { ...DEFAULT_OR_SET_LIMITS, ...limits };
  return decodeWith(bytes, lim.maxDeltaBytes, "or-set delta", (r: Reader) => {
    const version = r.u8("version");
    if (version !== VERSION) throw new DWCPError("ERR_PROTOCOL", `or-set delta version ${version} unknown`);
    const nodes = NodeTableReader.read(r, lim.maxNodes);
    const readDot = (): Dot => {
      const node = nodes.node(r);
      const counter = r.u64("dot counter");
      if (counter < 1) throw new DWCPError("ERR_PROTOCOL", "dot counter 0");
      return { node, counter };
    };
    const vv = new Map<string, number>();
    const nv = r.u16("vector size");
    if (nv > lim.maxNodes)
      throw new DWCPError("ERR_RESOURCE_LIMIT", `${nv} vector entries exceed ${lim.maxNodes}`);
    let prevNode: string | undefined;
    for (let i = 0; i < nv; i++) {
      const d = readDot();
      if (prevNode !== undefined && compareUtf8(prevNode, d.node) >= 0)
        throw new DWCPError("ERR_PROTOCOL", "vector out of order or repeated");
      prevNode = d.node;
      vv.set(d.node, d.counter);
    }
    const nc = r.u32("cloud size");
    if (nc > lim.maxCloud)
      throw new DWCPError("ERR_RESOURCE_LIMIT", `${nc} cloud dots exceed ${lim.maxCloud}`);
    const cloud: Dot[] = [];
    for (let i = 0; i < nc; i++) {
      const d = readDot();
      const prev = cloud[cloud.length - 1];
      if (prev && compareDots(prev, d) >= 0)
        throw new DWCPError("ERR_PROTOCOL", "cloud out of order or repeated");
      if (d.counter <= (vv.get(d.node) ?? 0) + 1)
        throw new DWCPError("ERR_PROTOCOL", "causal context not compact");
      cloud.push(d);
    }
    const context: CausalContext = { vv, cloud };
    const cloudKeys = new Set(cloud.map(dotKey));
    const ne = r.u32("element count");
    if (ne > lim.maxElements)
      throw new DWCPError("ERR_RESOURCE_LIMIT", `${ne} elements exceed ${lim.maxElements}`);
    const entries = new Map<string, Dot[]>();
    const used = new Set<string>();
    let prevElement: string | undefined;
    for (let i = 0; i < ne; i++) {
      const e = readStr8(r, "element");
      if (prevElement !== undefined && compareUtf8(prevElement, e) >= 0)
        throw new DWCPError("ERR_PROTOCOL", "elements out of order or repeated");
      prevElement = e;
      const nd = r.u16("dot count");
      if (nd === 0) throw new DWCPError("ERR_PROTOCOL", "element without dots");
      if (nd > lim.maxDotsPerElement)
        throw new DWCPError("ERR_RESOURCE_LIMIT", `${nd} dots exceed ${lim.maxDotsPerElement}`);
      const dots: Dot[] = [];
      for (let j = 0; j < nd; j++) {
        const d = readDot();
        const prev = dots[dots.length - 1];
        if (prev && compareDots(prev, d) >= 0)
          throw new DWCPError("ERR_PROTOCOL", "dots out of order or repeated");
        const k = dotKey(d);
        if (used.has(k)) throw new DWCPError("ERR_PROTOCOL", "one dot on two elements");
        if (d.counter > (vv.get(d.node) ?? 0) && !cloudKeys.has(k))
          throw new DWCPError("ERR_PROTOCOL", "dot outside the causal context");
        used.add(k);
        dots.push(d);
      }
      entries.set(e, dots);
    }
    nodes.checkAllUsed();
    return { entries, context };
  });
}
