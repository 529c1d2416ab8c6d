// A simulated network of BFT replica instances on the seeded simulator. Each
// instance is a real Replica with its own env and disk; twins share a member id
// and key. A message a replica sends to member `to` goes to every instance of
// that id the route allows: by default all of them, under Twins the ones in
// the sender's group of the partition of the message's own round (its view,
// read with messageView). Tamper hooks drop, delay, duplicate or rewrite a
// delivery; every delivery is one simulator event, and the observers (the
// invariants) see every send, delivery, commit and accusation.
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { type Membership, membership } from "../../../src/consensus/bft/membership.js";
import {
  type Command,
  type Committed,
  type Evidence,
  messageView,
  Replica,
} from "../../../src/consensus/bft/replica.js";
import type { Storage } from "../../../src/env/storage.js";
import { SimDisks, Simulator } from "../../../src/testing/index.js";
import type { InstanceSpec } from "./twins.js";

/** One message on its way from an instance to an instance. */
export interface Delivery {
  readonly from: InstanceSpec;
  readonly to: InstanceSpec;
  /** The sender id `to` is told (a forged one when a hook lies). */
  fromId: number;
  bytes: Uint8Array;
  /** The message's round, or undefined if undecodable. */
  readonly view: number | undefined;
  delayMs: number;
}

/** Watches the network; every method is optional. */
export interface NetObserver {
  /** `from` handed `bytes` to the transport for member `toId` (before routing: cut messages count). */
  sent?(from: InstanceSpec, toId: number, bytes: Uint8Array): void;
  /** `to` has processed a delivery (`receive` returned); `view` is the view it was in when it arrived. */
  delivered?(to: InstanceSpec, fromId: number, bytes: Uint8Array, view: number): void;
  committed?(at: InstanceSpec, c: Committed): void;
  accused?(at: InstanceSpec, e: Evidence): void;
  /** A client submitted `cmd` to every running instance. */
  submitted?(cmd: Command): void;
  /** An instance crashed: what it had not synced, and all it held in memory, is gone. */
  crashed?(at: InstanceSpec): void;
  /** After every delivery event, once the replica has settled. */
  step?(): void;
}

/** Options of a {@link BftNet}. */
export interface BftNetOptions {
  readonly seed: number;
  readonly n: number;
  readonly instances: readonly InstanceSpec[];
  /** Leader of a view; @default view mod n */
  readonly leaderOf?: (view: number) => number;
  /**
   * Whether a message of round `view` may go from instance `from` to `to`
   * (undecodable messages have view undefined). @default always
   */
  readonly route?: (view: number | undefined, from: InstanceSpec, to: InstanceSpec) => boolean;
  /** Rewrites one delivery into zero (drop), one or more (duplicates). @default unchanged */
  readonly tamper?: (d: Delivery) => readonly Delivery[];
  /** One-way delay: base plus an exponential tail of mean `jitterMs`. @default 1 ms, 0.5 ms */
  readonly latencyMs?: number;
  readonly jitterMs?: number;
  /** The replicas' first view timeout, ms. @default 100 */
  readonly baseTimeoutMs?: number;
  readonly maxTimeoutMs?: number;
  /** Trace lines kept for a failure report. @default 300 */
  readonly traceLines?: number;
}

/** A running instance. */
export interface Running {
  readonly spec: InstanceSpec;
  replica: Replica;
  readonly storage: Storage;
  /** False while crashed. */
  up: boolean;
}

// PKCS#8 header of a raw 32-byte Ed25519 private key (RFC 8410).
const ED25519_PKCS8 = Buffer.from("302e020100300506032b657004220420", "hex");

/** n Ed25519 key pairs determined by `seed`: test keys only (the seed is public). */
export function seededKeys(seed: number, n: number): { publicKeys: KeyObject[]; privateKeys: KeyObject[] } {
  const privateKeys = Array.from({ length: n }, (_, i) =>
    createPrivateKey({
      key: Buffer.concat([ED25519_PKCS8, createHash("sha256").update(`bft test key ${seed}/${i}`).digest()]),
      format: "der",
      type: "pkcs8",
    }),
  );
  return { publicKeys: privateKeys.map((k) => createPublicKey(k)), privateKeys };
}

const hex = (b: Uint8Array, n = 8) => Buffer.from(b.subarray(0, n)).toString("hex");

/** The simulated network of one run. */
export class BftNet {
  readonly sim: Simulator;
  readonly disks: SimDisks;
  readonly membership: Membership;
  readonly privateKeys: readonly KeyObject[];
  readonly instances = new Map<string, Running>();
  readonly observers: NetObserver[] = [];
  /** Deliveries scheduled, cut by the route, dropped by a hook, run, and injected by an adversary. */
  readonly counters = { sent: 0, cut: 0, dropped: 0, delivered: 0, injected: 0 };
  readonly #o: BftNetOptions;
  readonly #byId = new Map<number, InstanceSpec[]>();
  readonly #clients = new Map<string, { name: string; seq: number; outstanding: boolean }>();
  #thinkMs = 0;

  private constructor(o: BftNetOptions, keys: { publicKeys: KeyObject[]; privateKeys: KeyObject[] }) {
    this.#o = o;
    this.sim = new Simulator({ seed: o.seed, traceLines: o.traceLines ?? 300 });
    this.disks = new SimDisks(this.sim);
    this.membership = membership(1, keys.publicKeys);
    this.privateKeys = keys.privateKeys;
    for (const s of o.instances) {
      const list = this.#byId.get(s.id) ?? [];
      list.push(s);
      this.#byId.set(s.id, list);
    }
  }

  /** Opens every instance, with keys drawn from the seed (so a seed replays byte for byte). */
  static async start(o: BftNetOptions, keys = seededKeys(o.seed, o.n)): Promise<BftNet> {
    const net = new BftNet(o, keys);
    for (const s of o.instances) {
      const storage = net.disks.storage(s.name);
      net.instances.set(s.name, { spec: s, replica: await net.#open(s, storage), storage, up: true });
    }
    return net;
  }

  async #open(s: InstanceSpec, storage: Storage): Promise<Replica> {
    const o = this.#o;
    const replica = await Replica.open({
      env: this.sim.env(s.name),
      storage,
      membership: this.membership,
      id: s.id,
      privateKey: this.privateKeys[s.id]!,
      send: (to, bytes) => this.#send(s, to, bytes),
      ...(o.leaderOf ? { leaderOf: o.leaderOf } : {}),
      baseTimeoutMs: o.baseTimeoutMs ?? 100,
      ...(o.maxTimeoutMs !== undefined ? { maxTimeoutMs: o.maxTimeoutMs } : {}),
    });
    replica.onCommit((c) => {
      this.sim.trace(`${s.name} commit h${c.height} v${c.view} ${hex(c.digest)}`);
      for (const ob of this.observers) ob.committed?.(s, c);
      this.#clientsSee(s, c);
    });
    replica.onByzantine((e) => {
      this.sim.trace(`${s.name} accuses ${e.member} (${e.kind}, v${e.view})`);
      for (const ob of this.observers) ob.accused?.(s, e);
    });
    return replica;
  }

  /** The instances of member `id`. */
  instancesOf(id: number): readonly InstanceSpec[] {
    return this.#byId.get(id) ?? [];
  }

  #send(from: InstanceSpec, to: number, bytes: Uint8Array): void {
    const copy = bytes.slice();
    for (const ob of this.observers) ob.sent?.(from, to, copy);
    if (!this.instances.get(from.name)?.up) return;
    const view = messageView(copy);
    const o = this.#o;
    for (const target of this.instancesOf(to)) {
      if (target.name === from.name) continue;
      if (o.route && !o.route(view, from, target)) {
        this.counters.cut++;
        continue;
      }
      const d: Delivery = { from, to: target, fromId: from.id, bytes: copy, view, delayMs: this.#delay() };
      const out = o.tamper ? o.tamper(d) : [d];
      if (out.length === 0) this.counters.dropped++;
      for (const x of out) this.schedule(x);
    }
  }

  #delay(): number {
    const base = this.#o.latencyMs ?? 1;
    const jitter = this.#o.jitterMs ?? 0.5;
    return base + (jitter > 0 ? -Math.log(1 - this.sim.random.next()) * jitter : 0);
  }

  /** Schedules a delivery as one simulator event (adversaries inject through this too). */
  schedule(d: Delivery): void {
    this.counters.sent++;
    this.sim.after(
      d.delayMs,
      () => {
        const target = this.instances.get(d.to.name);
        if (!target?.up) return;
        this.counters.delivered++;
        this.sim.trace(`${d.from.name}>${d.to.name} v${d.view ?? "?"} ${d.bytes.length}B as ${d.fromId}`);
        const view = target.replica.view;
        target.replica.receive(d.fromId, d.bytes);
        for (const ob of this.observers) ob.delivered?.(d.to, d.fromId, d.bytes, view);
        for (const ob of this.observers) ob.step?.();
      },
      "deliver",
    );
  }

  /** A delivery from `from` (real or pretended) to instance `to`, after the usual delay. */
  inject(
    from: InstanceSpec,
    to: InstanceSpec,
    bytes: Uint8Array,
    fromId = from.id,
    delayMs = this.#delay(),
  ): void {
    this.counters.injected++;
    this.schedule({ from, to, fromId, bytes, view: messageView(bytes), delayMs });
  }

  /** Submits a client command to every running instance (a client broadcasts its request). */
  submit(cmd: Command): void {
    for (const ob of this.observers) ob.submitted?.(cmd);
    for (const r of this.instances.values()) if (r.up) r.replica.submit(cmd);
  }

  /**
   * Starts `count` clients, each with one command outstanding at a time: it
   * submits its next command `thinkMs` after an honest replica committed the
   * last. (That is the contract of `Replica.submit`: a seq at or below the
   * client's last committed one is dropped, so a client that pipelined would
   * lose the commands a later one overtook.) The load outlasts the faults, so
   * there is always something left to commit when liveness is judged.
   */
  clients(count: number, thinkMs: number): void {
    this.#thinkMs = thinkMs;
    for (let i = 0; i < count; i++) {
      const client = { name: `c${i}`, seq: 0, outstanding: false };
      this.#clients.set(client.name, client);
      this.sim.at(thinkMs * (1 + i / count), () => this.#next(client), "client");
    }
  }

  #next(client: { name: string; seq: number; outstanding: boolean }): void {
    client.seq++;
    client.outstanding = true;
    this.submit({
      client: client.name,
      seq: client.seq,
      op: new TextEncoder().encode(`${client.name}:${client.seq}`),
    });
  }

  #clientsSee(at: InstanceSpec, c: Committed): void {
    if (at.byzantine) return;
    for (const cmd of c.commands) {
      const client = this.#clients.get(cmd.client);
      if (!client?.outstanding || client.seq !== cmd.seq) continue;
      client.outstanding = false;
      this.sim.after(this.#thinkMs, () => this.#next(client), "client");
    }
  }

  /** Crashes an instance: the replica stops and its disk loses what was not synced. */
  crash(name: string): void {
    const r = this.instances.get(name);
    if (!r?.up) return;
    r.up = false;
    r.replica.close();
    this.disks.crash(name);
    this.sim.trace(`crash ${name}`);
    for (const ob of this.observers) ob.crashed?.(r.spec);
  }

  /** Restarts a crashed instance from its disk (what a real restart recovers, nothing more). */
  async restart(name: string): Promise<void> {
    const r = this.instances.get(name);
    if (!r || r.up) return;
    r.replica = await this.#open(r.spec, r.storage);
    r.up = true;
    this.sim.trace(`restart ${name}`);
  }

  /** Runs the simulation (see Simulator.run). */
  run(options: { until?: number; stopWhen?: () => boolean; maxEvents?: number }): Promise<void> {
    return this.sim.run(options);
  }

  /** Stops every replica (their timers would otherwise keep the queue alive). */
  close(): void {
    for (const r of this.instances.values()) if (r.up) r.replica.close();
  }
}
