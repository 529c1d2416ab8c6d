/**
 * The reorder budget of one AMST transport instance: the receive windows of all
 * its bundles (dialled and accepted) come out of it, so what peers can make the
 * process hold in reorder buffers is capped in total, not only per bundle.
 *
 * A bundle's receive window bounds its reorder buffer (docs/PROTOCOL.md §12), so
 * reserving the window is reserving the memory: nothing is overcommitted, and an
 * honest peer is never failed for a shortage, it is only granted a smaller window
 * (and topped up when other bundles give theirs back).
 */
export class ReorderBudget {
  /** Bytes reserved by bundles now. */
  used = 0;
  readonly #waiting = new Set<() => void>();

  /**
   * @param total the cap on all receive windows together
   * @param reserve what windows growing after authentication must leave free, so
   *   that new connections can still get their small pre-authentication window
   */
  constructor(
    readonly total: number,
    readonly reserve: number,
  ) {}

  /** True when `n` bytes (a pre-authentication window) can be reserved now. */
  canAdmit(n: number): boolean {
    return this.used + n <= this.total;
  }

  /** Reserves `n` bytes, reserve included; false (and nothing reserved) when they are not there. */
  admit(n: number): boolean {
    if (!this.canAdmit(n)) return false;
    this.used += n;
    return true;
  }

  /** Reserves up to `n` bytes, leaving the reserve free. @returns the bytes reserved */
  grant(n: number): number {
    const g = Math.max(0, Math.min(n, this.total - this.reserve - this.used));
    this.used += g;
    return g;
  }

  /** Gives `n` bytes back and lets waiting bundles grow. */
  give(n: number): void {
    this.used -= n;
    for (const grow of [...this.#waiting]) {
      if (this.used >= this.total - this.reserve) break;
      grow();
    }
  }

  /** `grow` is called when bytes come back, until {@link unwait}. */
  wait(grow: () => void): void {
    this.#waiting.add(grow);
  }

  unwait(grow: () => void): void {
    this.#waiting.delete(grow);
  }
}
