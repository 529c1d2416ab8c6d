/**
 * A windowed maximum or minimum over time, as BBR keeps its bottleneck
 * bandwidth and min RTT: a deque whose values are monotonic, so the extreme of
 * any trailing window is its first entry at or after the window's start.
 */

/** Windowed extreme of a series of timed values, in bounded memory. */
export class WindowedExtreme {
  readonly #better: (a: number, b: number) => boolean;
  readonly #cap: number;
  readonly #at: number[] = [];
  readonly #v: number[] = [];

  /**
   * @param kind `max` or `min`
   * @param cap entries kept; past it the oldest goes (only a series that moves
   *   monotonically for `cap` samples inside one window reaches it)
   */
  constructor(kind: "max" | "min", cap = 1024) {
    this.#better = kind === "max" ? (a, b) => a > b : (a, b) => a < b;
    this.#cap = cap;
  }

  /** Adds `v` at time `at` (times in order); entries older than `windowMs` before `at` go. */
  add(at: number, v: number, windowMs: number): void {
    while (this.#v.length > 0 && !this.#better(this.#v[this.#v.length - 1]!, v)) {
      this.#v.pop();
      this.#at.pop();
    }
    this.#v.push(v);
    this.#at.push(at);
    while (this.#at.length > this.#cap || (this.#at.length > 1 && this.#at[0]! < at - windowMs)) {
      this.#at.shift();
      this.#v.shift();
    }
  }

  /**
   * The extreme of the values from `at − windowMs` on; when the window holds
   * none, the newest value (what BBR keeps until a new round brings a sample).
   */
  get(at: number, windowMs: number): number | undefined {
    for (let i = 0; i < this.#at.length; i++) if (this.#at[i]! >= at - windowMs) return this.#v[i];
    return this.#v[this.#v.length - 1];
  }
}
