/**
 * A link's send queue, one queue per flow, served by deficit round robin: while
 * the path is full, each backlogged flow's share of what the link admits is its
 * weight over the backlogged flows' total (weighted max-min, as PBA's water-
 * filling computes it), and a flow that stops sending leaves its share to the
 * others at once. A flow with a demand is paced to it by a token bucket. Within
 * a flow, messages keep their order. With one unpaced flow it is a plain FIFO.
 */
import { DEFAULT_CLASS_WEIGHTS, type FlowClass } from "../prediction/index.js";

/** A queued message as the scheduler sees it. */
export interface Queued {
  /** Bytes it counts for (payload and overhead). */
  readonly charge: number;
  /** Withdrawn or failed while queued: served without counting. */
  readonly settled: boolean;
  /** The flow it belongs to. */
  readonly flow: string;
}

/** How a flow shares its link. */
export interface FlowSettings {
  /** Priority class; its weight multiplies the flow's. @default "bulk" */
  class?: FlowClass;
  /** Weight within the class, > 0. @default 1 */
  weight?: number;
  /**
   * The most the flow wants, bits per second: it is paced to this rate (a token
   * bucket holding 50 ms of it, at least 64 KiB) and its allocation never
   * exceeds it. @default unlimited
   */
  demandBps?: number;
}

/** The flow of messages sent without one. */
export const DEFAULT_FLOW = "default";

/** Bytes a weight of 1 may send per round: a round serves every backlogged flow once. */
const QUANTUM_BYTES = 64 * 1024;

interface FlowState<T> {
  readonly id: string;
  settings: FlowSettings;
  weight: number;
  readonly queue: T[];
  head: number;
  deficit: number;
  /** Whether this round's quantum was added. */
  visited: boolean;
  /** Pacing, for a flow with a demand: bytes per ms, the bucket's size and its tokens at `filledAt`. */
  pace: { perMs: number; burst: number; tokens: number; filledAt: number } | undefined;
}

function paceOf(s: FlowSettings, now: number): FlowState<never>["pace"] {
  if (s.demandBps === undefined) return undefined;
  const perMs = s.demandBps / 8 / 1000;
  const burst = Math.max(64 * 1024, perMs * 50);
  return { perMs, burst, tokens: burst, filledAt: now };
}

/** The effective weight of `s`: its class's times its own. */
export function flowWeight(s: FlowSettings, classWeights = DEFAULT_CLASS_WEIGHTS): number {
  return classWeights[s.class ?? "bulk"] * (s.weight ?? 1);
}

/** Per-flow queues under deficit round robin, with a FIFO's surface (length, push, peek, shift). */
export class FlowQueues<T extends Queued> {
  readonly #flows = new Map<string, FlowState<T>>();
  /** Flows with something queued, in round-robin order. */
  #ring: FlowState<T>[] = [];
  #cursor = 0;
  #length = 0;
  /** The flow whose head `peek` chose, until `shift` takes it. */
  #chosen: FlowState<T> | undefined;
  readonly #now: () => number;
  /** When `peek` found only paced flows without tokens: the earliest time one has some. */
  #wakeAt: number | undefined;

  /** `now`: the clock pacing runs on, ms. */
  constructor(now: () => number) {
    this.#now = now;
  }

  /**
   * Set when `peek` returned nothing though messages are queued, because every
   * backlogged flow waits for its pacing: the time to ask again, ms.
   */
  get wakeAt(): number | undefined {
    return this.#wakeAt;
  }

  /** True when flow `id` is paced (a message of it must go through the queue). */
  paced(id: string): boolean {
    return this.#flows.get(id)?.pace !== undefined;
  }

  get length(): number {
    return this.#length;
  }

  /** Flows declared or used so far. */
  get flowCount(): number {
    return this.#flows.size;
  }

  /** Whether a flow other than `id` has something queued. */
  backloggedOtherThan(id: string): boolean {
    for (const f of this.#ring) if (f.id !== id) return true;
    return false;
  }

  /** Declares or changes flow `id`. */
  configure(id: string, settings: FlowSettings): void {
    const f = this.#flows.get(id);
    if (f) {
      f.settings = settings;
      f.weight = flowWeight(settings);
      f.pace = paceOf(settings, this.#now());
    } else this.#flows.set(id, this.#state(id, settings));
  }

  /** The declared flows and their settings. */
  get settings(): ReadonlyMap<string, FlowSettings> {
    return new Map([...this.#flows].map(([id, f]) => [id, f.settings]));
  }

  /** Forgets flow `id` once its queue is empty (its queued messages are still served). */
  remove(id: string): void {
    const f = this.#flows.get(id);
    if (f && f.head >= f.queue.length) this.#flows.delete(id);
  }

  /** Bytes queued per flow. */
  queuedBytes(): Map<string, number> {
    const out = new Map<string, number>();
    for (const f of this.#flows.values()) {
      let n = 0;
      for (let i = f.head; i < f.queue.length; i++) if (!f.queue[i]!.settled) n += f.queue[i]!.charge;
      out.set(f.id, n);
    }
    return out;
  }

  #state(id: string, settings: FlowSettings): FlowState<T> {
    return {
      id,
      settings,
      weight: flowWeight(settings),
      queue: [],
      head: 0,
      deficit: 0,
      visited: false,
      pace: paceOf(settings, this.#now()),
    };
  }

  push(x: T): void {
    let f = this.#flows.get(x.flow);
    if (!f) {
      f = this.#state(x.flow, {});
      this.#flows.set(x.flow, f);
    }
    if (f.head >= f.queue.length) this.#ring.push(f);
    f.queue.push(x);
    this.#length++;
  }

  /** The message deficit round robin serves next (the same until `shift`). */
  peek(): T | undefined {
    if (this.#chosen) return this.#chosen.queue[this.#chosen.head];
    this.#wakeAt = undefined;
    const now = this.#now();
    // Flows passed over for want of tokens this call: when every flow in the ring
    // is, nothing can go before the earliest refill.
    let waiting = 0;
    while (this.#ring.length > 0) {
      if (this.#cursor >= this.#ring.length) this.#cursor = 0;
      const f = this.#ring[this.#cursor]!;
      const head = f.queue[f.head];
      if (!head) {
        this.#drop(f);
        continue;
      }
      // Withdrawn messages cost nothing: served as soon as they are at the head.
      if (head.settled) {
        this.#chosen = f;
        return head;
      }
      const p = f.pace;
      if (p) {
        p.tokens = Math.min(p.burst, p.tokens + (now - p.filledAt) * p.perMs);
        p.filledAt = now;
        if (p.tokens <= 0) {
          const at = now + -p.tokens / p.perMs + 0.001;
          if (this.#wakeAt === undefined || at < this.#wakeAt) this.#wakeAt = at;
          f.visited = false;
          this.#cursor++;
          if (++waiting >= this.#ring.length) return undefined;
          continue;
        }
      }
      waiting = 0;
      if (this.#ring.length === 1) {
        this.#chosen = f;
        return head;
      }
      if (!f.visited) {
        f.deficit += f.weight * QUANTUM_BYTES;
        f.visited = true;
      }
      if (f.deficit >= head.charge) {
        this.#chosen = f;
        return head;
      }
      f.visited = false;
      this.#cursor++;
    }
    return undefined;
  }

  shift(): T | undefined {
    const x = this.peek();
    const f = this.#chosen;
    if (!x || !f) return undefined;
    this.#chosen = undefined;
    f.queue[f.head++] = undefined as unknown as T;
    this.#length--;
    if (!x.settled && this.#ring.length > 1) f.deficit -= x.charge;
    // A paced flow may overdraw by one message: its next waits until the bucket refills.
    if (!x.settled && f.pace) f.pace.tokens -= x.charge;
    if (f.head >= f.queue.length) this.#drop(f);
    else if (f.head > 1024 && f.head * 2 > f.queue.length) {
      f.queue.splice(0, f.head);
      f.head = 0;
    }
    return x;
  }

  /** Takes `f` out of the round: nothing queued, its deficit forfeited (DRR: an idle flow saves no credit). */
  #drop(f: FlowState<T>): void {
    const i = this.#ring.indexOf(f);
    if (i >= 0) {
      this.#ring.splice(i, 1);
      if (i < this.#cursor) this.#cursor--;
    }
    f.queue.length = 0;
    f.head = 0;
    f.deficit = 0;
    f.visited = false;
  }

  /** Empties the queue, pacing or not: every queued message, flow by flow. */
  takeAll(): T[] {
    const all = [...this];
    this.clear();
    return all;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (const f of this.#flows.values()) for (let i = f.head; i < f.queue.length; i++) yield f.queue[i]!;
  }

  clear(): void {
    for (const f of this.#flows.values()) {
      f.queue.length = 0;
      f.head = 0;
      f.deficit = 0;
      f.visited = false;
    }
    this.#ring = [];
    this.#cursor = 0;
    this.#length = 0;
    this.#chosen = undefined;
  }
}
