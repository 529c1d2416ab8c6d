/**
 * A discrete-event simulator: virtual time, one seeded PRNG, and an event queue
 * ordered by time then by scheduling order, so a seed replays the same run
 * event for event (DESIGN §5). Protocol code runs on it unchanged through the
 * {@link Env} it hands each simulated node.
 *
 * The code under simulation is asynchronous (promises), so after every event
 * the simulator lets all microtasks run before it takes the next one: what a
 * callback starts settles "instantly" in virtual time, and the order is fixed
 * by the event order alone. Nothing the code does may reach real time or real
 * randomness (the layer and env rules keep it that way); if it did, runs of
 * one seed would differ, which {@link Simulator.traceHash} shows.
 */
import { createHash, type Hash } from "node:crypto";
import type { Clock, Env, Random, Timer } from "../env/index.js";
import { seededRandom } from "../env/index.js";
import { DWCPError } from "../errors.js";
// The fleet's FNV-1a of a node id: a node's random stream is named by it.
import { rolloutHash } from "../flags/rollout.js";
import { Heap } from "./heap.js";

/** Wall-clock time at the start of every run (2026-01-01T00:00:00Z): runs do not depend on the day. */
const SIM_EPOCH_MS = Date.UTC(2026, 0, 1);

// Taken before any code under simulation could replace them.
const realSetImmediate = setImmediate;
const turn = () => new Promise<void>((r) => realSetImmediate(r));

interface SimEvent {
  at: number;
  seq: number;
  fn: () => void;
  label: string;
  cancelled: boolean;
}

class SimTimer implements Timer {
  constructor(readonly event: SimEvent) {}
  unref(): this {
    return this;
  }
}

/** Options of a {@link Simulator}. */
export interface SimulatorOptions {
  /** The seed of every random choice of the run. */
  seed: number;
  /** Trace lines kept for a failure report (the hash covers all of them). @default 200 */
  traceLines?: number;
}

/** How a node's clock differs from virtual time. */
export interface ClockSkew {
  /** Added to virtual time, ms. @default 0 */
  offsetMs?: number;
  /** Rate error: the node's clock runs `1 + drift` times as fast. @default 0 */
  drift?: number;
}

/** Options of {@link Simulator.run}. */
export interface RunOptions {
  /** Stop when virtual time would pass this (ms). @default Infinity */
  until?: number;
  /** Stop as soon as this holds (checked between events). */
  stopWhen?: () => boolean;
  /** Fail the run after this many events (a livelock guard). @default 10,000,000 */
  maxEvents?: number;
}

/** The simulation: clock, randomness, event queue and trace. */
export class Simulator {
  readonly seed: number;
  /** The run's own randomness (fault choices); nodes get their own streams from {@link env}. */
  readonly random: Random;
  #now = 0;
  #seq = 0;
  #events = 0;
  readonly #queue = new Heap<SimEvent>((a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq));
  readonly #hash: Hash = createHash("sha256");
  readonly #recent: string[] = [];
  readonly #keep: number;

  constructor(options: SimulatorOptions) {
    if (!Number.isInteger(options.seed)) throw new DWCPError("ERR_INVALID_ARG", "seed must be an integer");
    this.seed = options.seed;
    this.random = seededRandom(mix(options.seed, 0x5eed));
    this.#keep = options.traceLines ?? 200;
  }

  /** Virtual time, ms since the start of the run. */
  get now(): number {
    return this.#now;
  }

  /** Events run so far. */
  get events(): number {
    return this.#events;
  }

  /** Schedules `fn` at virtual time `at` (not before now). */
  at(at: number, fn: () => void, label = ""): Timer {
    const event: SimEvent = { at: Math.max(at, this.#now), seq: this.#seq++, fn, label, cancelled: false };
    this.#queue.push(event);
    return new SimTimer(event);
  }

  /** Schedules `fn` `ms` from now. */
  after(ms: number, fn: () => void, label = ""): Timer {
    return this.at(this.#now + Math.max(0, ms), fn, label);
  }

  /** Cancels a timer of this simulator. */
  cancel(timer: Timer | undefined): void {
    if (timer instanceof SimTimer) timer.event.cancelled = true;
  }

  /** Records a line of the trace (it enters the trace hash). */
  trace(line: string): void {
    const text = `${this.#now.toFixed(3)} ${line}`;
    this.#hash.update(text);
    this.#hash.update("\n");
    this.#recent.push(text);
    if (this.#recent.length > this.#keep) this.#recent.shift();
  }

  /** SHA-256 (hex, 16 digits) of every trace line so far: equal for equal runs. */
  get traceHash(): string {
    return this.#hash.copy().digest("hex").slice(0, 16);
  }

  /** The last trace lines, oldest first. */
  recentTrace(): string[] {
    return [...this.#recent];
  }

  /**
   * The environment of simulated node `node`: its clock (virtual time, skewed
   * as asked) and its own random stream (from the seed and the node's name).
   */
  env(node: string, skew: ClockSkew = {}): Env {
    const offset = skew.offsetMs ?? 0;
    const rate = 1 + (skew.drift ?? 0);
    const clock: Clock = {
      now: () => this.#now * rate + offset,
      wall: () => SIM_EPOCH_MS + this.#now * rate + offset,
      setTimeout: (fn, ms) => this.after(Math.max(0, ms) / rate, fn, `${node} timer`),
      clearTimeout: (t) => this.cancel(t),
      setImmediate: (fn) => {
        this.after(0, fn, `${node} immediate`);
      },
    };
    return Object.freeze({ clock, random: seededRandom(mix(this.seed, rolloutHash(node))) });
  }

  /**
   * Runs events in order until none is left, `until` is reached or `stopWhen`
   * holds. Letting every microtask run after each event keeps async code in
   * step with virtual time.
   */
  async run(options: RunOptions = {}): Promise<void> {
    const until = options.until ?? Number.POSITIVE_INFINITY;
    const max = options.maxEvents ?? 10_000_000;
    await turn();
    for (;;) {
      if (options.stopWhen?.()) return;
      const next = this.#queue.peek();
      if (!next) return;
      if (next.at > until) {
        this.#now = until;
        return;
      }
      this.#queue.pop();
      if (next.cancelled) continue;
      this.#now = next.at;
      if (++this.#events > max)
        throw new DWCPError(
          "ERR_PROTOCOL",
          `simulation ran ${max} events without finishing (seed ${this.seed})`,
        );
      next.fn();
      await turn();
    }
  }
}

/** Mixes two 32-bit values into one seed. */
function mix(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ b;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
