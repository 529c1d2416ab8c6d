// A message-level network of sync replicas on the seeded simulator, and one
// run of the convergence proof (test/sync/replica.test.ts, scripts/sync-sim.ts).
//
// Each node is a real SyncReplica with its own env (optionally skewed). A frame
// is one simulator event after base latency + uniform jitter; the network
// drops, duplicates, reorders (holds a frame back up to REORDER_MS so later
// ones pass it) and partitions (some cuts one-way). A crash stops a node: the
// frames to and from it are lost, its timers wait, and on restart it resumes
// with the state it had (as if its state were persisted). Nothing else is
// special-cased: the replicas see only frames and timers.
//
// One run: random writes (sets of one or two fields, deletes, many to the same
// few keys from different nodes) until WRITE_UNTIL, faults until HEAL; at HEAL
// every partition heals, every node is up and the network is clean. The run
// then measures the time until every replica's visible state equals the model
// (LWW by HLC over every write made, by `compareHlc`, a delete hiding older
// fields), and then until every tombstone is collected and every Merkle root
// is equal (quiescence).
import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import { bytesEqual } from "../../src/consensus/bft/codec.js";
import type { Env, Random } from "../../src/env/index.js";
import { compareHlc, compareUtf8, type HlcTimestamp } from "../../src/sync/hlc.js";
import { entryDigest, type LwwField } from "../../src/sync/lww-map.js";
import { SyncReplica, type SyncReplicaOptions } from "../../src/sync/replica.js";
import { KeyRegistry } from "../../src/sync/signed.js";
import { Simulator, seededRandom } from "../../src/testing/index.js";
import { gatedEnv } from "../helpers/gated-env.js";

/** How long a reordered frame may be held back, ms. */
export const REORDER_MS = 300;

/** The faults of one run. */
export interface Mix {
  /** One-way delay: latencyMs + uniform [0, jitterMs). */
  readonly latencyMs: number;
  readonly jitterMs: number;
  readonly drop: number;
  readonly duplicate: number;
  readonly reorder: number;
  /** Partitions before the heal (some one-way when `asymmetric`). */
  readonly partitions: number;
  readonly asymmetric: boolean;
  /** Crashes (each followed by a restart before the heal). */
  readonly crashes: number;
  /** Largest clock offset of a node, ms (within maxAheadMs, so no honest entry is refused). */
  readonly skewMs: number;
}

const pick = <T>(r: Random, xs: readonly T[]): T => xs[r.int(xs.length)]!;

/** Draws a seed's mix (swarm style: each fault on or off, at a rate drawn from a range). */
export function drawMix(r: Random): Mix {
  const on = (p: number) => r.next() < p;
  return {
    latencyMs: pick(r, [0.5, 2, 10, 30]),
    jitterMs: pick(r, [0.1, 2, 10]),
    drop: on(0.6) ? pick(r, [0.01, 0.05, 0.2]) : 0,
    duplicate: on(0.5) ? pick(r, [0.01, 0.1]) : 0,
    reorder: on(0.5) ? pick(r, [0.05, 0.3]) : 0,
    partitions: on(0.6) ? 1 + r.int(3) : 0,
    asymmetric: on(0.5),
    crashes: on(0.5) ? 1 + r.int(2) : 0,
    skewMs: on(0.5) ? pick(r, [50, 1000]) : 0,
  };
}

/** A mix without faults. */
export const CLEAN: Mix = Object.freeze({
  latencyMs: 1,
  jitterMs: 1,
  drop: 0,
  duplicate: 0,
  reorder: 0,
  partitions: 0,
  asymmetric: false,
  crashes: 0,
  skewMs: 0,
});

/** One line describing a mix. */
export function describeMix(m: Mix): string {
  const parts = [`latency ${m.latencyMs}+U(${m.jitterMs}) ms`];
  if (m.drop) parts.push(`drop ${m.drop}`);
  if (m.duplicate) parts.push(`dup ${m.duplicate}`);
  if (m.reorder) parts.push(`reorder ${m.reorder}`);
  if (m.partitions) parts.push(`${m.partitions} partition(s)${m.asymmetric ? " (some one-way)" : ""}`);
  if (m.crashes) parts.push(`${m.crashes} crash(es)`);
  if (m.skewMs) parts.push(`skew ±${m.skewMs} ms`);
  return parts.join(", ");
}

interface Node {
  readonly name: string;
  replica: SyncReplica;
  up: boolean;
  /** Timer callbacks that came due while the node was down. */
  held: (() => void)[];
}

/** Options of a {@link ReplicaNet}. */
export interface ReplicaNetOptions {
  readonly seed: number;
  readonly mix?: Mix;
  /** Options of every replica (the sim's small Merkle tree shape is the default). */
  readonly options?: SyncReplicaOptions;
  /** Internet mode: every node gets a key, registered with every node. */
  readonly signing?: boolean;
  readonly traceLines?: number;
}

/** A simulated cluster of sync replicas. */
export class ReplicaNet {
  readonly sim: Simulator;
  readonly nodes = new Map<string, Node>();
  readonly counters = { sent: 0, dropped: 0, cut: 0, duplicated: 0, reordered: 0, delivered: 0, lost: 0 };
  /** Hook on every delivery: return false to lose the frame, or bytes to deliver instead. */
  filter?: (from: string, to: string, bytes: Uint8Array) => boolean | Uint8Array;
  /** The link's faults (set to CLEAN at the heal). */
  mix: Mix;
  readonly registry = new KeyRegistry();
  readonly keys = new Map<string, KeyObject>();
  readonly #blocked = new Set<string>();
  readonly #o: ReplicaNetOptions;

  constructor(o: ReplicaNetOptions) {
    this.#o = o;
    this.sim = new Simulator({ seed: o.seed, traceLines: o.traceLines ?? 60 });
    this.mix = o.mix ?? CLEAN;
  }

  /** Starts node `name` (peers: every node of the net, read at each tick). */
  add(name: string, o: { offsetMs?: number; options?: SyncReplicaOptions } = {}): SyncReplica {
    const node: Node = { name, replica: undefined as unknown as SyncReplica, up: true, held: [] };
    let signing: SyncReplicaOptions["signing"];
    if (this.#o.signing) {
      const { publicKey, privateKey } = generateKeyPairSync("ed25519");
      this.registry.set(name, publicKey);
      this.keys.set(name, privateKey);
      signing = { privateKey, registry: this.registry };
    }
    const options: SyncReplicaOptions = {
      merkle: { leafBits: 8, fanoutBits: 4 },
      ...this.#o.options,
      ...o.options,
      ...(signing ? { signing } : {}),
    };
    node.replica = new SyncReplica({
      id: name,
      env: this.#env(node, o.offsetMs ?? 0),
      send: (to, bytes) => this.#send(node, to, bytes),
      peers: () => [...this.nodes.keys()],
      options,
    });
    this.nodes.set(name, node);
    node.replica.start();
    return node.replica;
  }

  replica(name: string): SyncReplica {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n.replica;
  }

  replicas(): SyncReplica[] {
    return [...this.nodes.values()].map((n) => n.replica);
  }

  isUp(name: string): boolean {
    return this.nodes.get(name)?.up ?? false;
  }

  /** Cuts `a` from `b` (and `b` from `a` unless `oneWay`); returns heal. */
  partition(a: readonly string[], b: readonly string[], oneWay = false): () => void {
    const cut: string[] = [];
    for (const x of a)
      for (const y of b) {
        cut.push(`${x}>${y}`);
        if (!oneWay) cut.push(`${y}>${x}`);
      }
    for (const k of cut) this.#blocked.add(k);
    this.sim.trace(`partition ${a.length}|${b.length}${oneWay ? " one-way" : ""}`);
    return () => {
      for (const k of cut) this.#blocked.delete(k);
      this.sim.trace("heal partition");
    };
  }

  /** Heals every partition. */
  healAll(): void {
    this.#blocked.clear();
  }

  crash(name: string): void {
    const n = this.nodes.get(name)!;
    if (!n.up) return;
    n.up = false;
    this.sim.trace(`crash ${name}`);
  }

  restart(name: string): void {
    const n = this.nodes.get(name)!;
    if (n.up) return;
    n.up = true;
    this.sim.trace(`restart ${name}`);
    const held = n.held;
    n.held = [];
    for (const fn of held) fn();
  }

  /** Delivers `bytes` to `to` as if from `from` (an adversary's frame), after the usual delay. */
  inject(from: string, to: string, bytes: Uint8Array): void {
    this.sim.after(this.#delay(), () => this.#deliver(from, to, bytes), "inject");
  }

  run(until: number, stopWhen?: () => boolean): Promise<void> {
    return this.sim.run(stopWhen ? { until, stopWhen } : { until });
  }

  close(): void {
    for (const n of this.nodes.values()) n.replica.close();
  }

  // The node's env: its timers wait while it is down.
  #env(node: Node, offsetMs: number): Env {
    return gatedEnv(this.sim.env(node.name, { offsetMs }), (run) => {
      if (node.up) run();
      else node.held.push(run);
    });
  }

  #delay(): number {
    return this.mix.latencyMs + this.sim.random.next() * this.mix.jitterMs;
  }

  #send(from: Node, to: string, bytes: Uint8Array): void {
    if (!from.up) return;
    this.counters.sent++;
    if (!this.nodes.has(to)) return;
    const r = this.sim.random;
    if (this.#blocked.has(`${from.name}>${to}`)) {
      this.counters.cut++;
      return;
    }
    if (this.mix.drop > 0 && r.next() < this.mix.drop) {
      this.counters.dropped++;
      return;
    }
    let delay = this.#delay();
    if (this.mix.reorder > 0 && r.next() < this.mix.reorder) {
      this.counters.reordered++;
      delay += r.next() * REORDER_MS;
    }
    const copy = bytes.slice();
    this.sim.trace(`${from.name}>${to} ${bytes.length}`);
    this.sim.after(delay, () => this.#deliver(from.name, to, copy), "deliver");
    if (this.mix.duplicate > 0 && r.next() < this.mix.duplicate) {
      this.counters.duplicated++;
      this.sim.after(delay + r.next() * REORDER_MS, () => this.#deliver(from.name, to, copy), "dup");
    }
  }

  #deliver(from: string, to: string, bytes: Uint8Array): void {
    const n = this.nodes.get(to);
    if (!n?.up) {
      this.counters.lost++;
      return;
    }
    let b = bytes;
    if (this.filter) {
      const v = this.filter(from, to, bytes);
      if (v === false) return;
      if (v instanceof Uint8Array) b = v;
    }
    this.counters.delivered++;
    n.replica.receive(from, b);
  }
}

// ---------------------------------------------------------------- the model

/** One write as made. */
export type WriteRecord =
  | {
      readonly key: string;
      readonly kind: "set";
      readonly ts: HlcTimestamp;
      readonly fields: Record<string, Uint8Array>;
    }
  | { readonly key: string; readonly kind: "delete"; readonly ts: HlcTimestamp };

function beats(a: LwwField, b: LwwField): boolean {
  const c = compareHlc(a.ts, b.ts);
  if (c !== 0) return c > 0;
  const n = Math.min(a.value.length, b.value.length);
  for (let i = 0; i < n; i++) if (a.value[i] !== b.value[i]) return a.value[i]! > b.value[i]!;
  return a.value.length > b.value.length;
}

/** The visible state every replica must reach: per field the write with the largest timestamp, unless a later delete hides it. */
export function modelState(writes: readonly WriteRecord[]): Map<string, Map<string, LwwField>> {
  const tombs = new Map<string, HlcTimestamp>();
  const fields = new Map<string, Map<string, LwwField>>();
  for (const w of writes) {
    if (w.kind === "delete") {
      const t = tombs.get(w.key);
      if (!t || compareHlc(w.ts, t) > 0) tombs.set(w.key, w.ts);
      continue;
    }
    let m = fields.get(w.key);
    if (!m) {
      m = new Map();
      fields.set(w.key, m);
    }
    for (const [f, value] of Object.entries(w.fields)) {
      const v = { ts: w.ts, value };
      const cur = m.get(f);
      if (!cur || beats(v, cur)) m.set(f, v);
    }
  }
  const out = new Map<string, Map<string, LwwField>>();
  for (const [k, m] of fields) {
    const t = tombs.get(k);
    const live = new Map([...m].filter(([, v]) => !t || compareHlc(v.ts, t) > 0));
    if (live.size > 0) out.set(k, live);
  }
  return out;
}

/** The digest `SyncReplica.stateDigest` gives for a visible state. */
export function digestOf(state: Map<string, Map<string, LwwField>>): Uint8Array {
  const h = createHash("sha256");
  for (const k of [...state.keys()].sort(compareUtf8))
    h.update(entryDigest(k, { fields: state.get(k)!, tomb: undefined }));
  return new Uint8Array(h.digest());
}

// ---------------------------------------------------------------- one run

/** Options of {@link runReplicaSim}. */
export interface ReplicaSimOptions {
  readonly seed: number;
  readonly nodes: number;
  /** Writes in all. @default 8 per node, at least 40 */
  readonly writes?: number;
  /** Distinct keys (few, so writes collide). @default max(4, nodes / 2) */
  readonly keys?: number;
  /** The mix; drawn from the seed when absent. */
  readonly mix?: Mix;
  /** Writes happen in [0, writeUntilMs), faults in [0, healAtMs). @default healAtMs, 5000 */
  readonly writeUntilMs?: number;
  readonly healAtMs?: number;
  readonly options?: SyncReplicaOptions;
  readonly signing?: boolean;
  /** How long after the heal to wait for convergence before calling it failed, ms. @default 3 × bound */
  readonly limitMs?: number;
  /** How long after the heal to wait for quiescence (GC done, roots equal), ms. @default 30 s */
  readonly quiesceLimitMs?: number;
  /** Called once the cluster is set up (to schedule probes when debugging a seed). */
  readonly observe?: (net: ReplicaNet) => void;
}

/** What one run found. */
export interface ReplicaSimResult {
  readonly seed: number;
  readonly nodes: number;
  readonly mix: string;
  readonly writes: number;
  /** Every replica's visible state equals the model. */
  readonly converged: boolean;
  /** Virtual ms from the heal to convergence (Infinity when not reached). */
  readonly convergenceMs: number;
  readonly boundMs: number;
  /** Virtual ms from the heal until every tombstone was collected and every Merkle root equal (Infinity: not within the limit). */
  readonly quiescedMs: number;
  /** Bytes every replica sent until convergence (everything: deltas, acks, anti-entropy, repairs). */
  readonly bytesSent: number;
  readonly localUpdates: number;
  readonly bytesPerUpdate: number;
  readonly rejected: Record<string, number>;
  readonly tombstonesCollected: number;
  readonly traceHash: string;
  readonly trace: readonly string[];
}

/** The defaults the bound is stated for. */
export const SIM_DEFAULTS = Object.freeze({
  pushIntervalMs: 200,
  retransmitMs: 1000,
  antiEntropyIntervalMs: 1000,
  gcIntervalMs: 2000,
});

/**
 * The convergence bound after the heal on a clean network. Fan-out is every
 * peer, so a change needs one hop (no log n factor): a replica holding a
 * change a peer has not acked sends it within one resend round (retransmitMs,
 * at the next push tick: ≤ 1.25 × pushIntervalMs later) and it arrives within
 * the largest delay (latency + jitter). Two rounds: the first may be lost at
 * the heal or dropped as stale by the FIFO guard when a later frame of the
 * same sender overtook it. Plus a frame reordered just before the heal
 * (REORDER_MS), plus one anti-entropy period (≤ 1.5 T) as the backstop's
 * share. With the defaults and 30 ms links: 2 × 1.28 s + 0.3 s + 1.5 s ≈ 4.4 s.
 * (Anti-entropy alone, fan-out one peer per T, needs ≈ log2 n + ln n push-pull
 * rounds; replica.test.ts checks T × (⌈log2 n⌉ + ⌈ln n⌉ + 2) × 1.5 for it.)
 */
export function convergenceBound(mix: Mix, o: typeof SIM_DEFAULTS = SIM_DEFAULTS): number {
  const round = o.retransmitMs + 1.25 * o.pushIntervalMs + mix.latencyMs + mix.jitterMs;
  return 2 * round + 1.5 * o.antiEntropyIntervalMs + REORDER_MS;
}

/** One seeded run: writes under the mix's faults, heal, then measure convergence and quiescence. */
export async function runReplicaSim(o: ReplicaSimOptions): Promise<ReplicaSimResult> {
  const mix = o.mix ?? drawMix(seededRandom(o.seed ^ 0x6d17));
  const net = new ReplicaNet({
    seed: o.seed,
    mix,
    options: { ...SIM_DEFAULTS, ...o.options },
    signing: o.signing ?? false,
  });
  const sim = net.sim;
  const r = sim.random;
  const names = Array.from({ length: o.nodes }, (_, i) => `n${i}`);
  for (const name of names) net.add(name, { offsetMs: mix.skewMs ? (r.next() * 2 - 1) * mix.skewMs : 0 });
  const heal = o.healAtMs ?? 5000;
  const writeUntil = o.writeUntilMs ?? heal;
  const nWrites = o.writes ?? Math.max(40, 8 * o.nodes);
  const nKeys = o.keys ?? Math.max(4, Math.floor(o.nodes / 2));
  const fields = ["host", "state", "cpu"];
  const writes: WriteRecord[] = [];

  // Writes: random node (skipped while down), key, and kind.
  for (let i = 0; i < nWrites; i++) {
    const at = r.next() * writeUntil;
    const name = names[r.int(names.length)]!;
    const key = `vm-${r.int(nKeys)}`;
    const roll = r.next();
    const v1 = r.bytes(6);
    const v2 = r.bytes(6);
    const f1 = fields[r.int(fields.length)]!;
    const f2 = fields[r.int(fields.length)]!;
    sim.at(
      at,
      () => {
        if (!net.isUp(name)) return;
        const rep = net.replica(name);
        if (roll < 0.12) writes.push({ key, kind: "delete", ts: rep.delete(key) });
        else {
          const fs: Record<string, Uint8Array> = roll < 0.35 ? { [f1]: v1, [f2]: v2 } : { [f1]: v1 };
          writes.push({ key, kind: "set", ts: rep.setFields(key, fs), fields: fs });
        }
      },
      "write",
    );
  }
  // Faults before the heal.
  for (let i = 0; i < mix.partitions; i++) {
    const start = r.next() * heal * 0.8;
    // Half of them last until the heal, so the heal has work to do.
    const end = r.next() < 0.5 ? heal : Math.min(heal, start + 200 + r.next() * heal * 0.4);
    const side = names.filter(() => r.next() < 0.5);
    const a = side.length > 0 && side.length < names.length ? side : [names[0]!];
    const b = names.filter((x) => !a.includes(x));
    const oneWay = mix.asymmetric && r.next() < 0.5;
    sim.at(start, () => {
      const h = net.partition(a, b, oneWay);
      sim.at(end, h, "heal");
    });
  }
  for (let i = 0; i < mix.crashes; i++) {
    const name = names[r.int(names.length)]!;
    const at = r.next() * heal * 0.8;
    const back = r.next() < 0.5 ? heal : Math.min(heal, at + 100 + r.next() * heal * 0.3);
    sim.at(at, () => {
      if (!net.isUp(name)) return;
      net.crash(name);
      sim.at(back, () => net.restart(name), "restart");
    });
  }
  sim.at(heal, () => {
    net.healAll();
    for (const n of names) net.restart(n);
    net.mix = { ...CLEAN, latencyMs: mix.latencyMs, jitterMs: mix.jitterMs };
    sim.trace("heal all");
  });

  o.observe?.(net);
  const bound = convergenceBound(mix);
  await net.run(heal);
  // Convergence: checked every 10 ms of virtual time after the heal.
  let target: Uint8Array | undefined;
  let convergedAt = Number.POSITIVE_INFINITY;
  let quiescedAt = Number.POSITIVE_INFINITY;
  const replicas = net.replicas();
  let bytesAtConvergence = 0;
  const check = () => {
    target ??= digestOf(modelState(writes));
    if (
      convergedAt === Number.POSITIVE_INFINITY &&
      replicas.every((x) => bytesEqual(x.stateDigest(), target!))
    ) {
      convergedAt = sim.now - heal;
      bytesAtConvergence = replicas.reduce((s, x) => s + x.stats().bytesSent, 0);
    }
    if (convergedAt !== Number.POSITIVE_INFINITY && quiescedAt === Number.POSITIVE_INFINITY) {
      const root = replicas[0]!.root();
      if (replicas.every((x) => x.stats().tombstones === 0 && bytesEqual(x.root(), root)))
        quiescedAt = sim.now - heal;
    }
  };
  const tick = () => {
    check();
    if (quiescedAt === Number.POSITIVE_INFINITY) sim.after(10, tick, "check");
  };
  tick();
  const limit = o.limitMs ?? 3 * bound;
  await net.run(heal + limit, () => convergedAt !== Number.POSITIVE_INFINITY);
  if (convergedAt !== Number.POSITIVE_INFINITY)
    await net.run(heal + (o.quiesceLimitMs ?? 30_000), () => quiescedAt !== Number.POSITIVE_INFINITY);
  net.close();
  const stats = replicas.map((x) => x.stats());
  const bytesSent = bytesAtConvergence || stats.reduce((s, x) => s + x.bytesSent, 0);
  const localUpdates = stats.reduce((s, x) => s + x.localUpdates, 0);
  const rejected: Record<string, number> = {};
  for (const s of stats)
    for (const [k, v] of Object.entries(s.rejected)) rejected[k] = (rejected[k] ?? 0) + v;
  return {
    seed: o.seed,
    nodes: o.nodes,
    mix: describeMix(mix),
    writes: writes.length,
    converged: convergedAt !== Number.POSITIVE_INFINITY,
    convergenceMs: convergedAt,
    boundMs: bound,
    quiescedMs: quiescedAt,
    bytesSent,
    localUpdates,
    bytesPerUpdate: localUpdates === 0 ? 0 : bytesSent / localUpdates,
    rejected,
    tombstonesCollected: stats.reduce((s, x) => s + x.tombstonesCollected, 0),
    traceHash: sim.traceHash,
    trace: sim.recentTrace(),
  };
}
