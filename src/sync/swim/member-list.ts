/**
 * The member table and SWIM's round-robin probe order. Probing walks a
 * shuffled list of the members and reshuffles after each full round, so every
 * member is probed once per round (a bounded time to first detection, unlike
 * uniform random picks); a new member is inserted at a random position so it
 * is neither always probed first nor always last.
 */
import type { Random } from "../../env/index.js";
import type { SignedUpdate } from "./messages.js";

/** A member's state as this node sees it. */
export type MemberState = "alive" | "suspect" | "dead" | "left";

/** What this node knows of another member. */
export interface Member {
  readonly id: string;
  state: MemberState;
  incarnation: number;
  /** When the state last changed (env clock, ms). */
  since: number;
  /** The last update accepted about it, as received (signature included): what a full-state exchange sends. */
  update: SignedUpdate;
}

/** Members by id plus the probe order. */
export class MemberList {
  readonly #members = new Map<string, Member>();
  #order: string[] = [];
  #next = 0;
  /** Members to probe before the round's order (see {@link urge}); at most one entry each. */
  readonly #urgent: string[] = [];

  constructor(readonly random: Random) {}

  get size(): number {
    return this.#members.size;
  }

  get(id: string): Member | undefined {
    return this.#members.get(id);
  }

  /** Every member, in insertion order (deterministic). */
  all(): IterableIterator<Member> {
    return this.#members.values();
  }

  /** Members alive or suspect (those probed and counted in n). */
  live(): Member[] {
    return [...this.#members.values()].filter((m) => m.state === "alive" || m.state === "suspect");
  }

  /** Adds a member and inserts it at a random place of the probe order. */
  add(m: Member): void {
    this.#members.set(m.id, m);
    const at = this.random.int(this.#order.length + 1);
    this.#order.splice(at, 0, m.id);
    if (at < this.#next) this.#next++;
  }

  /** Removes a member (its id leaves the probe order at the next reshuffle). */
  remove(id: string): void {
    this.#members.delete(id);
  }

  /**
   * Makes `id` the next member probed (once), ahead of the round's order: the
   * transport has just found it unreachable. The round-robin goes on after it.
   */
  urge(id: string): void {
    const m = this.#members.get(id);
    if (m && (m.state === "alive" || m.state === "suspect") && !this.#urgent.includes(id))
      this.#urgent.push(id);
  }

  /**
   * The next member to probe (alive or suspect), or undefined when there is
   * none: an urged one first, then the round's order, reshuffled at the end
   * of each round.
   */
  nextProbe(): Member | undefined {
    for (let id = this.#urgent.shift(); id !== undefined; id = this.#urgent.shift()) {
      const m = this.#members.get(id);
      if (m && (m.state === "alive" || m.state === "suspect")) return m;
    }
    for (let tries = 0; tries <= this.#order.length + 1; tries++) {
      if (this.#next >= this.#order.length) this.#reshuffle();
      if (this.#order.length === 0) return undefined;
      const m = this.#members.get(this.#order[this.#next++]!);
      if (m && (m.state === "alive" || m.state === "suspect")) return m;
    }
    return undefined;
  }

  #reshuffle(): void {
    // Ids removed from the table leave the order here.
    const order = this.#order.filter((id) => this.#members.has(id));
    for (let i = order.length - 1; i > 0; i--) {
      const j = this.random.int(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    this.#order = order;
    this.#next = 0;
  }

  /** Up to `k` distinct members drawn at random among those `accept` takes. */
  pick(k: number, accept: (m: Member) => boolean): Member[] {
    const pool = [...this.#members.values()].filter(accept);
    const out: Member[] = [];
    while (out.length < k && pool.length > 0) {
      const i = this.random.int(pool.length);
      out.push(pool[i]!);
      pool[i] = pool[pool.length - 1]!;
      pool.pop();
    }
    return out;
  }
}
