// A message-level simulation of SWIM nodes on the seeded simulator: each node
// is a real Swim core with its own env; a message is one simulator event after
// a latency of base + exponential jitter, lost with the network's drop rate.
// Faults: crash (the node stops for good), stall (SIGSTOP-like: nothing of
// the node runs, its timers and inbound messages wait, until it resumes), and
// slowness (every inbound message waits a random processing delay before the
// core sees it, while its timers fire on time: Lifeguard's overloaded node).
// Every membership event is recorded with the virtual time and traced.
import type { Env } from "../../src/env/index.js";
import { Swim, type SwimEvent, type SwimOptions } from "../../src/sync/swim/index.js";
import { Simulator } from "../../src/testing/index.js";
import { gatedEnv } from "../helpers/gated-env.js";

/** An event as one node (the observer) saw it, at virtual time `t`. */
export interface Observed extends SwimEvent {
  readonly observer: string;
  readonly t: number;
}

/** Options of a {@link SwimNet}. */
export interface SwimNetOptions {
  readonly seed: number;
  /** Probability that a message is lost. @default 0 */
  readonly drop?: number;
  /** One-way delay: base plus an exponential tail of mean `jitterMs`. @default 1 ms, 0.5 ms */
  readonly latencyMs?: number;
  readonly jitterMs?: number;
  /** The options of every core (per-node ones in {@link SwimNet.add} override them). */
  readonly options?: SwimOptions;
  /** Per-node options (a node's keys, say), over {@link options}. */
  readonly optionsFor?: (name: string) => SwimOptions;
  readonly traceLines?: number;
}

interface SimNode {
  readonly name: string;
  swim: Swim;
  up: boolean;
  pausedUntil: number;
  slowMs: number;
}

/** The simulated cluster of one run. */
export class SwimNet {
  readonly sim: Simulator;
  readonly nodes = new Map<string, SimNode>();
  readonly events: Observed[] = [];
  /** Messages sent, dropped by the network, and delivered. */
  readonly counters = { sent: 0, dropped: 0, delivered: 0 };
  /** Hook on every delivery; return false to lose it. */
  filter?: (from: string, to: string, bytes: Uint8Array) => boolean;
  /** Probability that a message is lost (may change during a run). */
  drop: number;
  readonly #o: SwimNetOptions;

  constructor(o: SwimNetOptions) {
    this.#o = o;
    this.drop = o.drop ?? 0;
    this.sim = new Simulator({ seed: o.seed, traceLines: o.traceLines ?? 100 });
  }

  /** Starts node `name`. */
  add(name: string, options: SwimOptions = {}): Swim {
    const node: SimNode = { name, swim: undefined as unknown as Swim, up: true, pausedUntil: 0, slowMs: 0 };
    const swim = new Swim({
      id: name,
      env: this.#env(node),
      send: (to, bytes) => this.#send(node, to, bytes),
      options: { ...this.#o.options, ...this.#o.optionsFor?.(name), ...options },
    });
    node.swim = swim;
    swim.onEvent((e) => {
      this.events.push({ ...e, observer: name, t: this.sim.now });
      this.sim.trace(`${name} ${e.type} ${e.node} i${e.incarnation} by ${e.origin}`);
    });
    this.nodes.set(name, node);
    return swim;
  }

  /** Starts `n` nodes n0 … n(n-1); each joins through `seed` at a random time in [0, spreadMs). */
  cluster(n: number, seed = "n0", spreadMs = 500): Swim[] {
    const out: Swim[] = [];
    for (let i = 0; i < n; i++) {
      const swim = this.add(`n${i}`);
      out.push(swim);
      if (`n${i}` !== seed) this.sim.after(this.sim.random.next() * spreadMs, () => swim.join([seed]));
    }
    return out;
  }

  swim(name: string): Swim {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n.swim;
  }

  /** Nodes that are up. */
  upNodes(): string[] {
    return [...this.nodes.values()].filter((n) => n.up).map((n) => n.name);
  }

  /** Whether every node that is up sees every other up node alive. */
  converged(): boolean {
    const up = this.upNodes();
    return up.every((a) => {
      const s = this.swim(a);
      return up.every((b) => a === b || s.member(b)?.state === "alive");
    });
  }

  /** Crashes `name`: it stops for good (its timers and inbound messages are gone). */
  crash(name: string): void {
    const n = this.nodes.get(name)!;
    n.up = false;
    n.swim.close();
    this.sim.trace(`crash ${name}`);
  }

  /** Stops `name` for `ms` of virtual time, as SIGSTOP then SIGCONT would. */
  stall(name: string, ms: number): void {
    this.nodes.get(name)!.pausedUntil = this.sim.now + ms;
    this.sim.trace(`stall ${name} ${ms}`);
  }

  /** Delays every message `name` receives by a random processing time in [0, maxMs). */
  slow(name: string, maxMs: number): void {
    this.nodes.get(name)!.slowMs = maxMs;
  }

  /** Delivers `bytes` to `to` as if from `from` (an adversary's message), after the usual delay. */
  inject(from: string, to: string, bytes: Uint8Array): void {
    this.sim.after(this.#delay(), () => this.#deliver(from, this.nodes.get(to)!, bytes));
  }

  run(until: number, stopWhen?: () => boolean): Promise<void> {
    return this.sim.run(stopWhen ? { until, stopWhen } : { until });
  }

  /** Stops every core (their timers would otherwise keep the queue alive). */
  close(): void {
    for (const n of this.nodes.values()) n.swim.close();
  }

  /** Events of one type about `node` (any observer). */
  eventsAbout(node: string, type: SwimEvent["type"]): Observed[] {
    return this.events.filter((e) => e.node === node && e.type === type);
  }

  // The node's env: its timers wait while it is stalled, and nothing runs once it crashed.
  #env(node: SimNode): Env {
    return gatedEnv(this.sim.env(node.name), (run) => this.#gate(node, run));
  }

  #gate(node: SimNode, fn: () => void): void {
    if (!node.up) return;
    if (this.sim.now < node.pausedUntil) {
      this.sim.at(node.pausedUntil, () => this.#gate(node, fn), "resume");
      return;
    }
    fn();
  }

  #delay(): number {
    const base = this.#o.latencyMs ?? 1;
    const jitter = this.#o.jitterMs ?? 0.5;
    return base + (jitter > 0 ? -Math.log(1 - this.sim.random.next()) * jitter : 0);
  }

  #send(from: SimNode, to: string, bytes: Uint8Array): void {
    if (!from.up) return;
    this.counters.sent++;
    const target = this.nodes.get(to);
    if (!target) return;
    if (this.drop > 0 && this.sim.random.next() < this.drop) {
      this.counters.dropped++;
      return;
    }
    const copy = bytes.slice();
    this.sim.after(this.#delay(), () => this.#deliver(from.name, target, copy), "deliver");
  }

  #deliver(from: string, to: SimNode, bytes: Uint8Array): void {
    if (!to.up) return;
    if (this.filter && !this.filter(from, to.name, bytes)) return;
    const run = () =>
      this.#gate(to, () => {
        this.counters.delivered++;
        to.swim.receive(from, bytes);
      });
    if (to.slowMs > 0) this.sim.after(this.sim.random.next() * to.slowMs, run, "slow");
    else run();
  }
}
