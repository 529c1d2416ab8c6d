// Lease time for the local backend's tests: a Simulator whose virtual time
// moves only when a test lets it (elapse), while a pump runs the events due now
// (simulated disk syncs, timers) so that backend calls complete on their own.
import { Simulator } from "../../src/testing/index.js";

const tick = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class FakeTime {
  readonly sim: Simulator;
  #limit = 0;
  #stopped = false;
  readonly #loop: Promise<void>;

  constructor(seed = 1) {
    this.sim = new Simulator({ seed });
    this.#loop = this.#pump();
  }

  async #pump(): Promise<void> {
    while (!this.#stopped) {
      const before = this.sim.events;
      await this.sim.run({ until: this.#limit });
      // Idle: look again in a millisecond rather than spin.
      await (this.sim.events === before ? tick(1) : new Promise<void>((r) => setImmediate(r)));
    }
  }

  /** Moves virtual time `seconds` on, running every timer due meanwhile, and lets their work settle. */
  async elapse(seconds: number): Promise<void> {
    const to = this.sim.now + seconds * 1000;
    this.sim.at(to, () => {}, "elapse");
    this.#limit = to;
    while (this.sim.now < to) await tick(1);
    for (let i = 0; i < 5; i++) await tick(2);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }
}
